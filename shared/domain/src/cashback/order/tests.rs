use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::TimeZone;

use super::*;
use crate::cashback::{EventId, NewOrder};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn partner() -> PartnerId {
    PartnerId::parse("demo").unwrap()
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
        zones: Zones::default(),
    }
}

fn created(event: &str, order: &str, amount_minor: u64) -> OrderEvent {
    OrderEvent {
        event_id: EventId::parse(event).unwrap(),
        order_id: OrderId::parse(order).unwrap(),
        occurred_at: now(),
        change: OrderChange::Created(NewOrder {
            participant_id: ParticipantId::parse("p1").unwrap(),
            region: RegionId::parse("almaty").unwrap(),
            channel: "app".into(),
            category: "x".into(),
            amount_minor,
            lines: vec![],
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

fn commit(step: Step) -> Decision {
    match step {
        Step::Commit(d) => *d,
        Step::Read(need) => panic!("needs {need:?}"),
    }
}

fn result(d: &Decision) -> &EventResult {
    &d.event.as_ref().unwrap().1
}

/// 5% of 50 000.00: 250 points.
const AMOUNT: u64 = 5_000_000 / 10;

#[test]
fn a_created_order_credits_its_cashback_on_condition_of_room_under_the_cap() {
    let d = commit(
        decide(
            &terms(),
            &State::unread(),
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(result(&d).points, 250);
    assert_eq!(result(&d).status, "pending");
    let cap = d.cap.unwrap();
    assert_eq!(
        (cap.delta, cap.at_most, cap.month.as_str()),
        (250, Some(2_750), "2026-11")
    );
    let (entry, announce) = d.entry.unwrap();
    assert_eq!(
        (entry.kind, entry.amount),
        (EntryKind::CashbackPending, Points(250))
    );
    assert!(matches!(
        announce,
        Some(OutboxEvent::CashbackPending { .. })
    ));
    assert!(matches!(d.order, OrderWrite::Create(ref o) if o.status == OrderStatus::Pending));
}

#[test]
fn near_the_cap_an_order_earns_the_room_and_at_the_cap_nothing() {
    let state = State {
        cap_used: 2_900,
        ..State::unread()
    };
    let d = commit(
        decide(
            &terms(),
            &state,
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(
        (result(&d).points, result(&d).reason.as_deref()),
        (100, Some("capped"))
    );
    assert_eq!(d.cap.unwrap().at_most, Some(2_900));

    let state = State {
        cap_used: 3_000,
        ..State::unread()
    };
    let d = commit(
        decide(
            &terms(),
            &state,
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(result(&d).status, "no_cashback");
    assert_eq!(result(&d).reason.as_deref(), Some("monthly_cap_reached"));
    assert_eq!((d.cap, d.entry), (None, None));
}

#[test]
fn an_ineligible_order_is_recorded_without_points() {
    let t = Terms {
        partner: None,
        ..terms()
    };
    let d = commit(
        decide(
            &t,
            &State::unread(),
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(result(&d).reason.as_deref(), Some("partner_not_configured"));
    assert!(matches!(d.order, OrderWrite::Create(ref o) if o.status == OrderStatus::NoCashback));
}

/// A store over one mutex: enough to run `apply` and `release` through their loops.
#[derive(Default)]
struct Fake {
    inner: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    events: BTreeMap<String, EventResult>,
    orders: BTreeMap<String, Order>,
    caps: BTreeMap<(String, String), i64>,
    available: u64,
    pending: u64,
    commits: usize,
    zones: Zones,
    /// The release queue each delivered order entered.
    queued: BTreeMap<String, String>,
    /// Participants without a profile or blocked.
    not_active: Vec<String>,
}

impl CashbackStore for Fake {
    async fn terms(
        &self,
        _: &PartnerId,
        _: &RegionId,
        _: DateTime<Utc>,
    ) -> Result<(Option<PartnerTerms>, Option<MinimumOrder>), InfraError> {
        Ok((terms().partner, None))
    }
    async fn zones(&self, _: DateTime<Utc>) -> Result<Zones, InfraError> {
        Ok(self.inner.lock().unwrap().zones.clone())
    }
    async fn order(&self, _: &PartnerId, order: &OrderId) -> Result<Option<Order>, InfraError> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .orders
            .get(order.as_str())
            .cloned())
    }
    async fn available(&self, _: &ParticipantId) -> Result<u64, InfraError> {
        Ok(self.inner.lock().unwrap().available)
    }
    async fn counts_deliveries(&self, _: DateTime<Utc>) -> Result<bool, InfraError> {
        Ok(false)
    }
    async fn commit(
        &self,
        d: &Decision,
        _: DateTime<Utc>,
    ) -> Result<Result<(), Refusal>, InfraError> {
        let mut s = self.inner.lock().unwrap();
        s.commits += 1;
        if let Some((id, _)) = &d.event {
            if let Some(first) = s.events.get(id.as_str()) {
                return Ok(Err(Refusal::EventSeen(first.clone())));
            }
        }
        if let Some(p) = &d.standing {
            if s.not_active.contains(&p.to_string()) {
                return Ok(Err(Refusal::ParticipantNotActive));
            }
        }
        let current = s.orders.get(d.order_id.as_str()).cloned();
        match &d.order {
            OrderWrite::None => {}
            OrderWrite::Create(_) if current.is_some() => {
                return Ok(Err(Refusal::OrderMoved(current)))
            }
            OrderWrite::Create(_) => {}
            OrderWrite::Transition { expect, .. } => {
                if current.as_ref().map(|o| o.status) != Some(*expect) {
                    return Ok(Err(Refusal::OrderMoved(current)));
                }
            }
        }
        if let Some(cap) = &d.cap {
            let used = *s
                .caps
                .get(&(cap.participant.to_string(), cap.month.clone()))
                .unwrap_or(&0);
            if let Some(at_most) = cap.at_most {
                if used > at_most as i64 {
                    return Ok(Err(Refusal::CapMovedTo(used as u64)));
                }
            }
        }
        if let Some((entry, _)) = &d.entry {
            if entry.kind == EntryKind::Clawback && entry.amount.get() > s.available {
                return Ok(Err(Refusal::BalanceMoved));
            }
        }
        // All conditions hold: write.
        if let Some((id, r)) = &d.event {
            s.events.insert(id.to_string(), r.clone());
        }
        match &d.order {
            OrderWrite::None => {}
            OrderWrite::Create(o) => {
                s.orders.insert(o.id.to_string(), o.clone());
            }
            OrderWrite::Transition {
                to,
                clawback,
                queue,
                ..
            } => {
                if let QueueMove::Enter(Queue::Release(month)) = queue {
                    s.queued.insert(d.order_id.to_string(), month.clone());
                }
                let o = s.orders.get_mut(d.order_id.as_str()).unwrap();
                o.status = *to;
                if let Some((taken, rest)) = clawback {
                    o.clawed_back = *taken;
                    o.outstanding_clawback = *rest;
                }
            }
        }
        if let Some(cap) = &d.cap {
            *s.caps
                .entry((cap.participant.to_string(), cap.month.clone()))
                .or_default() += cap.delta;
        }
        if let Some((entry, _)) = &d.entry {
            let a = entry.amount.get();
            match entry.kind {
                EntryKind::CashbackPending => s.pending += a,
                EntryKind::CashbackReversed => s.pending -= a,
                EntryKind::CashbackReleased => {
                    s.pending -= a;
                    s.available += a
                }
                EntryKind::Clawback => s.available -= a,
                _ => unreachable!(),
            }
        }
        Ok(Ok(()))
    }
}

impl Fake {
    fn cap(&self) -> i64 {
        *self
            .inner
            .lock()
            .unwrap()
            .caps
            .get(&("p1".to_string(), "2026-11".to_string()))
            .unwrap_or(&0)
    }
    fn order(&self, id: &str) -> Order {
        self.inner.lock().unwrap().orders[id].clone()
    }
}

async fn run(store: &Fake, event: OrderEvent) -> Result<EventResult, CashbackError> {
    run_at(store, event, now()).await
}

async fn run_at(
    store: &Fake,
    event: OrderEvent,
    at: DateTime<Utc>,
) -> Result<EventResult, CashbackError> {
    apply(store, &CashbackPolicy::default(), &partner(), &event, at)
        .await
        .map(|applied| applied.result)
}

#[tokio::test]
async fn the_monthly_cap_turns_at_midnight_in_the_orders_region_zone() {
    let store = Fake::default();
    {
        let mut s = store.inner.lock().unwrap();
        // The order's region counts in UTC+6; the programme in UTC.
        s.zones.regions.insert(
            RegionId::parse("almaty").unwrap(),
            crate::zone::Zone::parse("Asia/Omsk").unwrap(),
        );
        s.caps.insert(("p1".into(), "2026-11".into()), 3_000);
    }
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    // 23:30 on 30 November local: November's cap is full.
    let r = run_at(
        &store,
        created("e1", "o1", AMOUNT),
        at("2026-11-30T17:30:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(
        (r.points, r.reason.as_deref()),
        (0, Some("monthly_cap_reached"))
    );
    // 00:30 on 1 December local, the same UTC date: December's room.
    let late = at("2026-11-30T18:30:00Z");
    let r = run_at(&store, created("e2", "o2", AMOUNT), late)
        .await
        .unwrap();
    assert_eq!(r.points, 250);
    assert_eq!(store.order("o2").month, "2026-12");
    assert_eq!(
        store.inner.lock().unwrap().caps[&("p1".to_string(), "2026-12".to_string())],
        250
    );
    // Delivered at the same instant, it awaits December's release: the order is read
    // first, since regions count in different zones.
    run_at(&store, change("e3", "o2", OrderChange::Delivered), late)
        .await
        .unwrap();
    assert_eq!(store.inner.lock().unwrap().queued["o2"], "2026-12");
}

#[tokio::test]
async fn a_refused_cap_says_where_the_counter_moved_and_the_retry_credits_the_room() {
    let store = Fake::default();
    store
        .inner
        .lock()
        .unwrap()
        .caps
        .insert(("p1".into(), "2026-11".into()), 2_900);
    let r = run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    assert_eq!((r.points, r.reason.as_deref()), (100, Some("capped")));
    assert_eq!(store.cap(), 3_000);
    assert_eq!(store.inner.lock().unwrap().commits, 2);
    let r = run(&store, created("e2", "o2", AMOUNT)).await.unwrap();
    assert_eq!(
        (r.points, r.reason.as_deref()),
        (0, Some("monthly_cap_reached"))
    );
    assert_eq!(store.cap(), 3_000, "the cap is never exceeded");
}

#[tokio::test]
async fn a_replay_answers_the_first_result_says_it_is_one_and_moves_nothing() {
    let store = Fake::default();
    let policy = CashbackPolicy::default();
    let event = |amount| created("e1", "o1", amount);
    let first = apply(&store, &policy, &partner(), &event(AMOUNT), now())
        .await
        .unwrap();
    let replay = apply(&store, &policy, &partner(), &event(AMOUNT * 2), now())
        .await
        .unwrap();
    assert_eq!((first.replayed, replay.replayed), (false, true));
    assert_eq!(first.result, replay.result);
    assert_eq!(store.cap(), 250);
    assert_eq!(store.inner.lock().unwrap().pending, 250);
    let d1 = run(&store, change("e2", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    let d2 = run(&store, change("e2", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    assert_eq!(d1, d2);
    assert_eq!(d1.status, "eligible");
}

#[tokio::test]
async fn an_event_before_its_order_is_created_is_an_unknown_order_and_writes_nothing() {
    let store = Fake::default();
    for c in [
        OrderChange::Delivered,
        OrderChange::Cancelled,
        OrderChange::Returned,
    ] {
        assert_eq!(
            run(&store, change("e9", "o1", c)).await,
            Err(CashbackError::UnknownOrder)
        );
    }
    assert!(store.inner.lock().unwrap().events.is_empty());
    // Once created, the same delivered event applies.
    run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    let r = run(&store, change("e9", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    assert_eq!(r.status, "eligible");
}

#[tokio::test]
async fn a_delivery_of_an_order_that_earned_nothing_is_refused_as_moved_then_recorded() {
    let store = Fake::default();
    store
        .inner
        .lock()
        .unwrap()
        .caps
        .insert(("p1".into(), "2026-11".into()), 3_000);
    run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    let r = run(&store, change("e2", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.reason), ("no_cashback", None));
}

#[tokio::test]
async fn a_reversal_before_release_frees_the_cap_room_of_its_month() {
    let store = Fake::default();
    run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    run(&store, change("e2", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    let r = run(&store, change("e3", "o1", OrderChange::Cancelled))
        .await
        .unwrap();
    assert_eq!((r.status.as_str(), r.points), ("reversed", 250));
    assert_eq!(store.cap(), 0);
    assert_eq!(store.inner.lock().unwrap().pending, 0);
    // A second withdrawal changes nothing.
    let r = run(&store, change("e4", "o1", OrderChange::Returned))
        .await
        .unwrap();
    assert_eq!((r.points, r.reason.as_deref()), (0, Some("no_change")));
    assert_eq!(store.cap(), 0);
}

#[tokio::test]
async fn a_clawback_after_release_never_overdraws_and_records_the_rest_outstanding() {
    let store = Fake::default();
    run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    run(&store, change("e2", "o1", OrderChange::Delivered))
        .await
        .unwrap();
    let released = release(&store, &partner(), &OrderId::parse("o1").unwrap(), now())
        .await
        .unwrap();
    assert_eq!(released, ReleaseOutcome::Released(Points(250)));
    let again = release(&store, &partner(), &OrderId::parse("o1").unwrap(), now())
        .await
        .unwrap();
    assert_eq!(again, ReleaseOutcome::NotEligible(OrderStatus::Released));
    store.inner.lock().unwrap().available = 100; // 150 spent meanwhile
    let r = run(&store, change("e3", "o1", OrderChange::Returned))
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_str(), r.points, r.outstanding_clawback),
        ("clawed_back", 100, Some(150))
    );
    let o = store.order("o1");
    assert_eq!(
        (o.clawed_back, o.outstanding_clawback),
        (Points(100), Points(150))
    );
    assert_eq!(store.inner.lock().unwrap().available, 0);
    assert_eq!(store.cap(), 250, "a settled month keeps its count");
}

#[test]
fn a_clawback_decision_is_queued_only_when_something_is_outstanding() {
    let mut order = match commit(
        decide(
            &terms(),
            &State::unread(),
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    )
    .order
    {
        OrderWrite::Create(o) => o,
        other => panic!("{other:?}"),
    };
    order.status = OrderStatus::Released;
    let returned = change("e3", "o1", OrderChange::Returned);
    let state = State {
        order: Known::Present(order.clone()),
        ..State::unread()
    };
    assert_eq!(
        decide(&terms(), &state, &partner(), &returned, now()).unwrap(),
        Step::Read(Need::Available(order.participant.clone()))
    );
    let covered = State {
        available: Some(1_000),
        ..state.clone()
    };
    let d = commit(decide(&terms(), &covered, &partner(), &returned, now()).unwrap());
    assert!(matches!(
        d.order,
        OrderWrite::Transition {
            queue: QueueMove::Keep,
            clawback: Some((Points(250), Points(0))),
            ..
        }
    ));
    let broke = State {
        available: Some(0),
        ..state
    };
    let d = commit(decide(&terms(), &broke, &partner(), &returned, now()).unwrap());
    assert!(matches!(
        d.order,
        OrderWrite::Transition {
            queue: QueueMove::Enter(Queue::OutstandingClawback),
            ..
        }
    ));
    assert_eq!(d.entry, None, "nothing to take: no entry");
}

#[tokio::test]
async fn a_second_created_event_for_one_order_is_acknowledged_and_credits_nothing() {
    let store = Fake::default();
    run(&store, created("e1", "o1", AMOUNT)).await.unwrap();
    let r = run(&store, created("e2", "o1", AMOUNT)).await.unwrap();
    assert_eq!(
        (r.points, r.reason.as_deref(), r.status.as_str()),
        (0, Some("order_already_created"), "pending")
    );
    assert_eq!(store.cap(), 250);
}

#[test]
fn a_credit_is_committed_on_condition_that_its_participant_is_active_and_nothing_else_is() {
    let d = commit(
        decide(
            &terms(),
            &State::unread(),
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(d.standing, ParticipantId::parse("p1").ok());
    // Earning nothing (below any rate: no partner terms) needs no standing.
    let d = commit(
        decide(
            &Terms::default(),
            &State::unread(),
            &partner(),
            &created("e1", "o1", AMOUNT),
            now(),
        )
        .unwrap(),
    );
    assert_eq!(d.standing, None);
}

#[tokio::test]
async fn an_order_of_an_unknown_or_blocked_participant_is_recorded_without_cashback() {
    let store = Fake::default();
    store.inner.lock().unwrap().not_active.push("p1".into());
    let policy = CashbackPolicy::default();
    let r = apply(
        &store,
        &policy,
        &partner(),
        &created("e1", "o1", AMOUNT),
        now(),
    )
    .await
    .unwrap()
    .result;
    assert_eq!((r.status.as_str(), r.points), ("no_cashback", 0));
    assert_eq!(r.reason.as_deref(), Some("participant_not_active"));
    let s = store.inner.lock().unwrap();
    assert_eq!(s.orders["o1"].status, OrderStatus::NoCashback);
    assert_eq!(s.orders["o1"].cashback, Points::ZERO);
    assert_eq!(
        (s.pending, s.caps.len()),
        (0, 0),
        "nothing credited, no room used"
    );
    assert_eq!(s.events["e1"], r, "a replay answers the same");
}
