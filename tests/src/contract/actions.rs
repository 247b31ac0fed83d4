//! The contract of the [`ActionStore`] port, run against both adapters: [`MemoryActions`]
//! (`tests/tests/memory/`) and [`DynamoActions`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over an
//! [`ActionsHarness`]; [`action_store_contract!`](crate::action_store_contract) turns every
//! case into a test for one adapter. If the two adapters disagree, the memory one is wrong.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use loyalty_domain::action::{
    ActionAttempt, ActionReceipt, ActionRefusal, ActionStore, BalanceExpectation, KeyedRequest,
    TierBasis,
};
use loyalty_domain::earning::{
    entry_ids, month_key, Action, LimitScope, Period, PeriodLimit, Rule, RuleId, Tier, Tiers,
    Trigger,
};
use loyalty_domain::ids::{IdempotencyKey, OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind, ProgrammeAccount};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::review::{decide, Decision, ReviewError, ReviewId, ReviewStore};
use loyalty_domain::zone::Zone;
use loyalty_domain::Points;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::memory::MemoryActions;
use loyalty_platform::stores::actions::{counter_key, DynamoActions};
use loyalty_platform::stores::earning::{EarningStore, EarningTables};
use loyalty_platform::stores::ledger::DynamoLedger;

use crate::TestStack;

/// One adapter of the port, with what the contract needs to seed and observe it, read
/// through the adapter's own storage, never through the port under test.
#[allow(async_fn_in_trait)]
pub trait ActionsHarness {
    type Store: ActionStore;
    fn store(&self) -> &Self::Store;
    /// Where credits held over budget are decided: the same storage's review port.
    type Reviews: ReviewStore;
    fn reviews(&self) -> &Self::Reviews;
    async fn put_rule(&self, rule: &Rule);
    async fn put_tiers(&self, tiers: &Tiers);
    /// The stored balance; the default (version 0) for an account without entries.
    async fn balance(&self, participant: &ParticipantId) -> Balance;
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry>;
    async fn outlet_totals(&self, outlet: &OutletId) -> Balance;
    async fn has_outbox_record(&self, event_id: &str) -> bool;
    /// A limit counter's value (0 when never written).
    async fn used(&self, participant: &ParticipantId, rule: &Rule, counter: &str) -> u64;
    /// Gives a programme account a budget, as an admin top-up does.
    async fn fund_budget(&self, account: &ProgrammeAccount, amount: Points, funding_id: &str);
    /// A programme account's balance (the sum of its shards).
    async fn programme_balance(&self, account: &ProgrammeAccount) -> i64;
    /// The sum over every member account plus every programme account: always zero.
    async fn double_entry_sum(&self) -> i64;
    /// Registers the participant (their profile, active).
    async fn register(&self, participant: &ParticipantId, facts: &ProfileFacts);
    /// Sets a registered participant's standing, as the admin's block and unblock do.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryActions,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryActions::new(),
    }
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: loyalty_platform::memory::actions::ActionsBug) -> MemoryHarness {
    MemoryHarness {
        store: MemoryActions::with_planted_bug(bug),
    }
}

impl ActionsHarness for MemoryHarness {
    type Store = MemoryActions;

    fn store(&self) -> &MemoryActions {
        &self.store
    }

    type Reviews = MemoryActions;

    fn reviews(&self) -> &MemoryActions {
        &self.store
    }

    async fn put_rule(&self, rule: &Rule) {
        self.store.put_rule(rule.clone());
    }

