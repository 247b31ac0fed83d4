//! The order state machine: what one order event (or a monthly release) does, as data.
//!
//! [`decide`] is pure: from the programme's terms, what is known of the stored state and the
//! event, it returns a [`Decision`] (the event's stored result, the order write and the status
//! it expects, the cap counter move and the room it relies on, the ledger entry) or says what
//! it still needs to read. The store commits a decision all-or-nothing, or refuses it saying
//! what changed ([`Refusal`]); [`apply`] folds the refusal into the state and decides again, a
//! few times at most.
//!
//! Rules:
//! - `created`: the cashback ([`cashback`]) within the month's remaining room
//!   ([`within_cap`]); the order is created `pending` (credited) or `no_cashback`. A second
//!   created event for an existing order is acknowledged and changes nothing. A credit goes
//!   only to a registered, active participant, checked with the commit: for anyone else
//!   the order is recorded `no_cashback` with the reason `participant_not_active`.
//! - `delivered`: `pending` becomes `eligible` and enters the release queue of the month of
//!   delivery; `no_cashback` stays, stamped delivered. Both count for challenges.
//! - `cancelled`/`returned` before release: the pending credit is reversed and its room given
//!   back to the month it was counted in (the participant never had those points).
//! - after release: a clawback of what the available balance covers, never more; the rest is
//!   recorded on the order as outstanding and queued for settlement. The month's room is not
//!   given back: that month has been settled.
//! - A change for an order whose created event has not arrived is [`CashbackError::UnknownOrder`]
//!   and writes nothing. A replayed event id answers its first result and writes nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    cashback, entry_ids, month_of, within_cap, CashbackError, CashbackPolicy, MinimumOrder,
    OrderChange, OrderEvent, OrderId, OrderLine, OrderStatus, PartnerId, PartnerTerms,
};
use crate::ids::{ParticipantId, RegionId};
use crate::ledger::{Entry, EntryKind};
use crate::outbox::OutboxEvent;
use crate::zone::Zones;
use crate::{InfraError, Points};

/// Refusals a single request folds in before giving up: each one means another writer moved
/// the order, the cap counter or the balance, so under contention every attempt is someone's
/// progress.
pub const MAX_ATTEMPTS: usize = 16;

/// What an event did; stored with the event so that a replay answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    pub event_id: String,
    pub order_id: String,
    #[serde(rename = "type")]
    pub change: String,
    /// The order's status after the event.
    pub status: String,
    /// Points this event moved (credited, reversed or clawed back).
    pub points: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outstanding_clawback: Option<u64>,
}

/// A stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub partner: PartnerId,
    pub id: OrderId,
    pub participant: ParticipantId,
    pub region: RegionId,
    pub channel: String,
    pub category: String,
    pub amount_minor: u64,
    pub status: OrderStatus,
    /// Points credited to pending when it was created (0 when it earned nothing).
    pub cashback: Points,
    /// The month whose cap the cashback counts against.
    pub month: String,
    pub lines: Vec<OrderLine>,
    pub ordered_at: DateTime<Utc>,
    pub clawed_back: Points,
    pub outstanding_clawback: Points,
}

/// The settings a created order is judged by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Terms {
    pub policy: CashbackPolicy,
    /// `None`: the partner is not configured.
    pub partner: Option<PartnerTerms>,
    /// `None`: the region has no minimum of its own (the policy's default applies).
    pub region_minimum: Option<MinimumOrder>,
    /// The zones the order's region counts its cap month and release month in.
    pub zones: Zones,
}

/// What is known of the order.
// One per request, on the stack of `apply`: never in a collection, so not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// Not read. A created event assumes no order, a delivered one a pending order (the
    /// steady state); the store's conditions check the assumption.
    Unread,
    Absent,
    Present(Order),
}

