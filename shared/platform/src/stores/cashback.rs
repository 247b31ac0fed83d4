//! Partner orders and their cashback, in ProgrammeTable (settings) and ActivityTable (events,
//! orders, monthly cap counters), moving points through the shared ledger.
//!
//! Items:
//! - ProgrammeTable `PARTNER#id`/`PARTNER` (rates), `REGION#id`/`MINIMUM_ORDER`.
//! - ActivityTable `WEBHOOK#partner#event`/`EVENT`: the first result of an event, so a replay
//!   answers the same and writes nothing; `ORDER#partner#order`/`ORDER`: the order and its
//!   cashback state (`gsi1pk = RELEASE#<YYYY-MM>` while delivered and awaiting release,
//!   `CLAWBACK#OUTSTANDING` while a clawback could not be covered);
//!   `CAP#participant`/`MONTH#<YYYY-MM>`: the points credited that month.
//!
//! Every event is one `TransactWriteItems`: the event marker, the order, and the cap counter
//! and the ledger items when points move. A refusal is read by its tag (`CashbackRefusal`,
//! see [`crate::tx`]), never by position.
//!
//! Decisions:
//! - A cancellation or return before release reverses the pending credit and gives its room
//!   back to the month it was counted in: the participant never had those points.
//! - A return after release claws back what the available balance can cover, never more (a
//!   balance never goes negative); the rest stays on the order as `outstanding_clawback` under
//!   `gsi1pk = CLAWBACK#OUTSTANDING`, for settlement to collect from later credits. The
//!   month's cap room is not given back: that month has been settled.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{Put, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use loyalty_domain::cashback::{
    cashback, entry_ids, month_of, within_cap, CashbackError, CashbackPolicy, EventId,
    MinimumOrder, NewOrder, OrderChange, OrderEvent, OrderId, OrderLine, OrderStatus, PartnerId,
    PartnerTerms,
};
use loyalty_domain::challenge::{ProgressError, ProgressSource};
use loyalty_domain::earning::SupplierId;
use loyalty_domain::ids::{ParticipantId, RegionId};
use loyalty_domain::ledger::{Entry, EntryKind};
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::{InfraError, Points};
use serde::Serialize;

use crate::dynamo::{classify, key, n, s, Item, ItemExt};
use crate::stores::challenges::{ChallengeStore, ChallengeTables};
use crate::stores::ledger::{
    account_pk, append_items, balance_from_item, LedgerRefusal, OutboxRecord,
};
use crate::tx::{Refused, Tx};

/// Event markers outlive any partner's retry schedule by far.
const EVENT_TTL_SECS: i64 = 90 * 24 * 3600;
/// Cap counters are needed for their month and a little after (late reversals).
const CAP_TTL_SECS: i64 = 400 * 24 * 3600;
/// Each refused attempt means another writer moved the same item, so under contention every
/// attempt makes progress for someone; this bounds one request's share of the wait.
const MAX_ATTEMPTS: usize = 64;

pub const OUTSTANDING_CLAWBACKS: &str = "CLAWBACK#OUTSTANDING";

pub fn release_queue(month: &str) -> String {
    format!("RELEASE#{month}")
}

#[derive(Debug, Clone)]
pub struct CashbackTables {
    pub programme: String,
    pub activity: String,
    pub ledger: String,
    pub outbox: String,
}

/// What an event did; stored with the event so that a replay answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Points),
    /// Not delivered, already released, reversed or earning nothing: nothing to release.
    NotEligible(OrderStatus),
}

fn order_pk(partner: &PartnerId, order: &OrderId) -> String {
    format!("ORDER#{partner}#{order}")
}

/// What a refused cashback transaction means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CashbackRefusal {
    /// The event marker exists: this event was applied before (its item holds the result).
    EventSeen,
    /// The order exists: another event created it meanwhile.
    OrderExists,
    /// The order's status is no longer the one read: another event moved it.
    OrderMoved,
    /// The month's cap counter no longer leaves the room read (its item holds `used`).
    CapReached,
    Ledger(LedgerRefusal),
}

impl From<LedgerRefusal> for CashbackRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
    }
}

pub struct DynamoCashback {
    client: Client,
    tables: CashbackTables,
    policy: CashbackPolicy,
    challenges: ChallengeStore,
}

