//! The contract of the [`ClaimStore`] port, run against both adapters:
//! [`MemoryClaims`] (plain tests, `tests/tests/memory/`) and [`DynamoClaims`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`ClaimsHarness`]; [`claim_store_contract!`](crate::claim_store_contract) turns every
//! case into a test for one adapter. If the two adapters disagree, the memory one is wrong.

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use loyalty_domain::batch::{Batch, BatchRequest, BatchSeed, BatchSpec, BatchStatus};
use loyalty_domain::claim::{
    BatchInfo, ClaimAttempt, ClaimPolicy, ClaimReceipt, ClaimStatus, ClaimStore, Claimant,
    CodeState, FailedAttempt, Refusal,
};
use loyalty_domain::code::Code;
use loyalty_domain::fraud::{AttemptOutcome, FlagReason, Subject};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{entry_ids, Balance, Entry, EntryKind};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryClaims;
use loyalty_platform::stores::claims::{ClaimTables, DynamoClaims};
use loyalty_platform::stores::codes::CodesStore;
use loyalty_platform::stores::ledger::DynamoLedger;

use crate::TestStack;

/// A batch with issued codes, valid until 30 days after today.
pub struct Seeded {
    pub batch: BatchInfo,
    pub codes: Vec<Code>,
}

/// One adapter of the port, with what the contract needs to seed and observe it. The
/// observations are read through the adapter's own storage (the ledger and outbox tables
/// for DynamoDB), never through the port under test.
#[allow(async_fn_in_trait)]
pub trait ClaimsHarness {
    type Store: ClaimStore;
    fn store(&self) -> &Self::Store;
    /// A new batch of `count` issued codes worth `points` each, shipped to `region`.
    async fn seed(&mut self, points: u64, region: &str, count: u32) -> Seeded;
    /// The stored balance; the default (version 0) for an account without entries.
    async fn balance(&self, participant: &ParticipantId) -> Balance;
    /// The participant's entries, in id order.
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry>;
    async fn outlet_totals(&self, outlet: &OutletId) -> Balance;
    async fn has_outbox_record(&self, event_id: &str) -> bool;
    /// Registers the participant (their profile, active, in the region and outlet of
    /// `facts`).
    async fn register(&self, participant: &ParticipantId, facts: &ProfileFacts);
    /// Sets a registered participant's standing, as the admin's block and unblock do.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryClaims,
    next_batch: u32,
}

/// A fresh memory adapter (the factory the memory run passes to the contract).
pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryClaims::new(),
        next_batch: 1,
    }
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: loyalty_platform::memory::claims::PlantedBug) -> MemoryHarness {
    MemoryHarness {
        store: MemoryClaims::with_planted_bug(bug),
        next_batch: 1,
    }
}

impl ClaimsHarness for MemoryHarness {
    type Store = MemoryClaims;

    fn store(&self) -> &MemoryClaims {
        &self.store
    }

    async fn seed(&mut self, points: u64, region: &str, count: u32) -> Seeded {
        let number = self.next_batch;
        self.next_batch += 1;
        let batch = BatchInfo {
            number,
            sku: "COLA-05".into(),
            product_type: "Cola 0.5 l".into(),
            points: Points(points),
            region: RegionId::parse(region).expect("region"),
            valid_until: today() + Duration::days(30),
        };
        let codes = Code::chunk(&[number as u8; 32], number, 0, count);
        self.store.add_batch(batch.clone());
        self.store.issue(&batch, &codes);
        Seeded { batch, codes }
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.store
            .balance(participant)
            .map(|b| b.to_balance().expect("readable balance"))
            .unwrap_or_default()
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.store.entries(participant);
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }

    async fn outlet_totals(&self, outlet: &OutletId) -> Balance {
        self.store
            .outlet_totals(outlet)
            .map(|b| b.to_balance().expect("readable totals"))
            .unwrap_or_default()
    }

    async fn has_outbox_record(&self, event_id: &str) -> bool {
        self.store.inspect(|w| w.outbox.contains_key(event_id))
    }

