//! The contract of the [`ChallengeStore`] port, run against both adapters:
//! [`MemoryChallenges`] (`tests/tests/memory/`) and [`DynamoChallenges`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`ChallengesHarness`], most through the use case
//! ([`loyalty_domain::challenge::record_progress`]) as the functions call it;
//! [`challenge_store_contract!`](crate::challenge_store_contract) turns every case into a test
//! for one adapter. If the two adapters disagree, the memory one is wrong.

use chrono::{DateTime, SubsecRound, Utc};
use futures::future::join_all;
use loyalty_domain::challenge::{
    progress_of, record_progress, step_of, Challenge, ChallengeStore, Progress, ProgressSource,
    StepRefusal,
};
use loyalty_domain::earning::Slug;
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::{Entry, ProgrammeAccount, PROGRAMME_SHARDS};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::Points;
use loyalty_platform::memory::challenges::ChallengesBug;
use loyalty_platform::memory::MemoryChallenges;
use loyalty_platform::stores::challenges::{ChallengeTables, DynamoChallenges};
use loyalty_platform::stores::ledger::DynamoLedger;

use crate::TestStack;

/// One adapter of the port, with what the contract needs to seed and observe it, read
/// through the adapter's own storage, never through the port under test.
#[allow(async_fn_in_trait)]
pub trait ChallengesHarness {
    type Store: ChallengeStore;
    fn store(&self) -> &Self::Store;
    /// Available points of the participant's balance (0 without one).
    async fn available(&self, participant: &ParticipantId) -> i64;
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry>;
    async fn has_outbox_record(&self, event_id: &str) -> bool;
    /// Whether the source's marker (`ProgressSource::marker_key`) exists.
    async fn counted(&self, participant: &ParticipantId, marker_key: &str) -> bool;
    /// Gives a programme account a budget, as an admin top-up does.
    async fn fund_budget(&self, account: &ProgrammeAccount, amount: Points, funding_id: &str);
    async fn programme_balance(&self, account: &ProgrammeAccount) -> i64;
    /// Registers the participant, active, as registration writes their profile.
    async fn register(&self, participant: &ParticipantId);
    /// Sets a registered participant's standing, as the admin's block and unblock do.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryChallenges,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryChallenges::new(),
    }
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: ChallengesBug) -> MemoryHarness {
    MemoryHarness {
        store: MemoryChallenges::with_planted_bug(bug),
    }
}

impl ChallengesHarness for MemoryHarness {
    type Store = MemoryChallenges;

    fn store(&self) -> &MemoryChallenges {
        &self.store
    }

    async fn available(&self, participant: &ParticipantId) -> i64 {
        self.store
            .ledger()
            .balance(participant)
            .map(|b| b.available)
            .unwrap_or(0)
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.store.ledger().entries(participant)
    }

    async fn has_outbox_record(&self, event_id: &str) -> bool {
        self.store
            .ledger()
            .outbox()
            .iter()
            .any(|e| e.event_id == event_id)
    }

    async fn counted(&self, participant: &ParticipantId, marker_key: &str) -> bool {
        self.store.counted(participant, marker_key)
    }

    async fn fund_budget(&self, account: &ProgrammeAccount, amount: Points, funding_id: &str) {
        self.store.ledger().fund_budget(account, amount, funding_id);
    }

    async fn programme_balance(&self, account: &ProgrammeAccount) -> i64 {
        self.store.ledger().programme_balance(account).balance
    }

    async fn register(&self, participant: &ParticipantId) {
        self.store
            .ledger()
            .register(participant, ProfileFacts::default());
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        self.store
            .ledger()
            .set_active(participant, status == "active");
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: DynamoChallenges,
    ledger: DynamoLedger,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("AccrualFunction").await;
    let tables = ChallengeTables {
        programme: stack.table_name("ProgrammeTable").to_string(),
        activity: stack.table_name("ActivityTable").to_string(),
        ledger: stack.table_name("LedgerTable").to_string(),
        outbox: stack.table_name("OutboxTable").to_string(),
        participants: stack.table_name("ParticipantsTable").to_string(),
    };
    DynamoHarness {
        store: DynamoChallenges::new(stack.dynamodb(), tables.clone()),
        ledger: DynamoLedger::new(stack.dynamodb(), tables.ledger),
        stack,
    }
}

impl DynamoHarness {
    async fn exists(&self, table: &str, pk: String, sk: &str) -> bool {
        self.stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name(table))
            .set_key(Some(loyalty_platform::dynamo::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .expect("read item")
            .item
            .is_some()
    }
}

impl ChallengesHarness for DynamoHarness {
    type Store = DynamoChallenges;

