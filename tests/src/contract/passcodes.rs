//! The contract of the [`Passcodes`] port and of the phone proof a registration consumes, run
//! against both adapters of the participant store (which keeps passcodes beside profiles):
//! [`loyalty_platform::memory::MemoryParticipants`] and
//! [`loyalty_platform::stores::participants::DynamoParticipantStore`] on the emulator. The
//! harnesses are the participant contract's; [`passcodes_contract!`](crate::passcodes_contract)
//! turns every case into a test for one adapter.

use futures::future::join_all;
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::fraud::Window;
use loyalty_domain::participant::{
    imported_id, parse_import, Adoption, InvitationKind, ParticipantError, ParticipantStore,
    PhoneChange,
};
use loyalty_domain::passcode::{
    self, Issue, Limiter, Passcode, PasscodeError, PasscodeKey, PasscodePolicy, Passcodes,
    PhoneProof, Proof, StoredPasscode,
};
use loyalty_domain::phone::{CountryCode, PhoneNumber};
use loyalty_platform::dynamo::ItemExt;

use super::participants::{
    assert_nothing_written, code_of, invite, now, pid, registration, DynamoHarness, MemoryHarness,
    ParticipantsHarness,
};

/// A participant-store harness whose store keeps passcodes, observed through its own storage.
#[allow(async_fn_in_trait)]
pub trait PasscodesHarness: ParticipantsHarness<Store: Passcodes> {
    /// Requests counted for a limiter key ([`Limiter::key`]) in the window starting at `start`.
    async fn requests(&self, limiter: &str, start: i64) -> u64;
    /// The tries counted on the phone's passcode; `None` if it has none.
    async fn tries(&self, e164: &str) -> Option<u64>;
    /// Until when the subject's proof of the phone runs, if one is stored.
    async fn proof_until(&self, subject: &str, e164: &str) -> Option<i64>;
    /// The imported member a subject adopted, if any.
    async fn linked_member(&self, subject: &str) -> Option<String>;
}

impl PasscodesHarness for MemoryHarness {
    async fn requests(&self, limiter: &str, start: i64) -> u64 {
        self.store().inspect(|w| {
            w.passcode_requests
                .get(&(limiter.to_string(), start))
                .copied()
                .unwrap_or(0)
        })
    }

    async fn tries(&self, e164: &str) -> Option<u64> {
        self.store()
            .inspect(|w| w.passcodes.get(e164).map(|(_, t)| u64::from(*t)))
    }

    async fn proof_until(&self, subject: &str, e164: &str) -> Option<i64> {
        self.store()
            .inspect(|w| w.proofs.get(&(pid(subject), e164.to_string())).copied())
    }

    async fn linked_member(&self, subject: &str) -> Option<String> {
        self.store()
            .inspect(|w| w.links.get(&pid(subject)).map(ToString::to_string))
    }
}

impl PasscodesHarness for DynamoHarness {
    async fn requests(&self, limiter: &str, start: i64) -> u64 {
        self.item(format!("PASSCODES#{limiter}#{start}"), "COUNTER")
            .await
            .map(|i| i.number("requests").expect("requests"))
            .unwrap_or(0)
    }

    async fn tries(&self, e164: &str) -> Option<u64> {
        self.item(format!("PASSCODE#{e164}"), "PASSCODE")
            .await
            .map(|i| i.number("tries").expect("tries"))
    }

    async fn proof_until(&self, subject: &str, e164: &str) -> Option<i64> {
        self.item(format!("PROOF#{subject}"), &format!("PHONE#{e164}"))
            .await
            .map(|i| i.signed("expires_at").expect("expires_at"))
    }

    async fn linked_member(&self, subject: &str) -> Option<String> {
        self.item(format!("SUBJECT#{subject}"), "LINK")
            .await
            .map(|i| i.string("participant_id").expect("member").to_string())
    }
}

// --- Helpers ---------------------------------------------------------------------------

const PHONE: &str = "+447700900555";

fn phone(e164: &str) -> PhoneNumber {
    PhoneNumber::from_e164(e164).expect("E.164")
}

fn t() -> i64 {
    now().timestamp()
}

fn window() -> Window {
    Window {
        start: t() - 60,
        end: t() + 840,
    }
}

fn stored(e164: &str, challenge: &str) -> StoredPasscode {
    StoredPasscode {
        phone: phone(e164),
        digest: format!("digest-of-{challenge}"),
        challenge: challenge.to_string(),
        expires_at: t() + 300,
    }
}