    async fn register(&self, participant: &ParticipantId, facts: &ProfileFacts) {
        self.store.register(participant, facts.clone());
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        self.store.set_active(participant, status == "active");
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: DynamoClaims,
    ledger: DynamoLedger,
    codes: CodesStore,
}

/// Fresh tables on the emulator, under a prefix of their own (the factory the integration
/// run passes to the contract).
pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("CodeClaimFunction").await;
    let tables = ClaimTables {
        codes: stack.table_name("CodesTable").to_string(),
        ledger: stack.table_name("LedgerTable").to_string(),
        fraud: stack.table_name("FraudTable").to_string(),
        outbox: stack.table_name("OutboxTable").to_string(),
        participants: stack.table_name("ParticipantsTable").to_string(),
        programme: stack.table_name("ProgrammeTable").to_string(),
    };
    DynamoHarness {
        store: DynamoClaims::new(stack.dynamodb(), tables.clone()),
        ledger: DynamoLedger::new(stack.dynamodb(), tables.ledger),
        codes: CodesStore::new(stack.dynamodb(), tables.codes),
        stack,
    }
}

impl ClaimsHarness for DynamoHarness {
    type Store = DynamoClaims;

    fn store(&self) -> &DynamoClaims {
        &self.store
    }

    async fn seed(&mut self, points: u64, region: &str, count: u32) -> Seeded {
        let (batch, codes) =
            issue_ready_batch(&self.codes, points, region, count, "admin-contract").await;
        Seeded {
            batch: BatchInfo {
                number: batch.number,
                sku: batch.spec.sku.clone(),
                product_type: batch.spec.product_type.clone(),
                points: batch.spec.points_per_pack,
                region: batch.spec.region.clone(),
                valid_until: batch.spec.valid_until,
            },
            codes,
        }
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.ledger.balance(participant).await.expect("balance")
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.ledger.all_entries(participant).await.expect("entries");
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }

    async fn outlet_totals(&self, outlet: &OutletId) -> Balance {
        self.ledger.outlet_totals(outlet).await.expect("totals")
    }

    async fn has_outbox_record(&self, event_id: &str) -> bool {
        let out = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("OutboxTable"))
            .set_key(Some(loyalty_platform::dynamo::key(
                format!("OUTBOX#{event_id}"),
                "OUTBOX",
            )))
            .consistent_read(true)
            .send()
            .await
            .expect("read outbox");
        out.item.is_some()
    }

    async fn register(&self, participant: &ParticipantId, facts: &ProfileFacts) {
        register_profile(&self.stack, participant, facts).await;
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        set_profile_status(&self.stack, participant, status).await;
    }
}

/// A ready batch of `count` codes worth `points` each, shipped to `region` and valid for 30
/// more days, created and issued in `codes` (the sample SKU; the seed is the batch number).
pub async fn issue_ready_batch(
    codes: &CodesStore,
    points: u64,
    region: &str,
    count: u32,
    created_by: &str,
) -> (Batch, Vec<Code>) {
    let spec = BatchSpec::parse(&BatchRequest {
        sku: "COLA-05".into(),
        product_type: "Cola 0.5 l".into(),
        pack_size: "0.5 l".into(),
        points_per_pack: points,
        region: region.into(),
        valid_until: (Utc::now().date_naive() + Duration::days(30)).to_string(),
        count,
    })
    .expect("valid spec");
    let number = codes
        .allocate_batch_number()
        .await
        .expect("allocate")
        .expect("a batch number");
    let batch = Batch {
        number,
        plan: spec.plan(count.max(1)),
        spec,
        seed: BatchSeed([number as u8; 32]),
        status: BatchStatus::Ready,
        created_at: Utc::now(),
    };
    codes
        .create_batch(&batch, created_by)
        .await
        .expect("batch created");
    let issued = Code::chunk(&batch.seed.0, number, 0, count);
    codes
        .put_codes(&batch, &issued)
        .await
        .expect("codes written");
    (batch, issued)
}

