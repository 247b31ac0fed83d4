//! One-time passcodes by SMS: a phone number is proven before it becomes an identity.
//!
//! A caller asks for a passcode for a phone (`request`); six digits go out by SMS and only
//! their keyed hash is stored, for `PasscodePolicy::validity_secs`. The caller sends the
//! digits back (`verify`); a right code records a proof of (caller, phone) that a
//! registration or a change of phone consumes in its own transaction. Every request counts
//! against limits per phone and per caller; every try counts against the passcode, so
//! concurrent guesses cannot exceed `max_tries`, and a right code is consumed exactly once.
//!
//! Nothing here reads whether the phone belongs to anyone: the answer to a request is the same
//! for a known and an unknown number, and a limit says only that this phone or caller asked
//! too often.

use std::future::Future;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::auth::{AuthError, Caller};
use crate::fraud::{window, Window};
use crate::ids::ParticipantId;
use crate::phone::{PhoneError, PhoneNumber};
use crate::ports::IdSource;
use crate::{Classified, InfraError, Kind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum PasscodeError {
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("a passcode is 6 digits")]
    Malformed,
    /// Wrong, expired, used up, replaced or never sent: one answer, so that a guesser
    /// learns nothing but "no".
    #[error("this passcode is not valid; ask for a new one")]
    Invalid,
    #[error("too many passcodes asked for; try again later")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for PasscodeError {
    fn kind(&self) -> Kind {
        match self {
            PasscodeError::Phone(e) => e.kind(),
            PasscodeError::Malformed => Kind::BadInput,
            PasscodeError::Invalid => Kind::Unprocessable,
            PasscodeError::TooManyAttempts { retry_after_secs } => Kind::TooManyAttempts {
                retry_after_secs: *retry_after_secs,
            },
            PasscodeError::Auth(e) => e.kind(),
            PasscodeError::Infra(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PasscodeError::Phone(e) => e.code(),
            PasscodeError::Malformed => "passcode_malformed",
            PasscodeError::Invalid => "passcode_invalid",
            PasscodeError::TooManyAttempts { .. } => "too_many_attempts",
            PasscodeError::Auth(e) => e.code(),
            PasscodeError::Infra(e) => e.code(),
        }
    }
}

/// Six digits. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(String);

impl Passcode {
    pub const LEN: usize = 6;

    /// Spaces and dashes are ignored (`123 456`).
    pub fn parse(raw: &str) -> Result<Self, PasscodeError> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        (digits.len() == Self::LEN && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(Self(digits))
            .ok_or(PasscodeError::Malformed)
    }

    /// A code drawn from a fresh id: uniform enough (a random id has 122 random bits) and
    /// deterministic under seeded ids.
    pub fn draw<I: IdSource + ?Sized>(ids: &I) -> Self {
        let digest = Sha256::digest(ids.new_id("passcode").as_bytes());
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        Self(format!("{:06}", n % 1_000_000))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passcode(redacted)")
    }
}

/// The secret key of the passcode hashes (`PASSCODE_HMAC_KEY`). Without it a stolen table
/// does not give the codes away: a million candidates are hashed in no time, keyless.
#[derive(Clone)]
pub struct PasscodeKey(Vec<u8>);

impl PasscodeKey {
    pub const MIN_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() < Self::MIN_LEN {
            return Err(format!("must be at least {} characters", Self::MIN_LEN));
        }
        Ok(Self(raw.as_bytes().to_vec()))
    }

    /// HMAC-SHA256(key, phone ‖ code ‖ challenge) in hex. The challenge is fresh per passcode,
    /// so one code sent twice never hashes the same.
    pub fn digest(&self, phone: &PhoneNumber, code: &Passcode, challenge: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in [phone.as_e164(), code.as_str(), challenge] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for PasscodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasscodeKey(redacted)")
    }
}

/// Compares two digests in time independent of where they differ.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasscodePolicy {
    pub validity_secs: i64,
    /// Verification tries per passcode, right or wrong.
    pub max_tries: u32,
    /// Passcodes per phone per window.
    pub phone_limit: u64,
    pub phone_window_secs: i64,
    /// Passcodes per caller per window.
    pub caller_limit: u64,
    pub caller_window_secs: i64,
    /// How long a proven phone may be used to register or change phone.
    pub proof_validity_secs: i64,
}

impl Default for PasscodePolicy {
    fn default() -> Self {
        Self {
            validity_secs: 300,
            max_tries: 5,
            phone_limit: 3,
            phone_window_secs: 15 * 60,
            caller_limit: 10,
            caller_window_secs: 3600,
            proof_validity_secs: 15 * 60,
        }
    }
}