    async fn put_tiers(&self, tiers: &Tiers) {
        self.store.put_tiers(tiers.clone());
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

    async fn used(&self, participant: &ParticipantId, rule: &Rule, counter: &str) -> u64 {
        self.store.used(participant, rule.id.as_str(), counter)
    }

    async fn fund_budget(&self, account: &ProgrammeAccount, amount: Points, funding_id: &str) {
        self.store.fund_budget(account, amount, funding_id);
    }

    async fn programme_balance(&self, account: &ProgrammeAccount) -> i64 {
        self.store.programme_balance(account).balance
    }

    async fn double_entry_sum(&self) -> i64 {
        self.store.member_points() + self.store.programme_points()
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
    store: DynamoActions,
    earning: EarningStore,
    ledger: DynamoLedger,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("AccrualFunction").await;
    let tables = EarningTables {
        programme: stack.table_name("ProgrammeTable").to_string(),
        activity: stack.table_name("ActivityTable").to_string(),
        ledger: stack.table_name("LedgerTable").to_string(),
        outbox: stack.table_name("OutboxTable").to_string(),
        participants: stack.table_name("ParticipantsTable").to_string(),
    };
    DynamoHarness {
        store: DynamoActions::new(stack.dynamodb(), tables.clone()),
        earning: EarningStore::new(stack.dynamodb(), tables.clone()),
        ledger: DynamoLedger::new(stack.dynamodb(), tables.ledger)
            .with_participants(tables.participants),
        stack,
    }
}

impl ActionsHarness for DynamoHarness {
    type Store = DynamoActions;

    fn store(&self) -> &DynamoActions {
        &self.store
    }

    type Reviews = DynamoLedger;

    fn reviews(&self) -> &DynamoLedger {
        &self.ledger
    }

    async fn put_rule(&self, rule: &Rule) {
        self.earning.put_rule(rule, now()).await.expect("put rule");
    }

    async fn put_tiers(&self, tiers: &Tiers) {
        self.earning
            .put_tiers(tiers, now())
            .await
            .expect("put tiers");
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

    async fn used(&self, participant: &ParticipantId, rule: &Rule, counter: &str) -> u64 {
        let counter = rule
            .counters(now(), Zone::UTC)
            .into_iter()
            .find(|c| c.key == counter)
            .expect("a counter of the rule");
        let out = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("ActivityTable"))
            .set_key(Some(counter_key(participant, &rule.id, &counter)))
            .consistent_read(true)
            .send()
            .await
            .expect("read counter");
        out.item
            .map(|i| i.opt_number("used").expect("used").unwrap_or(0))
            .unwrap_or(0)
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

    async fn double_entry_sum(&self) -> i64 {
        self.ledger.accounts_sum().await.expect("accounts")
    }

    async fn register(&self, participant: &ParticipantId, facts: &ProfileFacts) {
        crate::contract::claims::register_profile(&self.stack, participant, facts).await;
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

/// A survey rule valid since yesterday, with the given limits.
pub fn rule(id: &str, points: u64, per_participant: Option<u32>, per_month: Option<u32>) -> Rule {
    Rule {
        id: RuleId::parse(id).expect("rule id"),
        trigger: Trigger::Action(Action::Survey),
        points: Points(points),
        per_participant,
        per_period: per_month.map(|max| PeriodLimit {
            max,
            period: Period::Month,
        }),
        valid_from: (now() - Duration::days(1)).into(),
        valid_until: None,
        over_budget: loyalty_domain::earning::OverBudget::Refuse,
        reported_by: loyalty_domain::earning::Reporter::Participant,
    }
}

fn month_counter(at: DateTime<Utc>) -> String {
    Period::Month.window(at, Zone::UTC).0
}

/// The write `report_action` would send for `participant` reporting `rule` under `key`.
pub fn attempt(
    participant: &str,
    outlet: Option<&str>,
    rule: &Rule,
    key: &str,
    expected_balance: BalanceExpectation,
    at: DateTime<Utc>,
) -> ActionAttempt {
    let participant = pid(participant);
    let key = IdempotencyKey::parse(key).expect("key");
    let entry_id = entry_ids::action(&participant, key.as_str());
    ActionAttempt {
        key: KeyedRequest {
            scope: participant.as_str().to_string(),
            key,
            fingerprint: format!("fingerprint-of-{}", rule.id),
        },
        rule: rule.id.clone(),
        counters: rule.counters(at, Zone::UTC),
        entry: Entry {
            id: entry_id.clone(),
            participant,
            outlet: outlet.map(|o| OutletId::parse(o).expect("outlet")),
            kind: EntryKind::Accrual,
            amount: rule.points,
            source: format!("rule {}", rule.id),
            created_at: at,
            expires_on: None,
        },
        expected_balance,
        receipt: ActionReceipt {
            entry_id,
            rule_id: rule.id.clone(),
            action: Action::Survey,
            points: rule.points,
            base_points: rule.points,
            tier: "base".into(),
            multiplier_percent: 100,
            held: false,
        },
        profile: ProfileFacts {
            region: RegionId::parse("north").ok(),
            outlet: outlet.map(|o| OutletId::parse(o).expect("outlet")),
        },
        now: at,
    }
}

/// The attempt of a registered, active participant.
async fn accrue<H: ActionsHarness>(h: &H, a: &ActionAttempt) -> Result<(), ActionRefusal> {
    h.register(&a.entry.participant, &a.profile).await;
    h.store()
        .try_accrue(a)
        .await
        .expect("no infrastructure error")
}

// --- The cases -------------------------------------------------------------------------

pub async fn the_programme_is_every_rule_and_the_tiers_or_one_base_tier(h: impl ActionsHarness) {
    let p = h.store().programme().await.unwrap();
    assert!(p.rules.is_empty());
    assert_eq!(p.tiers, Tiers::default());
    let survey = rule("survey", 40, Some(3), None);
    h.put_rule(&survey).await;
    h.put_rule(&rule("audit", 10, None, None)).await;
    let tiers = Tiers::parse(vec![
        Tier {
            name: "bronze".into(),
            threshold: 0,
            multiplier_percent: 100,
        },
        Tier {
            name: "silver".into(),
            threshold: 100,
            multiplier_percent: 150,
        },
    ])
    .unwrap();
    h.put_tiers(&tiers).await;
    let p = h.store().programme().await.unwrap();
    assert_eq!(p.rules.len(), 2);
    assert_eq!(p.rule(&survey.id), Some(&survey));
    assert_eq!(p.tiers, tiers);
}

pub async fn an_action_commits_every_item_once_and_its_key_then_answers_the_first_answer(
    h: impl ActionsHarness,
) {
    let at = now();
    let r = rule("survey", 40, Some(3), Some(2));
    let a = attempt(
        "p-1",
        Some("o-1"),
        &r,
        "key-0000001",
        BalanceExpectation::Absent,
        at,
    );
    assert_eq!(accrue(&h, &a).await, Ok(()));
    let p = pid("p-1");
    let balance = h.balance(&p).await;
    assert_eq!((balance.available, balance.version), (40, 1));
    assert_eq!(h.entries(&p).await, vec![a.entry.clone()]);
    assert_eq!(
        h.outlet_totals(&OutletId::parse("o-1").unwrap())
            .await
            .available,
        40
    );
    assert!(
        h.has_outbox_record(&format!("points_credited-{}", a.entry.id))
            .await
    );
    assert_eq!(h.used(&p, &r, "EVER").await, 1);
    assert_eq!(h.used(&p, &r, &month_counter(at)).await, 1);

    // The same key again: refused with the stored answer, and nothing moves.
    let again = attempt(
        "p-1",
        Some("o-1"),
        &r,
        "key-0000001",
        BalanceExpectation::Any,
        at,
    );
    match accrue(&h, &again).await {
        Err(ActionRefusal::KeyTaken(stored)) => {
            assert_eq!(stored.fingerprint, a.key.fingerprint);
            assert_eq!(stored.status, 201);
            let body: serde_json::Value = serde_json::from_str(&stored.body).unwrap();
            assert_eq!(body, a.receipt.body());
        }
        other => panic!("expected the stored answer, got {other:?}"),
    }
    assert_eq!(h.balance(&p).await.version, 1);
    assert_eq!(h.used(&p, &r, "EVER").await, 1);
}

pub async fn a_used_up_limit_is_refused_with_its_count_and_writes_nothing(h: impl ActionsHarness) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, Some(5), Some(1));
    let first = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &first).await, Ok(()));
    let second = attempt("p-1", None, &r, "key-0000002", BalanceExpectation::Any, at);
    assert_eq!(
        accrue(&h, &second).await,
        Err(ActionRefusal::Limit {
            scope: LimitScope::Period,
            used: 1
        })
    );
    assert_eq!(h.entries(&p).await.len(), 1);
    assert_eq!(h.balance(&p).await.available, 40);
    assert_eq!(h.used(&p, &r, "EVER").await, 1, "all or nothing");
    assert!(
        !h.has_outbox_record(&format!("points_credited-{}", second.entry.id))
            .await
    );
    // The refused key holds nothing: it can still be answered.
    assert_eq!(
        h.store()
            .remember(&second.key, 409, "{}".into(), at)
            .await
            .unwrap(),
        Ok(())
    );
}

pub async fn the_participant_limit_outranks_the_period_limit(h: impl ActionsHarness) {
    let at = now();
    let r = rule("survey", 40, Some(1), Some(1));
    let first = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &first).await, Ok(()));
    let second = attempt("p-1", None, &r, "key-0000002", BalanceExpectation::Any, at);
    assert_eq!(
        accrue(&h, &second).await,
        Err(ActionRefusal::Limit {
            scope: LimitScope::Participant,
            used: 1
        })
    );
}