impl DynamoCashback {
    pub fn new(client: Client, tables: CashbackTables, policy: CashbackPolicy) -> Self {
        let challenges = ChallengeStore::new(
            client.clone(),
            ChallengeTables {
                programme: tables.programme.clone(),
                activity: tables.activity.clone(),
                ledger: tables.ledger.clone(),
                outbox: tables.outbox.clone(),
            },
        );
        Self {
            client,
            tables,
            policy,
            challenges,
        }
    }

    async fn get(&self, table: &str, pk: String, sk: &str) -> Result<Option<Item>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("read item", e))?;
        Ok(out.item)
    }

    // ------------------------------------------------------------------ settings

    pub async fn put_partner(
        &self,
        partner: &PartnerId,
        terms: &PartnerTerms,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut item = key(format!("PARTNER#{partner}"), "PARTNER");
        item.insert("partner_id".into(), s(partner.as_str()));
        item.insert(
            "terms".into(),
            s(serde_json::to_string(terms).expect("terms serialise")),
        );
        item.insert("updated_at".into(), s(now.to_rfc3339()));
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("write partner", e))?;
        Ok(())
    }

    pub async fn partner(&self, partner: &PartnerId) -> Result<Option<PartnerTerms>, InfraError> {
        let Some(item) = self
            .get(
                &self.tables.programme,
                format!("PARTNER#{partner}"),
                "PARTNER",
            )
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_str(item.string("terms")?)
            .map(Some)
            .map_err(|e| InfraError::permanent("decode partner", e.to_string()))
    }

    pub async fn put_minimum_order(
        &self,
        region: &RegionId,
        minimum: MinimumOrder,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut item = key(format!("REGION#{region}"), "MINIMUM_ORDER");
        item.insert("amount_minor".into(), n(minimum.get()));
        item.insert("updated_at".into(), s(now.to_rfc3339()));
        self.client
            .put_item()
            .table_name(&self.tables.programme)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("write minimum order", e))?;
        Ok(())
    }

    pub async fn minimum_order(
        &self,
        region: &RegionId,
    ) -> Result<Option<MinimumOrder>, InfraError> {
        let Some(item) = self
            .get(
                &self.tables.programme,
                format!("REGION#{region}"),
                "MINIMUM_ORDER",
            )
            .await?
        else {
            return Ok(None);
        };
        MinimumOrder::parse(item.number("amount_minor")?)
            .map(Some)
            .map_err(|e| InfraError::permanent("decode minimum order", e.to_string()))
    }

    // ------------------------------------------------------------------ reads

    pub async fn order(
        &self,
        partner: &PartnerId,
        id: &OrderId,
    ) -> Result<Option<Order>, InfraError> {
        let Some(item) = self
            .get(&self.tables.activity, order_pk(partner, id), "ORDER")
            .await?
        else {
            return Ok(None);
        };
        order_from_item(partner, id, &item).map(Some)
    }

    /// Points credited to a participant's cashback in a month (after reversals).
    pub async fn used_this_month(
        &self,
        participant: &ParticipantId,
        month: &str,
    ) -> Result<u64, InfraError> {
        let item = self
            .get(
                &self.tables.activity,
                format!("CAP#{participant}"),
                &format!("MONTH#{month}"),
            )
            .await?;
        Ok(item
            .map(|i| i.opt_number("used"))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }

    /// Orders delivered in `month` and awaiting release, for settlement.
    pub async fn awaiting_release(
        &self,
        month: &str,
    ) -> Result<Vec<(PartnerId, OrderId)>, InfraError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.activity)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :q")
                .expression_attribute_values(":q", s(release_queue(month)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("read release queue", e))?;
            for item in out.items() {
                let bad = |e: CashbackError| InfraError::permanent("decode order", e.to_string());
                found.push((
                    PartnerId::parse(item.string("partner_id")?).map_err(bad)?,
                    OrderId::parse(item.string("order_id")?).map_err(bad)?,
                ));
            }
            match out.last_evaluated_key {
                Some(k) => start = Some(k),
                None => return Ok(found),
            }
        }
    }

    // ------------------------------------------------------------------ events

    /// Applies one verified order event exactly once. A replayed event id returns its first
    /// result and writes nothing.
    pub async fn apply(
        &self,
        partner: &PartnerId,
        event: &OrderEvent,
        now: DateTime<Utc>,
    ) -> Result<EventResult, CashbackError> {
        if let Some(first) = self.replayed(partner, &event.event_id).await? {
            return Ok(first);
        }
        for _ in 0..MAX_ATTEMPTS {
            let attempt = match &event.change {
                OrderChange::Created(order) => self.created(partner, event, order, now).await?,
                OrderChange::Delivered => self.delivered(partner, event, now).await?,
                OrderChange::Cancelled | OrderChange::Returned => {
                    self.withdrawn(partner, event, now).await?
                }
            };
            match attempt {
                Attempt::Done(result) => return Ok(result),
                Attempt::Replayed(item) => return Ok(stored_result(&item)?),
                Attempt::Retry => continue,
            }
        }
        Err(InfraError::retryable("apply order event", "too much contention").into())
    }

    async fn replayed(
        &self,
        partner: &PartnerId,
        event: &EventId,
    ) -> Result<Option<EventResult>, InfraError> {
        match self
            .get(&self.tables.activity, marker_pk(partner, event), "EVENT")
            .await?
        {
            Some(item) => stored_result(&item).map(Some),
            None => Ok(None),
        }
    }

    fn marker(
        &self,
        partner: &PartnerId,
        result: &EventResult,
        now: DateTime<Utc>,
    ) -> Result<Tx<CashbackRefusal>, InfraError> {
        let event = EventId::parse(&result.event_id)
            .map_err(|e| InfraError::permanent("event marker", e.to_string()))?;
        let mut item = key(marker_pk(partner, &event), "EVENT");
        item.insert(
            "result".into(),
            s(serde_json::to_string(result).expect("results serialise")),
        );
        item.insert("received_at".into(), s(now.to_rfc3339()));
        item.insert("ttl".into(), n(now.timestamp() + EVENT_TTL_SECS));
        let mut tx = Tx::new();
        tx.put(
            Put::builder()
                .table_name(&self.tables.activity)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)"),
            CashbackRefusal::EventSeen,
        )?;
        Ok(tx)
    }

    /// Runs a transaction that carries the event marker.
    async fn commit(
        &self,
        tx: Tx<CashbackRefusal>,
        result: EventResult,
    ) -> Result<Attempt, InfraError> {
        match tx.commit(&self.client, "cashback transaction").await? {
            Ok(()) => Ok(Attempt::Done(result)),
            Err(refused) => Ok(replayed_or_retry(&refused)),
        }
    }

    async fn created(
        &self,
        partner: &PartnerId,
        event: &OrderEvent,
        order: &NewOrder,
        now: DateTime<Utc>,
    ) -> Result<Attempt, InfraError> {
        let result = |status: OrderStatus, points: u64, reason: Option<&str>| EventResult {
            event_id: event.event_id.to_string(),
            order_id: event.order_id.to_string(),
            change: "created".into(),
            status: status.as_str().into(),
            points,
            reason: reason.map(str::to_string),
            outstanding_clawback: None,
        };
        if let Some(existing) = self.order(partner, &event.order_id).await? {
            // A second created event for one order (a partner bug): acknowledged, ignored.
            let r = result(existing.status, 0, Some("order_already_created"));
            return self.commit(self.marker(partner, &r, now)?, r).await;
        }
        let terms = self.partner(partner).await?;
        let minimum = self.minimum_order(&order.region).await?;
        let month = month_of(now);
        let earned = cashback(&self.policy, terms.as_ref(), order, minimum);

        let mut used = match earned {
            Ok(_) => self.used_this_month(&order.participant_id, &month).await?,
            Err(_) => 0,
        };
        // Optimistic: credit what the month's room allows as last seen, on condition that the
        // counter still leaves that room; a refusal returns the counter, so no re-read.
        // Set when the partner's fund has a budget and its shard cannot cover the credit.
        let mut budget_exhausted = false;
        for _ in 0..MAX_ATTEMPTS {
            let (credit, r) = match earned {
                Err(why) => (
                    Points::ZERO,
                    result(OrderStatus::NoCashback, 0, Some(why.as_str())),
                ),
                Ok(_) if budget_exhausted => (
                    Points::ZERO,
                    result(OrderStatus::NoCashback, 0, Some("budget_exhausted")),
                ),
                Ok(full) => {
                    let credit = within_cap(full, used, self.policy.monthly_cap);
                    if credit == Points::ZERO {
                        (
                            credit,
                            result(OrderStatus::NoCashback, 0, Some("monthly_cap_reached")),
                        )
                    } else if credit < full {
                        (
                            credit,
                            result(OrderStatus::Pending, credit.get(), Some("capped")),
                        )
                    } else {
                        (credit, result(OrderStatus::Pending, credit.get(), None))
                    }
                }
            };
            let status = if credit == Points::ZERO {
                OrderStatus::NoCashback
            } else {
                OrderStatus::Pending
            };
            let mut tx = self.marker(partner, &r, now)?;
            tx.put(
                Put::builder()
                    .table_name(&self.tables.activity)
                    .set_item(Some(order_item(
                        partner, event, order, status, credit, &month, now,
                    )))
                    .condition_expression("attribute_not_exists(pk)"),
                CashbackRefusal::OrderExists,
            )?;
            if credit > Points::ZERO {
                let limit = self.policy.monthly_cap.get() - credit.get();
                tx.update(
                    Update::builder()
                        .table_name(&self.tables.activity)
                        .set_key(Some(key(
                            format!("CAP#{}", order.participant_id),
                            format!("MONTH#{month}"),
                        )))
                        .update_expression("ADD used :c SET #ttl = :ttl")
                        .condition_expression("attribute_not_exists(used) OR used <= :limit")
                        .expression_attribute_names("#ttl", "ttl")
                        .expression_attribute_values(":c", n(credit.get()))
                        .expression_attribute_values(":limit", n(limit))
                        .expression_attribute_values(":ttl", n(now.timestamp() + CAP_TTL_SECS)),
                    CashbackRefusal::CapReached,
                )?;
                let entry = Entry {
                    id: entry_ids::pending(partner, &event.order_id),
                    participant: order.participant_id.clone(),
                    outlet: None,
                    kind: EntryKind::CashbackPending,
                    amount: credit,
                    source: format!("{partner} order {}", event.order_id),
                    created_at: now,
                    expires_on: None,
                };
                let outbox = OutboxRecord::new(
                    &self.tables.outbox,
                    OutboxEvent::CashbackPending {
                        participant_id: order.participant_id.clone(),
                        entry_id: entry.id.clone(),
                        partner_id: partner.to_string(),
                        order_id: event.order_id.to_string(),
                        points: credit,
                    },
                    now,
                );
                tx.append(append_items(&self.tables.ledger, &entry, Some(outbox))?);
            }
            match tx.commit(&self.client, "cashback transaction").await? {
                Ok(()) => return Ok(Attempt::Done(r)),
                Err(refused) if refused.contains(&CashbackRefusal::EventSeen) => {
                    return Ok(replayed_or_retry(&refused))
                }
                // Another event created this order meanwhile: start over, it is seen then.
                Err(refused) if refused.contains(&CashbackRefusal::OrderExists) => {
                    return Ok(Attempt::Retry)
                }
                Err(refused) if refused.contains(&CashbackRefusal::CapReached) => {
                    used = match refused.get(&CashbackRefusal::CapReached) {
                        Some(cap) => cap.opt_number("used")?.unwrap_or(0),
                        None => self.used_this_month(&order.participant_id, &month).await?,
                    };
                }
                Err(refused)
                    if refused
                        .contains(&CashbackRefusal::Ledger(LedgerRefusal::BudgetExhausted)) =>
                {
                    budget_exhausted = true;
                }
                Err(_) => return Ok(Attempt::Retry),
            }
        }
        Err(InfraError::retryable(
            "credit cashback",
            "monthly cap under too much contention",
        ))
    }

    async fn delivered(
        &self,
        partner: &PartnerId,
        event: &OrderEvent,
        now: DateTime<Utc>,
    ) -> Result<Attempt, CashbackError> {
        let order = self
            .order(partner, &event.order_id)
            .await?
            .ok_or(CashbackError::UnknownOrder)?;
        let result = |status: OrderStatus, reason: Option<&str>| EventResult {
            event_id: event.event_id.to_string(),
            order_id: event.order_id.to_string(),
            change: "delivered".into(),
            status: status.as_str().into(),
            points: 0,
            reason: reason.map(str::to_string),
            outstanding_clawback: None,
        };
        let pk = order_pk(partner, &event.order_id);
        let (r, update) = match order.status {
            OrderStatus::Pending => (
                result(OrderStatus::Eligible, None),
                Some(
                    Update::builder()
                        .update_expression(
                            "SET #st = :eligible, delivered_at = :now, gsi1pk = :q, gsi1sk = :qs",
                        )
                        .expression_attribute_values(":eligible", s(OrderStatus::Eligible.as_str()))
                        .expression_attribute_values(":q", s(release_queue(&month_of(now))))
                        .expression_attribute_values(
                            ":qs",
                            s(format!("{}#{pk}", order.participant)),
                        ),
                ),
            ),
            // Still delivered, for challenges and reports, though it earned nothing.
            OrderStatus::NoCashback => (
                result(OrderStatus::NoCashback, None),
                Some(Update::builder().update_expression("SET delivered_at = :now")),
            ),
            other => (result(other, Some("no_change")), None),
        };
        if order.status.counts_for_challenges_once_delivered() {
            self.count_for_challenges(&order, now).await?;
        }
        let mut tx = self.marker(partner, &r, now)?;
        if let Some(update) = update {
            tx.update(
                update
                    .table_name(&self.tables.activity)
                    .set_key(Some(key(pk, "ORDER")))
                    .condition_expression("#st = :seen")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":seen", s(order.status.as_str()))
                    .expression_attribute_values(":now", s(now.to_rfc3339())),
                CashbackRefusal::OrderMoved,
            )?;
        }
        Ok(self.commit(tx, r).await?)
    }

    /// Counts a delivered order's units towards challenges, one source per supplier. This
    /// runs before the event is marked: recording a source twice counts it once, so a
    /// delivery whose marking fails and is retried never counts twice, and never not at all.
    async fn count_for_challenges(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let mut by_supplier: std::collections::BTreeMap<&SupplierId, u64> = Default::default();
        for line in order.lines.iter().filter(|l| l.units > 0) {
            *by_supplier.entry(&line.supplier_id).or_default() += line.units;
        }
        for (supplier, units) in by_supplier {
            let source = ProgressSource {
                participant: order.participant.clone(),
                supplier: supplier.clone(),
                units,
                date: order.ordered_at.date_naive(),
                reference: ProgressSource::order_reference(&order.partner, &order.id, supplier),
                at: now,
            };
            match self.challenges.record_progress(&source).await {
                Ok(_) => {}
                Err(ProgressError::Infra(e)) => return Err(e),
                // A challenge removed while we were counting: nothing left to count towards.
                Err(ProgressError::NotFound(_)) => {}
                // Not returned by record_progress: it skips a challenge out of budget.
                Err(ProgressError::BudgetExhausted(_)) => {}
            }
        }
        Ok(())
    }

    async fn withdrawn(
        &self,
        partner: &PartnerId,
        event: &OrderEvent,
        now: DateTime<Utc>,
    ) -> Result<Attempt, CashbackError> {
        let order = self
            .order(partner, &event.order_id)
            .await?
            .ok_or(CashbackError::UnknownOrder)?;
        let change = event.change.as_str();
        let result = |status: OrderStatus, points: u64, outstanding: Option<u64>| EventResult {
            event_id: event.event_id.to_string(),
            order_id: event.order_id.to_string(),
            change: change.into(),
            status: status.as_str().into(),
            points,
            reason: None,
            outstanding_clawback: outstanding,
        };
        let pk = order_pk(partner, &event.order_id);
        let order_update = |expression: &str| {
            Update::builder()
                .table_name(&self.tables.activity)
                .set_key(Some(key(pk.clone(), "ORDER")))
                .update_expression(expression)
                .condition_expression("#st = :seen")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":seen", s(order.status.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
        };
        let (tx, r) = match order.status {
            OrderStatus::Pending | OrderStatus::Eligible => {
                let r = result(OrderStatus::Reversed, order.cashback.get(), None);
                let mut tx = self.marker(partner, &r, now)?;
                tx.update(
                    order_update("SET #st = :new, withdrawn_at = :now REMOVE gsi1pk, gsi1sk")
                        .expression_attribute_values(":new", s(OrderStatus::Reversed.as_str())),
                    CashbackRefusal::OrderMoved,
                )?;
                tx.update_always(
                    Update::builder()
                        .table_name(&self.tables.activity)
                        .set_key(Some(key(
                            format!("CAP#{}", order.participant),
                            format!("MONTH#{}", order.month),
                        )))
                        .update_expression("ADD used :back")
                        .expression_attribute_values(":back", n(-(order.cashback.get() as i64))),
                )?;
                let entry = Entry {
                    id: entry_ids::reversed(partner, &order.id),
                    participant: order.participant.clone(),
                    outlet: None,
                    kind: EntryKind::CashbackReversed,
                    amount: order.cashback,
                    source: format!("{partner} order {} {change}", order.id),
                    created_at: now,
                    expires_on: None,
                };
                tx.append(append_items(&self.tables.ledger, &entry, None)?);
                (tx, r)
            }
            OrderStatus::Released => {
                let balance = balance_from_item(
                    &self
                        .get(
                            &self.tables.ledger,
                            account_pk(&order.participant),
                            "BALANCE",
                        )
                        .await?
                        .unwrap_or_default(),
                )?;
                let taken = Points(order.cashback.get().min(balance.available));
                let outstanding = order.cashback.get() - taken.get();
                let r = result(OrderStatus::ClawedBack, taken.get(), Some(outstanding));
                let mut tx = self.marker(partner, &r, now)?;
                let mut update = order_update(if outstanding > 0 {
                    "SET #st = :new, withdrawn_at = :now, clawed_back = :taken, outstanding_clawback = :rest, gsi1pk = :q, gsi1sk = :qs"
                } else {
                    "SET #st = :new, withdrawn_at = :now, clawed_back = :taken, outstanding_clawback = :rest"
                })
                .expression_attribute_values(":new", s(OrderStatus::ClawedBack.as_str()))
                .expression_attribute_values(":taken", n(taken.get()))
                .expression_attribute_values(":rest", n(outstanding));
                if outstanding > 0 {
                    update = update
                        .expression_attribute_values(":q", s(OUTSTANDING_CLAWBACKS))
                        .expression_attribute_values(
                            ":qs",
                            s(format!("{}#{pk}", order.participant)),
                        );
                }
                tx.update(update, CashbackRefusal::OrderMoved)?;
                if taken > Points::ZERO {
                    let entry = Entry {
                        id: entry_ids::clawback(partner, &order.id),
                        participant: order.participant.clone(),
                        outlet: None,
                        kind: EntryKind::Clawback,
                        amount: taken,
                        source: format!("{partner} order {} {change} after release", order.id),
                        created_at: now,
                        expires_on: None,
                    };
                    // The overdraft guard in these items fails if the balance was spent
                    // meanwhile; the retry then claws back what is left.
                    tx.append(append_items(&self.tables.ledger, &entry, None)?);
                }
                (tx, r)
            }
            OrderStatus::NoCashback => {
                let r = result(OrderStatus::Closed, 0, None);
                let mut tx = self.marker(partner, &r, now)?;
                tx.update(
                    order_update("SET #st = :new, withdrawn_at = :now")
                        .expression_attribute_values(":new", s(OrderStatus::Closed.as_str())),
                    CashbackRefusal::OrderMoved,
                )?;
                (tx, r)
            }
            other => {
                let mut r = result(other, 0, None);
                r.reason = Some("no_change".into());
                (self.marker(partner, &r, now)?, r)
            }
        };
        Ok(self.commit(tx, r).await?)
    }

    /// Releases a delivered order's pending cashback to available: settlement calls this on
    /// the monthly processing day for each order in [`Self::awaiting_release`]. Safe to
    /// repeat: a released order is reported as not eligible, and nothing moves twice.
    pub async fn release_order(
        &self,
        partner: &PartnerId,
        id: &OrderId,
        now: DateTime<Utc>,
    ) -> Result<ReleaseOutcome, CashbackError> {
        let order = self
            .order(partner, id)
            .await?
            .ok_or(CashbackError::UnknownOrder)?;
        if order.status != OrderStatus::Eligible || order.cashback == Points::ZERO {
            return Ok(ReleaseOutcome::NotEligible(order.status));
        }
        let entry = Entry {
            id: entry_ids::released(partner, id),
            participant: order.participant.clone(),
            outlet: None,
            kind: EntryKind::CashbackReleased,
            amount: order.cashback,
            source: format!("{partner} order {id} released"),
            created_at: now,
            expires_on: None,
        };
        let outbox = OutboxRecord::new(
            &self.tables.outbox,
            OutboxEvent::CashbackReleased {
                participant_id: order.participant.clone(),
                entry_id: entry.id.clone(),
                partner_id: partner.to_string(),
                order_id: id.to_string(),
                points: order.cashback,
            },
            now,
        );
        let mut tx = Tx::new();
        tx.update(
            Update::builder()
                .table_name(&self.tables.activity)
                .set_key(Some(key(order_pk(partner, id), "ORDER")))
                .update_expression("SET #st = :released, released_at = :now REMOVE gsi1pk, gsi1sk")
                .condition_expression("#st = :eligible")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":released", s(OrderStatus::Released.as_str()))
                .expression_attribute_values(":eligible", s(OrderStatus::Eligible.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339())),
            CashbackRefusal::OrderMoved,
        )?;
        tx.append(append_items(&self.tables.ledger, &entry, Some(outbox))?);
        match tx.commit(&self.client, "cashback transaction").await? {
            Ok(()) => Ok(ReleaseOutcome::Released(order.cashback)),
            // Cancelled or released concurrently: report what it is now.
            Err(refused) if refused.contains(&CashbackRefusal::OrderMoved) => {
                let now_status = self
                    .order(partner, id)
                    .await?
                    .map(|o| o.status)
                    .unwrap_or(order.status);
                Ok(ReleaseOutcome::NotEligible(now_status))
            }
            Err(_) => Err(InfraError::permanent(
                "release cashback",
                "the ledger refused a release of pending points",
            )
            .into()),
        }
    }
}

