//! Phones proven before they become identities, and invitation codes that cannot be
//! brute-forced: passcode requests and verifications, registrations, changes of phone and
//! adoptions of imported members run through the domain's use cases (`passcode::request`,
//! `passcode::verify`, `participant::register`, `change_phone`, `adopt_imported`) over one
//! `MemoryParticipants` behind [`FaultyPasscodes`].
//!
//! The model reads the code the SMS sender was given, and learns from the wrapper what the
//! store did ([`Stored`]), lost answers included. Invariants, after every operation:
//! - no phone becomes an identity (registration, change of phone, adoption) without a live
//!   proof of that subject and phone, or the token's verified phone; a proof is used once;
//! - the store never counts a sixth try at a passcode, and a passcode proves at most once;
//! - the answer to a request is what the request limits alone predict: it never depends on
//!   whether the phone is registered;
//! - a phone belongs to at most one participant;
//! - no guesser (caller or source) gets more wrong invitation codes answered in a failure
//!   window than `FraudPolicy::guess_limit`, and once locked every guess is refused until
//!   the lock ends.
//!
//! Operations come from their own random stream, as [`crate::standing`]'s do.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use futures::executor::block_on;
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::fraud::FraudPolicy;
use loyalty_domain::ids::{ParticipantId, RegionId};
use loyalty_domain::participant::{
    self, Guess, ImportRow, InvitationCode, InvitationKind, InvitationRequest, Name,
    ParticipantError, ParticipantStore, RegistrationForm, Source,
};
use loyalty_domain::passcode::{
    self, Limiter, Passcode, PasscodeError, PasscodeKey, PasscodePolicy, Requested, SmsSender,
};
use loyalty_domain::phone::PhoneNumber;
use loyalty_domain::ports::IdSource;
use loyalty_domain::Classified;
use loyalty_domain::InfraError;
use loyalty_platform::memory::participants::PlantedBug;
use loyalty_platform::memory::passcodes::six_digits;
use loyalty_platform::memory::{MemoryParticipants, SeededIds};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::faults::{Fault, FaultRates, FaultyPasscodes, Stored};