/// Writes a profile item with only the key and what an earning transaction's profile check
/// reads: a new profile has no `status`; `region` and `outlet_id` as `facts` say.
pub async fn register_profile(
    stack: &TestStack,
    participant: &ParticipantId,
    facts: &ProfileFacts,
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut item = loyalty_platform::dynamo::key(format!("PARTICIPANT#{participant}"), "PROFILE");
    if let Some(region) = &facts.region {
        item.insert("region".into(), AttributeValue::S(region.as_str().into()));
    }
    if let Some(outlet) = &facts.outlet {
        item.insert(
            "outlet_id".into(),
            AttributeValue::S(outlet.as_str().into()),
        );
    }
    stack
        .dynamodb()
        .put_item()
        .table_name(stack.table_name("ParticipantsTable"))
        .set_item(Some(item))
        .send()
        .await
        .expect("profile written");
}

/// Sets a profile's `status`, as the admin's block and unblock do.
pub async fn set_profile_status(stack: &TestStack, participant: &ParticipantId, status: &str) {
    stack
        .dynamodb()
        .update_item()
        .table_name(stack.table_name("ParticipantsTable"))
        .set_key(Some(loyalty_platform::dynamo::key(
            format!("PARTICIPANT#{participant}"),
            "PROFILE",
        )))
        .update_expression("SET #status = :status")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(
            ":status",
            aws_sdk_dynamodb::types::AttributeValue::S(status.into()),
        )
        .send()
        .await
        .expect("standing written");
}

// --- Helpers ---------------------------------------------------------------------------

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Now, in whole microseconds (what a stored timestamp keeps).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).expect("participant id")
}

pub fn oid(raw: &str) -> OutletId {
    OutletId::parse(raw).expect("outlet id")
}

/// A registered, active claimant.
async fn member<H: ClaimsHarness>(h: &H, participant: &str, outlet: Option<&str>) -> Claimant {
    let c = claimant(participant, outlet);
    h.register(&c.participant, &c.facts()).await;
    c
}

fn claimant(participant: &str, outlet: Option<&str>) -> Claimant {
    Claimant {
        participant: pid(participant),
        outlet: outlet.map(oid),
        region: Some(RegionId::parse("north").expect("region")),
    }
}

/// The attempt `claim(..)` would build for an accepted claim (the domain builds it the
/// same way; the contract drives the port directly).
pub fn attempt(
    claimant: &Claimant,
    batch: &BatchInfo,
    code: Code,
    expected: Option<Balance>,
    now: DateTime<Utc>,
) -> ClaimAttempt {
    let policy = ClaimPolicy::default();
    let balance = expected
        .unwrap_or_default()
        .apply(EntryKind::CodeClaim, batch.points)
        .expect("a credit");
    ClaimAttempt {
        claimant: claimant.clone(),
        code,
        batch: batch.clone(),
        kind: EntryKind::CodeClaim,
        flags: Vec::new(),
        now,
        today: now.date_naive(),
        expected_balance: expected,
        receipt: ClaimReceipt {
            entry_id: entry_ids::code_claim(code.canonical()),
            status: ClaimStatus::Accepted,
            points: batch.points,
            batch: batch.number,
            sku: batch.sku.clone(),
            product_type: batch.product_type.clone(),
            balance,
            claimed_at: now,
        },
        credit_expires_on: (now + Duration::days(policy.credit_validity_days)).date_naive(),
        velocity_window: policy.fraud.velocity_window(now),
        velocity_limit: Some(policy.fraud.max_claims_per_hour),
    }
}

fn event_id(code: &Code) -> String {
    format!("code_accepted-{}", entry_ids::code_claim(code.canonical()))
}

/// What a refused claim must have left as it was.
struct Untouched {
    balance: Balance,
    entries: usize,
    outlet: Balance,
}

async fn observe<H: ClaimsHarness>(h: &H, c: &Claimant) -> Untouched {
    Untouched {
        balance: h.balance(&c.participant).await,
        entries: h.entries(&c.participant).await.len(),
        outlet: match &c.outlet {
            Some(o) => h.outlet_totals(o).await,
            None => Balance::default(),
        },
    }
}

