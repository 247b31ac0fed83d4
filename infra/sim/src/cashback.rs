//! Partner cashback in the simulator: order events (created, delivered, cancelled, returned
//! after release, replayed, out of order, redelivered), monthly releases and spending, run
//! through the real use cases `loyalty_domain::cashback::{apply, release}` over
//! [`MemoryCashback`] behind [`FaultyCashback`], with client retries.
//!
//! The model predicts every answer from the programme's rules written out again here (rates,
//! channel, regional minimum, the monthly cap, reversal and clawback), not from the domain's
//! `decide`; the checker then compares the store with the model.

use loyalty_domain::zone::Zone;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use futures::executor::block_on;
use loyalty_domain::cashback::entry_ids as cashback_ids;
use loyalty_domain::cashback::{
    self, month_of, CashbackError, CashbackPolicy, EventId, EventResult, MinimumOrder, NewOrder,
    OrderChange, OrderEvent, OrderId, OrderStatus, PartnerId, PartnerTerms, ReleaseOutcome,
};
use loyalty_domain::ids::{EntryId, ParticipantId, RegionId};
use loyalty_domain::ledger::{programme_shard, Balance, EntryKind, ProgrammeAccount};
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryCashback;
use loyalty_platform::stores::cashback::{release_queue, OUTSTANDING_CLAWBACKS};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::checker::draw_budget;
use crate::faults::{Fault, FaultyCashback};
use crate::world::World;

const MAX_TRIES: usize = 8;
/// The monthly cap: low enough that busy months see partial credits and full caps.
pub const CAP: u64 = 2_000;
pub const ACTIVE_PARTNER: &str = "sim-market";
pub const INACTIVE_PARTNER: &str = "sim-closed";
/// The active partner's cashback budget: it runs out during a default run (reversals and
/// clawbacks refund it), so some orders are recorded as `budget_exhausted`.
pub const PARTNER_BUDGET: u64 = 16 * 10_000;
const DEFAULT_MINIMUM: u64 = 400_000;
const SOUTH_MINIMUM: u64 = 800_000;