/// Subjects who sign in; none is registered at the start. Enough that a long run keeps
/// registering new people rather than refusing the registered.
const SUBJECTS: usize = 500;
/// Phone numbers they use; the last [`IMPORTED`] belong to imported members.
const PHONES: usize = 600;
const IMPORTED: usize = 20;
/// The addresses invitation guesses come from (or none).
const SOURCES: [&str; 2] = ["10.0.0.1", "10.0.0.2"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityOp {
    /// A passcode for a random phone, known or not.
    Request,
    /// One caller asks for a dozen passcodes: over the per-phone and per-caller limits.
    Flood,
    /// The code the SMS carried, sent back (mostly by whoever asked for it).
    VerifyRight,
    VerifyWrong,
    /// Seven wrong codes at one passcode, then the right one: too late.
    BruteForce,
    Register,
    ChangePhone,
    Adopt,
    /// A proof used before, offered again while it would still be alive.
    ReplayProof,
    /// Wrong invitation codes from one caller and source, one to seven in a row.
    GuessInvitations,
}

impl IdentityOp {
    /// Weights per 1,000 steps.
    pub fn generate(rng: &mut ChaCha8Rng) -> Option<IdentityOp> {
        use IdentityOp::*;
        Some(match rng.random_range(0..1_000) {
            0..30 => Request,
            30..32 => Flood,
            32..57 => VerifyRight,
            57..72 => VerifyWrong,
            72..74 => BruteForce,
            74..99 => Register,
            99..119 => ChangePhone,
            119..129 => Adopt,
            129..134 => ReplayProof,
            134..140 => GuessInvitations,
            _ => return None,
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            IdentityOp::Request => "request passcode",
            IdentityOp::Flood => "flood passcode requests",
            IdentityOp::VerifyRight => "verify right passcode",
            IdentityOp::VerifyWrong => "verify wrong passcode",
            IdentityOp::BruteForce => "brute-force passcode",
            IdentityOp::Register => "register",
            IdentityOp::ChangePhone => "change phone",
            IdentityOp::Adopt => "adopt imported member",
            IdentityOp::ReplayProof => "replay a used proof",
            IdentityOp::GuessInvitations => "guess invitation codes",
        }
    }
}

impl fmt::Display for IdentityOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The live passcode of a phone, as the model knows it.
#[derive(Debug, Clone)]
struct Sent {
    challenge: String,
    /// `None` when the request's answer was lost: no SMS went out.
    code: Option<String>,
    expires_at: i64,
    /// Tries the store counted and answered.
    tries: u32,
}

#[derive(Debug, Default)]
struct Model {
    /// By E.164 number.
    passcodes: BTreeMap<String, Sent>,
    /// Until when each (subject, E.164 number) is proven.
    proofs: BTreeMap<(ParticipantId, String), i64>,
    /// Requests per limiter key per window start.
    requests: BTreeMap<(String, i64), u64>,
    /// Wrong invitation codes answered per guesser key per window start.
    wrong: BTreeMap<(String, i64), u64>,
    /// Until when each guesser key is locked.
    locks: BTreeMap<String, i64>,
}

pub struct Identity {
    store: FaultyPasscodes<MemoryParticipants>,
    sms: Inbox,
    ids: SeededIds,
    key: PasscodeKey,
    passcodes: PasscodePolicy,
    fraud: FraudPolicy,
    model: Model,
    subjects: Vec<ParticipantId>,
    phones: Vec<PhoneNumber>,
}

/// One operation's account: its description, the outcome of each step, the faults injected
/// and the verdict.
pub type Applied = (String, Vec<&'static str>, Vec<Fault>, Result<(), String>);

/// One step of an operation: its description, outcome label and verdict.
type Step = (String, &'static str, Result<(), String>);

/// The steps of one operation (a request, a verification, a registration…), all at one
/// instant, as a client makes them one after the other.
#[derive(Default)]
struct Journey {
    described: Vec<String>,
    labels: Vec<&'static str>,
    violation: Option<String>,
}

impl Journey {
    /// Records a step; whether the next may run (no violation so far).
    fn add(&mut self, (described, label, result): Step) -> bool {
        self.described.push(described);
        self.labels.push(label);
        if let (None, Err(v)) = (&self.violation, result) {
            self.violation = Some(v);
        }
        self.ok()
    }

    fn ok(&self) -> bool {
        self.violation.is_none()
    }

    fn last_label(&self) -> Option<&'static str> {
        self.labels.last().copied()
    }

    fn done(self) -> (String, Vec<&'static str>, Result<(), String>) {
        let result = self.violation.map_or(Ok(()), Err);
        (self.described.join("; "), self.labels, result)
    }
}

/// The last text message to each phone (`MemorySms` keeps them all, and a long run
/// would search an ever longer list).
#[derive(Default)]
struct Inbox(std::sync::Mutex<BTreeMap<String, String>>);

impl Inbox {
    fn code_to(&self, phone: &PhoneNumber) -> Option<String> {
        let texts = self.0.lock().expect("inbox");
        texts.get(phone.as_e164()).and_then(|t| six_digits(t))
    }
}

impl SmsSender for Inbox {
    async fn send(&self, phone: &PhoneNumber, text: &str) -> Result<(), InfraError> {
        let mut texts = self.0.lock().expect("inbox");
        texts.insert(phone.as_e164().to_string(), text.to_string());
        Ok(())
    }
}

fn window_start(t: i64, secs: i64) -> i64 {
    t - t.rem_euclid(secs)
}

fn participant_caller(subject: &ParticipantId, verified_phone: Option<PhoneNumber>) -> Caller {
    Caller {
        subject: subject.clone(),
        role: Role::Participant,
        outlet: None,
        region: None,
        scopes: Vec::new(),
        verified_phone,
    }
}

impl Identity {
    pub fn new(seed: u64, rates: FaultRates, bug: Option<PlantedBug>, now: DateTime<Utc>) -> Self {
        let inner = match bug {
            Some(bug) => MemoryParticipants::with_planted_bug(bug),
            None => MemoryParticipants::new(),
        };
        let country = loyalty_domain::phone::CountryCode::parse("7").expect("country");
        let phones: Vec<PhoneNumber> = (0..PHONES)
            .map(|i| PhoneNumber::parse(&format!("+7701555{i:04}"), &country).expect("phone"))
            .collect();
        let rows: Vec<ImportRow> = phones[PHONES - IMPORTED..]
            .iter()
            .enumerate()
            .map(|(i, phone)| ImportRow {
                line: i as u64 + 2,
                phone: phone.clone(),
                name: Name::person("Imported Member").expect("name"),
                email: None,
                region: RegionId::parse("north").expect("region"),
                outlet: None,
            })
            .collect();
        block_on(inner.write_import(&rows, now)).expect("the import fits");
        Self {
            store: FaultyPasscodes::new(inner, seed, rates),
            sms: Inbox::default(),
            ids: SeededIds::new(seed ^ 0x1DE7_0000_0000_0001),
            key: PasscodeKey::parse("simulated passcode key, 32 bytes or more").expect("key"),
            passcodes: PasscodePolicy::default(),
            fraud: crate::claims::policy().fraud,
            model: Model::default(),
            subjects: (0..SUBJECTS)
                .map(|i| ParticipantId::parse(&format!("s-sim-{i:02}")).expect("id"))
                .collect(),
            phones,
        }
    }

    pub fn store(&self) -> &MemoryParticipants {
        self.store.inner()
    }

    pub fn apply(&mut self, op: IdentityOp, rng: &mut ChaCha8Rng, now: DateTime<Utc>) -> Applied {
        let mut j = Journey::default();
        match op {
            IdentityOp::Request => {
                let caller = self.pick_subject(rng);
                let phone = self.pick_phone(rng);
                j.add(self.request(&caller, &phone, now));
            }
            IdentityOp::Flood => {
                let caller = self.pick_subject(rng);
                for _ in 0..12 {
                    let phone = self.phones[rng.random_range(0..4)].clone();
                    if !j.add(self.request(&caller, &phone, now)) {
                        break;
                    }
                }
            }
            IdentityOp::VerifyRight => {
                // Mostly the one who asked; sometimes another subject who read the SMS.
                let (s, phone) = (self.pick_subject(rng), self.pick_phone(rng));
                let verifier = if rng.random_bool(0.9) {
                    s.clone()
                } else {
                    self.pick_subject(rng)
                };
                if j.add(self.request(&s, &phone, now)) {
                    if let Some(code) = self.known_code(&phone, now) {
                        j.add(self.verify(&verifier, &phone, &code, now));
                    }
                }
            }
            IdentityOp::VerifyWrong | IdentityOp::BruteForce => {
                let (s, phone) = (self.pick_subject(rng), self.pick_phone(rng));
                let guesser = self.pick_subject(rng);
                let wrongs = if op == IdentityOp::BruteForce { 7 } else { 1 };
                if j.add(self.request(&s, &phone, now)) {
                    let code = self.known_code(&phone, now);
                    for n in 1..=wrongs {
                        let wrong = match &code {
                            Some(c) => (c.parse::<u32>().expect("digits") + n) % 1_000_000,
                            None => rng.random_range(0..1_000_000),
                        };
                        if !j.add(self.verify(&guesser, &phone, &format!("{wrong:06}"), now)) {
                            break;
                        }
                    }
                    // The right code after the wrong ones: proven after one, too late after seven.
                    if let Some(code) = code.filter(|_| j.ok()) {
                        j.add(self.verify(&s, &phone, &code, now));
                    }
                }
            }
            IdentityOp::Register => self.register(rng, &mut j, now),
            IdentityOp::ChangePhone => self.change_phone(rng, &mut j, now),
            IdentityOp::Adopt => self.adopt(rng, &mut j, now),
            IdentityOp::ReplayProof => self.replay(rng, &mut j, now),
            IdentityOp::GuessInvitations => {
                let caller = self.pick_subject(rng);
                let source = [None, Some(SOURCES[0]), Some(SOURCES[1])][rng.random_range(0..3)];
                for _ in 0..rng.random_range(1..=7) {
                    let code = InvitationCode::from_id(&self.ids.new_id("guess"));
                    let phone = self.pick_phone(rng);
                    if !j.add(self.try_register(&caller, None, source, code, &phone, now)) {
                        break;
                    }
                }
            }
        }
        let faults = self.store.take_injected();
        let (described, labels, result) = j.done();
        // Phones change owners only by these writes.
        let wrote = labels
            .iter()
            .any(|l| matches!(*l, "registered" | "phone changed" | "member adopted"));
        let result = result
            .and_then(|()| self.absorb(now))
            .and_then(|()| match wrote {
                true => self.check_phones(),
                false => Ok(()),
            });
        (described, labels, faults, result)
    }

    fn pick_subject(&self, rng: &mut ChaCha8Rng) -> ParticipantId {
        self.subjects[rng.random_range(0..SUBJECTS)].clone()
    }

    fn pick_phone(&self, rng: &mut ChaCha8Rng) -> PhoneNumber {
        self.phones[rng.random_range(0..PHONES)].clone()
    }

    fn is_registered(&self, s: &ParticipantId) -> bool {
        self.store()
            .inspect(|w| w.profiles.contains_key(s) || w.links.contains_key(s))
    }

    /// The code the SMS carried for the phone's live passcode, if one went out.
    fn known_code(&self, phone: &PhoneNumber, now: DateTime<Utc>) -> Option<String> {
        self.model
            .passcodes
            .get(phone.as_e164())
            .filter(|s| s.expires_at > now.timestamp())
            .and_then(|s| s.code.clone())
    }

    /// Proves `phone` for `s` as a client would just before an identity write: mostly with a
    /// passcode (a request, then the code from the SMS), sometimes with a token that verified
    /// the phone, sometimes not at all. Answers the token's verified phone, if any.
    fn prove(
        &mut self,
        rng: &mut ChaCha8Rng,
        j: &mut Journey,
        s: &ParticipantId,
        phone: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Option<PhoneNumber> {
        match rng.random_range(0..100) {
            0..70 => {
                self.prove_by_passcode(j, s, phone, now);
                None
            }
            70..85 => Some(phone.clone()),
            _ => None,
        }
    }

    fn prove_by_passcode(
        &mut self,
        j: &mut Journey,
        s: &ParticipantId,
        phone: &PhoneNumber,
        now: DateTime<Utc>,
    ) {
        if j.add(self.request(s, phone, now)) {
            if let Some(code) = self.known_code(phone, now) {
                j.add(self.verify(s, phone, &code, now));
            }
        }
    }

    /// A participant who registered (an adopter has no profile of their own).
    fn pick_registered(&self, rng: &mut ChaCha8Rng) -> Option<(ParticipantId, PhoneNumber)> {
        let registered: Vec<(ParticipantId, PhoneNumber)> = self.store().inspect(|w| {
            w.profiles
                .values()
                .filter(|p| p.source == Source::Registration)
                .map(|p| (p.id.clone(), p.phone.clone()))
                .collect()
        });
        (!registered.is_empty()).then(|| registered[rng.random_range(0..registered.len())].clone())
    }

    /// A phone other than `current`.
    fn other_phone(&self, rng: &mut ChaCha8Rng, current: &PhoneNumber) -> PhoneNumber {
        loop {
            let p = self.pick_phone(rng);
            if &p != current {
                return p;
            }
        }
    }

    fn request(
        &mut self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Step {
        let t = now.timestamp();
        let p = &self.passcodes;
        let limits = [
            (
                Limiter::Phone(phone.clone()).key(),
                p.phone_limit,
                window_start(t, p.phone_window_secs),
                p.phone_window_secs,
            ),
            (
                Limiter::Caller(subject.clone()).key(),
                p.caller_limit,
                window_start(t, p.caller_window_secs),
                p.caller_window_secs,
            ),
        ];
        // What the limits alone say; the model never looks at who owns the phone.
        let full_until = limits
            .iter()
            .filter(|(k, limit, start, _)| {
                self.model
                    .requests
                    .get(&(k.clone(), *start))
                    .copied()
                    .unwrap_or(0)
                    >= *limit
            })
            .map(|(_, _, start, secs)| start + secs)
            .max();
        let expected = match full_until {
            Some(until) => Err(PasscodeError::TooManyAttempts {
                retry_after_secs: (until - t).max(1) as u64,
            }),
            None => Ok(Requested {
                sent: true,
                expires_in_secs: p.validity_secs,
            }),
        };
        // Only the open windows can refuse a request.
        let longest = p.phone_window_secs.max(p.caller_window_secs);
        self.model
            .requests
            .retain(|(_, start), _| *start > t - longest);
        let caller = participant_caller(subject, None);
        let actual = block_on(passcode::request(
            &self.store,
            &self.sms,
            &self.key,
            &self.passcodes,
            &caller,
            phone,
            &self.ids,
            now,
        ));
        let owned = self.store().phone_owner(phone).is_some();
        let described = format!(
            "{subject} asks a passcode for {} ({}): {}",
            masked(phone),
            if owned { "registered" } else { "unknown" },
            describe(&actual)
        );
        // A request only stores passcodes; tries and proofs are absorbed after each operation.
        for s in &self.store.take_stored() {
            if let Stored::Issued {
                phone,
                challenge,
                expires_at,
            } = s
            {
                for (k, _, start, _) in &limits {
                    *self.model.requests.entry((k.clone(), *start)).or_default() += 1;
                }
                self.model.passcodes.insert(
                    phone.as_e164().to_string(),
                    Sent {
                        challenge: challenge.clone(),
                        code: None,
                        expires_at: *expires_at,
                        tries: 0,
                    },
                );
            }
        }
        let (label, result) = match &actual {
            Ok(_) => {
                let sent = self
                    .model
                    .passcodes
                    .get_mut(phone.as_e164())
                    .expect("an answered request stored its passcode");
                sent.code = self.sms.code_to(phone);
                (
                    if owned {
                        "passcode sent to a registered phone"
                    } else {
                        "passcode sent to an unknown phone"
                    },
                    Ok(()),
                )
            }
            Err(PasscodeError::TooManyAttempts { .. }) => ("passcode requests limited", Ok(())),
            Err(e) => (e.code(), Ok(())),
        };
        let infra = matches!(actual, Err(PasscodeError::Infra(_)));
        let result = result.and_then(|()| {
            if infra || same_answer(&expected, &actual) {
                Ok(())
            } else {
                Err(format!(
                    "a passcode request for a {} phone answered {} where the limits say {}",
                    if owned { "registered" } else { "unknown" },
                    describe(&actual),
                    describe(&expected)
                ))
            }
        });
        (described, label, result)
    }

    fn verify(
        &mut self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        code: &str,
        now: DateTime<Utc>,
    ) -> Step {
        let sent = self.model.passcodes.get(phone.as_e164());
        // A passcode whose SMS never went out (its request's answer lost) may match any guess.
        let unknown = sent.is_some_and(|s| s.code.is_none());
        let right = sent.is_some_and(|s| {
            s.code.as_deref() == Some(code)
                && s.expires_at > now.timestamp()
                && s.tries < self.passcodes.max_tries
        });
        let code = Passcode::parse(code).expect("six digits");
        let actual = block_on(passcode::verify(
            &self.store,
            &self.key,
            &self.passcodes,
            &participant_caller(subject, None),
            phone,
            &code,
            now,
        ));
        let described = format!(
            "{subject} verifies a passcode of {}: {}",
            masked(phone),
            match &actual {
                Ok(_) => "proven",
                Err(e) => e.code(),
            }
        );
        let label = match &actual {
            Ok(_) => "phone proven",
            Err(e) => e.code(),
        };
        let result = match (&actual, right) {
            (Err(PasscodeError::Infra(_)), _) | (Ok(_), true) => Ok(()),
            (Err(PasscodeError::Invalid), false) => Ok(()),
            (Err(e), false) => Err(format!(
                "a wrong passcode of {} answered {e}, not passcode_invalid",
                phone.as_e164()
            )),
            (Ok(_), false) if unknown => Ok(()),
            (Ok(_), false) => Err(format!(
                "a passcode of {} proved the phone for {subject}, but it was wrong, used up, \
                 expired or replaced",
                phone.as_e164()
            )),
            (Err(e), true) => Err(format!(
                "the right live passcode of {} was refused: {e}",
                phone.as_e164()
            )),
        };
        // The next try of the same operation is predicted with this one counted.
        let result = result.and_then(|()| self.absorb(now));
        (described, label, result)
    }

    /// Learns what the store did: passcodes tried and proved.
    fn absorb(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        let max = self.passcodes.max_tries;
        for s in self.store.take_stored() {
            match s {
                Stored::Issued { .. } => return Err("a passcode stored outside a request".into()),
                Stored::Tried { challenge } => {
                    let Some(sent) = self
                        .model
                        .passcodes
                        .values_mut()
                        .find(|s| s.challenge == challenge)
                    else {
                        return Err(
                            "the store answered a passcode that was used or replaced".into()
                        );
                    };
                    sent.tries += 1;
                    if sent.tries > max {
                        return Err(format!(
                            "the store let try {} at one passcode through (at most {max})",
                            sent.tries
                        ));
                    }
                }
                Stored::Proved { challenge, proof } => {
                    let e164 = proof.phone.as_e164().to_string();
                    if self
                        .model
                        .passcodes
                        .get(&e164)
                        .is_none_or(|s| s.challenge != challenge)
                    {
                        return Err(format!(
                            "a passcode of {e164} proved a phone twice, or after it was replaced"
                        ));
                    }
                    self.model.passcodes.remove(&e164);
                    self.model
                        .proofs
                        .insert((proof.subject.clone(), e164), proof.expires_at);
                }
            }
        }
        let t = now.timestamp();
        self.model.proofs.retain(|_, until| *until > t);
        Ok(())
    }

    /// The identity write succeeded for `subject` and `phone`: it must have had the token's
    /// verified phone or a live proof, which it used up.
    fn identity_written(
        &mut self,
        subject: &ParticipantId,
        phone: &PhoneNumber,
        token: Option<&PhoneNumber>,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        if token == Some(phone) {
            return Ok(());
        }
        let key = (subject.clone(), phone.as_e164().to_string());
        match self.model.proofs.remove(&key) {
            Some(until) if until > now.timestamp() => Ok(()),
            _ => Err(format!(
                "{subject} took {} as their identity without a live proof",
                phone.as_e164()
            )),
        }
    }

    fn register(&mut self, rng: &mut ChaCha8Rng, j: &mut Journey, now: DateTime<Utc>) {
        let s = self.pick_subject(rng);
        if self.is_registered(&s) {
            j.add((format!("{s} is registered"), "nothing to register", Ok(())));
            return;
        }
        let phone = self.phones[rng.random_range(0..PHONES - IMPORTED)].clone();
        let token = self.prove(rng, j, &s, &phone, now);
        if j.ok() {
            let code = self.unused_invitation(now);
            let source = [None, Some(SOURCES[0])][rng.random_range(0..2)];
            j.add(self.try_register(&s, token, source, code, &phone, now));
        }
    }

    fn unused_invitation(&self, now: DateTime<Utc>) -> InvitationCode {
        let unused = self.store().inspect(|w| {
            w.invitations
                .values()
                .find(|i| i.invitation.used_by.is_none() && i.invitation.expires_at > now)
                .map(|i| i.invitation.code.clone())
        });
        unused.unwrap_or_else(|| {
            let admin = Caller {
                subject: ParticipantId::parse("admin-sim").expect("id"),
                role: Role::Admin,
                outlet: None,
                region: None,
                scopes: Vec::new(),
                verified_phone: None,
            };
            let request = InvitationRequest {
                kind: InvitationKind::Individual,
                region: Some(RegionId::parse("north").expect("region")),
                zone: Some(ParticipantId::parse("rep-sim").expect("id")),
            };
            block_on(participant::invite(
                &self.store,
                &admin,
                request,
                &self.ids,
                now,
            ))
            .expect("an invitation is issued")
            .code
        })
    }

    /// Registers with `code` and checks the guess counters and locks against the model.
    fn try_register(
        &mut self,
        s: &ParticipantId,
        token: Option<PhoneNumber>,
        source: Option<&str>,
        code: InvitationCode,
        phone: &PhoneNumber,
        now: DateTime<Utc>,
    ) -> Step {
        let t = now.timestamp();
        let guess = Guess::new(&self.fraud, s, source, now);
        let locked = guess
            .guessers
            .iter()
            .any(|(g, _)| self.model.locks.get(&g.key()).is_some_and(|u| *u > t));
        let form = RegistrationForm {
            invitation: code,
            phone: phone.clone(),
            name: Name::person("Sim Participant").expect("name"),
            email: None,
            outlet_name: None,
        };
        let caller = participant_caller(s, token.clone());
        let outlet = loyalty_domain::ids::OutletId::parse(&self.ids.new_id("o")).expect("id");
        let actual = block_on(participant::register(
            &self.store,
            &self.fraud,
            &caller,
            source,
            form,
            outlet,
            now,
        ));
        let described = format!(
            "{s} registers {} from {}{}: {}",
            masked(phone),
            source.unwrap_or("no address"),
            if token.is_some() {
                " (verified token)"
            } else {
                ""
            },
            match &actual {
                Ok(_) => "registered",
                Err(e) => e.code(),
            }
        );
        let (label, result) = match &actual {
            Ok(_) => (
                "registered",
                self.identity_written(s, phone, token.as_ref(), now),
            ),
            Err(ParticipantError::Infra(_)) => ("registration failed (injected)", Ok(())),
            Err(ParticipantError::TooManyAttempts { .. }) => {
                if !locked {
                    let limit_reached: Vec<String> = guess
                        .guessers
                        .iter()
                        .filter(|(g, limit)| {
                            self.model
                                .wrong
                                .get(&(g.key(), guess.window.start))
                                .copied()
                                .unwrap_or(0)
                                >= *limit
                        })
                        .map(|(g, _)| g.key())
                        .collect();
                    for g in &limit_reached {
                        self.model.locks.insert(g.clone(), t + self.fraud.lock_secs);
                    }
                }
                ("invitation guesses locked", Ok(()))
            }
            Err(e) if e.is_wrong_code() => {
                let mut result = Ok(());
                for (g, limit) in &guess.guessers {
                    let n = self
                        .model
                        .wrong
                        .entry((g.key(), guess.window.start))
                        .or_default();
                    *n += 1;
                    if *n > *limit {
                        result = Err(format!(
                            "guesser {} got {n} wrong invitation codes answered in one window \
                             (at most {limit})",
                            g.key()
                        ));
                    }
                }
                (e.code(), result)
            }
            Err(e) => (e.code(), Ok(())),
        };
        let lock_held = !locked
            || matches!(
                actual,
                Err(ParticipantError::TooManyAttempts { .. } | ParticipantError::Infra(_))
            );
        let result = result.and_then(|()| {
            if lock_held {
                Ok(())
            } else {
                Err(format!(
                    "a locked guesser ({s} from {}) got an answer: {}",
                    source.unwrap_or("no address"),
                    match &actual {
                        Ok(_) => "registered",
                        Err(e) => e.code(),
                    }
                ))
            }
        });
        // Keep the model's guess counters to the windows still open.
        let open = window_start(t, self.fraud.failure_window_secs);
        self.model.wrong.retain(|(_, start), _| *start >= open);
        self.model.locks.retain(|_, until| *until > t);
        (described, label, result)
    }

    fn change_phone(&mut self, rng: &mut ChaCha8Rng, j: &mut Journey, now: DateTime<Utc>) {
        let Some((s, current)) = self.pick_registered(rng) else {
            j.add((
                "change phone: nobody registered".into(),
                "nothing to change",
                Ok(()),
            ));
            return;
        };
        let phone = self.other_phone(rng, &current);
        let token = self.prove(rng, j, &s, &phone, now);
        if j.ok() {
            j.add(self.move_phone(&s, &phone, token, now));
        }
    }

    fn move_phone(
        &mut self,
        s: &ParticipantId,
        phone: &PhoneNumber,
        token: Option<PhoneNumber>,
        now: DateTime<Utc>,
    ) -> Step {
        let caller = participant_caller(s, token.clone());
        let actual = block_on(participant::change_phone(
            &self.store,
            &caller,
            phone.clone(),
            now,
        ));
        let described = format!(
            "{s} moves to {}{}: {}",
            masked(phone),
            if token.is_some() {
                " (verified token)"
            } else {
                ""
            },
            match &actual {
                Ok(_) => "moved",
                Err(e) => e.code(),
            }
        );
        match &actual {
            Ok(_) => {
                let result = self.identity_written(s, phone, token.as_ref(), now);
                (described, "phone changed", result)
            }
            Err(e) => (described, e.code(), Ok(())),
        }
    }

    fn adopt(&mut self, rng: &mut ChaCha8Rng, j: &mut Journey, now: DateTime<Utc>) {
        let s = self.pick_subject(rng);
        if self.is_registered(&s) {
            j.add((format!("{s} is registered"), "nothing to adopt", Ok(())));
            return;
        }
        let phone = self.phones[rng.random_range(PHONES - IMPORTED..PHONES)].clone();
        let token = self.prove(rng, j, &s, &phone, now);
        if !j.ok() {
            return;
        }
        let caller = participant_caller(&s, token.clone());
        let actual = block_on(participant::adopt_imported(
            &self.store,
            &caller,
            phone.clone(),
            now,
        ));
        let described = format!(
            "{s} adopts the member of {}{}: {}",
            masked(&phone),
            if token.is_some() {
                " (verified token)"
            } else {
                ""
            },
            match &actual {
                Ok(_) => "adopted",
                Err(e) => e.code(),
            }
        );
        j.add(match &actual {
            Ok(member) => {
                let result = if member.source == Source::Import && member.phone == phone {
                    self.identity_written(&s, &phone, token.as_ref(), now)
                } else {
                    Err(format!(
                        "{s} adopted a member that was not imported with the phone"
                    ))
                };
                (described, "member adopted", result)
            }
            Err(e) => (described, e.code(), Ok(())),
        });
    }

    /// Offers a used proof again: a participant proves a phone and moves to it, moves away to
    /// a phone their token verified (which uses no proof), then back on the used proof.
    fn replay(&mut self, rng: &mut ChaCha8Rng, j: &mut Journey, now: DateTime<Utc>) {
        let Some((s, current)) = self.pick_registered(rng) else {
            j.add((
                "replay a used proof: nobody registered".into(),
                "nothing to replay",
                Ok(()),
            ));
            return;
        };
        let phone = self.other_phone(rng, &current);
        self.prove_by_passcode(j, &s, &phone, now);
        let moved = |j: &Journey| j.ok() && j.last_label() == Some("phone changed");
        if !j.ok() || !j.add(self.move_phone(&s, &phone, None, now)) || !moved(j) {
            return;
        }
        let away = self.other_phone(rng, &phone);
        if !j.add(self.move_phone(&s, &away, Some(away.clone()), now)) || !moved(j) {
            return;
        }
        j.add(self.move_phone(&s, &phone, None, now));
    }

    /// A phone belongs to at most one participant: every phone claim names a profile that
    /// holds that phone, and every profile holds its own claim.
    fn check_phones(&self) -> Result<(), String> {
        self.store().inspect(|w| {
            for (e164, owner) in &w.phones {
                match w.profiles.get(owner) {
                    Some(p) if p.phone.as_e164() == e164 => {}
                    _ => {
                        return Err(format!(
                            "{e164} is claimed by {owner}, whose profile holds another phone"
                        ))
                    }
                }
            }
            for (id, p) in &w.profiles {
                if w.phones.get(p.phone.as_e164()) != Some(id) {
                    return Err(format!(
                        "{id} holds {} but the phone belongs to {:?}",
                        p.phone.as_e164(),
                        w.phones.get(p.phone.as_e164())
                    ));
                }
            }
            Ok(())
        })
    }
}

/// A phone as the history shows it: its last digits only.
fn masked(phone: &PhoneNumber) -> String {
    loyalty_domain::redact::tail(phone.as_e164())
}

fn same_answer(a: &Result<Requested, PasscodeError>, b: &Result<Requested, PasscodeError>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (
            Err(PasscodeError::TooManyAttempts {
                retry_after_secs: x,
            }),
            Err(PasscodeError::TooManyAttempts {
                retry_after_secs: y,
            }),
        ) => x == y,
        _ => false,
    }
}

fn describe(answer: &Result<Requested, PasscodeError>) -> String {
    match answer {
        Ok(r) => format!("sent, valid {} s", r.expires_in_secs),
        Err(PasscodeError::TooManyAttempts { retry_after_secs }) => {
            format!("too_many_attempts, retry after {retry_after_secs} s")
        }
        Err(e) => e.code().to_string(),
    }
}
