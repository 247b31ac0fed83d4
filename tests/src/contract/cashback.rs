//! The contract of the [`CashbackStore`] port, run against both adapters: [`MemoryCashback`]
//! (`tests/tests/memory/`) and [`DynamoCashback`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`CashbackHarness`]; [`cashback_store_contract!`](crate::cashback_store_contract) makes
//! one test per case. Decisions come from the domain's `decide` (or are edited by hand to
//! hit one condition), so the cases check the store's conditions, refusals and
//! all-or-nothing commits, not the rules.

use loyalty_domain::zone::{Zone, ZoneSettings, Zones};
use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use loyalty_domain::cashback::{
    self, decide, CashbackPolicy, CashbackSettings, CashbackStore, Decision, EventId, Known,
    NewOrder, OrderChange, OrderEvent, OrderId, OrderLine, OrderStatus, PartnerId, PartnerTerms,
    Refusal, State, Step, Terms,
};
use loyalty_domain::earning::SupplierId;
use loyalty_domain::ids::{EntryId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Balance, Budgets, Entry, EntryKind, Funded, ProgrammeAccount};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::Points;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::memory::MemoryCashback;
use loyalty_platform::stores::cashback::{CashbackTables, DynamoCashback};
use loyalty_platform::stores::ledger::{append_items, DynamoLedger};

use crate::TestStack;

/// One adapter of the port, with what the contract needs to seed and observe it, through
/// the adapter's own storage.
#[allow(async_fn_in_trait)]
pub trait CashbackHarness {
    type Store: CashbackStore + CashbackSettings + Budgets;
    fn store(&self) -> &Self::Store;
    async fn balance(&self, participant: &ParticipantId) -> Balance;
    /// The month's cap counter (0 when there is none).
    async fn used(&self, participant: &ParticipantId, month: &str) -> i64;
    /// Spends available points elsewhere (a redemption).
    async fn spend(&self, participant: &ParticipantId, points: u64, now: DateTime<Utc>);
    /// The queue (`gsi1pk`) the order is listed in.
    async fn queue_of(&self, partner: &PartnerId, order: &OrderId) -> Option<String>;
    /// The release queue of `month`, read `page` orders at a time: every page.
    async fn release_pages(&self, month: &str, page: usize) -> Vec<Vec<(PartnerId, OrderId)>>;
    /// The sum over every member account plus every programme account: always zero.
    async fn double_entry_sum(&self) -> i64;
    /// Sets the zones as accrual's admin routes do.
    async fn set_zones(&self, zones: &Zones);
    /// Sets a registered participant's standing, as the admin's block and unblock do.
    /// Every harness starts with `p-1` registered and active, and no one else.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryCashback,
}

pub async fn memory() -> MemoryHarness {
    with_p1(MemoryCashback::new())
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: loyalty_platform::memory::cashback::PlantedBug) -> MemoryHarness {
    with_p1(MemoryCashback::with_planted_bug(bug))
}

fn with_p1(store: MemoryCashback) -> MemoryHarness {
    store.register(&p1(), ProfileFacts::default());
    MemoryHarness { store }
}

impl CashbackHarness for MemoryHarness {
    type Store = MemoryCashback;

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        self.store.set_active(participant, status == "active");
    }

    fn store(&self) -> &MemoryCashback {
        &self.store
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.store.balance(participant)
    }

    async fn used(&self, participant: &ParticipantId, month: &str) -> i64 {
        self.store.used_this_month(participant, month)
    }

    async fn spend(&self, participant: &ParticipantId, points: u64, now: DateTime<Utc>) {
        let id = EntryId::parse(&format!("spend-{participant}-{points}")).unwrap();
        assert!(self.store.spend(participant, id, Points(points), now));
    }

    async fn queue_of(&self, partner: &PartnerId, order: &OrderId) -> Option<String> {
        self.store
            .stored_order(partner, order)
            .and_then(|o| o.queue)
    }

    async fn release_pages(&self, month: &str, page: usize) -> Vec<Vec<(PartnerId, OrderId)>> {
        let queue = loyalty_platform::stores::cashback::release_queue(month);
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let (found, next) = self.store.queued(&queue, after.as_ref(), page);
            pages.push(found);
            match next {
                Some(n) => after = Some(n),
                None => return pages,
            }
        }
    }

    async fn double_entry_sum(&self) -> i64 {
        self.store.member_points() + self.store.programme_points()
    }

    async fn set_zones(&self, zones: &Zones) {
        self.store.set_zones(zones.clone());
    }
}