    fn store(&self) -> &DynamoChallenges {
        &self.store
    }

    async fn available(&self, participant: &ParticipantId) -> i64 {
        self.ledger
            .balance(participant)
            .await
            .expect("balance")
            .available as i64
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.ledger.all_entries(participant).await.expect("entries")
    }

    async fn has_outbox_record(&self, event_id: &str) -> bool {
        self.exists("OutboxTable", format!("OUTBOX#{event_id}"), "OUTBOX")
            .await
    }

    async fn counted(&self, participant: &ParticipantId, marker_key: &str) -> bool {
        self.exists(
            "ActivityTable",
            format!("PROGRESS#{participant}"),
            marker_key,
        )
        .await
    }

    async fn fund_budget(&self, account: &ProgrammeAccount, amount: Points, funding_id: &str) {
        self.ledger
            .fund_budget(account, amount, funding_id, now())
            .await
            .expect("fund budget");
    }

    async fn programme_balance(&self, account: &ProgrammeAccount) -> i64 {
        self.ledger
            .programme_balance(account)
            .await
            .expect("programme balance")
            .balance
    }

    async fn register(&self, participant: &ParticipantId) {
        crate::contract::claims::register_profile(
            &self.stack,
            participant,
            &ProfileFacts::default(),
        )
        .await;
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        crate::contract::claims::set_profile_status(&self.stack, participant, status).await;
    }
}

// --- Helpers ---------------------------------------------------------------------------

/// Now, in whole microseconds (what a stored timestamp keeps).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).expect("participant id")
}

/// "Buy `target` Acme units in November", bonus 500.
fn acme(id: &str, target: u64) -> Challenge {
    Challenge {
        id: Slug::parse(id).unwrap(),
        title: "Buy Acme in November".into(),
        supplier: Slug::parse("acme").unwrap(),
        target_units: target,
        bonus: Points(500),
        starts_on: "2026-11-01".parse().unwrap(),
        ends_on: "2026-11-30".parse().unwrap(),
    }
}

fn source(participant: &str, reference: &str, units: u64) -> ProgressSource {
    ProgressSource {
        participant: pid(participant),
        supplier: Slug::parse("acme").unwrap(),
        units,
        date: "2026-11-20".parse().unwrap(),
        reference: reference.into(),
        at: now(),
    }
}

/// Registers the participants, active: only they count progress.
async fn registered<H: ChallengesHarness>(h: &H, participants: &[&str]) {
    for p in participants {
        h.register(&pid(p)).await;
    }
}

async fn put<H: ChallengesHarness>(h: &H, c: &Challenge) {
    h.store()
        .put_challenge(c, now())
        .await
        .expect("put challenge");
}

async fn progress<H: ChallengesHarness>(
    h: &H,
    participant: &str,
    c: &Challenge,
) -> Option<Progress> {
    h.store()
        .progress(&pid(participant), &c.id)
        .await
        .expect("progress")
}

fn completed_event(c: &Challenge, participant: &str) -> String {
    format!(
        "challenge_completed-{}",
        c.bonus_entry_id(&pid(participant))
    )
}

// --- The cases -------------------------------------------------------------------------

pub async fn challenges_are_listed_by_id_and_a_put_replaces_one(h: impl ChallengesHarness) {
    assert!(h.store().challenges().await.unwrap().is_empty());
    let (b, a) = (acme("b-nov", 10), acme("a-nov", 10));
    put(&h, &b).await;
    put(&h, &a).await;
    let mut changed = b.clone();
    changed.target_units = 20;
    put(&h, &changed).await;
    assert_eq!(h.store().challenges().await.unwrap(), vec![a, changed]);
}

pub async fn a_source_counts_once_and_recorded_again_changes_nothing(h: impl ChallengesHarness) {
    registered(&h, &["p-1"]).await;
    let c = acme("acme-nov", 10);
    put(&h, &c).await;
    let s = source("p-1", "line-1", 4);
    let first = record_progress(h.store(), &s).await.unwrap();
    assert_eq!(first.outcomes.len(), 1);
    assert!(!first.outcomes[0].already_counted);
    assert!(h.counted(&s.participant, &s.marker_key(&c.id)).await);
    let again = record_progress(h.store(), &s).await.unwrap();
    assert!(again.outcomes[0].already_counted);
    assert_eq!(again.outcomes[0].progress.units, 4);
    assert_eq!(
        progress(&h, "p-1", &c).await,
        Some(Progress {
            units: 4,
            completed: false
        })
    );
}

pub async fn concurrent_sources_never_lose_units(h: impl ChallengesHarness) {
    registered(&h, &["p-1"]).await;
    let c = acme("acme-nov", 1_000);
    put(&h, &c).await;
    let sources: Vec<_> = (0..8)
        .map(|i| source("p-1", &format!("line-{i}"), 3))
        .collect();
    let results = join_all(sources.iter().map(|s| record_progress(h.store(), s))).await;
    for r in results {
        assert!(!r.expect("recorded").outcomes[0].already_counted);
    }
    assert_eq!(
        progress(&h, "p-1", &c).await,
        Some(Progress {
            units: 24,
            completed: false
        })
    );
}

pub async fn the_bonus_is_granted_exactly_once_with_its_event_from_the_challenges_account(
    h: impl ChallengesHarness,
) {
    registered(&h, &["p-1"]).await;
    let c = acme("acme-nov", 10);
    put(&h, &c).await;
    let sources: Vec<_> = (0..8)
        .map(|i| source("p-1", &format!("order-{i}"), 2))
        .collect();
    let results = join_all(sources.iter().map(|s| record_progress(h.store(), s))).await;
    let completed: usize = results
        .iter()
        .map(|r| r.as_ref().expect("recorded").completed().count())
        .sum();
    assert_eq!(completed, 1, "exactly one source crosses the target");
    assert_eq!(
        progress(&h, "p-1", &c).await,
        Some(Progress {
            units: 16,
            completed: true
        })
    );
    let entries = h.entries(&pid("p-1")).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, c.bonus_entry_id(&pid("p-1")));
    assert_eq!(h.available(&pid("p-1")).await, 500);
    assert!(h.has_outbox_record(&completed_event(&c, "p-1")).await);
    assert_eq!(
        h.programme_balance(&ProgrammeAccount::Challenge(c.id.clone()))
            .await,
        -500
    );
}

