//! The contract of the [`ReviewStore`] port, run against both adapters: [`MemoryReviews`]
//! (`tests/tests/memory/`) and [`DynamoLedger`] on the emulator
//! (`tests/tests/integration/contract.rs`). Cases are `async fn`s over a [`ReviewsHarness`];
//! [`review_store_contract!`](crate::review_store_contract) makes one test per case.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, SubsecRound, TimeZone, Utc};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind};
use loyalty_domain::review::{
    decide, Committed, Decided, Decision, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::Points;
use loyalty_platform::dynamo::{encode_cursor, Item};
use loyalty_platform::memory::MemoryReviews;
use loyalty_platform::stores::ledger::{account_pk, append_items, DynamoLedger};

use crate::TestStack;

/// One adapter of the port, with seeding and observation through its own storage.
#[allow(async_fn_in_trait)]
pub trait ReviewsHarness {
    type Store: ReviewStore;
    fn store(&self) -> &Self::Store;
    /// A claim a fraud rule flagged: its entry (points to pending) on the review queue.
    async fn flag(&self, entry: &Entry, reasons: &[&str]);
    async fn balance(&self, participant: &ParticipantId) -> Balance;
    /// The participant's entries, in id order.
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry>;
    async fn outbox_len(&self) -> usize;
    /// A cursor another listing of this adapter hands out (an account's history).
    fn foreign_cursor(&self) -> String;
    /// Sets the participant's standing, as the admin's block and unblock do.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryReviews,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryReviews::new(),
    }
}

impl ReviewsHarness for MemoryHarness {
    type Store = MemoryReviews;
    fn store(&self) -> &MemoryReviews {
        &self.store
    }
    async fn flag(&self, entry: &Entry, reasons: &[&str]) {
        self.store.flag(entry.clone(), reasons);
    }
    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.store.balance(participant)
    }
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.store.entries(participant);
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }
    async fn outbox_len(&self) -> usize {
        self.store.outbox().len()
    }
    fn foreign_cursor(&self) -> String {
        "memory-history:p-1#claim-x".into()
    }
    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        self.store.set_active(participant, status == "active");
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    ledger: DynamoLedger,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("CodesAdminFunction").await;
    let ledger = DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable"))
        .with_outbox(stack.table_name("OutboxTable"))
        .with_participants(stack.table_name("ParticipantsTable"));
    DynamoHarness { stack, ledger }
}

impl ReviewsHarness for DynamoHarness {
    type Store = DynamoLedger;
    fn store(&self) -> &DynamoLedger {
        &self.ledger
    }
    async fn flag(&self, entry: &Entry, reasons: &[&str]) {
        // The claimant was registered and active when they claimed.
        crate::contract::claims::register_profile(
            &self.stack,
            &entry.participant,
            &Default::default(),
        )
        .await;
        let client = self.stack.dynamodb();
        let table = self.stack.table_name("LedgerTable");
        append_items(table, entry, None)
            .unwrap()
            .commit(&client, "seed flagged claim")
            .await
            .unwrap()
            .expect("a fresh entry");
        // As the claim store writes it: the sparse index is the queue.
        client
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(account_pk(&entry.participant)))
            .key("sk", AttributeValue::S(format!("ENTRY#{}", entry.id)))
            .update_expression("SET gsi1pk = :q, gsi1sk = :at, review_reasons = :r")
            .expression_attribute_values(":q", AttributeValue::S("REVIEW#PENDING".into()))
            .expression_attribute_values(
                ":at",
                AttributeValue::S(format!("{}#{}", entry.created_at.to_rfc3339(), entry.id)),
            )
            .expression_attribute_values(
                ":r",
                AttributeValue::L(
                    reasons
                        .iter()
                        .map(|r| AttributeValue::S(r.to_string()))
                        .collect(),
                ),
            )
            .send()
            .await
            .unwrap();
    }
    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.ledger.balance(participant).await.unwrap()
    }
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.ledger.all_entries(participant).await.unwrap();
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }
    async fn outbox_len(&self) -> usize {
        let out = self
            .stack
            .dynamodb()
            .scan()
            .table_name(self.stack.table_name("OutboxTable"))
            .send()
            .await
            .unwrap();
        out.items().len()
    }
    fn foreign_cursor(&self) -> String {
        let mut key = Item::new();
        key.insert("pk".into(), AttributeValue::S("ACCOUNT#p-1".into()));
        key.insert("sk".into(), AttributeValue::S("ENTRY#claim-x".into()));
        key.insert("lsi1sk".into(), AttributeValue::S("2026".into()));
        encode_cursor(&key)
    }
    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        crate::contract::claims::set_profile_status(&self.stack, participant, status).await;
    }
}