async fn assert_untouched<H: ClaimsHarness>(h: &H, c: &Claimant, before: &Untouched, code: &Code) {
    let after = observe(h, c).await;
    assert_eq!(
        after.balance, before.balance,
        "a refused claim moved the balance"
    );
    assert_eq!(
        after.entries, before.entries,
        "a refused claim appended an entry"
    );
    assert_eq!(
        after.outlet, before.outlet,
        "a refused claim moved outlet totals"
    );
    assert!(
        !h.has_outbox_record(&event_id(code)).await,
        "a refused claim wrote an outbox record"
    );
}

async fn try_claim<H: ClaimsHarness>(h: &H, a: &ClaimAttempt) -> Result<(), Refusal> {
    h.store()
        .try_claim(a)
        .await
        .expect("no infrastructure error")
}

// --- The cases -------------------------------------------------------------------------

pub async fn the_batch_is_found_by_number_and_an_unknown_number_is_none<H: ClaimsHarness>(
    mut h: H,
) {
    let s = h.seed(40, "north", 1).await;
    let found = h.store().batch(s.batch.number).await.expect("batch");
    assert_eq!(found, Some(s.batch.clone()));
    let unknown = h.store().batch(s.batch.number + 100).await.expect("batch");
    assert_eq!(unknown, None);
}

pub async fn a_claim_commits_exactly_once<H: ClaimsHarness>(mut h: H) {
    let s = h.seed(40, "north", 1).await;
    let c = member(&h, "p-once", Some("o-once")).await;
    let now = now();
    let a = attempt(&c, &s.batch, s.codes[0], None, now);

    assert_eq!(try_claim(&h, &a).await, Ok(()));
    let entries = h.entries(&c.participant).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, a.receipt.entry_id);
    assert_eq!(entries[0].kind, EntryKind::CodeClaim);
    assert_eq!(entries[0].amount, Points(40));
    assert_eq!(entries[0].outlet, c.outlet);
    let balance = h.balance(&c.participant).await;
    assert_eq!(balance, a.receipt.balance);
    assert_eq!((balance.available, balance.version), (40, 1));
    assert_eq!(
        h.outlet_totals(c.outlet.as_ref().unwrap()).await.available,
        40
    );
    assert!(h.has_outbox_record(&event_id(&s.codes[0])).await);

    // The same attempt again (a retry whose first answer was lost) commits nothing more
    // and is told who holds the code, with the first receipt.
    let again = try_claim(&h, &a).await;
    assert_eq!(
        again,
        Err(Refusal::Code(CodeState::ClaimedBy {
            participant: c.participant.clone(),
            receipt: a.receipt.clone(),
        }))
    );
    // Even with the current balance, the code does not count twice.
    let current = attempt(&c, &s.batch, s.codes[0], Some(balance), now);
    assert!(matches!(
        try_claim(&h, &current).await,
        Err(Refusal::Code(CodeState::ClaimedBy { .. }))
    ));
    assert_eq!(h.entries(&c.participant).await.len(), 1);
    assert_eq!(h.balance(&c.participant).await, balance);
}

pub async fn a_second_claim_of_the_same_code_is_refused_with_who_claimed_it<H: ClaimsHarness>(
    mut h: H,
) {
    let s = h.seed(25, "north", 1).await;
    let owner = member(&h, "p-owner", Some("o-shared")).await;
    let thief = member(&h, "p-thief", Some("o-shared")).await;
    let now = now();
    let first = attempt(&owner, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &first).await, Ok(()));

    let before = observe(&h, &thief).await;
    let stolen = attempt(&thief, &s.batch, s.codes[0], None, now);
    assert_eq!(
        try_claim(&h, &stolen).await,
        Err(Refusal::Code(CodeState::ClaimedBy {
            participant: owner.participant.clone(),
            receipt: first.receipt.clone(),
        }))
    );
    let after = observe(&h, &thief).await;
    assert_eq!(after.balance, before.balance);
    assert_eq!(after.entries, 0);
    assert_eq!(after.outlet, before.outlet, "outlet totals moved");
    assert_eq!(h.balance(&owner.participant).await, first.receipt.balance);
}