pub fn policy() -> CashbackPolicy {
    CashbackPolicy {
        minor_units_per_point: 100,
        monthly_cap: Points(CAP),
        default_minimum_order: MinimumOrder::parse(DEFAULT_MINIMUM).expect("a minimum"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CashbackOp {
    Created,
    Delivered,
    Cancelled,
    /// A return, mostly of a released order (a clawback).
    Returned,
    /// An event sent before its order's created event.
    OutOfOrder,
    /// An event sent before, sent again (any one of them).
    Replayed,
    /// The last event, again.
    Redeliver,
    /// Settlement releases a delivered order.
    Release,
    /// A participant spends available points elsewhere.
    Spend,
}

impl CashbackOp {
    pub fn kind(self) -> &'static str {
        match self {
            CashbackOp::Created => "order_created",
            CashbackOp::Delivered => "order_delivered",
            CashbackOp::Cancelled => "order_cancelled",
            CashbackOp::Returned => "order_returned",
            CashbackOp::OutOfOrder => "order_out_of_order",
            CashbackOp::Replayed => "order_replayed",
            CashbackOp::Redeliver => "order_redelivered",
            CashbackOp::Release => "order_release",
            CashbackOp::Spend => "spend",
        }
    }

    /// Weights per 10,000 cashback operations.
    pub fn generate(rng: &mut ChaCha8Rng) -> CashbackOp {
        match rng.random_range(0..10_000) {
            0..3_000 => CashbackOp::Created,
            3_000..5_000 => CashbackOp::Delivered,
            5_000..5_800 => CashbackOp::Cancelled,
            5_800..6_600 => CashbackOp::Returned,
            6_600..7_000 => CashbackOp::OutOfOrder,
            7_000..7_800 => CashbackOp::Replayed,
            7_800..8_300 => CashbackOp::Redeliver,
            8_300..9_300 => CashbackOp::Release,
            _ => CashbackOp::Spend,
        }
    }
}

/// What one cashback operation sends.
#[derive(Debug, Clone)]
pub enum Action {
    Event(PartnerId, OrderEvent),
    Release(PartnerId, OrderId),
    Spend(ParticipantId, Points),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Event(p, e) => match &e.change {
                OrderChange::Created(o) => write!(
                    f,
                    "{p} {} {} created for {} ({}, {}, {}, {})",
                    e.event_id,
                    e.order_id,
                    o.participant_id,
                    o.region,
                    o.channel,
                    o.category,
                    o.amount_minor
                ),
                c => write!(f, "{p} {} {} {}", e.event_id, e.order_id, c.as_str()),
            },
            Action::Release(p, o) => write!(f, "release {p} {o}"),
            Action::Spend(p, points) => write!(f, "{p} spends {}", points.get()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderModel {
    pub participant: ParticipantId,
    pub status: OrderStatus,
    pub cashback: u64,
    pub month: String,
    /// The order's region zone: its cap month and release month are counted there.
    pub zone: Zone,
    pub clawed_back: u64,
    pub outstanding: u64,
    pub queue: Option<String>,
}

/// The reference model.
#[derive(Debug, Default)]
pub struct Model {
    pub orders: BTreeMap<(PartnerId, OrderId), OrderModel>,
    pub events: BTreeMap<(PartnerId, EventId), EventResult>,
    pub caps: BTreeMap<(ParticipantId, String), i64>,
    pub balances: BTreeMap<ParticipantId, Balance>,
    pub entries: usize,
    /// Shard → what is left of the active partner's budget on it.
    pub budget: BTreeMap<u32, i64>,
    /// Participants an admin has blocked (the profiles' standing).
    pub blocked: BTreeSet<ParticipantId>,
}

/// The programme shard of a cashback entry, by its id builder.
fn shard_of(
    id: fn(&PartnerId, &OrderId) -> EntryId,
    (partner, order): &(PartnerId, OrderId),
) -> u32 {
    programme_shard(&id(partner, order))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Result(EventResult),
    UnknownOrder,
    Released(Points),
    NotEligible(OrderStatus),
    /// A blocked participant's release: nothing moves.
    NotActive,
    Spent,
}

#[derive(Debug, Clone)]
pub enum Actual {
    Event(Result<EventResult, CashbackError>),
    Release(Result<ReleaseOutcome, CashbackError>),
    Spent(bool),
    GaveUp,
}

impl Actual {
    pub fn label(&self) -> &'static str {
        match self {
            Actual::Event(Ok(r)) => match (r.change.as_str(), r.status.as_str()) {
                (_, _) if r.reason.as_deref() == Some("no_change") => "order_no_change",
                (_, _) if r.reason.as_deref() == Some("capped") => "order_capped",
                (_, _) if r.reason.as_deref() == Some("monthly_cap_reached") => "order_cap_reached",
                (_, _) if r.reason.as_deref() == Some("budget_exhausted") => {
                    "order_budget_exhausted"
                }
                (_, _) if r.reason.as_deref() == Some("participant_not_active") => {
                    "order_participant_not_active"
                }
                ("created", "pending") => "order_credited",
                ("created", _) => "order_no_cashback",
                ("delivered", _) => "order_delivered",
                (_, "reversed") => "order_reversed",
                (_, "clawed_back") => "order_clawed_back",
                _ => "order_closed",
            },
            Actual::Event(Err(CashbackError::UnknownOrder)) => "order_unknown",
            Actual::Event(Err(_)) => "order_error",
            Actual::Release(Ok(ReleaseOutcome::Released(_))) => "order_released",
            Actual::Release(Ok(ReleaseOutcome::NotEligible(_))) => "order_not_releasable",
            Actual::Release(Ok(ReleaseOutcome::ParticipantNotActive)) => {
                "order_release_participant_not_active"
            }
            Actual::Release(Err(_)) => "order_release_error",
            Actual::Spent(_) => "spent",
            Actual::GaveUp => "gave_up",
        }
    }
}

pub struct Cashback {
    pub policy: CashbackPolicy,
    pub model: Model,
    next_order: u64,
    next_event: u64,
    next_spend: u64,
    orders: Vec<(PartnerId, OrderId)>,
    eligible: Vec<(PartnerId, OrderId)>,
    released: Vec<(PartnerId, OrderId)>,
    sent: Vec<(PartnerId, OrderEvent)>,
    last: Option<(PartnerId, OrderEvent)>,
}

/// The zone an order's cap month and release month are counted in: its region's.
fn zone_of(order: &NewOrder) -> Zone {
    crate::world::zones().for_region(Some(&order.region))
}

fn partner(name: &str) -> PartnerId {
    PartnerId::parse(name).expect("partner id")
}

impl Cashback {
    pub fn new() -> Self {
        Self {
            policy: policy(),
            model: Model::default(),
            next_order: 1,
            next_event: 1,
            next_spend: 1,
            orders: Vec::new(),
            eligible: Vec::new(),
            released: Vec::new(),
            sent: Vec::new(),
            last: None,
        }
    }

    /// The programme's settings, in the store (the model knows them as constants).
    pub fn configure(&self, store: &MemoryCashback) {
        let terms = |rate, active| PartnerTerms {
            name: "Sim".into(),
            default_rate_bp: rate,
            category_rates_bp: BTreeMap::from([("drinks".to_string(), 1_000)]),
            active,
        };
        store.set_partner(&partner(ACTIVE_PARTNER), &terms(500, true));
        store.set_partner(&partner(INACTIVE_PARTNER), &terms(300, false));
        store.set_minimum_order(
            &RegionId::parse("south").expect("region"),
            MinimumOrder::parse(SOUTH_MINIMUM).expect("a minimum"),
        );
        store.set_zones(crate::world::zones());
    }

    /// Funds the active partner's budget in the store and the model.
    pub fn fund(&mut self, store: &MemoryCashback) {
        let account = ProgrammeAccount::PartnerFund(partner(ACTIVE_PARTNER));
        store.fund_budget(&account, Points(PARTNER_BUDGET), "sim-funding");
        let funded = store.programme_balance(&account);
        for (shard, left) in funded.shards.iter().enumerate() {
            self.model.budget.insert(shard as u32, *left);
        }
    }

    fn event_id(&mut self) -> EventId {
        let id = EventId::parse(&format!("ev-{}", self.next_event)).expect("event id");
        self.next_event += 1;
        id
    }

    fn pick(rng: &mut ChaCha8Rng, from: &[(PartnerId, OrderId)]) -> Option<(PartnerId, OrderId)> {
        (!from.is_empty()).then(|| from[rng.random_range(0..from.len())].clone())
    }

    /// The action an operation sends; `None` when there is nothing to act on yet.
    pub fn request(
        &mut self,
        op: CashbackOp,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<Utc>,
    ) -> Option<Action> {
        let change = |this: &mut Self, (p, o): (PartnerId, OrderId), change| {
            let event_id = this.event_id();
            Some(Action::Event(
                p,
                OrderEvent {
                    event_id,
                    order_id: o,
                    occurred_at: now,
                    change,
                },
            ))
        };
        match op {
            CashbackOp::Created => {
                let p = partner(if rng.random_bool(0.9) {
                    ACTIVE_PARTNER
                } else {
                    INACTIVE_PARTNER
                });
                let order = if rng.random_bool(0.03) && !self.orders.is_empty() {
                    // A second created event for an order (a partner bug).
                    Self::pick(rng, &self.orders)?.1
                } else {
                    let id = OrderId::parse(&format!("SO-{}", self.next_order)).expect("id");
                    self.next_order += 1;
                    id
                };
                let actor = &world.actors[world.pick(rng)];
                let new = NewOrder {
                    participant_id: actor.participant.clone(),
                    region: actor.region.clone(),
                    channel: if rng.random_bool(0.9) { "app" } else { "web" }.into(),
                    category: if rng.random_bool(0.3) {
                        "drinks"
                    } else {
                        "snacks"
                    }
                    .into(),
                    amount_minor: rng.random_range(100_000..=1_200_000),
                    lines: vec![],
                };
                change(self, (p, order), OrderChange::Created(new))
            }
            CashbackOp::Delivered => {
                let o = Self::pick(rng, &self.orders)?;
                change(self, o, OrderChange::Delivered)
            }
            CashbackOp::Cancelled => {
                let o = Self::pick(rng, &self.orders)?;
                change(self, o, OrderChange::Cancelled)
            }
            CashbackOp::Returned => {
                let o = if rng.random_bool(0.7) {
                    Self::pick(rng, &self.released).or_else(|| Self::pick(rng, &self.orders))?
                } else {
                    Self::pick(rng, &self.orders)?
                };
                change(self, o, OrderChange::Returned)
            }
            CashbackOp::OutOfOrder => {
                // The order the next created event creates (if it is the active partner's).
                let o = OrderId::parse(&format!("SO-{}", self.next_order)).expect("id");
                let c = if rng.random_bool(0.5) {
                    OrderChange::Delivered
                } else {
                    OrderChange::Cancelled
                };
                change(self, (partner(ACTIVE_PARTNER), o), c)
            }
            CashbackOp::Replayed => {
                let (p, e) = self
                    .sent
                    .get(rng.random_range(0..self.sent.len().max(1)))?
                    .clone();
                Some(Action::Event(p, e))
            }
            CashbackOp::Redeliver => {
                let (p, e) = self.last.clone()?;
                Some(Action::Event(p, e))
            }
            CashbackOp::Release => {
                let (p, o) = if rng.random_bool(0.8) {
                    Self::pick(rng, &self.eligible)?
                } else {
                    Self::pick(rng, &self.orders)?
                };
                Some(Action::Release(p, o))
            }
            CashbackOp::Spend => {
                let actor = &world.actors[world.pick(rng)];
                let available = self
                    .model
                    .balances
                    .get(&actor.participant)
                    .map_or(0, |b| b.available);
                if available == 0 {
                    return None;
                }
                let points = rng.random_range(1..=available);
                Some(Action::Spend(actor.participant.clone(), Points(points)))
            }
        }
    }

    /// What the model says `action` must answer at `now`.
    pub fn predict(&self, action: &Action, now: DateTime<Utc>) -> Expected {
        match action {
            Action::Spend(..) => Expected::Spent,
            Action::Release(p, o) => match self.model.orders.get(&(p.clone(), o.clone())) {
                None => Expected::UnknownOrder,
                Some(m) if m.status == OrderStatus::Eligible && m.cashback > 0 => {
                    if self.model.blocked.contains(&m.participant) {
                        Expected::NotActive
                    } else {
                        Expected::Released(Points(m.cashback))
                    }
                }
                Some(m) => Expected::NotEligible(m.status),
            },
            Action::Event(p, e) => {
                if let Some(first) = self.model.events.get(&(p.clone(), e.event_id.clone())) {
                    return Expected::Result(first.clone());
                }
                let order = self.model.orders.get(&(p.clone(), e.order_id.clone()));
                let result = |status: OrderStatus, points: u64, reason: Option<&str>| EventResult {
                    event_id: e.event_id.to_string(),
                    order_id: e.order_id.to_string(),
                    change: e.change.as_str().into(),
                    status: status.as_str().into(),
                    points,
                    reason: reason.map(str::to_string),
                    outstanding_clawback: None,
                };
                match (&e.change, order) {
                    (OrderChange::Created(_), Some(m)) => {
                        Expected::Result(result(m.status, 0, Some("order_already_created")))
                    }
                    (OrderChange::Created(new), None) => {
                        let earned = earned(p, new);
                        Expected::Result(match earned {
                            Err(why) => result(OrderStatus::NoCashback, 0, Some(why)),
                            // The first try credits (it guesses an empty month), so the
                            // standing check refuses it, whatever the cap and the fund.
                            Ok(points)
                                if points > 0
                                    && self.model.blocked.contains(&new.participant_id) =>
                            {
                                result(OrderStatus::NoCashback, 0, Some("participant_not_active"))
                            }
                            Ok(points) => {
                                let used = self
                                    .model
                                    .caps
                                    .get(&(new.participant_id.clone(), month_of(now, zone_of(new))))
                                    .copied()
                                    .unwrap_or(0);
                                let room = (CAP as i64 - used).max(0) as u64;
                                let credit = points.min(room);
                                // The store gathers a dry shard from the others, so only
                                // the whole fund decides.
                                let funded = !self.model.budget.is_empty();
                                let left: i64 = self.model.budget.values().sum();
                                if credit == 0 {
                                    result(OrderStatus::NoCashback, 0, Some("monthly_cap_reached"))
                                } else if *p.as_str() == *ACTIVE_PARTNER
                                    && funded
                                    && left < credit as i64
                                {
                                    result(OrderStatus::NoCashback, 0, Some("budget_exhausted"))
                                } else if credit < points {
                                    result(OrderStatus::Pending, credit, Some("capped"))
                                } else {
                                    result(OrderStatus::Pending, credit, None)
                                }
                            }
                        })
                    }
                    (_, None) => Expected::UnknownOrder,
                    (OrderChange::Delivered, Some(m)) => Expected::Result(match m.status {
                        OrderStatus::Pending => result(OrderStatus::Eligible, 0, None),
                        OrderStatus::NoCashback => result(OrderStatus::NoCashback, 0, None),
                        s => result(s, 0, Some("no_change")),
                    }),
                    (_, Some(m)) => Expected::Result(match m.status {
                        OrderStatus::Pending | OrderStatus::Eligible => {
                            result(OrderStatus::Reversed, m.cashback, None)
                        }
                        OrderStatus::Released => {
                            let available = self
                                .model
                                .balances
                                .get(&m.participant)
                                .map_or(0, |b| b.available);
                            let taken = m.cashback.min(available);
                            let mut r = result(OrderStatus::ClawedBack, taken, None);
                            r.outstanding_clawback = Some(m.cashback - taken);
                            r
                        }
                        OrderStatus::NoCashback => result(OrderStatus::Closed, 0, None),
                        s => result(s, 0, Some("no_change")),
                    }),
                }
            }
        }
    }

    /// Runs `action` through the real use cases, retrying what a client retries.
    pub fn execute(
        &mut self,
        store: &FaultyCashback<MemoryCashback>,
        action: &Action,
        now: DateTime<Utc>,
        faults: &mut Vec<Fault>,
    ) -> Actual {
        match action {
            Action::Spend(p, points) => {
                let id = EntryId::parse(&format!("sim-spend-{}", self.next_spend)).expect("id");
                self.next_spend += 1;
                Actual::Spent(store.inner().spend(p, id, *points, now))
            }
            Action::Release(p, o) => {
                for _ in 0..MAX_TRIES {
                    let result = block_on(cashback::release(store, p, o, now));
                    faults.extend(store.take_injected());
                    match result {
                        Err(CashbackError::Infra(e)) if e.retryable => continue,
                        other => return Actual::Release(other),
                    }
                }
                Actual::GaveUp
            }
            Action::Event(p, e) => {
                self.last = Some((p.clone(), e.clone()));
                for _ in 0..MAX_TRIES {
                    let result = block_on(cashback::apply(store, &self.policy, p, e, now));
                    faults.extend(store.take_injected());
                    match result {
                        Err(CashbackError::Infra(err)) if err.retryable => continue,
                        other => return Actual::Event(other.map(|applied| applied.result)),
                    }
                }
                Actual::GaveUp
            }
        }
    }

    /// Compares the answer with the prediction, then moves the model. `crashed`: a commit's
    /// answer was lost (a release retried then finds its order released).
    pub fn settle(
        &mut self,
        action: &Action,
        expected: Expected,
        actual: &Actual,
        crashed: bool,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let mismatch = || format!("expected {expected:?}, got {actual:?}");
        match (action, &expected, actual) {
            (_, _, Actual::GaveUp) => Err(format!(
                "liveness: all {MAX_TRIES} tries failed with retryable errors; expected {expected:?}"
            )),
            (Action::Spend(p, points), Expected::Spent, Actual::Spent(true)) => {
                let b = self.model.balances.entry(p.clone()).or_default();
                *b = b
                    .apply(EntryKind::Redemption, *points)
                    .map_err(|e| format!("the model spent more than available: {e}"))?;
                self.model.entries += 1;
                Ok(())
            }
            (Action::Release(..), Expected::UnknownOrder, Actual::Release(Err(CashbackError::UnknownOrder))) => Ok(()),
            (Action::Release(_, _), Expected::NotEligible(s), Actual::Release(Ok(ReleaseOutcome::NotEligible(t))))
                if s == t =>
            {
                Ok(())
            }
            (Action::Release(..), Expected::NotActive, Actual::Release(Ok(ReleaseOutcome::ParticipantNotActive))) => Ok(()),
            (Action::Release(p, o), Expected::Released(points), Actual::Release(Ok(outcome)))
                if *outcome == ReleaseOutcome::Released(*points)
                    || (crashed
                        && *outcome == ReleaseOutcome::NotEligible(OrderStatus::Released)) =>
            {
                let key = (p.clone(), o.clone());
                let m = self.model.orders.get_mut(&key).expect("predicted from it");
                m.status = OrderStatus::Released;
                m.queue = None;
                let b = self.model.balances.entry(m.participant.clone()).or_default();
                *b = b.apply(EntryKind::CashbackReleased, *points).map_err(|e| e.to_string())?;
                self.model.entries += 1;
                self.eligible.retain(|k| *k != key);
                self.released.push(key);
                Ok(())
            }
            (Action::Event(..), Expected::UnknownOrder, Actual::Event(Err(CashbackError::UnknownOrder))) => Ok(()),
            (Action::Event(p, e), Expected::Result(want), Actual::Event(Ok(got))) if want == got => {
                let key = (p.clone(), e.event_id.clone());
                if self.model.events.contains_key(&key) {
                    return Ok(()); // a replay: nothing moves
                }
                self.model.events.insert(key, got.clone());
                self.sent.push((p.clone(), e.clone()));
                self.apply_result(p, e, got, now).map_err(|v| format!("{v} ({})", mismatch()))
            }
            _ => Err(mismatch()),
        }
    }

    fn apply_result(
        &mut self,
        p: &PartnerId,
        e: &OrderEvent,
        r: &EventResult,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let key = (p.clone(), e.order_id.clone());
        let m = &mut self.model;
        match &e.change {
            OrderChange::Created(new) => {
                if m.orders.contains_key(&key) {
                    return Ok(()); // acknowledged, ignored
                }
                let zone = zone_of(new);
                let month = month_of(now, zone);
                let status = OrderStatus::parse(&r.status).ok_or("unknown status")?;
                if r.points > 0 {
                    *m.caps
                        .entry((new.participant_id.clone(), month.clone()))
                        .or_default() += r.points as i64;
                    let b = m.balances.entry(new.participant_id.clone()).or_default();
                    *b = b
                        .apply(EntryKind::CashbackPending, Points(r.points))
                        .map_err(|e| e.to_string())?;
                    m.entries += 1;
                    if p.as_str() == ACTIVE_PARTNER && !m.budget.is_empty() {
                        draw_budget(
                            &mut m.budget,
                            |shard| shard,
                            shard_of(cashback_ids::pending, &key),
                            r.points as i64,
                        )?;
                    }
                }
                m.orders.insert(
                    key.clone(),
                    OrderModel {
                        participant: new.participant_id.clone(),
                        status,
                        cashback: r.points,
                        month,
                        zone,
                        clawed_back: 0,
                        outstanding: 0,
                        queue: None,
                    },
                );
                self.orders.push(key);
            }
            OrderChange::Delivered => {
                let o = m.orders.get_mut(&key).ok_or("delivered: no order")?;
                if o.status == OrderStatus::Pending {
                    o.status = OrderStatus::Eligible;
                    o.queue = Some(release_queue(&month_of(now, o.zone)));
                    self.eligible.push(key);
                }
            }
            OrderChange::Cancelled | OrderChange::Returned => {
                let o = m.orders.get_mut(&key).ok_or("withdrawn: no order")?;
                match o.status {
                    OrderStatus::Pending | OrderStatus::Eligible => {
                        o.status = OrderStatus::Reversed;
                        o.queue = None;
                        *m.caps
                            .entry((o.participant.clone(), o.month.clone()))
                            .or_default() -= o.cashback as i64;
                        let b = m.balances.entry(o.participant.clone()).or_default();
                        *b = b
                            .apply(EntryKind::CashbackReversed, Points(o.cashback))
                            .map_err(|e| e.to_string())?;
                        m.entries += 1;
                        if p.as_str() == ACTIVE_PARTNER && o.cashback > 0 {
                            *m.budget
                                .entry(shard_of(cashback_ids::reversed, &key))
                                .or_default() += o.cashback as i64;
                        }
                        self.eligible.retain(|k| *k != key);
                    }
                    OrderStatus::Released => {
                        o.status = OrderStatus::ClawedBack;
                        o.clawed_back = r.points;
                        o.outstanding = o.cashback - r.points;
                        if o.outstanding > 0 {
                            o.queue = Some(OUTSTANDING_CLAWBACKS.to_string());
                        }
                        if r.points > 0 {
                            let b = m.balances.entry(o.participant.clone()).or_default();
                            *b = b
                                .apply(EntryKind::Clawback, Points(r.points))
                                .map_err(|e| e.to_string())?;
                            m.entries += 1;
                            if p.as_str() == ACTIVE_PARTNER {
                                *m.budget
                                    .entry(shard_of(cashback_ids::clawback, &key))
                                    .or_default() += r.points as i64;
                            }
                        }
                        self.released.retain(|k| *k != key);
                    }
                    OrderStatus::NoCashback => o.status = OrderStatus::Closed,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The participant an action touches (for the checker).
    pub fn participant_of(&self, action: &Action) -> Option<ParticipantId> {
        match action {
            Action::Spend(p, _) => Some(p.clone()),
            Action::Event(p, e) => match &e.change {
                OrderChange::Created(new) => Some(new.participant_id.clone()),
                _ => self
                    .model
                    .orders
                    .get(&(p.clone(), e.order_id.clone()))
                    .map(|o| o.participant.clone()),
            },
            Action::Release(p, o) => self
                .model
                .orders
                .get(&(p.clone(), o.clone()))
                .map(|o| o.participant.clone()),
        }
    }

    /// The order an action touches (for the checker).
    pub fn order_of(action: &Action) -> Option<(PartnerId, OrderId)> {
        match action {
            Action::Spend(..) => None,
            Action::Event(p, e) => Some((p.clone(), e.order_id.clone())),
            Action::Release(p, o) => Some((p.clone(), o.clone())),
        }
    }
}

impl Default for Cashback {
    fn default() -> Self {
        Self::new()
    }
}

/// The cashback an order earns before the cap, by the programme's rules.
fn earned(p: &PartnerId, order: &NewOrder) -> Result<u64, &'static str> {
    let rate = match p.as_str() {
        ACTIVE_PARTNER if order.category == "drinks" => 1_000,
        ACTIVE_PARTNER => 500,
        INACTIVE_PARTNER => return Err("partner_inactive"),
        _ => return Err("partner_not_configured"),
    };
    if order.channel != "app" {
        return Err("not_app_channel");
    }
    let minimum = if order.region.as_str() == "south" {
        SOUTH_MINIMUM
    } else {
        DEFAULT_MINIMUM
    };
    if order.amount_minor < minimum {
        return Err("below_minimum_order");
    }
    match order.amount_minor * rate / 1_000_000 {
        0 => Err("nothing_to_earn"),
        points => Ok(points),
    }
}