pub async fn a_bonus_out_of_budget_writes_nothing_and_counts_after_a_top_up_the_whole_budget_covers(
    h: impl ChallengesHarness,
) {
    registered(&h, &["p-1"]).await;
    let c = acme("acme-nov", 10);
    put(&h, &c).await;
    let account = ProgrammeAccount::Challenge(c.id.clone());
    // One point per shard: no shard covers the bonus of 500.
    h.fund_budget(&account, Points(PROGRAMME_SHARDS as u64), "funding-1")
        .await;
    let s = source("p-1", "order-1", 10);
    let recorded = record_progress(h.store(), &s).await.unwrap();
    assert_eq!(recorded.out_of_budget, vec![c.id.clone()]);
    assert!(recorded.outcomes.is_empty());
    assert_eq!(progress(&h, "p-1", &c).await, None);
    assert!(!h.counted(&s.participant, &s.marker_key(&c.id)).await);
    assert!(h.entries(&pid("p-1")).await.is_empty());
    assert!(!h.has_outbox_record(&completed_event(&c, "p-1")).await);
    assert_eq!(h.programme_balance(&account).await, PROGRAMME_SHARDS as i64);

    // A top-up of 500: the budget covers the bonus, though no shard alone holds it (about
    // 32 each), so the store gathers the bonus's shard from the others.
    h.fund_budget(&account, Points(500), "funding-2").await;
    let recorded = record_progress(h.store(), &s).await.unwrap();
    assert_eq!(recorded.completed().count(), 1);
    assert_eq!(h.available(&pid("p-1")).await, 500);
    assert_eq!(h.programme_balance(&account).await, PROGRAMME_SHARDS as i64);
}

pub async fn a_counted_source_outranks_moved_progress_and_a_stale_step_writes_nothing(
    h: impl ChallengesHarness,
) {
    registered(&h, &["p-1"]).await;
    let c = acme("acme-nov", 10);
    put(&h, &c).await;
    let s = source("p-1", "line-1", 4);
    record_progress(h.store(), &s).await.unwrap();
    // The same source again, computed from no progress: both conditions fail.
    let replay = step_of(&c, &s, None);
    assert_eq!(
        h.store().commit_step(&replay).await.unwrap(),
        Err(StepRefusal::SourceCounted)
    );
    // Another source computed from a stale read (nothing) that would complete the challenge.
    let stale = step_of(&c, &source("p-1", "line-2", 10), None);
    assert!(stale.bonus.is_some());
    assert_eq!(
        h.store().commit_step(&stale).await.unwrap(),
        Err(StepRefusal::ProgressMoved)
    );
    assert!(h.entries(&pid("p-1")).await.is_empty());
    assert_eq!(
        progress(&h, "p-1", &c).await,
        Some(Progress {
            units: 4,
            completed: false
        })
    );
}