// --- The DynamoDB adapter --------------------------------------------------------------

pub struct DynamoHarness {
    store: DynamoCashback,
    ledger: DynamoLedger,
    stack: TestStack,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("PartnerWebhooksFunction").await;
    let tables = CashbackTables {
        programme: stack.table_name("ProgrammeTable").into(),
        activity: stack.table_name("ActivityTable").into(),
        ledger: stack.table_name("LedgerTable").into(),
        outbox: stack.table_name("OutboxTable").into(),
        participants: stack.table_name("ParticipantsTable").into(),
    };
    crate::contract::claims::register_profile(&stack, &p1(), &ProfileFacts::default()).await;
    DynamoHarness {
        store: DynamoCashback::new(stack.dynamodb(), tables, CashbackPolicy::default()),
        ledger: DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable")),
        stack,
    }
}

impl CashbackHarness for DynamoHarness {
    type Store = DynamoCashback;

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        crate::contract::claims::set_profile_status(&self.stack, participant, status).await;
    }

    fn store(&self) -> &DynamoCashback {
        &self.store
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.ledger.balance(participant).await.unwrap()
    }

    async fn used(&self, participant: &ParticipantId, month: &str) -> i64 {
        self.store
            .used_this_month(participant, month)
            .await
            .unwrap() as i64
    }

    async fn spend(&self, participant: &ParticipantId, points: u64, now: DateTime<Utc>) {
        let entry = Entry {
            id: EntryId::parse(&format!("spend-{participant}-{points}")).unwrap(),
            participant: participant.clone(),
            outlet: None,
            kind: EntryKind::Redemption,
            amount: Points(points),
            source: "catalogue".into(),
            created_at: now,
            expires_on: None,
        };
        append_items(self.stack.table_name("LedgerTable"), &entry, None)
            .unwrap()
            .commit(&self.stack.dynamodb(), "spend")
            .await
            .unwrap()
            .unwrap();
    }

    async fn queue_of(&self, partner: &PartnerId, order: &OrderId) -> Option<String> {
        let item = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("ActivityTable"))
            .set_key(Some(loyalty_platform::dynamo::key(
                format!("ORDER#{partner}#{order}"),
                "ORDER",
            )))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item?;
        item.opt_string("gsi1pk").map(str::to_string)
    }

    async fn release_pages(&self, month: &str, page: usize) -> Vec<Vec<(PartnerId, OrderId)>> {
        let mut pages = Vec::new();
        let mut start = None;
        loop {
            let (found, next) = self
                .store
                .awaiting_release_page(month, Some(page as i32), start)
                .await
                .unwrap();
            pages.push(found);
            match next {
                Some(k) => start = Some(k),
                None => return pages,
            }
        }
    }

    async fn double_entry_sum(&self) -> i64 {
        self.ledger.accounts_sum().await.expect("accounts")
    }

    /// Through accrual's settings adapter, on the same ProgrammeTable.
    async fn set_zones(&self, zones: &Zones) {
        let settings = self.stack.earning_store();
        settings
            .put_programme_zone(zones.programme, now())
            .await
            .unwrap();
        for (region, zone) in &zones.regions {
            settings
                .put_region_zone(region, *zone, now())
                .await
                .unwrap();
        }
    }
}

// --- Cases -------------------------------------------------------------------------------

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

const MONTH: &str = "2026-11";

fn partner() -> PartnerId {
    PartnerId::parse("demo-market").unwrap()
}

fn p1() -> ParticipantId {
    ParticipantId::parse("p-1").unwrap()
}

fn terms() -> Terms {
    Terms {
        policy: CashbackPolicy::default(),
        partner: Some(PartnerTerms {
            name: "Demo".into(),
            default_rate_bp: 500,
            category_rates_bp: BTreeMap::new(),
            active: true,
        }),
        region_minimum: None,
        zones: Default::default(),
    }
}

