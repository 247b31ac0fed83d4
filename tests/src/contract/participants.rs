//! The contract of the [`ParticipantStore`] port, run against both adapters:
//! [`MemoryParticipants`] (plain tests, `tests/tests/memory/`) and [`DynamoParticipantStore`]
//! on the emulator (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`ParticipantsHarness`]; [`participant_store_contract!`](crate::participant_store_contract)
//! turns every case into a test for one adapter. If the two adapters disagree, the memory
//! one is wrong.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeZone, Utc};
use futures::future::join_all;
use loyalty_domain::auth::{Caller, OutletRole, Role};
use loyalty_domain::fraud::{FraudPolicy, Guesser};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{
    parse_import, Guess, GuessRefusal, ImportRow, Invitation, InvitationCode, InvitationKind,
    InvitationRequest, Name, ParticipantError, ParticipantStore, Reason, Registration,
    RegistrationForm, Standing, StandingChange,
};
use loyalty_domain::passcode::PhoneProof;
use loyalty_domain::phone::{CountryCode, PhoneNumber};
use loyalty_platform::dynamo::{encode_cursor, key, ItemExt};
use loyalty_platform::memory::MemoryParticipants;
use loyalty_platform::stores::participants::DynamoParticipantStore;

use crate::TestStack;

/// One adapter of the port, with what the contract needs to observe it through the
/// adapter's own storage (the table's items for DynamoDB), never through the port.
#[allow(async_fn_in_trait)]
pub trait ParticipantsHarness {
    type Store: ParticipantStore;
    fn store(&self) -> &Self::Store;
    /// Who holds this E.164 number.
    async fn phone_owner(&self, e164: &str) -> Option<String>;
    async fn has_profile(&self, id: &str) -> bool;
    async fn has_outlet(&self, id: &str) -> bool;
    /// Who used the invitation; `None` if unused (or unknown).
    async fn invitation_used_by(&self, code: &InvitationCode) -> Option<String>;
    /// The name on a membership, if there is one.
    async fn member_name(&self, outlet: &str, participant: &str) -> Option<String>;
    /// Invitation guesses still counted for a guesser in the window starting at `start`.
    async fn guesses(&self, guesser: &Guesser, start: i64) -> i64;
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryParticipants,
}

/// A fresh memory adapter (the factory the memory run passes to the contract).
pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryParticipants::new(),
    }
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: loyalty_platform::memory::participants::PlantedBug) -> MemoryHarness {
    MemoryHarness {
        store: MemoryParticipants::with_planted_bug(bug),
    }
}

impl ParticipantsHarness for MemoryHarness {
    type Store = MemoryParticipants;

    fn store(&self) -> &MemoryParticipants {
        &self.store
    }

    async fn phone_owner(&self, e164: &str) -> Option<String> {
        self.store
            .inspect(|w| w.phones.get(e164).map(|p| p.to_string()))
    }

    async fn has_profile(&self, id: &str) -> bool {
        self.store.inspect(|w| w.profiles.contains_key(&pid(id)))
    }

    async fn has_outlet(&self, id: &str) -> bool {
        self.store.inspect(|w| w.outlets.contains_key(&oid(id)))
    }

    async fn invitation_used_by(&self, code: &InvitationCode) -> Option<String> {
        self.store
            .stored_invitation(code)
            .and_then(|s| s.invitation.used_by.map(|p| p.to_string()))
    }

    async fn member_name(&self, outlet: &str, participant: &str) -> Option<String> {
        self.store.inspect(|w| {
            w.members
                .get(&(oid(outlet), pid(participant)))
                .map(|m| m.name.as_str().to_string())
        })
    }

    async fn guesses(&self, guesser: &Guesser, start: i64) -> i64 {
        self.store.guesses(guesser, start)
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: DynamoParticipantStore,
}

/// A fresh table on the emulator (the factory the integration run passes to the contract).
pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("ParticipantsFunction").await;
    DynamoHarness {
        store: DynamoParticipantStore::new(stack.dynamodb(), stack.table_name("ParticipantsTable")),
        stack,
    }
}

impl DynamoHarness {
    pub(crate) async fn item(
        &self,
        pk: String,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, AttributeValue>> {
        self.stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("ParticipantsTable"))
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .expect("read participants table")
            .item
    }
}

impl ParticipantsHarness for DynamoHarness {
    type Store = DynamoParticipantStore;

    fn store(&self) -> &DynamoParticipantStore {
        &self.store
    }

    async fn phone_owner(&self, e164: &str) -> Option<String> {
        self.item(format!("PHONE#{e164}"), "PHONE")
            .await
            .map(|i| i.string("participant_id").expect("owner").to_string())
    }