pub async fn progress_is_listed_per_participant_with_zero_where_there_is_none(
    h: impl ChallengesHarness,
) {
    registered(&h, &["p-1", "p-2"]).await;
    let (nov, dec) = (acme("acme-nov", 10), {
        let mut d = acme("acme-dec", 10);
        d.starts_on = "2026-12-01".parse().unwrap();
        d.ends_on = "2026-12-31".parse().unwrap();
        d
    });
    put(&h, &nov).await;
    put(&h, &dec).await;
    record_progress(h.store(), &source("p-1", "line-1", 3))
        .await
        .unwrap();
    record_progress(h.store(), &source("p-2", "line-2", 5))
        .await
        .unwrap();
    let listed = progress_of(h.store(), &pid("p-1")).await.unwrap();
    let units: Vec<_> = listed
        .iter()
        .map(|(c, p)| (c.id.as_str(), p.units))
        .collect();
    assert_eq!(units, vec![("acme-dec", 0), ("acme-nov", 3)]);
    assert_eq!(
        h.store().progresses(&pid("p-2")).await.unwrap(),
        vec![(
            nov.id.clone(),
            Progress {
                units: 5,
                completed: false
            }
        )]
    );
}

pub async fn a_blocked_participant_counts_nothing_and_after_an_unblock_reaching_the_target_pays(
    h: impl ChallengesHarness,
) {
    let c = acme("acme-nov", 10);
    put(&h, &c).await;
    let p = pid("p-1");
    // Unregistered: nothing counts.
    let stranger = source("p-1", "line-0", 10);
    assert!(
        record_progress(h.store(), &stranger)
            .await
            .unwrap()
            .not_active
    );
    assert_eq!(progress(&h, "p-1", &c).await, None);
    registered(&h, &["p-1"]).await;
    record_progress(h.store(), &source("p-1", "line-1", 6))
        .await
        .unwrap();
    h.set_standing(&p, "blocked").await;
    // Blocked: the source that would complete the challenge writes nothing, bonus included.
    let blocked = source("p-1", "line-2", 4);
    let recorded = record_progress(h.store(), &blocked).await.unwrap();
    assert!(recorded.not_active);
    assert!(recorded.outcomes.is_empty());
    assert!(!h.counted(&p, &blocked.marker_key(&c.id)).await);
    assert!(h.entries(&p).await.is_empty());
    assert!(!h.has_outbox_record(&completed_event(&c, "p-1")).await);
    assert_eq!(
        progress(&h, "p-1", &c).await,
        Some(Progress {
            units: 6,
            completed: false
        })
    );
    // A stale step of a blocked participant is refused for the standing, not the progress.
    assert_eq!(
        h.store()
            .commit_step(&step_of(&c, &source("p-1", "line-3", 4), None))
            .await
            .unwrap(),
        Err(StepRefusal::ParticipantNotActive)
    );
    // Unblocked: the progress kept before the block counts on, and the refused source,
    // recorded again, completes the challenge with its bonus.
    h.set_standing(&p, "active").await;
    let recorded = record_progress(h.store(), &blocked).await.unwrap();
    assert!(!recorded.not_active);
    assert_eq!(recorded.completed().count(), 1);
    assert_eq!(h.available(&p).await, 500);
    assert!(h.has_outbox_record(&completed_event(&c, "p-1")).await);
}

#[macro_export]
macro_rules! challenge_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(challenges, $harness;
            challenges_are_listed_by_id_and_a_put_replaces_one,
            a_source_counts_once_and_recorded_again_changes_nothing,
            concurrent_sources_never_lose_units,
            the_bonus_is_granted_exactly_once_with_its_event_from_the_challenges_account,
            a_bonus_out_of_budget_writes_nothing_and_counts_after_a_top_up_the_whole_budget_covers,
            a_counted_source_outranks_moved_progress_and_a_stale_step_writes_nothing,
            progress_is_listed_per_participant_with_zero_where_there_is_none,
            a_blocked_participant_counts_nothing_and_after_an_unblock_reaching_the_target_pays,
        );
    };
}