/// 5% of 12 500.00: 625 points.
const AMOUNT: u64 = 1_250_000;

fn created(event: &str, order: &str, amount_minor: u64) -> OrderEvent {
    OrderEvent {
        event_id: EventId::parse(event).unwrap(),
        order_id: OrderId::parse(order).unwrap(),
        occurred_at: now(),
        change: OrderChange::Created(NewOrder {
            participant_id: p1(),
            region: RegionId::parse("almaty").unwrap(),
            channel: "app".into(),
            category: "beverages".into(),
            amount_minor,
            lines: vec![OrderLine {
                supplier_id: SupplierId::parse("cola-co").unwrap(),
                units: 24,
            }],
        }),
    }
}

fn change(event: &str, order: &str, change: OrderChange) -> OrderEvent {
    OrderEvent {
        event_id: EventId::parse(event).unwrap(),
        order_id: OrderId::parse(order).unwrap(),
        occurred_at: now(),
        change,
    }
}

fn decision(state: &State, event: &OrderEvent) -> Decision {
    match decide(&terms(), state, &partner(), event, now()).unwrap() {
        Step::Commit(d) => *d,
        Step::Read(need) => panic!("needs {need:?}"),
    }
}

async fn run<H: CashbackHarness>(h: &H, event: OrderEvent) -> cashback::EventResult {
    let policy = CashbackPolicy::default();
    h.store()
        .put_partner(&partner(), terms().partner.as_ref().unwrap(), now())
        .await
        .unwrap();
    cashback::apply(h.store(), &policy, &partner(), &event, now())
        .await
        .unwrap()
        .result
}

async fn order<H: CashbackHarness>(h: &H, id: &str) -> Option<cashback::Order> {
    h.store()
        .order(&partner(), &OrderId::parse(id).unwrap())
        .await
        .unwrap()
}

pub async fn a_created_order_commits_every_write_once_and_a_replay_is_refused_with_the_first_result<
    H: CashbackHarness,
>(
    h: H,
) {
    let d = decision(&State::unread(), &created("e-1", "o-1", AMOUNT));
    assert_eq!(h.store().commit(&d, now()).await.unwrap(), Ok(()));
    let stored = order(&h, "o-1").await.expect("the order is stored");
    assert_eq!(
        (stored.status, stored.cashback),
        (OrderStatus::Pending, Points(625))
    );
    assert_eq!(stored.lines.len(), 1);
    assert_eq!(h.used(&p1(), MONTH).await, 625);
    assert_eq!(h.balance(&p1()).await.pending, 625);

    let first = d.event.clone().unwrap().1;
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::EventSeen(first))
    );
    assert_eq!(h.used(&p1(), MONTH).await, 625, "a replay moved the cap");
    assert_eq!(h.balance(&p1()).await.pending, 625, "a replay credited");
}

pub async fn creating_an_existing_order_is_refused_with_the_order_and_writes_nothing<
    H: CashbackHarness,
>(
    h: H,
) {
    let first = decision(&State::unread(), &created("e-1", "o-1", AMOUNT));
    h.store().commit(&first, now()).await.unwrap().unwrap();
    let again = decision(&State::unread(), &created("e-2", "o-1", AMOUNT));
    match h.store().commit(&again, now()).await.unwrap() {
        Err(Refusal::OrderMoved(Some(o))) => assert_eq!(o.status, OrderStatus::Pending),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.used(&p1(), MONTH).await, 625);
    assert_eq!(h.balance(&p1()).await.pending, 625);
    // Its marker was not written either: decided again, it commits.
    let known = State {
        order: Known::Present(order(&h, "o-1").await.unwrap()),
        ..State::unread()
    };
    let ack = decision(&known, &created("e-2", "o-1", AMOUNT));
    assert_eq!(h.store().commit(&ack, now()).await.unwrap(), Ok(()));
}

pub async fn a_transition_of_an_absent_or_moved_order_is_refused_with_what_it_is<
    H: CashbackHarness,