    async fn has_profile(&self, id: &str) -> bool {
        self.item(format!("PARTICIPANT#{id}"), "PROFILE")
            .await
            .is_some()
    }

    async fn has_outlet(&self, id: &str) -> bool {
        self.item(format!("OUTLET#{id}"), "OUTLET").await.is_some()
    }

    async fn invitation_used_by(&self, code: &InvitationCode) -> Option<String> {
        self.item(format!("INVITE#{}", code.as_str()), "INVITE")
            .await
            .and_then(|i| i.opt_string("used_by").map(str::to_string))
    }

    async fn member_name(&self, outlet: &str, participant: &str) -> Option<String> {
        self.item(format!("OUTLET#{outlet}"), &format!("MEMBER#{participant}"))
            .await
            .map(|i| i.string("name").expect("name").to_string())
    }

    async fn guesses(&self, guesser: &Guesser, start: i64) -> i64 {
        self.item(format!("GUESSES#{}#{start}", guesser.key()), "COUNTER")
            .await
            .map(|i| i.signed("failures").expect("failures"))
            .unwrap_or(0)
    }
}

// --- Helpers ---------------------------------------------------------------------------

/// The contract's time: 22 Nov 2026, 10:00 UTC (stores never read a clock).
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn uk() -> CountryCode {
    CountryCode::parse("44").expect("country")
}

pub(crate) fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).expect("participant id")
}

fn oid(raw: &str) -> OutletId {
    OutletId::parse(raw).expect("outlet id")
}

fn e164(phone: &str) -> String {
    PhoneNumber::parse(phone, &uk())
        .expect("phone")
        .as_e164()
        .to_string()
}

fn caller(subject: &str, role: Role) -> Caller {
    Caller {
        subject: pid(subject),
        role,
        outlet: None,
        region: Some(RegionId::parse("north").expect("region")),
        scopes: Vec::new(),
        verified_phone: None,
    }
}

/// A fresh invitation of `rep` into their zone, stored through the port.
pub(crate) async fn invite<H: ParticipantsHarness>(
    h: &H,
    rep: &str,
    kind: InvitationKind,
) -> Invitation {
    let outlet = match &kind {
        InvitationKind::JoinOutlet(id) => h.store().outlet(id).await.expect("read outlet"),
        _ => None,
    };
    let request = InvitationRequest {
        kind,
        region: None,
        zone: None,
    };
    let invitation = Invitation::issue(
        &caller(rep, Role::Rep),
        request,
        outlet.as_ref(),
        InvitationCode::random(),
        now(),
    )
    .expect("a rep may invite");
    assert!(h
        .store()
        .put_invitation(&invitation)
        .await
        .expect("put invitation"));
    invitation
}

/// What the use case plans for `participant` registering with `invitation` and `phone`;
/// a `new_outlet` invitation creates `new_outlet`.
pub(crate) fn registration(
    invitation: &Invitation,
    participant: &str,
    phone: &str,
    new_outlet: &str,
) -> Registration {
    let form = RegistrationForm::parse(
        invitation.code.as_str(),
        phone,
        &format!("Member {participant}"),
        None,
        Some("Corner Shop"),
        &uk(),
    )
    .expect("valid form");
    let mut registration = Registration::plan(
        &caller(participant, Role::Participant),
        form,
        invitation,
        oid(new_outlet),
        now(),
    )
    .expect("a usable invitation");
    // These cases are about the store's other conditions: the identity provider vouched for
    // the phone. The passcode contract covers recorded proofs.
    registration.proof = PhoneProof::Token;
    registration
}

/// Registers the owner of a new outlet `outlet` in `rep`'s zone.
async fn owner_of<H: ParticipantsHarness>(
    h: &H,
    rep: &str,
    owner: &str,
    phone: &str,
    outlet: &str,
) {
    let invitation = invite(h, rep, InvitationKind::NewOutlet).await;
    h.store()
        .register(&registration(&invitation, owner, phone, outlet))
        .await
        .expect("registered");
}

pub(crate) fn code_of(result: Result<(), ParticipantError>) -> &'static str {
    use loyalty_domain::Classified;
    match result {
        Ok(()) => "ok",
        Err(e) => e.code(),
    }
}