/// Who asks for passcodes: each is limited apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limiter {
    Phone(PhoneNumber),
    Caller(ParticipantId),
}

impl Limiter {
    /// The key fragment for counters.
    pub fn key(&self) -> String {
        match self {
            Limiter::Phone(p) => format!("P#{}", p.as_e164()),
            Limiter::Caller(c) => format!("C#{c}"),
        }
    }
}

/// A passcode as stored: never the code, only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasscode {
    pub phone: PhoneNumber,
    pub digest: String,
    pub challenge: String,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// One request: the passcode to store and the limits it counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub passcode: StoredPasscode,
    /// Each limiter with its limit and current window.
    pub limits: Vec<(Limiter, u64, Window)>,
}

/// A proven phone: (subject, phone) may register or change phone until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub subject: ParticipantId,
    pub phone: PhoneNumber,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// How a registration or a change of phone knows the phone is the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneProof {
    /// The identity provider verified it: the token's `phone_number` is this phone and
    /// `phone_number_verified` is true.
    Token,
    /// A passcode proof of (caller, phone) alive at `now` (epoch seconds), consumed by the
    /// same write.
    Recorded { now: i64 },
}

impl PhoneProof {
    pub fn for_caller(caller: &Caller, phone: &PhoneNumber, now: DateTime<Utc>) -> Self {
        if caller.verified_phone.as_ref() == Some(phone) {
            PhoneProof::Token
        } else {
            PhoneProof::Recorded {
                now: now.timestamp(),
            }
        }
    }
}