>(
    h: H,
) {
    let delivered = change("e-2", "o-1", OrderChange::Delivered);
    let d = decision(&State::unread(), &delivered);
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::OrderMoved(None))
    );
    // Nothing was written, so the same event applies once the order exists.
    run(&h, created("e-1", "o-1", AMOUNT)).await;
    assert_eq!(h.store().commit(&d, now()).await.unwrap(), Ok(()));
    assert_eq!(
        h.queue_of(&partner(), &OrderId::parse("o-1").unwrap())
            .await,
        Some(format!("RELEASE#{MONTH}"))
    );
    // Expecting pending again (another event id): refused with the order as it is now.
    let d = decision(
        &State::unread(),
        &change("e-3", "o-1", OrderChange::Delivered),
    );
    match h.store().commit(&d, now()).await.unwrap() {
        Err(Refusal::OrderMoved(Some(o))) => assert_eq!(o.status, OrderStatus::Eligible),
        other => panic!("{other:?}"),
    }
}

pub async fn a_cap_without_the_room_is_refused_with_the_counter_and_writes_nothing<
    H: CashbackHarness,
>(
    h: H,
) {
    // 4 × 625 = 2 500 of 3 000 used.
    for i in 0..4 {
        run(&h, created(&format!("e-{i}"), &format!("o-{i}"), AMOUNT)).await;
    }
    assert_eq!(h.used(&p1(), MONTH).await, 2_500);
    // Decided as if the month were empty: the counter's condition refuses it.
    let d = decision(&State::unread(), &created("e-9", "o-9", AMOUNT));
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::CapMovedTo(2_500))
    );
    assert_eq!(order(&h, "o-9").await, None, "the order was written");
    assert_eq!(h.balance(&p1()).await.pending, 2_500);
    // With the counter it said, the room is credited.
    let d = decision(
        &State {
            cap_used: 2_500,
            ..State::unread()
        },
        &created("e-9", "o-9", AMOUNT),
    );
    assert_eq!(h.store().commit(&d, now()).await.unwrap(), Ok(()));
    assert_eq!(h.used(&p1(), MONTH).await, 3_000);
}

pub async fn a_reversal_gives_the_room_back_and_leaves_the_release_queue<H: CashbackHarness>(h: H) {
    run(&h, created("e-1", "o-1", AMOUNT)).await;
    run(&h, change("e-2", "o-1", OrderChange::Delivered)).await;
    let r = run(&h, change("e-3", "o-1", OrderChange::Cancelled)).await;
    assert_eq!((r.status.as_str(), r.points), ("reversed", 625));
    assert_eq!(h.used(&p1(), MONTH).await, 0);
    assert_eq!(h.balance(&p1()).await.pending, 0);
    assert_eq!(
        h.queue_of(&partner(), &OrderId::parse("o-1").unwrap())
            .await,
        None
    );
}

pub async fn a_clawback_the_balance_no_longer_covers_is_refused_and_writes_nothing<
    H: CashbackHarness,
>(
    h: H,
) {
    run(&h, created("e-1", "o-1", AMOUNT)).await;
    run(&h, change("e-2", "o-1", OrderChange::Delivered)).await;
    let released = cashback::release(
        h.store(),
        &partner(),
        &OrderId::parse("o-1").unwrap(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(released, cashback::ReleaseOutcome::Released(Points(625)));
    let o = order(&h, "o-1").await.unwrap();
    // Decided with the whole balance available; then 200 are spent.
    let state = State {
        order: Known::Present(o),
        available: Some(625),
        ..State::unread()
    };
    let d = decision(&state, &change("e-3", "o-1", OrderChange::Returned));
    h.spend(&p1(), 200, now()).await;
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::BalanceMoved)
    );
    assert_eq!(
        order(&h, "o-1").await.unwrap().status,
        OrderStatus::Released
    );
    // The use case reads the balance again: 425 taken, 200 outstanding, queued.
    let r = run(&h, change("e-3", "o-1", OrderChange::Returned)).await;
    assert_eq!((r.points, r.outstanding_clawback), (425, Some(200)));
    let o = order(&h, "o-1").await.unwrap();
    assert_eq!(
        (o.clawed_back, o.outstanding_clawback),
        (Points(425), Points(200))
    );
    assert_eq!(
        h.queue_of(&partner(), &OrderId::parse("o-1").unwrap())
            .await,
        Some("CLAWBACK#OUTSTANDING".into())
    );
    assert_eq!(h.balance(&p1()).await.available, 0);
}