pub async fn a_refused_claim_writes_nothing<H: ClaimsHarness>(mut h: H) {
    let s = h.seed(10, "north", 4).await;
    let c = member(&h, "p-refused", Some("o-refused")).await;
    let now = now();
    assert_eq!(
        try_claim(&h, &attempt(&c, &s.batch, s.codes[0], None, now)).await,
        Ok(())
    );
    let current = h.balance(&c.participant).await;
    let before = observe(&h, &c).await;

    // Stale balance.
    let stale = attempt(&c, &s.batch, s.codes[1], None, now);
    assert!(matches!(
        try_claim(&h, &stale).await,
        Err(Refusal::BalanceMoved(_))
    ));
    assert_untouched(&h, &c, &before, &s.codes[1]).await;

    // Velocity limit reached.
    let mut fast = attempt(&c, &s.batch, s.codes[1], Some(current), now);
    fast.velocity_limit = Some(1);
    assert_eq!(try_claim(&h, &fast).await, Err(Refusal::VelocityExceeded));
    assert_untouched(&h, &c, &before, &s.codes[1]).await;

    // Expired code.
    let late = now + Duration::days(31);
    let expired = attempt(&c, &s.batch, s.codes[2], Some(current), late);
    assert_eq!(
        try_claim(&h, &expired).await,
        Err(Refusal::Code(CodeState::Expired))
    );
    assert_untouched(&h, &c, &before, &s.codes[2]).await;

    // Locked.
    h.store()
        .lock(
            &Subject::Participant(c.participant.clone()),
            now.timestamp() + 60,
        )
        .await
        .expect("lock");
    let locked = attempt(&c, &s.batch, s.codes[3], Some(current), now);
    assert!(matches!(
        try_claim(&h, &locked).await,
        Err(Refusal::Locked { .. })
    ));
    assert_untouched(&h, &c, &before, &s.codes[3]).await;

    // Every refused code is still claimable once the reason is gone.
    let later = now + Duration::seconds(61);
    assert_eq!(
        try_claim(&h, &attempt(&c, &s.batch, s.codes[3], Some(current), later)).await,
        Ok(())
    );
}

pub async fn a_stale_balance_is_refused_with_the_current_balance<H: ClaimsHarness>(mut h: H) {
    let s = h.seed(30, "north", 3).await;
    let c = member(&h, "p-stale", None).await;
    let now = now();
    let first = attempt(&c, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &first).await, Ok(()));
    let current = first.receipt.balance;

    // Expecting no account at all.
    let none = attempt(&c, &s.batch, s.codes[1], None, now);
    assert_eq!(
        try_claim(&h, &none).await,
        Err(Refusal::BalanceMoved(current))
    );
    // Expecting an old version.
    let old = Balance {
        version: current.version + 7,
        ..current
    };
    let wrong = attempt(&c, &s.batch, s.codes[1], Some(old), now);
    assert_eq!(
        try_claim(&h, &wrong).await,
        Err(Refusal::BalanceMoved(current))
    );
    // A new account expected to exist is refused with the empty balance.
    let nobody = member(&h, "p-nobody", None).await;
    let phantom = attempt(&nobody, &s.batch, s.codes[2], Some(current), now);
    assert_eq!(
        try_claim(&h, &phantom).await,
        Err(Refusal::BalanceMoved(Balance::default()))
    );
    // With the balance the refusal reported, the claim commits.
    let retried = attempt(&c, &s.batch, s.codes[1], Some(current), now);
    assert_eq!(try_claim(&h, &retried).await, Ok(()));
    let after = h.balance(&c.participant).await;
    assert_eq!(after, retried.receipt.balance);
    assert_eq!((after.available, after.version), (60, 2));
}