pub async fn the_key_outranks_a_used_up_limit(h: impl ActionsHarness) {
    let at = now();
    let r = rule("survey", 40, Some(1), None);
    let first = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &first).await, Ok(()));
    assert!(matches!(
        accrue(&h, &first).await,
        Err(ActionRefusal::KeyTaken(_))
    ));
}

pub async fn a_stale_balance_is_refused_with_the_current_tier_basis(h: impl ActionsHarness) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let first = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &first).await, Ok(()));
    let current = TierBasis {
        version: 1,
        months: [(month_key(at), 40)].into(),
    };
    for stale in [BalanceExpectation::Absent, BalanceExpectation::Version(7)] {
        let a = attempt("p-1", None, &r, "key-0000002", stale, at);
        assert_eq!(
            accrue(&h, &a).await,
            Err(ActionRefusal::BalanceMoved(current.clone()))
        );
    }
    assert_eq!(h.balance(&p).await.version, 1, "nothing written");
    // An expected version on an account without entries: its basis is version 0.
    let other = attempt(
        "p-2",
        None,
        &r,
        "key-0000003",
        BalanceExpectation::Version(3),
        at,
    );
    assert_eq!(
        accrue(&h, &other).await,
        Err(ActionRefusal::BalanceMoved(TierBasis::default()))
    );
    let current_write = attempt(
        "p-1",
        None,
        &r,
        "key-0000002",
        BalanceExpectation::Version(1),
        at,
    );
    assert_eq!(accrue(&h, &current_write).await, Ok(()));
    assert_eq!(h.balance(&p).await.version, 2);
}