pub async fn the_event_marker_outranks_the_order_when_both_refuse<H: CashbackHarness>(h: H) {
    run(&h, created("e-1", "o-1", AMOUNT)).await;
    let first = run(&h, change("e-2", "o-1", OrderChange::Delivered)).await;
    // Replayed as a decision expecting pending: both the marker and the order refuse.
    let d = decision(
        &State::unread(),
        &change("e-2", "o-1", OrderChange::Delivered),
    );
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::EventSeen(first))
    );
}

pub async fn the_release_queue_lists_every_delivered_order_across_pages<H: CashbackHarness>(h: H) {
    let mut expected = Vec::new();
    for i in 0..5 {
        let o = format!("o-{i}");
        run(&h, created(&format!("c-{i}"), &o, AMOUNT)).await;
        run(&h, change(&format!("d-{i}"), &o, OrderChange::Delivered)).await;
        expected.push((partner(), OrderId::parse(&o).unwrap()));
    }
    // Created but not delivered: not listed.
    run(&h, created("c-9", "o-9", AMOUNT)).await;
    let pages = h.release_pages(MONTH, 2).await;
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() <= 2), "{pages:?}");
    let mut all: Vec<_> = pages.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, expected);
    assert!(h.release_pages("2026-12", 2).await.concat().is_empty());
}

/// Double entry: every member account plus every programme account sums to zero.
async fn assert_double_entry<H: CashbackHarness>(h: &H) {
    assert_eq!(h.double_entry_sum().await, 0, "member + programme accounts");
}

fn fund() -> ProgrammeAccount {
    ProgrammeAccount::PartnerFund(partner())
}

/// Gives the partner's fund a budget through the port, as an admin top-up does.
async fn fund_budget<H: CashbackHarness>(h: &H, amount: Points, funding_id: &str) -> Funded {
    h.store()
        .fund_budget(&fund(), amount, funding_id, now())
        .await
        .expect("fund budget")
}

/// What is left in the partner's fund (the sum of its shards).
async fn fund_left<H: CashbackHarness>(h: &H) -> i64 {
    h.store()
        .programme_balance(&fund())
        .await
        .expect("programme balance")
        .balance
}

pub async fn a_partners_fund_is_funded_once_per_funding_id_and_reads_back_what_was_funded<
    H: CashbackHarness,
>(
    h: H,
) {
    assert_eq!(
        h.store().programme_balance(&fund()).await.unwrap().funded,
        None,
        "never funded"
    );
    assert_eq!(
        fund_budget(&h, Points(1_000), "top-up-1").await,
        Funded::Funded
    );
    assert_eq!(
        fund_budget(&h, Points(1_000), "top-up-1").await,
        Funded::AlreadyFunded,
        "a retry funds nothing twice"
    );
    assert_eq!(
        fund_budget(&h, Points(600), "top-up-2").await,
        Funded::Funded
    );
    let balance = h.store().programme_balance(&fund()).await.unwrap();
    assert_eq!((balance.balance, balance.funded), (1_600, Some(1_600)));
    assert_eq!(balance.shards.iter().sum::<i64>(), 1_600);
    assert_double_entry(&h).await;
}

pub async fn a_partner_reads_back_as_stored_and_an_unknown_one_is_none<H: CashbackHarness>(h: H) {
    let never_put = PartnerId::parse("never-put-partner").unwrap();
    assert_eq!(h.store().partner(&never_put).await.unwrap(), None);
    let stored = terms().partner.unwrap();
    h.store()
        .put_partner(&partner(), &stored, now())
        .await
        .unwrap();
    assert_eq!(h.store().partner(&partner()).await.unwrap(), Some(stored));
}

pub async fn cashback_over_the_partners_budget_is_refused_and_writes_nothing_then_recorded_as_none<
    H: CashbackHarness,