pub async fn failures_count_up_per_subject_and_window<H: ClaimsHarness>(h: H) {
    let policy = ClaimPolicy::default();
    let now = now();
    let failure = |participant: &str, outlet: Option<&str>, at: DateTime<Utc>| FailedAttempt {
        claimant: claimant(participant, outlet),
        code_hint: "…ABCD".into(),
        outcome: AttemptOutcome::Unknown,
        now: at,
        window: policy.fraud.failure_window(at),
    };
    let store = h.store();
    for n in 1..=3 {
        let counts = store
            .record_failure(&failure("p-fails", Some("o-fails"), now))
            .await
            .expect("record");
        assert_eq!(counts.participant, n);
        assert_eq!(counts.outlet, Some(n));
    }
    // Another participant of the same outlet: their own count, the outlet's goes on.
    let counts = store
        .record_failure(&failure("p-other", Some("o-fails"), now))
        .await
        .expect("record");
    assert_eq!((counts.participant, counts.outlet), (1, Some(4)));
    // Without an outlet only the participant counts.
    let counts = store
        .record_failure(&failure("p-fails", None, now))
        .await
        .expect("record");
    assert_eq!((counts.participant, counts.outlet), (4, None));
    // The next window starts afresh.
    let next = now + Duration::seconds(policy.fraud.failure_window_secs);
    let counts = store
        .record_failure(&failure("p-fails", Some("o-fails"), next))
        .await
        .expect("record");
    assert_eq!((counts.participant, counts.outlet), (1, Some(1)));
    // Attempts that are not failures are recorded without counting.
    store
        .record_attempt(&FailedAttempt {
            outcome: AttemptOutcome::Replayed,
            ..failure("p-fails", Some("o-fails"), next)
        })
        .await
        .expect("record attempt");
    let counts = store
        .record_failure(&failure("p-fails", Some("o-fails"), next))
        .await
        .expect("record");
    assert_eq!((counts.participant, counts.outlet), (2, Some(2)));
}

pub async fn locks_refuse_until_they_expire<H: ClaimsHarness>(mut h: H) {
    let s = h.seed(15, "north", 2).await;
    let now = now();
    let until = now.timestamp() + 120;

    // A locked participant, even with a valid code.
    let p = member(&h, "p-locked", None).await;
    h.store()
        .lock(&Subject::Participant(p.participant.clone()), until)
        .await
        .expect("lock");
    let a = attempt(&p, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &a).await, Err(Refusal::Locked { until }));

    // A locked outlet locks everyone claiming through it.
    let o = member(&h, "p-free", Some("o-locked")).await;
    h.store()
        .lock(&Subject::Outlet(o.outlet.clone().unwrap()), until)
        .await
        .expect("lock");
    let b = attempt(&o, &s.batch, s.codes[1], None, now);
    assert_eq!(try_claim(&h, &b).await, Err(Refusal::Locked { until }));

    // A lock outranks the code: a locked participant is not told who holds a code.
    let stranger = member(&h, "p-stranger", None).await;
    assert_eq!(
        try_claim(&h, &attempt(&stranger, &s.batch, s.codes[0], None, now)).await,
        Ok(())
    );
    assert_eq!(try_claim(&h, &a).await, Err(Refusal::Locked { until }));

    // At `until` the lock has expired.
    let then = DateTime::from_timestamp(until, 0).expect("time");
    assert_eq!(
        try_claim(&h, &attempt(&o, &s.batch, s.codes[1], None, then)).await,
        Ok(())
    );
}

pub async fn the_velocity_limit_refuses_and_an_unlimited_attempt_is_flagged<H: ClaimsHarness>(
    mut h: H,
) {
    let s = h.seed(5, "north", 3).await;
    let c = member(&h, "p-fast", None).await;
    let now = now();
    let mut first = attempt(&c, &s.batch, s.codes[0], None, now);
    first.velocity_limit = Some(2);
    assert_eq!(try_claim(&h, &first).await, Ok(()));
    let mut second = attempt(&c, &s.batch, s.codes[1], Some(first.receipt.balance), now);
    second.velocity_limit = Some(2);
    assert_eq!(try_claim(&h, &second).await, Ok(()));
    let mut third = attempt(&c, &s.batch, s.codes[2], Some(second.receipt.balance), now);
    third.velocity_limit = Some(2);
    assert_eq!(try_claim(&h, &third).await, Err(Refusal::VelocityExceeded));

    // What the domain sends next: no limit, flagged, pending review.
    let balance = second.receipt.balance;
    let flagged = ClaimAttempt {
        kind: EntryKind::CodeClaimUnderReview,
        flags: vec![FlagReason::Velocity],
        velocity_limit: None,
        receipt: ClaimReceipt {
            status: ClaimStatus::PendingReview,
            balance: balance
                .apply(EntryKind::CodeClaimUnderReview, s.batch.points)
                .expect("credit"),
            ..third.receipt.clone()
        },
        ..third
    };
    assert_eq!(try_claim(&h, &flagged).await, Ok(()));
    let after = h.balance(&c.participant).await;
    assert_eq!((after.available, after.pending, after.version), (10, 5, 3));
    let kinds: Vec<_> = h
        .entries(&c.participant)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EntryKind::CodeClaimUnderReview)
            .count(),
        1
    );
}