/// After a refusal of an event's transaction: the stored first result when the event was
/// seen before, or another attempt (the order or a counter moved under us).
fn replayed_or_retry(refused: &Refused<CashbackRefusal>) -> Attempt {
    match refused.get(&CashbackRefusal::EventSeen) {
        Some(item) => Attempt::Replayed(item.clone()),
        None => Attempt::Retry,
    }
}

enum Attempt {
    Done(EventResult),
    /// The marker existed: its stored item.
    Replayed(Item),
    /// The order or a counter moved under us: read again and retry.
    Retry,
}

fn marker_pk(partner: &PartnerId, event: &EventId) -> String {
    format!("WEBHOOK#{partner}#{event}")
}

fn stored_result(item: &Item) -> Result<EventResult, InfraError> {
    serde_json::from_str(item.string("result")?)
        .map_err(|e| InfraError::permanent("decode event result", e.to_string()))
}

fn order_item(
    partner: &PartnerId,
    event: &OrderEvent,
    order: &NewOrder,
    status: OrderStatus,
    credit: Points,
    month: &str,
    now: DateTime<Utc>,
) -> Item {
    HashMap::from([
        ("pk".to_string(), s(order_pk(partner, &event.order_id))),
        ("sk".to_string(), s("ORDER")),
        ("partner_id".to_string(), s(partner.as_str())),
        ("order_id".to_string(), s(event.order_id.as_str())),
        (
            "participant_id".to_string(),
            s(order.participant_id.as_str()),
        ),
        ("region".to_string(), s(order.region.as_str())),
        ("channel".to_string(), s(&order.channel)),
        ("category".to_string(), s(&order.category)),
        ("amount_minor".to_string(), n(order.amount_minor)),
        ("status".to_string(), s(status.as_str())),
        ("cashback".to_string(), n(credit.get())),
        ("month".to_string(), s(month)),
        (
            "lines".to_string(),
            s(serde_json::to_string(&order.lines).expect("lines serialise")),
        ),
        ("ordered_at".to_string(), s(event.occurred_at.to_rfc3339())),
        ("created_at".to_string(), s(now.to_rfc3339())),
    ])
}

fn order_from_item(partner: &PartnerId, id: &OrderId, item: &Item) -> Result<Order, InfraError> {
    let bad = |e: String| InfraError::permanent("decode order", e);
    Ok(Order {
        partner: partner.clone(),
        id: id.clone(),
        participant: ParticipantId::parse(item.string("participant_id")?)
            .map_err(|e| bad(e.to_string()))?,
        region: RegionId::parse(item.string("region")?).map_err(|e| bad(e.to_string()))?,
        status: OrderStatus::parse(item.string("status")?)
            .ok_or_else(|| bad("unknown status".into()))?,
        cashback: Points(item.number("cashback")?),
        month: item.string("month")?.to_string(),
        lines: serde_json::from_str(item.string("lines")?).map_err(|e| bad(e.to_string()))?,
        ordered_at: item
            .string("ordered_at")?
            .parse()
            .map_err(|e: chrono::ParseError| bad(e.to_string()))?,
        clawed_back: Points(item.opt_number("clawed_back")?.unwrap_or(0)),
        outstanding_clawback: Points(item.opt_number("outstanding_clawback")?.unwrap_or(0)),
    })
}