/// What a refused registration must not have written.
pub(crate) async fn assert_nothing_written<H: ParticipantsHarness>(
    h: &H,
    r: &Registration,
    what: &str,
) {
    assert!(
        !h.has_profile(r.profile.id.as_str()).await,
        "{what}: a profile was written"
    );
    assert_ne!(
        h.phone_owner(r.profile.phone.as_e164()).await.as_deref(),
        Some(r.profile.id.as_str()),
        "{what}: the phone was claimed"
    );
    assert_ne!(
        h.invitation_used_by(&r.invitation).await.as_deref(),
        Some(r.profile.id.as_str()),
        "{what}: the invitation was consumed"
    );
    if let Some(outlet) = &r.new_outlet {
        let theirs = h
            .store()
            .outlet(&outlet.id)
            .await
            .expect("read outlet")
            .map(|o| o.owner);
        assert_ne!(theirs, Some(r.profile.id.clone()), "{what}: outlet written");
    }
    if let Some(m) = &r.membership {
        assert_eq!(
            h.member_name(m.outlet.as_str(), m.participant.as_str())
                .await,
            None,
            "{what}: a membership was written"
        );
    }
}

fn import_rows(csv: &str) -> Vec<ImportRow> {
    parse_import(csv, &uk()).expect("a valid import")
}

// --- The cases -------------------------------------------------------------------------

pub async fn an_invitation_is_stored_once_per_code<H: ParticipantsHarness>(h: H) {
    let invitation = invite(&h, "rep-1", InvitationKind::Individual).await;
    let read = h.store().invitation(&invitation.code).await.unwrap();
    assert_eq!(read.as_ref(), Some(&invitation));

    let mut again = invitation.clone();
    again.kind = InvitationKind::NewOutlet;
    again.created_by = pid("rep-2");
    assert!(
        !h.store().put_invitation(&again).await.unwrap(),
        "a taken code is refused"
    );
    assert_eq!(
        h.store().invitation(&invitation.code).await.unwrap(),
        Some(invitation),
        "the first invitation stays"
    );
    let unknown = InvitationCode::parse("ZZZZ2222").unwrap();
    assert_eq!(h.store().invitation(&unknown).await.unwrap(), None);
}

pub async fn a_new_outlet_registration_writes_profile_phone_outlet_and_owner_and_uses_the_invitation<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    let r = registration(&invitation, "p-owner", "07700 900101", "o-1");
    h.store().register(&r).await.expect("registered");

    let store = h.store();
    assert_eq!(
        store.profile(&pid("p-owner")).await.unwrap(),
        Some(r.profile.clone())
    );
    let outlet = store.outlet(&oid("o-1")).await.unwrap().expect("outlet");
    assert_eq!(Some(&outlet), r.new_outlet.as_ref());
    assert_eq!(
        (outlet.owner.as_str(), outlet.zone.as_str()),
        ("p-owner", "rep-1")
    );
    let members = store.members(&oid("o-1")).await.unwrap();
    assert_eq!(members, vec![r.membership.clone().unwrap()]);
    assert_eq!(members[0].role, OutletRole::Owner);

    let used = store.invitation(&invitation.code).await.unwrap().unwrap();
    assert_eq!(used.used_by, Some(pid("p-owner")));
    assert_eq!(
        h.invitation_used_by(&invitation.code).await.as_deref(),
        Some("p-owner")
    );
    assert_eq!(
        h.phone_owner(&e164("07700 900101")).await.as_deref(),
        Some("p-owner")
    );
    assert!(h.has_outlet("o-1").await);
}

pub async fn joining_an_outlet_makes_a_seller_and_creates_no_outlet<H: ParticipantsHarness>(h: H) {
    owner_of(&h, "rep-1", "p-owner", "07700 900101", "o-1").await;
    let invitation = invite(&h, "rep-1", InvitationKind::JoinOutlet(oid("o-1"))).await;
    let r = registration(&invitation, "p-seller", "07700 900102", "o-unused");
    h.store().register(&r).await.expect("registered");

    assert!(!h.has_outlet("o-unused").await);
    let members = h.store().members(&oid("o-1")).await.unwrap();
    let roles: Vec<(&str, OutletRole)> = members
        .iter()
        .map(|m| (m.participant.as_str(), m.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("p-owner", OutletRole::Owner),
            ("p-seller", OutletRole::Seller)
        ],
        "members in participant-id order"
    );
    let profile = h.store().profile(&pid("p-seller")).await.unwrap().unwrap();
    assert_eq!(profile.outlet, Some((oid("o-1"), OutletRole::Seller)));
    assert!(h.store().members(&oid("o-none")).await.unwrap().is_empty());
    assert_eq!(h.store().outlet(&oid("o-none")).await.unwrap(), None);
    assert_eq!(h.store().profile(&pid("p-none")).await.unwrap(), None);
}

pub async fn a_second_registration_with_the_same_phone_is_phone_taken_and_writes_nothing<
    H: ParticipantsHarness,