// --- The cases ---------------------------------------------------------------------------

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
        .unwrap()
        .trunc_subsecs(0)
        + Duration::minutes(minute)
}

fn flagged(participant: &str, n: u32, points: u64) -> Entry {
    Entry {
        id: EntryId::parse(&format!("claim-{n:04}")).unwrap(),
        participant: ParticipantId::parse(participant).unwrap(),
        outlet: Some(OutletId::parse("o-1").unwrap()),
        kind: EntryKind::CodeClaimUnderReview,
        amount: Points(points),
        source: "batch 1 COLA-05".into(),
        created_at: at(n as i64),
        expires_on: None,
    }
}

fn id_of(e: &Entry) -> ReviewId {
    ReviewId::of(&e.participant, &e.id)
}

/// Approval moves the points from pending to available, once; the queue loses the entry.
pub async fn an_approval_commits_once<H: ReviewsHarness>(h: H) {
    let e = flagged("p-1", 1, 40);
    h.flag(&e, &["velocity"]).await;
    let before = h.balance(&e.participant).await;
    assert_eq!((before.pending, before.available), (40, 0));
    let outbox_before = h.outbox_len().await;

    let decided = decide(h.store(), &id_of(&e), Decision::Approve, "admin-1", at(60))
        .await
        .unwrap();
    assert_eq!(decided.entry.kind, EntryKind::ReviewApproved);
    assert_eq!(decided.entry.amount, Points(40));

    let after = h.balance(&e.participant).await;
    assert_eq!((after.pending, after.available), (0, 40));
    assert_eq!(after.version, before.version + 1);
    let entries = h.entries(&e.participant).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(Balance::replay(&entries).unwrap().available, 40);
    assert_eq!(h.outbox_len().await, outbox_before + 1);
    let page = h.store().pending(None, 10).await.unwrap();
    assert!(page.items.is_empty());
}

/// Rejection removes the points from pending; nothing becomes available.
pub async fn a_rejection_removes_the_pending_points<H: ReviewsHarness>(h: H) {
    let e = flagged("p-1", 1, 25);
    h.flag(&e, &["region"]).await;
    decide(h.store(), &id_of(&e), Decision::Reject, "admin-1", at(60))
        .await
        .unwrap();
    let after = h.balance(&e.participant).await;
    assert_eq!((after.pending, after.available), (0, 0));
}

/// A second decision (either way) is `AlreadyDecided` and writes nothing.
pub async fn a_second_decision_is_already_decided_and_writes_nothing<H: ReviewsHarness>(h: H) {
    let e = flagged("p-1", 1, 40);
    h.flag(&e, &["velocity"]).await;
    let first = decide(h.store(), &id_of(&e), Decision::Approve, "admin-1", at(60))
        .await
        .unwrap();
    let balance = h.balance(&e.participant).await;
    let entries = h.entries(&e.participant).await;
    let outbox = h.outbox_len().await;

    for decision in [Decision::Approve, Decision::Reject] {
        let again = decide(h.store(), &id_of(&e), decision, "admin-2", at(61)).await;
        assert!(
            matches!(again, Err(ReviewError::AlreadyDecided)),
            "{again:?}"
        );
    }
    // The port itself, with the very same decision: refused, not applied twice.
    assert_eq!(
        h.store().commit(&first).await.unwrap(),
        Committed::AlreadyDecided
    );

    assert_eq!(h.balance(&e.participant).await, balance);
    assert_eq!(h.entries(&e.participant).await, entries);
    assert_eq!(h.outbox_len().await, outbox);
}

/// Only a claim under review can be decided: an unknown id or another kind of entry is
/// not found.
pub async fn only_a_claim_under_review_is_found<H: ReviewsHarness>(h: H) {
    let e = flagged("p-1", 1, 40);
    h.flag(&e, &["velocity"]).await;
    let unknown = ReviewId::of(&e.participant, &EntryId::parse("claim-9999").unwrap());
    let got = decide(h.store(), &unknown, Decision::Approve, "admin-1", at(60)).await;
    assert!(matches!(got, Err(ReviewError::NotFound)), "{got:?}");
    let decided: Decided = decide(h.store(), &id_of(&e), Decision::Approve, "admin-1", at(60))
        .await
        .unwrap();
    let decision_entry = ReviewId::of(&e.participant, &decided.entry.id);
    let got = decide(
        h.store(),
        &decision_entry,
        Decision::Approve,
        "admin-1",
        at(61),
    )
    .await;
    assert!(matches!(got, Err(ReviewError::NotFound)), "{got:?}");
}