/// What is known of the stored state when deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub order: Known,
    /// The month's cap counter as last seen (0 until a refusal says otherwise: the counter's
    /// condition checks the room, so the guess costs nothing when there is room).
    pub cap_used: u64,
    /// The participant's available balance, read only for a clawback.
    pub available: Option<u64>,
    /// The partner's fund has a budget that cannot cover the credit (learnt from a refusal):
    /// the order earns nothing, like an order over the monthly cap.
    pub budget_exhausted: bool,
    /// The participant has no profile or is blocked (learnt from a refusal): the order earns
    /// nothing.
    pub participant_not_active: bool,
}

impl State {
    pub fn unread() -> State {
        State {
            order: Known::Unread,
            cap_used: 0,
            available: None,
            budget_exhausted: false,
            participant_not_active: false,
        }
    }
}

/// Where an order is queued for settlement (the DynamoDB adapter's `gsi1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queue {
    /// Delivered in this month (`YYYY-MM`), awaiting release.
    Release(String),
    /// A clawback the balance could not cover.
    OutstandingClawback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueMove {
    Keep,
    Enter(Queue),
    Leave,
}

/// Which time stamp a transition sets on the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    DeliveredAt,
    WithdrawnAt,
    ReleasedAt,
}

impl Stamp {
    pub fn attribute(self) -> &'static str {
        match self {
            Stamp::DeliveredAt => "delivered_at",
            Stamp::WithdrawnAt => "withdrawn_at",
            Stamp::ReleasedAt => "released_at",
        }
    }
}

/// The order's write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderWrite {
    /// Only the event is recorded.
    None,
    /// A new order, on condition that none exists.
    Create(Order),
    /// On condition that the order's status is still `expect`.
    Transition {
        expect: OrderStatus,
        to: OrderStatus,
        stamp: Stamp,
        queue: QueueMove,
        /// `(clawed back, outstanding)` for a return after release.
        clawback: Option<(Points, Points)>,
    },
}

/// A move of a participant's monthly cap counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapMove {
    pub participant: ParticipantId,
    pub month: String,
    /// Points added (negative: room given back).
    pub delta: i64,
    /// On condition that the counter is at most this before the move (absent counts as 0);
    /// `None`: unconditional.
    pub at_most: Option<u64>,
}

/// One decision: committed all-or-nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub partner: PartnerId,
    pub order_id: OrderId,
    /// The event and its result, recorded on condition that the event is new. `None` for a
    /// release, which is no event.
    pub event: Option<(super::EventId, EventResult)>,
    pub order: OrderWrite,
    pub cap: Option<CapMove>,
    /// A participant who must be registered and active for the commit (whom it credits).
    pub standing: Option<ParticipantId>,
    /// The ledger entry, with the outbox event announcing it.
    pub entry: Option<(Entry, Option<OutboxEvent>)>,
    /// A delivered order whose units count towards challenges (counted before the commit;
    /// counting a source twice counts it once).
    pub count_for_challenges: Option<Order>,
}

/// Why a store refused a decision: what changed. When several conditions fail, the first in
/// this order wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The event was applied before: its first result.
    EventSeen(EventResult),
    /// The participant of [`Decision::standing`] has no profile or is blocked.
    ParticipantNotActive,
    /// The order is not in the expected state: what it is now (`None`: there is none).
    OrderMoved(Option<Order>),
    /// The month's cap counter no longer leaves the room: its value now.
    CapMovedTo(u64),
    /// The balance no longer covers the entry (spent meanwhile).
    BalanceMoved,
    /// The partner's fund has a budget, and the shard the credit draws on cannot cover it.
    BudgetExhausted,
}

/// What [`decide`] needs read before it can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Order,
    Available(ParticipantId),
}

/// The result of deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Commit(Box<Decision>),
    Read(Need),
}