fn issue(e164: &str, challenge: &str, phone_limit: u64, caller_limit: u64) -> Issue {
    Issue {
        passcode: stored(e164, challenge),
        limits: vec![
            (Limiter::Phone(phone(e164)), phone_limit, window()),
            (Limiter::Caller(pid("p-asker")), caller_limit, window()),
        ],
    }
}

fn proof(subject: &str, e164: &str, expires_at: i64) -> Proof {
    Proof {
        subject: pid(subject),
        phone: phone(e164),
        expires_at,
    }
}

fn key() -> PasscodeKey {
    PasscodeKey::parse("the contract's key of at least 32 characters").expect("key")
}

fn participant(subject: &str) -> Caller {
    Caller {
        subject: pid(subject),
        role: Role::Participant,
        outlet: None,
        region: None,
        scopes: Vec::new(),
        verified_phone: None,
    }
}

/// Records a proof of `e164` for `subject` until `until`, through a passcode.
async fn prove<H: PasscodesHarness>(h: &H, subject: &str, e164: &str, challenge: &str, until: i64) {
    let store = h.store();
    store
        .issue(&issue(e164, challenge, 10, 10))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .prove(challenge, &proof(subject, e164, until))
        .await
        .unwrap());
}

/// Stores a passcode for `code` as the use case would, outside every limit.
async fn passcode_for<H: PasscodesHarness>(h: &H, e164: &str, code: &Passcode) {
    let challenge = "c-contract";
    let mut issue = issue(e164, challenge, 100, 100);
    issue.passcode.digest = key().digest(&phone(e164), code, challenge);
    h.store()
        .issue(&issue)
        .await
        .expect("issue")
        .expect("within limits");
}

// --- Cases -----------------------------------------------------------------------------

pub async fn a_request_counts_for_every_limiter_or_none_and_names_the_full_one<
    H: PasscodesHarness,
>(
    h: H,
) {
    let store = h.store();
    let start = window().start;
    let by_phone = Limiter::Phone(phone(PHONE)).key();
    let by_caller = Limiter::Caller(pid("p-asker")).key();
    for challenge in ["c-1", "c-2"] {
        assert_eq!(
            store.issue(&issue(PHONE, challenge, 2, 5)).await.unwrap(),
            Ok(())
        );
    }
    let refused = store.issue(&issue(PHONE, "c-3", 2, 5)).await.unwrap();
    assert_eq!(refused, Err(vec![Limiter::Phone(phone(PHONE))]));
    assert_eq!(h.requests(&by_phone, start).await, 2);
    assert_eq!(h.requests(&by_caller, start).await, 2, "nothing counted");
    // The refused request stored nothing: the live passcode is still the second.
    let live = store.try_passcode(&phone(PHONE), 5, t()).await.unwrap();
    assert_eq!(live.map(|p| p.challenge), Some("c-2".to_string()));

    let both = store.issue(&issue(PHONE, "c-4", 2, 2)).await.unwrap();
    let mut full = both.expect_err("both limiters are full");
    full.sort_by_key(Limiter::key);
    let mut expected = vec![
        Limiter::Phone(phone(PHONE)),
        Limiter::Caller(pid("p-asker")),
    ];
    expected.sort_by_key(Limiter::key);
    assert_eq!(full, expected);
}

pub async fn a_try_counts_up_to_the_limit_and_an_expired_or_missing_passcode_is_never_tried<
    H: PasscodesHarness,