>(
    h: H,
) {
    // 600 points over 16 shards: the whole fund cannot cover 625.
    fund_budget(&h, Points(600), "funding-1").await;
    let d = decision(&State::unread(), &created("e-1", "o-1", AMOUNT));
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::BudgetExhausted)
    );
    assert_eq!(order(&h, "o-1").await, None, "all or nothing");
    assert_eq!(h.used(&p1(), MONTH).await, 0);
    assert_eq!(h.balance(&p1()).await, Balance::default());
    assert_eq!(fund_left(&h).await, 600);
    assert_double_entry(&h).await;

    // Through the use case the order is recorded, without cashback.
    let r = run(&h, created("e-1", "o-1", AMOUNT)).await;
    assert_eq!(
        (r.status.as_str(), r.points, r.reason.as_deref()),
        ("no_cashback", 0, Some("budget_exhausted"))
    );
    let stored = order(&h, "o-1").await.expect("the order is stored");
    assert_eq!(stored.status, OrderStatus::NoCashback);
    assert_eq!(h.balance(&p1()).await, Balance::default());
    assert_eq!(fund_left(&h).await, 600);
    assert_double_entry(&h).await;
}

pub async fn cashback_the_whole_fund_covers_is_paid_though_no_single_shard_holds_it<
    H: CashbackHarness,
>(
    h: H,
) {
    // 16 shards of 100 points each: no shard alone covers 625, the fund does.
    fund_budget(&h, Points(1600), "funding-1").await;
    let d = decision(&State::unread(), &created("e-1", "o-1", AMOUNT));
    assert_eq!(h.store().commit(&d, now()).await.unwrap(), Ok(()));
    assert_eq!(h.balance(&p1()).await.pending, 625);
    assert_eq!(fund_left(&h).await, 1600 - 625);
    assert_double_entry(&h).await;
}

pub async fn cashback_within_the_partners_budget_moves_the_fund_by_its_points<
    H: CashbackHarness,
>(
    h: H,
) {
    // 16 shards of 1000 points each: any shard covers 625.
    fund_budget(&h, Points(16_000), "funding-1").await;
    let d = decision(&State::unread(), &created("e-1", "o-1", AMOUNT));
    assert_eq!(h.store().commit(&d, now()).await.unwrap(), Ok(()));
    assert_eq!(h.balance(&p1()).await.pending, 625);
    assert_eq!(fund_left(&h).await, 16_000 - 625);
    assert_double_entry(&h).await;
}

/// One `#[tokio::test]` per case of the cashback contract, for the harness factory given.
pub async fn the_zones_accrual_sets_are_the_zones_cashback_counts_months_in<H: CashbackHarness>(
    h: H,
) {
    let zones = Zones {
        programme: Zone::parse("Asia/Dhaka").unwrap(),
        regions: [(
            RegionId::parse("south").unwrap(),
            Zone::parse("America/Bogota").unwrap(),
        )]
        .into(),
    };
    h.set_zones(&zones).await;
    assert_eq!(h.store().zones(now()).await.unwrap(), zones);
}

pub async fn a_credit_to_an_unregistered_or_blocked_participant_is_refused_and_writes_nothing<
    H: CashbackHarness,