/// The order event as a decision, given what is known.
pub fn decide(
    terms: &Terms,
    state: &State,
    partner: &PartnerId,
    event: &OrderEvent,
    now: DateTime<Utc>,
) -> Result<Step, CashbackError> {
    let change = event.change.as_str();
    let result = |status: OrderStatus, points: u64, reason: Option<&str>| EventResult {
        event_id: event.event_id.to_string(),
        order_id: event.order_id.to_string(),
        change: change.into(),
        status: status.as_str().into(),
        points,
        reason: reason.map(str::to_string),
        outstanding_clawback: None,
    };
    let decision = |r: EventResult| Decision {
        partner: partner.clone(),
        order_id: event.order_id.clone(),
        event: Some((event.event_id.clone(), r)),
        order: OrderWrite::None,
        cap: None,
        standing: None,
        entry: None,
        count_for_challenges: None,
    };
    let commit = |d: Decision| Ok(Step::Commit(Box::new(d)));
    let transition = |expect, to, stamp, queue| OrderWrite::Transition {
        expect,
        to,
        stamp,
        queue,
        clawback: None,
    };

    match &event.change {
        OrderChange::Created(new) => {
            if let Known::Present(existing) = &state.order {
                // A second created event for one order (a partner bug): acknowledged, ignored.
                return commit(decision(result(
                    existing.status,
                    0,
                    Some("order_already_created"),
                )));
            }
            let month = month_of(now, terms.zones.for_region(Some(&new.region)));
            let earned = cashback(
                &terms.policy,
                terms.partner.as_ref(),
                new,
                terms.region_minimum,
            );
            let (credit, r) = match earned {
                Err(why) => (
                    Points::ZERO,
                    result(OrderStatus::NoCashback, 0, Some(why.as_str())),
                ),
                Ok(_) if state.participant_not_active => (
                    Points::ZERO,
                    result(OrderStatus::NoCashback, 0, Some("participant_not_active")),
                ),
                Ok(_) if state.budget_exhausted => (
                    Points::ZERO,
                    result(OrderStatus::NoCashback, 0, Some("budget_exhausted")),
                ),
                Ok(full) => {
                    let credit = within_cap(full, state.cap_used, terms.policy.monthly_cap);
                    let r = if credit == Points::ZERO {
                        result(OrderStatus::NoCashback, 0, Some("monthly_cap_reached"))
                    } else if credit < full {
                        result(OrderStatus::Pending, credit.get(), Some("capped"))
                    } else {
                        result(OrderStatus::Pending, credit.get(), None)
                    };
                    (credit, r)
                }
            };
            let status = if credit == Points::ZERO {
                OrderStatus::NoCashback
            } else {
                OrderStatus::Pending
            };
            let order = Order {
                partner: partner.clone(),
                id: event.order_id.clone(),
                participant: new.participant_id.clone(),
                region: new.region.clone(),
                channel: new.channel.clone(),
                category: new.category.clone(),
                amount_minor: new.amount_minor,
                status,
                cashback: credit,
                month: month.clone(),
                lines: new.lines.clone(),
                ordered_at: event.occurred_at,
                clawed_back: Points::ZERO,
                outstanding_clawback: Points::ZERO,
            };
            let mut d = decision(r);
            d.order = OrderWrite::Create(order);
            if credit > Points::ZERO {
                d.standing = Some(new.participant_id.clone());
                d.cap = Some(CapMove {
                    participant: new.participant_id.clone(),
                    month,
                    delta: credit.get() as i64,
                    at_most: Some(terms.policy.monthly_cap.get() - credit.get()),
                });
                let entry = Entry {
                    id: entry_ids::pending(partner, &event.order_id),
                    participant: new.participant_id.clone(),
                    outlet: None,
                    kind: EntryKind::CashbackPending,
                    amount: credit,
                    source: format!("{partner} order {}", event.order_id),
                    created_at: now,
                    expires_on: None,
                };
                let announce = OutboxEvent::CashbackPending {
                    participant_id: new.participant_id.clone(),
                    entry_id: entry.id.clone(),
                    partner_id: partner.to_string(),
                    order_id: event.order_id.to_string(),
                    points: credit,
                };
                d.entry = Some((entry, Some(announce)));
            }
            commit(d)
        }
        OrderChange::Delivered => {
            // The release month is the order's region's: unread, the order's region is
            // unknown, so it is read first unless every region counts in one zone.
            if state.order == Known::Unread && !terms.zones.uniform() {
                return Ok(Step::Read(Need::Order));
            }
            let eligible = |count: Option<Order>| {
                let zone = terms.zones.for_region(count.as_ref().map(|o| &o.region));
                let mut d = decision(result(OrderStatus::Eligible, 0, None));
                d.order = transition(
                    OrderStatus::Pending,
                    OrderStatus::Eligible,
                    Stamp::DeliveredAt,
                    QueueMove::Enter(Queue::Release(month_of(now, zone))),
                );
                d.count_for_challenges = count;
                d
            };
            match &state.order {
                Known::Unread => commit(eligible(None)),
                Known::Absent => Err(CashbackError::UnknownOrder),
                Known::Present(order) => match order.status {
                    OrderStatus::Pending => commit(eligible(Some(order.clone()))),
                    // Still delivered, for challenges and reports, though it earned nothing.
                    OrderStatus::NoCashback => {
                        let mut d = decision(result(OrderStatus::NoCashback, 0, None));
                        d.order = transition(
                            OrderStatus::NoCashback,
                            OrderStatus::NoCashback,
                            Stamp::DeliveredAt,
                            QueueMove::Keep,
                        );
                        d.count_for_challenges = Some(order.clone());
                        commit(d)
                    }
                    other => commit(decision(result(other, 0, Some("no_change")))),
                },
            }
        }
        OrderChange::Cancelled | OrderChange::Returned => {
            let order = match &state.order {
                Known::Unread => return Ok(Step::Read(Need::Order)),
                Known::Absent => return Err(CashbackError::UnknownOrder),
                Known::Present(order) => order,
            };
            match order.status {
                OrderStatus::Pending | OrderStatus::Eligible => {
                    let mut d = decision(result(OrderStatus::Reversed, order.cashback.get(), None));
                    d.order = transition(
                        order.status,
                        OrderStatus::Reversed,
                        Stamp::WithdrawnAt,
                        QueueMove::Leave,
                    );
                    d.cap = Some(CapMove {
                        participant: order.participant.clone(),
                        month: order.month.clone(),
                        delta: -(order.cashback.get() as i64),
                        at_most: None,
                    });
                    d.entry = Some((
                        Entry {
                            id: entry_ids::reversed(partner, &order.id),
                            participant: order.participant.clone(),
                            outlet: None,
                            kind: EntryKind::CashbackReversed,
                            amount: order.cashback,
                            source: format!("{partner} order {} {change}", order.id),
                            created_at: now,
                            expires_on: None,
                        },
                        None,
                    ));
                    commit(d)
                }
                OrderStatus::Released => {
                    let Some(available) = state.available else {
                        return Ok(Step::Read(Need::Available(order.participant.clone())));
                    };
                    let taken = Points(order.cashback.get().min(available));
                    let outstanding = Points(order.cashback.get() - taken.get());
                    let mut r = result(OrderStatus::ClawedBack, taken.get(), None);
                    r.outstanding_clawback = Some(outstanding.get());
                    let mut d = decision(r);
                    d.order = OrderWrite::Transition {
                        expect: OrderStatus::Released,
                        to: OrderStatus::ClawedBack,
                        stamp: Stamp::WithdrawnAt,
                        queue: if outstanding > Points::ZERO {
                            QueueMove::Enter(Queue::OutstandingClawback)
                        } else {
                            QueueMove::Keep
                        },
                        clawback: Some((taken, outstanding)),
                    };
                    if taken > Points::ZERO {
                        d.entry = Some((
                            Entry {
                                id: entry_ids::clawback(partner, &order.id),
                                participant: order.participant.clone(),
                                outlet: None,
                                kind: EntryKind::Clawback,
                                amount: taken,
                                source: format!(
                                    "{partner} order {} {change} after release",
                                    order.id
                                ),
                                created_at: now,
                                expires_on: None,
                            },
                            None,
                        ));
                    }
                    commit(d)
                }
                OrderStatus::NoCashback => {
                    let mut d = decision(result(OrderStatus::Closed, 0, None));
                    d.order = transition(
                        OrderStatus::NoCashback,
                        OrderStatus::Closed,
                        Stamp::WithdrawnAt,
                        QueueMove::Keep,
                    );
                    commit(d)
                }
                other => commit(decision(result(other, 0, Some("no_change")))),
            }
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Points),
    /// Not delivered, already released, reversed or earning nothing: nothing to release.
    NotEligible(OrderStatus),
    /// The participant has no profile or is blocked: nothing moved. The order stays
    /// eligible and queued, so a release after an unblock pays it.
    ParticipantNotActive,
}

/// The release of a delivered order's pending cashback to available, or why there is none.
pub fn decide_release(order: &Order, now: DateTime<Utc>) -> Result<Decision, ReleaseOutcome> {
    if order.status != OrderStatus::Eligible || order.cashback == Points::ZERO {
        return Err(ReleaseOutcome::NotEligible(order.status));
    }
    let entry = Entry {
        id: entry_ids::released(&order.partner, &order.id),
        participant: order.participant.clone(),
        outlet: None,
        kind: EntryKind::CashbackReleased,
        amount: order.cashback,
        source: format!("{} order {} released", order.partner, order.id),
        created_at: now,
        expires_on: None,
    };
    let announce = OutboxEvent::CashbackReleased {
        participant_id: order.participant.clone(),
        entry_id: entry.id.clone(),
        partner_id: order.partner.to_string(),
        order_id: order.id.to_string(),
        points: order.cashback,
    };
    Ok(Decision {
        partner: order.partner.clone(),
        order_id: order.id.clone(),
        event: None,
        order: OrderWrite::Transition {
            expect: OrderStatus::Eligible,
            to: OrderStatus::Released,
            stamp: Stamp::ReleasedAt,
            queue: QueueMove::Leave,
            clawback: None,
        },
        cap: None,
        // A blocked participant's pending points stay pending: checked in the release's
        // one transaction, so a block between the read and the write is not missed.
        standing: Some(order.participant.clone()),
        entry: Some((entry, Some(announce))),
        count_for_challenges: None,
    })
}

/// Storage for partner orders: settings, orders and the all-or-nothing commit of a decision.
pub trait CashbackStore: Send + Sync {
    /// The partner's terms and the region's minimum order (a warm function may cache them;
    /// the adapter documents how stale they may be).
    fn terms(
        &self,
        partner: &PartnerId,
        region: &RegionId,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<
        Output = Result<(Option<PartnerTerms>, Option<MinimumOrder>), InfraError>,
    > + Send;

    /// The programme's and the regions' zones (cached like the terms).
    fn zones(
        &self,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Zones, InfraError>> + Send;

    fn order(
        &self,
        partner: &PartnerId,
        order: &OrderId,
    ) -> impl std::future::Future<Output = Result<Option<Order>, InfraError>> + Send;

    /// The participant's available balance.
    fn available(
        &self,
        participant: &ParticipantId,
    ) -> impl std::future::Future<Output = Result<u64, InfraError>> + Send;

    /// Whether a delivery may count towards some challenge (then the order is read before a
    /// delivery is decided, for its lines).
    fn counts_deliveries(
        &self,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<bool, InfraError>> + Send;

    /// Commits every write of `decision` or none; a refusal says what changed.
    fn commit(
        &self,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<Result<(), Refusal>, InfraError>> + Send;
}

/// Where admins' settings go: a partner's terms and a region's minimum order.
pub trait CashbackSettings: Send + Sync {
    /// The partner's terms as stored, never from a cache: a budget top-up must not fund a
    /// partner just deleted.
    fn partner(
        &self,
        partner: &PartnerId,
    ) -> impl std::future::Future<Output = Result<Option<PartnerTerms>, InfraError>> + Send;

    fn put_partner(
        &self,
        partner: &PartnerId,
        terms: &PartnerTerms,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<(), InfraError>> + Send;

    fn put_minimum_order(
        &self,
        region: &RegionId,
        minimum: MinimumOrder,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = Result<(), InfraError>> + Send;
}

/// What an order event answered, and whether that answer is the first one replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: EventResult,
    /// The event id was seen before: nothing was written, and `result` is its first answer.
    pub replayed: bool,
}

/// Applies one verified order event exactly once. A replayed event id returns its first
/// result and writes nothing.
pub async fn apply<S: CashbackStore>(
    store: &S,
    policy: &CashbackPolicy,
    partner: &PartnerId,
    event: &OrderEvent,
    now: DateTime<Utc>,
) -> Result<Applied, CashbackError> {
    let zones = store.zones(now).await?;
    let terms = match &event.change {
        OrderChange::Created(new) => {
            let (partner_terms, minimum) = store.terms(partner, &new.region, now).await?;
            Terms {
                policy: *policy,
                partner: partner_terms,
                region_minimum: minimum,
                zones,
            }
        }
        _ => Terms {
            policy: *policy,
            zones,
            ..Terms::default()
        },
    };
    let mut state = State::unread();
    if event.change == OrderChange::Delivered && store.counts_deliveries(now).await? {
        state.order = known(store.order(partner, &event.order_id).await?);
    }
    let mut attempts = 0;
    while attempts < MAX_ATTEMPTS {
        match decide(&terms, &state, partner, event, now)? {
            Step::Read(Need::Order) => {
                state.order = known(store.order(partner, &event.order_id).await?);
            }
            Step::Read(Need::Available(participant)) => {
                state.available = Some(store.available(&participant).await?);
            }
            Step::Commit(decision) => {
                attempts += 1;
                let result = decision
                    .event
                    .as_ref()
                    .expect("events are recorded")
                    .1
                    .clone();
                match store.commit(&decision, now).await? {
                    Ok(()) => {
                        return Ok(Applied {
                            result,
                            replayed: false,
                        })
                    }
                    Err(Refusal::EventSeen(first)) => {
                        return Ok(Applied {
                            result: first,
                            replayed: true,
                        })
                    }
                    Err(Refusal::ParticipantNotActive) => state.participant_not_active = true,
                    Err(Refusal::OrderMoved(now_is)) => state.order = known(now_is),
                    Err(Refusal::CapMovedTo(used)) => state.cap_used = used,
                    Err(Refusal::BalanceMoved) => state.available = None,
                    Err(Refusal::BudgetExhausted) => state.budget_exhausted = true,
                }
            }
        }
    }
    Err(InfraError::retryable("apply order event", "too much contention").into())
}

/// Releases a delivered order's pending cashback to available: settlement calls this on the
/// monthly processing day for each order awaiting release. Safe to repeat: a released order
/// is reported as not eligible, and nothing moves twice. A blocked participant's order is
/// not released ([`ReleaseOutcome::ParticipantNotActive`]) and stays queued.
pub async fn release<S: CashbackStore>(
    store: &S,
    partner: &PartnerId,
    order: &OrderId,
    now: DateTime<Utc>,
) -> Result<ReleaseOutcome, CashbackError> {
    let order = store
        .order(partner, order)
        .await?
        .ok_or(CashbackError::UnknownOrder)?;
    let decision = match decide_release(&order, now) {
        Ok(d) => d,
        Err(outcome) => return Ok(outcome),
    };
    match store.commit(&decision, now).await? {
        Ok(()) => Ok(ReleaseOutcome::Released(order.cashback)),
        Err(Refusal::ParticipantNotActive) => Ok(ReleaseOutcome::ParticipantNotActive),
        // Cancelled or released concurrently: report what it is now.
        Err(Refusal::OrderMoved(now_is)) => Ok(ReleaseOutcome::NotEligible(
            now_is.map(|o| o.status).unwrap_or(order.status),
        )),
        Err(_) => Err(InfraError::permanent(
            "release cashback",
            "the ledger refused a release of pending points",
        )
        .into()),
    }
}

fn known(order: Option<Order>) -> Known {
    match order {
        Some(o) => Known::Present(o),
        None => Known::Absent,
    }
}

#[cfg(test)]
mod tests;