pub async fn an_expired_key_whose_entry_exists_is_refused_as_the_entry(h: impl ActionsHarness) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let first = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &first).await, Ok(()));
    let later = at + Duration::hours(25);
    let again = attempt(
        "p-1",
        None,
        &r,
        "key-0000001",
        BalanceExpectation::Any,
        later,
    );
    assert_eq!(accrue(&h, &again).await, Err(ActionRefusal::EntryExists));
    assert_eq!(h.entries(&p).await.len(), 1);
    assert_eq!(h.balance(&p).await.version, 1);
}

pub async fn a_remembered_refusal_holds_the_key(h: impl ActionsHarness) {
    let at = now();
    let r = rule("survey", 40, None, None);
    let a = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    let body = r#"{"code":"period_limit_reached"}"#.to_string();
    assert_eq!(
        h.store()
            .remember(&a.key, 409, body.clone(), at)
            .await
            .unwrap(),
        Ok(())
    );
    let held = h
        .store()
        .remember(&a.key, 409, "{}".into(), at)
        .await
        .unwrap()
        .expect_err("the key is held");
    assert_eq!(
        (held.status, held.body.as_str(), held.fingerprint.as_str()),
        (409, body.as_str(), a.key.fingerprint.as_str())
    );
    assert_eq!(
        held.content_type.as_deref(),
        Some("application/problem+json")
    );
    match accrue(&h, &a).await {
        Err(ActionRefusal::KeyTaken(stored)) => assert_eq!(stored, held),
        other => panic!("expected the stored refusal, got {other:?}"),
    }
    assert!(h.entries(&pid("p-1")).await.is_empty());
}