>(
    h: H,
) {
    let credit = |event: &str, order: &str, participant: &str| {
        let mut e = created(event, order, AMOUNT);
        if let OrderChange::Created(new) = &mut e.change {
            new.participant_id = ParticipantId::parse(participant).unwrap();
        }
        decision(&State::unread(), &e)
    };
    let stranger = ParticipantId::parse("p-stranger").unwrap();
    let d = credit("e-1", "o-1", "p-stranger");
    assert_eq!(d.standing.as_ref(), Some(&stranger));
    assert_eq!(
        h.store().commit(&d, now()).await.unwrap(),
        Err(Refusal::ParticipantNotActive)
    );
    assert_eq!(order(&h, "o-1").await, None);
    assert_eq!(h.used(&stranger, MONTH).await, 0);
    assert_eq!(h.balance(&stranger).await, Balance::default());

    // Committed while active; then blocked: a new credit is refused, a replay still answers
    // its first result (the marker outranks the standing).
    let first = credit("e-2", "o-2", "p-1");
    h.store().commit(&first, now()).await.unwrap().unwrap();
    h.set_standing(&p1(), "blocked").await;
    assert_eq!(
        h.store()
            .commit(&credit("e-3", "o-3", "p-1"), now())
            .await
            .unwrap(),
        Err(Refusal::ParticipantNotActive)
    );
    assert_eq!(
        h.store().commit(&first, now()).await.unwrap(),
        Err(Refusal::EventSeen(first.event.clone().unwrap().1))
    );
    assert_eq!(order(&h, "o-3").await, None);
    assert_eq!(h.used(&p1(), MONTH).await, 625);
    assert_eq!(h.balance(&p1()).await.pending, 625);
    assert_eq!(h.double_entry_sum().await, 0);

    // Recorded without cashback, the order needs no standing.
    let none = decision(
        &State {
            participant_not_active: true,
            ..State::unread()
        },
        &created("e-3", "o-3", AMOUNT),
    );
    assert_eq!(none.standing, None);
    assert_eq!(h.store().commit(&none, now()).await.unwrap(), Ok(()));
    assert_eq!(
        order(&h, "o-3").await.map(|o| o.status),
        Some(OrderStatus::NoCashback)
    );
}

pub async fn a_blocked_participants_pending_cashback_is_not_released_and_stays_queued<
    H: CashbackHarness,
>(
    h: H,
) {
    run(&h, created("e-1", "o-1", AMOUNT)).await;
    run(&h, change("e-2", "o-1", OrderChange::Delivered)).await;
    let o1 = OrderId::parse("o-1").unwrap();
    let queued = h.queue_of(&partner(), &o1).await;
    assert!(queued.is_some());
    h.set_standing(&p1(), "blocked").await;
    let p = partner();
    let release = || cashback::release(h.store(), &p, &o1, now());
    assert_eq!(
        release().await.unwrap(),
        cashback::ReleaseOutcome::ParticipantNotActive
    );
    let balance = h.balance(&p1()).await;
    assert_eq!((balance.pending, balance.available), (625, 0));
    assert_eq!(
        order(&h, "o-1").await.map(|o| o.status),
        Some(OrderStatus::Eligible)
    );
    assert_eq!(h.queue_of(&partner(), &o1).await, queued);
    assert_eq!(h.double_entry_sum().await, 0);
    // Unblocked, the next settlement releases it.
    h.set_standing(&p1(), "active").await;
    assert_eq!(
        release().await.unwrap(),
        cashback::ReleaseOutcome::Released(Points(625))
    );
    assert_eq!(h.balance(&p1()).await.available, 625);
}

#[macro_export]
macro_rules! cashback_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(cashback, $harness;
            a_created_order_commits_every_write_once_and_a_replay_is_refused_with_the_first_result,
            creating_an_existing_order_is_refused_with_the_order_and_writes_nothing,
            a_transition_of_an_absent_or_moved_order_is_refused_with_what_it_is,
            a_cap_without_the_room_is_refused_with_the_counter_and_writes_nothing,
            a_reversal_gives_the_room_back_and_leaves_the_release_queue,
            a_clawback_the_balance_no_longer_covers_is_refused_and_writes_nothing,
            the_event_marker_outranks_the_order_when_both_refuse,
            the_release_queue_lists_every_delivered_order_across_pages,
            cashback_over_the_partners_budget_is_refused_and_writes_nothing_then_recorded_as_none,
            cashback_within_the_partners_budget_moves_the_fund_by_its_points,
            cashback_the_whole_fund_covers_is_paid_though_no_single_shard_holds_it,
            a_partners_fund_is_funded_once_per_funding_id_and_reads_back_what_was_funded,
            a_partner_reads_back_as_stored_and_an_unknown_one_is_none,
            the_zones_accrual_sets_are_the_zones_cashback_counts_months_in,
            a_credit_to_an_unregistered_or_blocked_participant_is_refused_and_writes_nothing,
            a_blocked_participants_pending_cashback_is_not_released_and_stays_queued,
        );
    };
}