>(
    h: H,
) {
    let store = h.store();
    store
        .issue(&issue(PHONE, "c-1", 10, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.tries(PHONE).await, Some(0));
    for n in 1..=3 {
        let tried = store.try_passcode(&phone(PHONE), 3, t()).await.unwrap();
        assert_eq!(tried, Some(stored(PHONE, "c-1")), "try {n}");
    }
    assert_eq!(
        store.try_passcode(&phone(PHONE), 3, t()).await.unwrap(),
        None
    );
    assert_eq!(
        h.tries(PHONE).await,
        Some(3),
        "a refused try is not counted"
    );

    let other = "+447700900556";
    store
        .issue(&issue(other, "c-2", 10, 10))
        .await
        .unwrap()
        .unwrap();
    let expires = stored(other, "c-2").expires_at;
    assert_eq!(
        store.try_passcode(&phone(other), 3, expires).await.unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(h.tries(other).await, Some(0));
    assert_eq!(
        store
            .try_passcode(&phone("+447700900557"), 3, t())
            .await
            .unwrap(),
        None
    );
    assert_eq!(h.tries("+447700900557").await, None, "no item made");
}

pub async fn a_new_passcode_replaces_the_old_one_with_its_tries<H: PasscodesHarness>(h: H) {
    let store = h.store();
    store
        .issue(&issue(PHONE, "c-old", 10, 10))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        store.try_passcode(&phone(PHONE), 3, t()).await.unwrap();
    }
    store
        .issue(&issue(PHONE, "c-new", 10, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h.tries(PHONE).await, Some(0));
    assert!(!store
        .prove("c-old", &proof("p-1", PHONE, t() + 900))
        .await
        .unwrap());
    let tried = store.try_passcode(&phone(PHONE), 3, t()).await.unwrap();
    assert_eq!(tried.map(|p| p.challenge), Some("c-new".to_string()));
}

pub async fn a_proof_uses_its_passcode_up_once<H: PasscodesHarness>(h: H) {
    let store = h.store();
    store
        .issue(&issue(PHONE, "c-1", 10, 10))
        .await
        .unwrap()
        .unwrap();
    assert!(!store
        .prove("c-other", &proof("p-1", PHONE, t() + 900))
        .await
        .unwrap());
    assert_eq!(h.proof_until("p-1", PHONE).await, None);
    assert!(store
        .prove("c-1", &proof("p-1", PHONE, t() + 900))
        .await
        .unwrap());
    assert_eq!(h.proof_until("p-1", PHONE).await, Some(t() + 900));
    assert_eq!(h.tries(PHONE).await, None, "the passcode is gone");
    assert!(!store
        .prove("c-1", &proof("p-2", PHONE, t() + 900))
        .await
        .unwrap());
    assert_eq!(h.proof_until("p-2", PHONE).await, None);
}

/// Twenty wrong guesses at once: exactly five are counted, and the passcode is then dead even
/// for the right code.
pub async fn twenty_concurrent_wrong_guesses_count_exactly_five_and_kill_the_passcode<
    H: PasscodesHarness,
>(
    h: H,
) {
    let policy = PasscodePolicy::default();
    let right = Passcode::parse("424242").unwrap();
    passcode_for(&h, PHONE, &right).await;
    let guesses: Vec<Passcode> = (0..20)
        .map(|i| Passcode::parse(&format!("{:06}", 100_000 + i)).unwrap())
        .collect();
    let caller = participant("p-guesser");
    let (secret, target) = (key(), phone(PHONE));
    let answers =
        join_all(guesses.iter().map(|code| {
            passcode::verify(h.store(), &secret, &policy, &caller, &target, code, now())
        }))
        .await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Err(PasscodeError::Invalid))),
        "{answers:?}"
    );
    assert_eq!(h.tries(PHONE).await, Some(u64::from(policy.max_tries)));
    let late = passcode::verify(
        h.store(),
        &key(),
        &policy,
        &caller,
        &phone(PHONE),
        &right,
        now(),
    )
    .await;
    assert!(matches!(late, Err(PasscodeError::Invalid)), "{late:?}");
    assert_eq!(h.proof_until("p-guesser", PHONE).await, None);
}

/// Ten right answers at once (a double-tapping app): the phone is proven exactly once.
pub async fn ten_concurrent_right_answers_prove_the_phone_exactly_once<H: PasscodesHarness>(h: H) {
    let policy = PasscodePolicy {
        max_tries: 10,
        ..PasscodePolicy::default()
    };
    let right = Passcode::parse("424242").unwrap();
    passcode_for(&h, PHONE, &right).await;
    let callers: Vec<Caller> = (0..10)
        .map(|i| participant(&format!("p-tap-{i}")))
        .collect();
    let (secret, target) = (key(), phone(PHONE));
    let answers = join_all(callers.iter().map(|caller| {
        passcode::verify(h.store(), &secret, &policy, caller, &target, &right, now())
    }))
    .await;
    let proven: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(proven.len(), 1, "{answers:?}");
    for (i, a) in answers.iter().enumerate() {
        if i != proven[0] {
            assert!(matches!(a, Err(PasscodeError::Invalid)), "{a:?}");
        }
    }
    let mut stored = 0;
    for i in 0..10 {
        stored += usize::from(h.proof_until(&format!("p-tap-{i}"), PHONE).await.is_some());
    }
    assert_eq!(stored, 1);
    assert_eq!(
        h.proof_until(&format!("p-tap-{}", proven[0]), PHONE).await,
        Some(t() + policy.proof_validity_secs)
    );
}