>(
    h: H,
) {
    owner_of(&h, "rep-1", "p-first", "07700 900101", "o-1").await;
    let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    let r = registration(&invitation, "p-second", "+44 7700 900101", "o-2");
    assert_eq!(code_of(h.store().register(&r).await), "phone_taken");
    assert_nothing_written(&h, &r, "phone taken").await;
    assert!(!h.has_outlet("o-2").await);
    assert_eq!(
        h.invitation_used_by(&invitation.code).await,
        None,
        "the invitation stays usable"
    );
    assert_eq!(
        h.phone_owner(&e164("07700 900101")).await.as_deref(),
        Some("p-first")
    );
}

pub async fn an_invitation_is_used_once_and_an_unknown_one_is_refused_alike<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let invitation = invite(&h, "rep-1", InvitationKind::Individual).await;
    h.store()
        .register(&registration(&invitation, "p-first", "07700 900201", "o-x"))
        .await
        .expect("registered");
    let again = registration(&invitation, "p-second", "07700 900202", "o-x");
    assert_eq!(code_of(h.store().register(&again).await), "invitation_used");
    assert_nothing_written(&h, &again, "invitation used").await;
    assert_eq!(
        h.invitation_used_by(&invitation.code).await.as_deref(),
        Some("p-first")
    );

    // A registration planned from an invitation that is not stored (deleted by its TTL).
    let mut ghost = registration(&invitation, "p-third", "07700 900203", "o-x");
    ghost.invitation = InvitationCode::parse("ZZZZ2222").unwrap();
    assert_eq!(code_of(h.store().register(&ghost).await), "invitation_used");
    assert_nothing_written(&h, &ghost, "unknown invitation").await;
}

pub async fn a_participant_registers_once<H: ParticipantsHarness>(h: H) {
    let first = invite(&h, "rep-1", InvitationKind::Individual).await;
    h.store()
        .register(&registration(&first, "p-1", "07700 900301", "o-x"))
        .await
        .expect("registered");
    let other = invite(&h, "rep-1", InvitationKind::Individual).await;
    let twice = registration(&other, "p-1", "07700 900302", "o-x");
    assert_eq!(
        code_of(h.store().register(&twice).await),
        "already_registered"
    );
    assert_eq!(h.phone_owner(&e164("07700 900302")).await, None);
    assert_eq!(h.invitation_used_by(&other.code).await, None);
    let kept = h.store().profile(&pid("p-1")).await.unwrap().unwrap();
    assert_eq!(kept.phone.as_e164(), e164("07700 900301"));
}

pub async fn a_missing_outlet_to_join_or_a_taken_new_outlet_id_is_outlet_not_found<
    H: ParticipantsHarness,
>(
    h: H,
) {
    owner_of(&h, "rep-1", "p-owner", "07700 900101", "o-1").await;
    // Planned against an outlet that is gone by the time the registration commits.
    let mut join = invite(&h, "rep-1", InvitationKind::JoinOutlet(oid("o-1"))).await;
    join.kind = InvitationKind::JoinOutlet(oid("o-gone"));
    let r = registration(&join, "p-seller", "07700 900102", "o-x");
    assert_eq!(code_of(h.store().register(&r).await), "outlet_not_found");
    assert_nothing_written(&h, &r, "outlet gone").await;
    assert_eq!(h.invitation_used_by(&join.code).await, None);

    let new = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    let r = registration(&new, "p-other", "07700 900103", "o-1");
    assert_eq!(code_of(h.store().register(&r).await), "outlet_not_found");
    assert_nothing_written(&h, &r, "outlet id taken").await;
    let outlet = h.store().outlet(&oid("o-1")).await.unwrap().unwrap();
    assert_eq!(outlet.owner.as_str(), "p-owner", "the outlet is untouched");
}

pub async fn when_several_conditions_fail_the_refusal_follows_one_precedence<
    H: ParticipantsHarness,
>(
    h: H,
) {
    // p-1 holds a phone, an outlet o-1 and a used invitation.
    let used = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    h.store()
        .register(&registration(&used, "p-1", "07700 900401", "o-1"))
        .await
        .expect("registered");

    // Everything fails: the profile wins.
    let all = registration(&used, "p-1", "07700 900401", "o-1");
    assert_eq!(
        code_of(h.store().register(&all).await),
        "already_registered"
    );
    // Phone, invitation and outlet fail: the phone wins.
    let r = registration(&used, "p-2", "07700 900401", "o-1");
    assert_eq!(code_of(h.store().register(&r).await), "phone_taken");
    // Invitation and outlet fail: the invitation wins.
    let r = registration(&used, "p-2", "07700 900402", "o-1");
    assert_eq!(code_of(h.store().register(&r).await), "invitation_used");
    assert_nothing_written(&h, &r, "invitation and outlet").await;
}

pub async fn saving_a_profile_renames_the_membership_and_an_unknown_one_is_not_registered<
    H: ParticipantsHarness,