/// Double entry: every member account plus every programme account sums to zero.
async fn assert_double_entry<H: ActionsHarness>(h: &H) {
    assert_eq!(h.double_entry_sum().await, 0, "member + programme accounts");
}

pub async fn a_credit_over_its_rules_budget_is_refused_and_writes_nothing(h: impl ActionsHarness) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let account = ProgrammeAccount::Rule(r.id.clone());
    // 32 points: the whole budget cannot cover 40.
    h.fund_budget(&account, Points(32), "funding-1").await;
    assert_eq!(h.programme_balance(&account).await, 32);
    assert_double_entry(&h).await;
    let a = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &a).await, Err(ActionRefusal::BudgetExhausted));
    assert!(h.entries(&p).await.is_empty());
    assert_eq!(h.balance(&p).await, Balance::default());
    assert!(
        !h.has_outbox_record(&format!("points_credited-{}", a.entry.id))
            .await
    );
    assert_eq!(h.programme_balance(&account).await, 32, "all or nothing");
    assert_double_entry(&h).await;
}

pub async fn a_credit_within_its_rules_whole_budget_moves_the_account_by_its_points(
    h: impl ActionsHarness,
) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let account = ProgrammeAccount::Rule(r.id.clone());
    // 48 points, 3 on each of the 16 shards: no shard alone covers 40, the budget does, so
    // the store gathers the credit's shard from the others.
    h.fund_budget(&account, Points(48), "funding-1").await;
    let a = attempt("p-1", None, &r, "key-0000001", BalanceExpectation::Any, at);
    assert_eq!(accrue(&h, &a).await, Ok(()));
    assert_eq!(h.balance(&p).await.available, 40);
    assert_eq!(h.programme_balance(&account).await, 48 - 40);
    assert_double_entry(&h).await;
    // Without a budget, a rule's account issues points (goes negative).
    let free = rule("free", 7, None, None);
    let b = attempt(
        "p-1",
        None,
        &free,
        "key-0000002",
        BalanceExpectation::Any,
        at,
    );
    assert_eq!(accrue(&h, &b).await, Ok(()));
    assert_eq!(
        h.programme_balance(&ProgrammeAccount::Rule(free.id.clone()))
            .await,
        -7
    );
    assert_double_entry(&h).await;
}

/// `attempt`, held for review: what `report_action` sends again after the rule's budget
/// refused it, for a rule with `over_budget: hold`.
fn held(mut a: ActionAttempt) -> ActionAttempt {
    a.entry.kind = EntryKind::AccrualUnderReview;
    a.receipt.held = true;
    a
}

/// The ids of the entries awaiting review.
async fn queued<H: ActionsHarness>(h: &H) -> Vec<(ReviewId, Vec<String>)> {
    let page = h
        .reviews()
        .pending(None, 50)
        .await
        .expect("pending reviews");
    page.items.into_iter().map(|p| (p.id, p.reasons)).collect()
}