/// Storage of passcodes, their counters and proofs.
pub trait Passcodes: Send + Sync {
    /// Counts one request for every limiter in its window and stores the passcode, replacing
    /// any earlier one of the phone, all or nothing. Refused with the limiters at their limit.
    fn issue(
        &self,
        issue: &Issue,
    ) -> impl Future<Output = Result<Result<(), Vec<Limiter>>, InfraError>> + Send;
    /// Counts one try at the phone's passcode if it is alive at `now` (not expired, fewer than
    /// `max_tries` tries) and returns it; `None` if there is none alive. Atomic: concurrent
    /// tries never count past `max_tries`.
    fn try_passcode(
        &self,
        phone: &PhoneNumber,
        max_tries: u32,
        now: i64,
    ) -> impl Future<Output = Result<Option<StoredPasscode>, InfraError>> + Send;
    /// Deletes the passcode with this challenge and records the proof, in one write; `false`
    /// if that passcode is gone (consumed by a concurrent right try, or replaced).
    fn prove(
        &self,
        challenge: &str,
        proof: &Proof,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;
}

/// Sends text messages.
pub trait SmsSender: Send + Sync {
    fn send(
        &self,
        phone: &PhoneNumber,
        text: &str,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// A shared sender is a sender: a test keeps one handle to read what was sent.
impl<S: SmsSender + ?Sized> SmsSender for std::sync::Arc<S> {
    async fn send(&self, phone: &PhoneNumber, text: &str) -> Result<(), InfraError> {
        (**self).send(phone, text).await
    }
}

/// The text of the SMS.
pub fn message(code: &Passcode, policy: &PasscodePolicy) -> String {
    format!(
        "Your Loyalty Engine code is {}. It is valid for {} minutes. Never share it.",
        code.as_str(),
        policy.validity_secs / 60
    )
}

/// The answer to a request, the same whether or not the phone is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Requested {
    pub sent: bool,
    pub expires_in_secs: i64,
}

/// Sends a fresh passcode to `phone` for the caller.
#[allow(clippy::too_many_arguments)]
pub async fn request<P: Passcodes, S: SmsSender, I: IdSource + ?Sized>(
    store: &P,
    sms: &S,
    key: &PasscodeKey,
    policy: &PasscodePolicy,
    caller: &Caller,
    phone: &PhoneNumber,
    ids: &I,
    now: DateTime<Utc>,
) -> Result<Requested, PasscodeError> {
    let subject = caller.participant()?;
    let t = now.timestamp();
    let code = Passcode::draw(ids);
    let challenge = ids.new_id("challenge");
    let issue = Issue {
        passcode: StoredPasscode {
            phone: phone.clone(),
            digest: key.digest(phone, &code, &challenge),
            challenge,
            expires_at: t + policy.validity_secs,
        },
        limits: vec![
            (
                Limiter::Phone(phone.clone()),
                policy.phone_limit,
                window(t, policy.phone_window_secs),
            ),
            (
                Limiter::Caller(subject.clone()),
                policy.caller_limit,
                window(t, policy.caller_window_secs),
            ),
        ],
    };
    if let Err(full) = store.issue(&issue).await? {
        let until = issue
            .limits
            .iter()
            .filter(|(l, _, _)| full.contains(l))
            .map(|(_, _, w)| w.end)
            .max()
            .unwrap_or(t + 1);
        return Err(PasscodeError::TooManyAttempts {
            retry_after_secs: (until - t).max(1) as u64,
        });
    }
    sms.send(phone, &message(&code, policy)).await?;
    Ok(Requested {
        sent: true,
        expires_in_secs: policy.validity_secs,
    })
}

/// Checks a passcode; a right one records a proof of (caller, phone) and is used up.
pub async fn verify<P: Passcodes>(
    store: &P,
    key: &PasscodeKey,
    policy: &PasscodePolicy,
    caller: &Caller,
    phone: &PhoneNumber,
    code: &Passcode,
    now: DateTime<Utc>,
) -> Result<Proof, PasscodeError> {
    let subject = caller.participant()?;
    let t = now.timestamp();
    let stored = store
        .try_passcode(phone, policy.max_tries, t)
        .await?
        .ok_or(PasscodeError::Invalid)?;
    if !same_digest(&key.digest(phone, code, &stored.challenge), &stored.digest) {
        return Err(PasscodeError::Invalid);
    }
    let proof = Proof {
        subject: subject.clone(),
        phone: phone.clone(),
        expires_at: t + policy.proof_validity_secs,
    };
    if store.prove(&stored.challenge, &proof).await? {
        Ok(proof)
    } else {
        Err(PasscodeError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// The port as plain maps: enough for the rules; the adapters have their contract suite.
    #[derive(Default)]
    struct Fake {
        counts: Mutex<BTreeMap<(String, i64), u64>>,
        passcodes: Mutex<BTreeMap<String, (StoredPasscode, u32)>>,
        proofs: Mutex<Vec<Proof>>,
    }

    impl Passcodes for Fake {
        async fn issue(&self, issue: &Issue) -> Result<Result<(), Vec<Limiter>>, InfraError> {
            let mut counts = self.counts.lock().unwrap();
            let full: Vec<Limiter> = issue
                .limits
                .iter()
                .filter(|(l, limit, w)| {
                    counts.get(&(l.key(), w.start)).copied().unwrap_or(0) >= *limit
                })
                .map(|(l, _, _)| l.clone())
                .collect();
            if !full.is_empty() {
                return Ok(Err(full));
            }
            for (l, _, w) in &issue.limits {
                *counts.entry((l.key(), w.start)).or_default() += 1;
            }
            let p = &issue.passcode;
            self.passcodes
                .lock()
                .unwrap()
                .insert(p.phone.as_e164().into(), (p.clone(), 0));
            Ok(Ok(()))
        }

        async fn try_passcode(
            &self,
            phone: &PhoneNumber,
            max_tries: u32,
            now: i64,
        ) -> Result<Option<StoredPasscode>, InfraError> {
            let mut all = self.passcodes.lock().unwrap();
            Ok(match all.get_mut(phone.as_e164()) {
                Some((p, tries)) if p.expires_at > now && *tries < max_tries => {
                    *tries += 1;
                    Some(p.clone())
                }
                _ => None,
            })
        }

        async fn prove(&self, challenge: &str, proof: &Proof) -> Result<bool, InfraError> {
            let mut all = self.passcodes.lock().unwrap();
            let e164 = proof.phone.as_e164();
            if all.get(e164).is_none_or(|(p, _)| p.challenge != challenge) {
                return Ok(false);
            }
            all.remove(e164);
            self.proofs.lock().unwrap().push(proof.clone());
            Ok(true)
        }
    }

    #[derive(Default)]
    struct Outbox(Mutex<Vec<(String, String)>>);

    impl SmsSender for Outbox {
        async fn send(&self, phone: &PhoneNumber, text: &str) -> Result<(), InfraError> {
            self.0
                .lock()
                .unwrap()
                .push((phone.as_e164().into(), text.into()));
            Ok(())
        }
    }

    impl Outbox {
        fn last_code(&self) -> Passcode {
            let sent = self.0.lock().unwrap();
            let text = &sent.last().expect("an SMS").1;
            let digits: String = text
                .split_whitespace()
                .map(|w| w.trim_end_matches('.'))
                .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
                .expect("a code in the text")
                .into();
            Passcode::parse(&digits).unwrap()
        }
    }

    struct Counting(Mutex<u64>);
    impl IdSource for Counting {
        fn new_id(&self, prefix: &str) -> String {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            format!("{prefix}-{n}")
        }
    }

    fn ids() -> Counting {
        Counting(Mutex::new(0))
    }

    fn key() -> PasscodeKey {
        PasscodeKey::parse("a test key of at least thirty-two characters").unwrap()
    }

    fn phone(raw: &str) -> PhoneNumber {
        PhoneNumber::from_e164(raw).unwrap()
    }

    fn caller(subject: &str) -> Caller {
        Caller {
            subject: ParticipantId::parse(subject).unwrap(),
            role: Role::Participant,
            outlet: None,
            region: None,
            scopes: Vec::new(),
            verified_phone: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn later(secs: i64) -> DateTime<Utc> {
        now() + chrono::Duration::seconds(secs)
    }

    struct World {
        store: Fake,
        sms: Outbox,
        ids: Counting,
        policy: PasscodePolicy,
    }

    impl World {
        fn new() -> Self {
            Self {
                store: Fake::default(),
                sms: Outbox::default(),
                ids: ids(),
                policy: PasscodePolicy::default(),
            }
        }

        async fn request(
            &self,
            who: &str,
            to: &str,
            at: DateTime<Utc>,
        ) -> Result<Requested, PasscodeError> {
            request(
                &self.store,
                &self.sms,
                &key(),
                &self.policy,
                &caller(who),
                &phone(to),
                &self.ids,
                at,
            )
            .await
        }

        async fn verify(
            &self,
            who: &str,
            to: &str,
            code: &Passcode,
            at: DateTime<Utc>,
        ) -> Result<Proof, PasscodeError> {
            verify(
                &self.store,
                &key(),
                &self.policy,
                &caller(who),
                &phone(to),
                code,
                at,
            )
            .await
        }
    }

    fn wrong(code: &Passcode) -> Passcode {
        let n: u32 = code.as_str().parse().unwrap();
        Passcode::parse(&format!("{:06}", (n + 1) % 1_000_000)).unwrap()
    }

    #[test]
    fn passcodes_are_six_digits_typed_forgivingly_and_never_printed() {
        assert_eq!(Passcode::parse("123 456").unwrap().as_str(), "123456");
        assert_eq!(Passcode::parse("123-456").unwrap().as_str(), "123456");
        for bad in ["12345", "1234567", "12345a", ""] {
            assert!(Passcode::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format!("{:?}", Passcode::parse("123456").unwrap()),
            "Passcode(redacted)"
        );
        let ids = ids();
        for _ in 0..100 {
            let code = Passcode::draw(&ids);
            assert_eq!(Passcode::parse(code.as_str()).unwrap(), code);
        }
    }

    #[test]
    fn a_stored_digest_is_keyed_never_the_code_and_differs_per_challenge() {
        let code = Passcode::parse("123456").unwrap();
        let p = phone("+447700900123");
        let digest = key().digest(&p, &code, "c-1");
        assert_eq!(digest.len(), 64);
        assert!(!digest.contains("123456"));
        assert_ne!(digest, key().digest(&p, &code, "c-2"));
        let other = PasscodeKey::parse("another key of at least thirty-two characters").unwrap();
        assert_ne!(digest, other.digest(&p, &code, "c-1"));
        assert!(PasscodeKey::parse("short").is_err());
    }

    #[tokio::test]
    async fn a_right_code_proves_the_phone_for_the_caller_once() {
        let w = World::new();
        let answer = w.request("p-1", "+447700900123", now()).await.unwrap();
        assert_eq!(
            answer,
            Requested {
                sent: true,
                expires_in_secs: 300
            }
        );
        let code = w.sms.last_code();
        let stored = w.store.passcodes.lock().unwrap()["+447700900123"].0.clone();
        assert_ne!(stored.digest, code.as_str());
        assert!(!stored.digest.contains(code.as_str()));
        let proof = w
            .verify("p-1", "+447700900123", &code, later(60))
            .await
            .unwrap();
        assert_eq!(proof.subject.as_str(), "p-1");
        assert_eq!(proof.expires_at, later(60).timestamp() + 900);
        let again = w.verify("p-1", "+447700900123", &code, later(61)).await;
        assert!(matches!(again, Err(PasscodeError::Invalid)));
        assert_eq!(w.store.proofs.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_passcode_expires_after_five_minutes() {
        let w = World::new();
        w.request("p-1", "+447700900123", now()).await.unwrap();
        let code = w.sms.last_code();
        let late = w.verify("p-1", "+447700900123", &code, later(300)).await;
        assert!(matches!(late, Err(PasscodeError::Invalid)));
        assert!(w.store.proofs.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn five_tries_use_a_passcode_up_even_for_the_right_code_after() {
        let w = World::new();
        w.request("p-1", "+447700900123", now()).await.unwrap();
        let code = w.sms.last_code();
        for _ in 0..4 {
            let r = w.verify("p-1", "+447700900123", &wrong(&code), now()).await;
            assert!(matches!(r, Err(PasscodeError::Invalid)));
        }
        // The fifth try is still a try.
        assert!(w.verify("p-1", "+447700900123", &code, now()).await.is_ok());

        w.request("p-1", "+447700900123", now()).await.unwrap();
        let code = w.sms.last_code();
        for _ in 0..5 {
            let r = w.verify("p-1", "+447700900123", &wrong(&code), now()).await;
            assert!(matches!(r, Err(PasscodeError::Invalid)));
        }
        let sixth = w.verify("p-1", "+447700900123", &code, now()).await;
        assert!(matches!(sixth, Err(PasscodeError::Invalid)));
    }

    #[tokio::test]
    async fn three_passcodes_per_phone_per_quarter_hour_then_429_until_the_window_ends() {
        let w = World::new();
        for who in ["p-1", "p-2", "p-3"] {
            w.request(who, "+447700900123", now()).await.unwrap();
        }
        match w.request("p-4", "+447700900123", later(60)).await {
            Err(PasscodeError::TooManyAttempts { retry_after_secs }) => {
                assert_eq!(retry_after_secs, 15 * 60 - 60)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.sms.0.lock().unwrap().len(), 3);
        // Another phone is not limited by this one.
        w.request("p-4", "+447700900124", later(60)).await.unwrap();
        w.request("p-4", "+447700900123", later(15 * 60))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn ten_passcodes_per_caller_per_hour() {
        let w = World::new();
        for i in 0..10 {
            w.request("p-1", &format!("+4477009001{i:02}"), now())
                .await
                .unwrap();
        }
        let r = w.request("p-1", "+447700900199", now()).await;
        assert!(
            matches!(r, Err(PasscodeError::TooManyAttempts { retry_after_secs }) if retry_after_secs == 3600)
        );
    }

    #[tokio::test]
    async fn a_request_answers_the_same_for_any_phone_and_reads_no_owner() {
        // The use case has no way to learn an owner: the port has no such method. Both answers
        // are equal, and both numbers are sent a code.
        let w = World::new();
        let known = w.request("p-1", "+447700900123", now()).await.unwrap();
        let unknown = w.request("p-1", "+15550100999", now()).await.unwrap();
        assert_eq!(known, unknown);
        assert_eq!(w.sms.0.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_newer_passcode_replaces_the_older_one() {
        let w = World::new();
        w.request("p-1", "+447700900123", now()).await.unwrap();
        let first = w.sms.last_code();
        w.request("p-1", "+447700900123", now()).await.unwrap();
        let second = w.sms.last_code();
        assert_ne!(first, second);
        let r = w.verify("p-1", "+447700900123", &first, now()).await;
        assert!(matches!(r, Err(PasscodeError::Invalid)));
        assert!(w
            .verify("p-1", "+447700900123", &second, now())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn reps_and_admins_ask_for_no_passcode() {
        let w = World::new();
        let mut rep = caller("rep-1");
        rep.role = Role::Rep;
        let r = request(
            &w.store,
            &w.sms,
            &key(),
            &w.policy,
            &rep,
            &phone("+447700900123"),
            &w.ids,
            now(),
        )
        .await;
        assert!(matches!(r, Err(PasscodeError::Auth(_))));
    }

    #[test]
    fn the_token_proves_only_its_own_verified_phone() {
        let p = phone("+447700900123");
        let mut c = caller("p-1");
        assert_eq!(
            PhoneProof::for_caller(&c, &p, now()),
            PhoneProof::Recorded {
                now: now().timestamp()
            }
        );
        c.verified_phone = Some(phone("+447700900999"));
        assert!(matches!(
            PhoneProof::for_caller(&c, &p, now()),
            PhoneProof::Recorded { .. }
        ));
        c.verified_phone = Some(p.clone());
        assert_eq!(PhoneProof::for_caller(&c, &p, now()), PhoneProof::Token);
    }

    #[test]
    fn the_message_says_the_code_and_its_validity() {
        let text = message(
            &Passcode::parse("042042").unwrap(),
            &PasscodePolicy::default(),
        );
        assert!(
            text.contains("042042") && text.contains("5 minutes"),
            "{text}"
        );
    }
}