>(
    h: H,
) {
    owner_of(&h, "rep-1", "p-owner", "07700 900101", "o-1").await;
    let mut profile = h.store().profile(&pid("p-owner")).await.unwrap().unwrap();
    profile.name = Name::person("Ann Renamed").unwrap();
    profile.email = None;
    profile.updated_at = now() + chrono::Duration::hours(1);
    h.store().save_profile(&profile).await.expect("saved");
    assert_eq!(
        h.store().profile(&pid("p-owner")).await.unwrap(),
        Some(profile.clone())
    );
    assert_eq!(
        h.member_name("o-1", "p-owner").await.as_deref(),
        Some("Ann Renamed")
    );

    let mut stranger = profile.clone();
    stranger.id = pid("p-nobody");
    assert_eq!(
        code_of(h.store().save_profile(&stranger).await),
        "not_registered"
    );
    assert!(!h.has_profile("p-nobody").await);

    // Without an outlet there is no membership to rename.
    let individual = invite(&h, "rep-1", InvitationKind::Individual).await;
    let r = registration(&individual, "p-solo", "07700 900102", "o-x");
    h.store().register(&r).await.expect("registered");
    let mut solo = r.profile.clone();
    solo.name = Name::person("Solo Renamed").unwrap();
    h.store().save_profile(&solo).await.expect("saved");
    assert_eq!(
        h.store()
            .profile(&pid("p-solo"))
            .await
            .unwrap()
            .unwrap()
            .name,
        solo.name
    );
}

pub async fn zone_outlets_page_in_id_order_with_cursors_of_that_zone_only<
    H: ParticipantsHarness,
>(
    h: H,
) {
    for (i, outlet) in ["o-3", "o-1", "o-5", "o-2", "o-4"].iter().enumerate() {
        owner_of(
            &h,
            "rep-1",
            &format!("p-{i}"),
            &format!("07700 90050{i}"),
            outlet,
        )
        .await;
    }
    owner_of(&h, "rep-2", "p-elsewhere", "07700 900599", "o-0").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = h
            .store()
            .zone_outlets(&pid("rep-1"), cursor.as_deref(), 2)
            .await
            .expect("a page");
        assert!(page.items.len() <= 2);
        assert!(page.items.iter().all(|o| o.zone.as_str() == "rep-1"));
        seen.extend(page.items.iter().map(|o| o.id.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(cursor, None, "the listing ends");
    assert_eq!(seen, vec!["o-1", "o-2", "o-3", "o-4", "o-5"]);

    let first = h
        .store()
        .zone_outlets(&pid("rep-1"), None, 2)
        .await
        .unwrap();
    let cursor = first.next_cursor.expect("a second page");
    let second = h
        .store()
        .zone_outlets(&pid("rep-1"), Some(&cursor), 2)
        .await
        .unwrap();
    let ids: Vec<&str> = second.items.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec!["o-3", "o-4"]);

    let all = h
        .store()
        .zone_outlets(&pid("rep-1"), None, 100)
        .await
        .unwrap();
    assert_eq!((all.items.len(), all.next_cursor), (5, None));
    let empty = h
        .store()
        .zone_outlets(&pid("rep-9"), None, 10)
        .await
        .unwrap();
    assert_eq!((empty.items.len(), empty.next_cursor), (0, None));

    // Another rep's cursor, garbage, and tampered ones.
    let forged = |attrs: &[(&str, &str)]| {
        encode_cursor(
            &attrs
                .iter()
                .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
                .collect(),
        )
    };
    let zone = "ZONE#rep-1";
    for bad in [
        "not a cursor!".to_string(),
        "AAAA".to_string(),
        forged(&[("pk", "ZONE#rep-2"), ("sk", "OUTLET#o-1")]),
        forged(&[("pk", "ACCOUNT#rep-1"), ("sk", "ENTRY#x"), ("lsi1sk", "t")]),
        forged(&[("pk", zone)]),
        forged(&[("pk", zone), ("sk", "")]),
        forged(&[("pk", zone), ("sk", "PROFILE#p-1")]),
        forged(&[("pk", zone), ("sk", "OUTLET#o-1"), ("gsi1sk", "OUTLET#o-1")]),
    ] {
        let result = h.store().zone_outlets(&pid("rep-1"), Some(&bad), 2).await;
        assert!(
            matches!(result, Err(ParticipantError::InvalidCursor)),
            "cursor {bad:?}: {result:?}"
        );
    }
    let result = h
        .store()
        .zone_outlets(&pid("rep-2"), Some(&cursor), 2)
        .await;
    assert!(matches!(result, Err(ParticipantError::InvalidCursor)));
}

pub async fn phone_owners_names_the_owner_of_each_known_phone<H: ParticipantsHarness>(h: H) {
    owner_of(&h, "rep-1", "p-1", "07700 900101", "o-1").await;
    let known = PhoneNumber::parse("07700 900101", &uk()).unwrap();
    let unknown = PhoneNumber::parse("07700 900102", &uk()).unwrap();
    let owners = h
        .store()
        .phone_owners(&[&known, &unknown, &known])
        .await
        .unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[known.as_e164()], pid("p-1"));
    assert!(h.store().phone_owners(&[]).await.unwrap().is_empty());
}