/// A registration with a recorded proof needs a live proof of this subject and phone, and uses
/// it up; without one it is `phone_not_proven`, before `phone_taken`, and writes nothing.
pub async fn a_registration_uses_up_a_live_proof_and_without_one_writes_nothing<
    H: PasscodesHarness,
>(
    h: H,
) {
    let store = h.store();
    let recorded = PhoneProof::Recorded { now: t() };
    let e164 = "+447700900123";

    let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    let mut unproven = registration(&invitation, "p-new", "07700 900123", "o-new");
    unproven.proof = recorded;
    assert_eq!(code_of(store.register(&unproven).await), "phone_not_proven");
    assert_nothing_written(&h, &unproven, "no proof").await;

    // Someone else's proof, or one for another phone, does not count; nor does an expired one.
    prove(&h, "p-other", e164, "c-a", t() + 900).await;
    prove(&h, "p-new", "+447700900124", "c-b", t() + 900).await;
    prove(&h, "p-new", e164, "c-c", t()).await;
    assert_eq!(code_of(store.register(&unproven).await), "phone_not_proven");
    assert_nothing_written(&h, &unproven, "foreign, other-phone or expired proof").await;

    prove(&h, "p-new", e164, "c-d", t() + 900).await;
    store.register(&unproven).await.expect("registered");
    assert!(h.has_profile("p-new").await);
    assert_eq!(
        h.proof_until("p-new", e164).await,
        None,
        "the proof is used up"
    );
    assert_eq!(h.proof_until("p-other", e164).await, Some(t() + 900));

    // The phone is taken now: an unproven attempt on it still learns only phone_not_proven.
    let again = invite(&h, "rep-1", InvitationKind::Individual).await;
    let mut taken = registration(&again, "p-other-2", "07700 900123", "o-x");
    taken.proof = recorded;
    assert_eq!(code_of(store.register(&taken).await), "phone_not_proven");
    // With a proof, the owner's phone is phone_taken, and the proof stays for another try.
    prove(&h, "p-other-2", e164, "c-e", t() + 900).await;
    let refused = store.register(&taken).await;
    assert!(
        matches!(refused, Err(ParticipantError::PhoneTaken)),
        "{refused:?}"
    );
    assert_eq!(h.proof_until("p-other-2", e164).await, Some(t() + 900));
}

/// A change of phone moves the phone claim and uses a live proof up; unproven, to a taken
/// phone or for someone unregistered it writes nothing.
pub async fn a_change_of_phone_moves_the_claim_and_uses_a_live_proof_up<H: PasscodesHarness>(h: H) {
    let store = h.store();
    let (old, new, taken) = ("+447700900123", "+447700900321", "+447700900999");
    for (subject, raw, outlet) in [
        ("p-mover", "07700 900123", "o-1"),
        ("p-owner", "07700 900999", "o-2"),
    ] {
        let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
        store
            .register(&registration(&invitation, subject, raw, outlet))
            .await
            .expect("registered");
    }
    let mut profile = store.profile(&pid("p-mover")).await.unwrap().unwrap();
    profile.phone = phone(new);
    let change = |proof| PhoneChange {
        profile: profile.clone(),
        old: phone(old),
        proof,
    };
    let recorded = PhoneProof::Recorded { now: t() };
    assert_eq!(
        code_of(store.change_phone(&change(recorded)).await),
        "phone_not_proven"
    );
    assert_eq!(h.phone_owner(old).await.as_deref(), Some("p-mover"));
    assert_eq!(h.phone_owner(new).await, None);

    let mut to_taken = change(PhoneProof::Token);
    to_taken.profile.phone = phone(taken);
    assert_eq!(code_of(store.change_phone(&to_taken).await), "phone_taken");
    let mut stranger = change(PhoneProof::Token);
    stranger.profile.id = pid("p-nobody");
    assert_eq!(
        code_of(store.change_phone(&stranger).await),
        "not_registered"
    );
    assert_eq!(h.phone_owner(old).await.as_deref(), Some("p-mover"));
    assert_eq!(h.phone_owner(taken).await.as_deref(), Some("p-owner"));

    prove(&h, "p-mover", new, "c-new", t() + 900).await;
    store.change_phone(&change(recorded)).await.expect("moved");
    assert_eq!(h.phone_owner(old).await, None, "the old phone is free");
    assert_eq!(h.phone_owner(new).await.as_deref(), Some("p-mover"));
    assert_eq!(
        store.profile(&pid("p-mover")).await.unwrap().unwrap().phone,
        phone(new)
    );
    assert_eq!(
        h.proof_until("p-mover", new).await,
        None,
        "the proof is used up"
    );
    // The same change again (a retry racing the first) finds the new phone claimed.
    let again = store.change_phone(&change(PhoneProof::Token)).await;
    assert!(
        matches!(again, Err(ParticipantError::PhoneTaken)),
        "{again:?}"
    );
    assert_eq!(h.phone_owner(new).await.as_deref(), Some("p-mover"));
}