/// The queue pages oldest first with a cursor, and a decided claim leaves it.
pub async fn the_queue_pages_oldest_first_with_a_cursor<H: ReviewsHarness>(h: H) {
    let flagged: Vec<Entry> = [3, 1, 4, 2, 5]
        .into_iter()
        .map(|n| flagged(if n % 2 == 0 { "p-2" } else { "p-1" }, n, 10 * n as u64))
        .collect();
    for e in &flagged {
        h.flag(e, &["velocity"]).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = h.store().pending(cursor.as_deref(), 2).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|r| {
            assert_eq!(r.reasons, vec!["velocity".to_string()]);
            assert_eq!(r.id, id_of(&r.entry));
            r.entry.id.to_string()
        }));
        pages += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    assert_eq!(
        seen,
        [
            "claim-0001",
            "claim-0002",
            "claim-0003",
            "claim-0004",
            "claim-0005"
        ]
    );
    decide(
        h.store(),
        &id_of(&flagged[1]),
        Decision::Reject,
        "admin-1",
        at(60),
    )
    .await
    .unwrap();
    let all = h.store().pending(None, 10).await.unwrap();
    let ids: Vec<_> = all.items.iter().map(|r| r.entry.id.to_string()).collect();
    assert_eq!(
        ids,
        ["claim-0002", "claim-0003", "claim-0004", "claim-0005"]
    );
}

/// A cursor the queue did not hand out is `InvalidCursor`.
pub async fn a_foreign_or_garbage_cursor_is_invalid<H: ReviewsHarness>(h: H) {
    h.flag(&flagged("p-1", 1, 10), &["velocity"]).await;
    for bad in [
        "not a cursor!".to_string(),
        String::new(),
        "AAAA".to_string(),
        h.foreign_cursor(),
    ] {
        let got = h.store().pending(Some(&bad), 10).await;
        assert!(
            matches!(got, Err(ReviewError::InvalidCursor)),
            "{bad:?}: {got:?}"
        );
    }
}

/// Approving makes held points spendable, so it is refused for a participant blocked since
/// and writes nothing; a rejection still goes through, and after an unblock an approval does.
pub async fn an_approval_for_a_blocked_participant_is_refused_and_the_points_stay_held<
    H: ReviewsHarness,
>(
    h: H,
) {
    let (e, other) = (flagged("p-1", 1, 40), flagged("p-1", 2, 15));
    h.flag(&e, &["velocity"]).await;
    h.flag(&other, &["velocity"]).await;
    h.set_standing(&e.participant, "blocked").await;
    let before = h.balance(&e.participant).await;
    let outbox = h.outbox_len().await;
    let got = decide(h.store(), &id_of(&e), Decision::Approve, "admin-1", at(60)).await;
    assert!(
        matches!(got, Err(ReviewError::ParticipantNotActive)),
        "{got:?}"
    );
    assert_eq!(h.balance(&e.participant).await, before);
    assert_eq!(h.entries(&e.participant).await.len(), 2);
    assert_eq!(h.outbox_len().await, outbox);
    assert_eq!(h.store().pending(None, 10).await.unwrap().items.len(), 2);
    // A rejection of a blocked participant's held points is allowed.
    decide(
        h.store(),
        &id_of(&other),
        Decision::Reject,
        "admin-1",
        at(61),
    )
    .await
    .unwrap();
    // Unblocked: the held claim is approved as usual.
    h.set_standing(&e.participant, "active").await;
    decide(h.store(), &id_of(&e), Decision::Approve, "admin-1", at(62))
        .await
        .unwrap();
    let after = h.balance(&e.participant).await;
    assert_eq!((after.pending, after.available), (0, 40));
}

#[macro_export]
macro_rules! review_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(reviews, $harness;
            an_approval_commits_once,
            a_rejection_removes_the_pending_points,
            a_second_decision_is_already_decided_and_writes_nothing,
            only_a_claim_under_review_is_found,
            the_queue_pages_oldest_first_with_a_cursor,
            a_foreign_or_garbage_cursor_is_invalid,
            an_approval_for_a_blocked_participant_is_refused_and_the_points_stay_held,
        );
    };
}