pub async fn an_import_writes_profiles_phones_and_memberships_and_refuses_taken_phones_by_line<
    H: ParticipantsHarness,
>(
    h: H,
) {
    owner_of(&h, "rep-1", "p-owner", "07700 900600", "o-1").await;
    let rows = import_rows(
        "phone,name,region,outlet_id,outlet_role\n\
         07700 900601,Ann,north,,\n\
         07700 900602,Bo,north,o-1,seller\n",
    );
    h.store().write_import(&rows, now()).await.expect("written");
    for row in &rows {
        let id = row.id();
        assert_eq!(
            h.phone_owner(row.phone.as_e164()).await.as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            h.store().profile(&id).await.unwrap(),
            Some(row.profile(now()))
        );
    }
    assert_eq!(
        h.member_name("o-1", rows[1].id().as_str()).await.as_deref(),
        Some("Bo")
    );
    assert_eq!(h.store().members(&oid("o-1")).await.unwrap().len(), 2);

    // A phone taken since the plan was made: the transaction writes nothing.
    let rows = import_rows(
        "phone,name,region\n\
         07700 900603,Cy,north\n\
         07700 900600,Owner Again,north\n\
         07700 900601,Ann Again,north\n",
    );
    let err = h.store().write_import(&rows, now()).await.unwrap_err();
    let ParticipantError::ImportInvalid { errors } = err else {
        panic!("{err:?}")
    };
    let lines: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
    assert_eq!(lines, vec![(3, "phone_taken"), (4, "phone_taken")]);
    assert_eq!(h.phone_owner(&e164("07700 900603")).await, None);
    assert!(!h.has_profile(rows[0].id().as_str()).await);
    assert_eq!(
        h.store()
            .profile(&rows[2].id())
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "Ann",
        "the earlier import stays as it was"
    );
}

/// DynamoDB takes at most 100 items per transaction, so an import is all or nothing per
/// transaction: 60 rows without outlets are two transactions (50 rows, then 10), and a phone
/// taken in the second refuses the second only.
pub async fn an_import_is_all_or_nothing_per_transaction_of_at_most_100_items<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let mut csv = String::from("phone,name,region\n");
    for i in 0..60 {
        csv.push_str(&format!("07700 90{:04},Member {i},north\n", 1000 + i));
    }
    let rows = import_rows(&csv);
    // Row 55 (line 57) is taken by a registration meanwhile.
    let individual = invite(&h, "rep-1", InvitationKind::Individual).await;
    h.store()
        .register(&registration(&individual, "p-racer", "07700 901055", "o-x"))
        .await
        .expect("registered");

    let err = h.store().write_import(&rows, now()).await.unwrap_err();
    let ParticipantError::ImportInvalid { errors } = err else {
        panic!("{err:?}")
    };
    let lines: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.code)).collect();
    assert_eq!(lines, vec![(57, "phone_taken")]);
    let mut written = Vec::new();
    for row in &rows {
        if h.has_profile(row.id().as_str()).await {
            written.push(row.line);
        }
    }
    assert_eq!(
        written,
        (2..=51).collect::<Vec<u64>>(),
        "the first transaction (50 rows) is written, the second not at all"
    );
}