/// A signed-in subject with a proven phone takes over the imported member holding it, once;
/// the member keeps its profile; the subject can then neither register nor adopt again.
pub async fn an_imported_member_is_adopted_once_by_a_subject_with_a_proven_phone<
    H: PasscodesHarness,
>(
    h: H,
) {
    let store = h.store();
    let e164 = "+447700900201";
    let rows = parse_import(
        "phone,name,region\n07700 900201,Bo Chen,north\n",
        &CountryCode::parse("44").unwrap(),
    )
    .unwrap();
    store.write_import(&rows, now()).await.unwrap();
    let member = imported_id(&phone(e164));
    let adoption = |subject: &str, proof| Adoption {
        subject: pid(subject),
        member: member.clone(),
        phone: phone(e164),
        proof,
        at: now(),
    };
    let recorded = PhoneProof::Recorded { now: t() };
    assert_eq!(
        code_of(store.adopt(&adoption("p-new", recorded)).await),
        "phone_not_proven"
    );
    assert_eq!(h.linked_member("p-new").await, None);

    prove(&h, "p-new", e164, "c-1", t() + 900).await;
    store
        .adopt(&adoption("p-new", recorded))
        .await
        .expect("adopted");
    assert_eq!(
        h.linked_member("p-new").await.as_deref(),
        Some(member.as_str())
    );
    assert_eq!(
        h.proof_until("p-new", e164).await,
        None,
        "the proof is used up"
    );
    let profile = store.profile(&member).await.unwrap().unwrap();
    assert_eq!(profile.name.as_str(), "Bo Chen");
    assert_eq!(h.phone_owner(e164).await.as_deref(), Some(member.as_str()));

    // Another subject, even proven, finds the member taken.
    prove(&h, "p-late", e164, "c-2", t() + 900).await;
    assert_eq!(
        code_of(store.adopt(&adoption("p-late", recorded)).await),
        "phone_taken"
    );
    assert_eq!(h.linked_member("p-late").await, None);
    assert_eq!(h.proof_until("p-late", e164).await, Some(t() + 900));
    // The adopter neither adopts again nor registers an account of its own.
    assert_eq!(
        code_of(store.adopt(&adoption("p-new", PhoneProof::Token)).await),
        "already_registered"
    );
    let invitation = invite(&h, "rep-1", InvitationKind::Individual).await;
    let own = registration(&invitation, "p-new", "07700 900777", "o-x");
    assert_eq!(code_of(store.register(&own).await), "already_registered");
    assert_nothing_written(&h, &own, "a linked subject registering").await;

    // A registered participant's phone is not an imported member's.
    let invitation = invite(&h, "rep-1", InvitationKind::Individual).await;
    store
        .register(&registration(&invitation, "p-reg", "07700 900778", "o-y"))
        .await
        .unwrap();
    let not_imported = Adoption {
        member: pid("p-reg"),
        phone: phone("+447700900778"),
        ..adoption("p-other", PhoneProof::Token)
    };
    assert_eq!(code_of(store.adopt(&not_imported).await), "phone_taken");
    assert_eq!(h.linked_member("p-other").await, None);
}

/// One test per case for the adapter the factory builds:
/// `passcodes_contract!(loyalty_tests::contract::participants::memory)`.
#[macro_export]
macro_rules! passcodes_contract {
    ($harness:path) => {
        $crate::contract_cases!(passcodes, $harness;
            a_request_counts_for_every_limiter_or_none_and_names_the_full_one,
            a_try_counts_up_to_the_limit_and_an_expired_or_missing_passcode_is_never_tried,
            a_new_passcode_replaces_the_old_one_with_its_tries,
            a_proof_uses_its_passcode_up_once,
            twenty_concurrent_wrong_guesses_count_exactly_five_and_kill_the_passcode,
            ten_concurrent_right_answers_prove_the_phone_exactly_once,
            a_registration_uses_up_a_live_proof_and_without_one_writes_nothing,
            a_change_of_phone_moves_the_claim_and_uses_a_live_proof_up,
            an_imported_member_is_adopted_once_by_a_subject_with_a_proven_phone,
        );
    };
}