pub async fn unknown_codes_are_missing_and_the_code_outranks_velocity_and_balance<
    H: ClaimsHarness,
>(
    mut h: H,
) {
    let s = h.seed(20, "north", 2).await;
    let c = member(&h, "p-unknown", None).await;
    let now = now();
    // A well-formed code of the batch that was never issued.
    let never = Code::chunk(&[7; 32], s.batch.number, 9, 1)[0];
    let mut a = attempt(&c, &s.batch, never, Some(Balance::default()), now);
    a.velocity_limit = Some(0);
    assert_eq!(
        try_claim(&h, &a).await,
        Err(Refusal::Code(CodeState::Missing))
    );
    // A window without a counter passes the velocity condition whatever the limit, even 0
    // (`attribute_not_exists(hits) OR hits < :limit`): here the balance decides.
    let mut b = attempt(&c, &s.batch, s.codes[0], Some(Balance::default()), now);
    b.velocity_limit = Some(0);
    assert_eq!(
        try_claim(&h, &b).await,
        Err(Refusal::BalanceMoved(Balance::default()))
    );
    assert_eq!(h.entries(&c.participant).await.len(), 0);
    // Once the window has a counter, an exhausted limit outranks a wrong balance.
    let first = attempt(&c, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &first).await, Ok(()));
    let mut again = attempt(&c, &s.batch, s.codes[1], Some(Balance::default()), now);
    again.velocity_limit = Some(1);
    assert_eq!(try_claim(&h, &again).await, Err(Refusal::VelocityExceeded));
    assert_eq!(h.entries(&c.participant).await.len(), 1);
}

pub async fn only_a_registered_active_participant_can_claim<H: ClaimsHarness>(mut h: H) {
    let s = h.seed(30, "north", 2).await;
    let now = now();

    // No profile: refused, nothing written.
    let stranger = claimant("p-unregistered", Some("o-standing"));
    let before = observe(&h, &stranger).await;
    let a = attempt(&stranger, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &a).await, Err(Refusal::ParticipantNotActive));
    assert_untouched(&h, &stranger, &before, &s.codes[0]).await;

    // Blocked: refused, and the standing outranks a code that is not claimable either.
    let c = member(&h, "p-blocked", Some("o-standing")).await;
    h.set_standing(&c.participant, "blocked").await;
    let before = observe(&h, &c).await;
    let a = attempt(&c, &s.batch, s.codes[1], None, now);
    assert_eq!(try_claim(&h, &a).await, Err(Refusal::ParticipantNotActive));
    let unknown = Code::chunk(&[77; 32], s.batch.number + 50, 0, 1)[0];
    let missing = attempt(&c, &s.batch, unknown, None, now);
    assert_eq!(
        try_claim(&h, &missing).await,
        Err(Refusal::ParticipantNotActive)
    );
    assert_untouched(&h, &c, &before, &s.codes[1]).await;

    // Unblocked (`status = active`): the same claim commits.
    h.set_standing(&c.participant, "active").await;
    assert_eq!(try_claim(&h, &a).await, Ok(()));
    assert_eq!(h.balance(&c.participant).await, a.receipt.balance);
}

pub async fn a_profile_other_than_assumed_refuses_the_claim_with_its_region_and_outlet<
    H: ClaimsHarness,