/// Sixteen registrations of one phone, each with its own invitation, at once: exactly one
/// account; every other attempt is `PhoneTaken` and leaves its invitation unused.
pub async fn sixteen_concurrent_registrations_with_one_phone_create_exactly_one_account<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let mut registrations = Vec::new();
    for i in 0..16 {
        let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
        registrations.push(registration(
            &invitation,
            &format!("p-racer-{i}"),
            "07700 900555",
            &format!("o-racer-{i}"),
        ));
    }
    let results = join_all(registrations.iter().map(|r| h.store().register(r))).await;
    // DynamoDB itself may cancel a racing transaction as a conflict (a retryable error, on
    // which the client retries and then meets `PhoneTaken`); the emulator serialises
    // transactions and the memory adapter holds one lock, so both answer `PhoneTaken`.
    let codes: Vec<&str> = results
        .into_iter()
        .map(|r| match r {
            Err(ParticipantError::Infra(e)) if e.retryable => "retryable",
            other => code_of(other),
        })
        .collect();
    let winners: Vec<usize> = (0..16).filter(|&i| codes[i] == "ok").collect();
    assert_eq!(winners.len(), 1, "{codes:?}");
    assert!(
        codes
            .iter()
            .filter(|c| **c != "ok")
            .all(|c| matches!(*c, "phone_taken" | "retryable")),
        "{codes:?}"
    );
    let winner = &registrations[winners[0]];
    assert_eq!(
        h.phone_owner(&e164("07700 900555")).await.as_deref(),
        Some(winner.profile.id.as_str())
    );
    for (i, r) in registrations.iter().enumerate() {
        if i == winners[0] {
            assert!(h.has_profile(r.profile.id.as_str()).await);
            assert!(h.has_outlet(&format!("o-racer-{i}")).await);
        } else {
            assert_nothing_written(&h, r, "a losing racer").await;
            assert_eq!(h.invitation_used_by(&r.invitation).await, None);
            assert!(!h.has_outlet(&format!("o-racer-{i}")).await);
        }
    }
}

fn guess(caller: &str, source: Option<&str>, at: DateTime<Utc>) -> Guess {
    Guess::new(&FraudPolicy::default(), &pid(caller), source, at)
}

pub async fn guesses_are_counted_up_to_the_limit_of_each_guesser_and_then_refused_naming_it<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let store = h.store();
    let start = FraudPolicy::default().failure_window(now()).start;
    let caller = Guesser::Caller(pid("p-guesser"));
    let source = Guesser::Source("203.0.113.7".into());
    for i in 0..5 {
        let from = format!("198.51.100.{i}");
        let counted = store
            .count_guess(&guess("p-guesser", Some(&from), now()))
            .await;
        assert_eq!(counted.unwrap(), Ok(()), "guess {i}");
    }
    assert_eq!(h.guesses(&caller, start).await, 5);
    let refused = store
        .count_guess(&guess("p-guesser", Some("203.0.113.7"), now()))
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(GuessRefusal::LimitReached(vec![caller.clone()]))
    );
    // All or nothing: the source's counter did not move for a refused guess.
    assert_eq!(h.guesses(&source, start).await, 0);
    assert_eq!(h.guesses(&caller, start).await, 5);
    // Another caller from a fresh source is not held back by the first one.
    let other = store
        .count_guess(&guess("p-other", Some("203.0.113.7"), now()))
        .await;
    assert_eq!(other.unwrap(), Ok(()));
    assert_eq!(h.guesses(&source, start).await, 1);
}

pub async fn a_lock_refuses_every_guess_until_it_passes_and_outranks_a_full_counter<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let store = h.store();
    let until = now().timestamp() + 3600;
    let caller = Guesser::Caller(pid("p-locked"));
    for _ in 0..5 {
        store
            .count_guess(&guess("p-locked", None, now()))
            .await
            .unwrap()
            .unwrap();
    }
    store.lock_guesser(&caller, until).await.unwrap();
    let refused = store
        .count_guess(&guess("p-locked", None, now()))
        .await
        .unwrap();
    assert_eq!(refused, Err(GuessRefusal::Locked { until }));
    // Still locked in the next window, whose counter is empty.
    let later = now() + chrono::Duration::minutes(30);
    let refused = store
        .count_guess(&guess("p-locked", None, later))
        .await
        .unwrap();
    assert_eq!(refused, Err(GuessRefusal::Locked { until }));
    // A source that is locked holds back a caller who is not.
    let source = Guesser::Source("192.0.2.1".into());
    store.lock_guesser(&source, until).await.unwrap();
    let refused = store
        .count_guess(&guess("p-fresh", Some("192.0.2.1"), now()))
        .await
        .unwrap();
    assert_eq!(refused, Err(GuessRefusal::Locked { until }));
    let passed = now() + chrono::Duration::hours(1);
    let counted = store
        .count_guess(&guess("p-locked", None, passed))
        .await
        .unwrap();
    assert_eq!(counted, Ok(()));
}

pub async fn a_forgiven_guess_frees_its_room_and_never_recreates_a_counter<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let store = h.store();
    let start = FraudPolicy::default().failure_window(now()).start;
    let caller = Guesser::Caller(pid("p-right"));
    let g = guess("p-right", None, now());
    for _ in 0..5 {
        store.count_guess(&g).await.unwrap().unwrap();
        store.forgive_guess(&g).await.unwrap();
    }
    assert_eq!(h.guesses(&caller, start).await, 0);
    assert_eq!(store.count_guess(&g).await.unwrap(), Ok(()));
    let never_counted = guess("p-never", None, now());
    store.forgive_guess(&never_counted).await.unwrap();
    assert_eq!(h.guesses(&Guesser::Caller(pid("p-never")), start).await, 0);
}