pub async fn a_held_credit_is_pending_and_queued_and_its_approval_pays_only_within_the_budget(
    h: impl ActionsHarness,
) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let account = ProgrammeAccount::Rule(r.id.clone());
    // 32 points: the whole budget cannot cover 40.
    h.fund_budget(&account, Points(32), "funding-1").await;
    let a = held(attempt(
        "p-1",
        Some("o-1"),
        &r,
        "key-0000001",
        BalanceExpectation::Any,
        at,
    ));
    assert_eq!(
        accrue(&h, &a).await,
        Ok(()),
        "reviews fronts it, unbudgeted"
    );
    let b = h.balance(&p).await;
    assert_eq!((b.available, b.pending, b.lifetime_earned), (0, 40, 0));
    assert_eq!(
        h.programme_balance(&account).await,
        32,
        "the budget is untouched"
    );
    assert_eq!(h.programme_balance(&ProgrammeAccount::Reviews).await, -40);
    assert!(
        !h.has_outbox_record(&format!("points_credited-{}", a.entry.id))
            .await,
        "nothing is credited yet"
    );
    assert_double_entry(&h).await;
    let id = ReviewId::of(&p, &a.entry.id);
    assert_eq!(
        queued(&h).await,
        vec![(id.clone(), vec!["over_budget".to_string()])]
    );

    let over = decide(h.reviews(), &id, Decision::Approve, "admin-1", at).await;
    assert!(
        matches!(over, Err(ReviewError::BudgetExhausted)),
        "{over:?}"
    );
    assert_eq!(h.balance(&p).await, b, "a refused approval writes nothing");
    assert_eq!(queued(&h).await.len(), 1, "still held");
    assert_double_entry(&h).await;

    // 16 more: 48 in all, 3 a shard, so the approval is paid by gathering its shard.
    h.fund_budget(&account, Points(16), "funding-2").await;
    let approved = decide(h.reviews(), &id, Decision::Approve, "admin-1", at)
        .await
        .expect("approved within the budget");
    assert_eq!(approved.entry.kind, EntryKind::ReviewApproved);
    let b = h.balance(&p).await;
    assert_eq!((b.available, b.pending, b.lifetime_earned), (40, 0, 40));
    assert_eq!(
        h.outlet_totals(&OutletId::parse("o-1").unwrap())
            .await
            .available,
        40
    );
    assert_eq!(h.programme_balance(&account).await, 32 + 16 - 40);
    assert_eq!(h.programme_balance(&ProgrammeAccount::Reviews).await, 0);
    assert_double_entry(&h).await;
    assert!(queued(&h).await.is_empty());
    let again = decide(h.reviews(), &id, Decision::Approve, "admin-1", at).await;
    assert!(
        matches!(again, Err(ReviewError::AlreadyDecided)),
        "{again:?}"
    );
    assert_eq!(h.balance(&p).await, b, "credited once");
    assert_eq!(h.entries(&p).await.len(), 2);
}

pub async fn a_rejected_held_credit_never_credits_and_leaves_the_budget_alone(
    h: impl ActionsHarness,
) {
    let at = now();
    let p = pid("p-1");
    let r = rule("survey", 40, None, None);
    let account = ProgrammeAccount::Rule(r.id.clone());
    h.fund_budget(&account, Points(32), "funding-1").await;
    let a = held(attempt(
        "p-1",
        None,
        &r,
        "key-0000001",
        BalanceExpectation::Any,
        at,
    ));
    assert_eq!(accrue(&h, &a).await, Ok(()));
    let id = ReviewId::of(&p, &a.entry.id);
    let rejected = decide(h.reviews(), &id, Decision::Reject, "admin-1", at)
        .await
        .expect("rejected");
    assert_eq!(rejected.entry.kind, EntryKind::ReviewRejected);
    let b = h.balance(&p).await;
    assert_eq!((b.available, b.pending, b.lifetime_earned), (0, 0, 0));
    assert_eq!(h.programme_balance(&account).await, 32);
    assert_eq!(h.programme_balance(&ProgrammeAccount::Reviews).await, 0);
    assert_double_entry(&h).await;
    let approve = decide(h.reviews(), &id, Decision::Approve, "admin-1", at).await;
    assert!(
        matches!(approve, Err(ReviewError::AlreadyDecided)),
        "{approve:?}"
    );
    assert_eq!(h.balance(&p).await, b);
}