>(
    mut h: H,
) {
    let s = h.seed(30, "north", 1).await;
    let now = now();
    let c = member(&h, "p-facts", Some("o-facts")).await;
    let facts = c.facts();
    let stranger = pid("p-facts-unregistered");
    assert_eq!(
        h.store().profile(&c.participant).await,
        Ok(Some(facts.clone()))
    );
    assert_eq!(h.store().profile(&stranger).await, Ok(None));

    // Assumed in another region, at another outlet, at none, or in none: each is refused
    // with the profile's facts, and nothing is written.
    let before = observe(&h, &c).await;
    let wrong = [
        (Some("south"), Some("o-facts")),
        (Some("north"), Some("o-other")),
        (Some("north"), None),
        (None, Some("o-facts")),
        (None, None),
    ];
    for (region, outlet) in wrong {
        let assumed = Claimant {
            participant: c.participant.clone(),
            outlet: outlet.map(oid),
            region: region.map(|r| RegionId::parse(r).expect("region")),
        };
        let a = attempt(&assumed, &s.batch, s.codes[0], None, now);
        assert_eq!(
            try_claim(&h, &a).await,
            Err(Refusal::ProfileDiffers(facts.clone())),
            "assumed {region:?} {outlet:?}"
        );
    }
    assert_untouched(&h, &c, &before, &s.codes[0]).await;

    // A profile without an outlet is told apart from one with.
    let alone = claimant("p-facts-alone", None);
    h.register(&alone.participant, &alone.facts()).await;
    let assumed = Claimant {
        outlet: Some(oid("o-facts")),
        ..alone.clone()
    };
    let a = attempt(&assumed, &s.batch, s.codes[0], None, now);
    assert_eq!(
        try_claim(&h, &a).await,
        Err(Refusal::ProfileDiffers(alone.facts()))
    );

    // Blocked, a profile's facts are not handed out: the answer is the standing.
    h.set_standing(&c.participant, "blocked").await;
    assert_eq!(h.store().profile(&c.participant).await, Ok(None));
    let wrong = Claimant {
        region: None,
        ..c.clone()
    };
    let a = attempt(&wrong, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &a).await, Err(Refusal::ParticipantNotActive));

    // Active again and assumed right: it commits.
    h.set_standing(&c.participant, "active").await;
    let a = attempt(&c, &s.batch, s.codes[0], None, now);
    assert_eq!(try_claim(&h, &a).await, Ok(()));
}

/// One test per contract case for one adapter. `$harness` is an `async fn() -> impl
/// ClaimsHarness`, e.g. `loyalty_tests::contract::claims::memory`.
/// A code valid until a date is claimable through that day as the attempt dates it (the
/// claimant's local date), whatever the UTC date of the instant.
pub async fn a_code_is_valid_through_the_last_day_of_the_attempts_own_date<H: ClaimsHarness>(
    mut h: H,
) {
    let s = h.seed(10, "north", 2).await;
    let c = member(&h, "p-local-day", None).await;
    // An instant on the UTC day after the last valid day, dated on the last valid day (as
    // 19:30 in Bogota is, at 00:30 UTC).
    let late = s.batch.valid_until.and_hms_opt(0, 30, 0).unwrap().and_utc() + Duration::days(1);
    let mut expired = attempt(&c, &s.batch, s.codes[0], None, late);
    expired.today = s.batch.valid_until + Duration::days(1);
    assert_eq!(
        try_claim(&h, &expired).await,
        Err(Refusal::Code(CodeState::Expired))
    );
    let mut on_the_day = attempt(&c, &s.batch, s.codes[1], None, late);
    on_the_day.today = s.batch.valid_until;
    assert_eq!(try_claim(&h, &on_the_day).await, Ok(()));
}

#[macro_export]
macro_rules! claim_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(claims, $harness;
            the_batch_is_found_by_number_and_an_unknown_number_is_none,
            a_claim_commits_exactly_once,
            a_second_claim_of_the_same_code_is_refused_with_who_claimed_it,
            a_refused_claim_writes_nothing,
            a_stale_balance_is_refused_with_the_current_balance,
            failures_count_up_per_subject_and_window,
            locks_refuse_until_they_expire,
            the_velocity_limit_refuses_and_an_unlimited_attempt_is_flagged,
            unknown_codes_are_missing_and_the_code_outranks_velocity_and_balance,
            only_a_registered_active_participant_can_claim,
            a_code_is_valid_through_the_last_day_of_the_attempts_own_date,
            a_profile_other_than_assumed_refuses_the_claim_with_its_region_and_outlet,
        );
    };
}