pub async fn sixteen_concurrent_guesses_of_one_caller_count_no_more_than_the_limit<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let store = h.store();
    let start = FraudPolicy::default().failure_window(now()).start;
    let g = guess("p-racer", None, now());
    let outcomes = join_all((0..16).map(|_| store.count_guess(&g))).await;
    let counted = outcomes.iter().filter(|o| matches!(o, Ok(Ok(())))).count();
    assert!(counted <= 5, "{outcomes:?}");
    assert_eq!(
        h.guesses(&Guesser::Caller(pid("p-racer")), start).await,
        counted as i64
    );
    for o in &outcomes {
        match o {
            Ok(Ok(())) | Ok(Err(GuessRefusal::LimitReached(_) | GuessRefusal::Contended)) => {}
            Err(e) => assert!(e.retryable, "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
}

pub async fn a_block_is_recorded_on_the_profile_and_survives_a_profile_save<
    H: ParticipantsHarness,
>(
    h: H,
) {
    let store = h.store();
    let invitation = invite(&h, "rep-1", InvitationKind::NewOutlet).await;
    let registration = registration(&invitation, "p-blocked", "07700 900771", "o-blocked");
    store.register(&registration).await.unwrap();
    let change = StandingChange {
        standing: Standing::Blocked,
        reason: Reason::parse("shared codes").unwrap(),
        by: pid("admin-1"),
        at: now(),
    };
    store
        .set_standing(&pid("p-blocked"), &change)
        .await
        .unwrap();
    let mut profile = store.profile(&pid("p-blocked")).await.unwrap().unwrap();
    assert_eq!(profile.standing.as_ref(), Some(&change));
    assert!(!profile.is_active());
    // A profile update read before the block must not undo it.
    let mut stale = registration.profile.clone();
    stale.name = Name::person("Renamed").unwrap();
    store.save_profile(&stale).await.unwrap();
    profile = store.profile(&pid("p-blocked")).await.unwrap().unwrap();
    assert_eq!(profile.name.as_str(), "Renamed");
    assert!(!profile.is_active());

    let unblock = StandingChange {
        standing: Standing::Active,
        reason: Reason::parse("reviewed").unwrap(),
        by: pid("admin-2"),
        at: now() + chrono::Duration::hours(1),
    };
    store
        .set_standing(&pid("p-blocked"), &unblock)
        .await
        .unwrap();
    let profile = store.profile(&pid("p-blocked")).await.unwrap().unwrap();
    assert!(profile.is_active());
    assert_eq!(profile.standing, Some(unblock.clone()));

    let missing = store.set_standing(&pid("p-nobody"), &unblock).await;
    assert!(
        matches!(missing, Err(ParticipantError::ParticipantNotFound)),
        "{missing:?}"
    );
    assert!(!h.has_profile("p-nobody").await);
}

/// One test per case for the adapter the factory builds:
/// `participant_store_contract!(loyalty_tests::contract::participants::memory)`.
#[macro_export]
macro_rules! participant_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(participants, $harness;
            an_invitation_is_stored_once_per_code,
            a_new_outlet_registration_writes_profile_phone_outlet_and_owner_and_uses_the_invitation,
            joining_an_outlet_makes_a_seller_and_creates_no_outlet,
            a_second_registration_with_the_same_phone_is_phone_taken_and_writes_nothing,
            an_invitation_is_used_once_and_an_unknown_one_is_refused_alike,
            a_participant_registers_once,
            a_missing_outlet_to_join_or_a_taken_new_outlet_id_is_outlet_not_found,
            when_several_conditions_fail_the_refusal_follows_one_precedence,
            saving_a_profile_renames_the_membership_and_an_unknown_one_is_not_registered,
            zone_outlets_page_in_id_order_with_cursors_of_that_zone_only,
            phone_owners_names_the_owner_of_each_known_phone,
            an_import_writes_profiles_phones_and_memberships_and_refuses_taken_phones_by_line,
            an_import_is_all_or_nothing_per_transaction_of_at_most_100_items,
            sixteen_concurrent_registrations_with_one_phone_create_exactly_one_account,
            guesses_are_counted_up_to_the_limit_of_each_guesser_and_then_refused_naming_it,
            a_lock_refuses_every_guess_until_it_passes_and_outranks_a_full_counter,
            a_forgiven_guess_frees_its_room_and_never_recreates_a_counter,
            sixteen_concurrent_guesses_of_one_caller_count_no_more_than_the_limit,
            a_block_is_recorded_on_the_profile_and_survives_a_profile_save,
        );
    };
}