/// Refused as not active, with nothing written.
async fn refused_as_not_active<H: ActionsHarness>(h: &H, r: &Rule, a: &ActionAttempt) {
    assert_eq!(
        h.store()
            .try_accrue(a)
            .await
            .expect("no infrastructure error"),
        Err(ActionRefusal::ParticipantNotActive)
    );
    let p = &a.entry.participant;
    assert_eq!(h.balance(p).await, Balance::default());
    assert!(h.entries(p).await.is_empty());
    assert_eq!(h.used(p, r, "EVER").await, 0);
    assert!(
        !h.has_outbox_record(&format!("points_credited-{}", a.entry.id))
            .await
    );
}

pub async fn only_a_registered_active_participant_earns_by_action(h: impl ActionsHarness) {
    let at = now();
    let r = rule("survey", 40, Some(3), None);
    h.put_rule(&r).await;
    let try_it = |participant: &str, key: &str| {
        attempt(participant, None, &r, key, BalanceExpectation::Absent, at)
    };

    // No profile.
    refused_as_not_active(&h, &r, &try_it("p-unregistered", "key-0000001")).await;

    // Blocked.
    let p = pid("p-blocked");
    let a = try_it("p-blocked", "key-0000002");
    h.register(&p, &a.profile).await;
    h.set_standing(&p, "blocked").await;
    refused_as_not_active(&h, &r, &a).await;

    // Unblocked (`status = active`): the same report commits.
    h.set_standing(&p, "active").await;
    assert_eq!(
        h.store()
            .try_accrue(&a)
            .await
            .expect("no infrastructure error"),
        Ok(())
    );
    assert_eq!(h.balance(&p).await.available, 40);
}

pub async fn a_profile_other_than_assumed_refuses_the_action_with_its_region_and_outlet(
    h: impl ActionsHarness,
) {
    let at = now();
    let r = rule("survey", 40, Some(3), None);
    h.put_rule(&r).await;
    let p = pid("p-facts");
    let facts = ProfileFacts {
        region: RegionId::parse("south").ok(),
        outlet: OutletId::parse("o-facts").ok(),
    };
    h.register(&p, &facts).await;

    // Assumed in the north at no outlet: refused with the profile's, nothing written.
    let mut a = attempt(
        "p-facts",
        None,
        &r,
        "key-0000001",
        BalanceExpectation::Absent,
        at,
    );
    let refused = h
        .store()
        .try_accrue(&a)
        .await
        .expect("no infrastructure error");
    assert_eq!(refused, Err(ActionRefusal::ProfileDiffers(facts.clone())));
    assert_eq!(h.balance(&p).await, Balance::default());
    assert_eq!(h.used(&p, &r, "EVER").await, 0);

    // Assumed right: it commits.
    a.profile = facts;
    assert_eq!(
        h.store()
            .try_accrue(&a)
            .await
            .expect("no infrastructure error"),
        Ok(())
    );
    assert_eq!(h.balance(&p).await.available, 40);
}

#[macro_export]
macro_rules! action_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(actions, $harness;
            the_programme_is_every_rule_and_the_tiers_or_one_base_tier,
            an_action_commits_every_item_once_and_its_key_then_answers_the_first_answer,
            a_used_up_limit_is_refused_with_its_count_and_writes_nothing,
            the_participant_limit_outranks_the_period_limit,
            the_key_outranks_a_used_up_limit,
            a_stale_balance_is_refused_with_the_current_tier_basis,
            an_expired_key_whose_entry_exists_is_refused_as_the_entry,
            a_remembered_refusal_holds_the_key,
            a_credit_over_its_rules_budget_is_refused_and_writes_nothing,
            a_credit_within_its_rules_whole_budget_moves_the_account_by_its_points,
            a_held_credit_is_pending_and_queued_and_its_approval_pays_only_within_the_budget,
            a_rejected_held_credit_never_credits_and_leaves_the_budget_alone,
            only_a_registered_active_participant_earns_by_action,
            a_profile_other_than_assumed_refuses_the_action_with_its_region_and_outlet,
        );
    };
}
