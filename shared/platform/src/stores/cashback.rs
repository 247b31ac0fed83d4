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
//! - ParticipantsTable `PARTICIPANT#id`/`PROFILE`: a credit checks its participant's
//!   standing in the same transaction (`crate::stores::profiles::standing_check`, refusal
//!   `ParticipantNotActive`, ranked after the event marker so a replay answers first).
//!
//! The rules live in the domain (`loyalty_domain::cashback::order`): this adapter implements
//! its port, [`CashbackStore`], translating each `Decision` into one `TransactWriteItems` (the
//! event marker, the order, the cap counter, the ledger items) and a refusal back into what
//! changed, read by its tag (`CashbackRefusal`, see [`crate::tx`]) from the item as it was
//! (`ALL_OLD`): the stored first result, the order now, the cap counter now.
//!
//! Round trips: in the steady state a created and a delivered event are one
//! `TransactWriteItems` each. Nothing is read first: the marker's condition answers replays,
//! the order's condition checks the assumed state (none, or pending), the cap counter's
//! condition checks the room (the first guess is an empty month). Partner rates, regional
//! minimums, the time zones and whether any challenge exists are cached per warm function for
//! [`DEFAULT_SETTINGS_TTL_SECS`] (configurable). Extra trips: a refusal, a cancellation or
//! return (the order is read: its credit decides the writes), a return after release (the
//! balance is read), a delivery while challenges exist (the order is read for its lines,
//! and progress is recorded by the challenge store), and a delivery while regions count in
//! different zones (the order is read for its region: its release month is that zone's).
//!
//! Orders carry `queue_sk` (`<participant>#<order pk>`) from creation, so a transition can
//! queue an order (`SET gsi1sk = if_not_exists(queue_sk, :pk)`) without reading it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aws_sdk_dynamodb::types::{Put, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Duration, Utc};
use loyalty_domain::cashback::{
    self, CashbackError, CashbackPolicy, CashbackSettings, CashbackStore, Decision, EventId,
    MinimumOrder, OrderId, OrderStatus, OrderWrite, PartnerId, PartnerTerms, Queue, QueueMove,
    Refusal,
};
use loyalty_domain::challenge::{record_progress, ChallengeStore, ProgressError, ProgressSource};
use loyalty_domain::ids::{ParticipantId, RegionId};
use loyalty_domain::ledger::{Budgets, Funded, ProgrammeAccount, ProgrammeBalance};
use loyalty_domain::zone::Zones;
use loyalty_domain::{InfraError, Points};

pub use loyalty_domain::cashback::{EventResult, Order, ReleaseOutcome};

use crate::dynamo::{classify, key, n, s, Item, ItemExt};
use crate::stores::challenges::{log_out_of_budget, ChallengeTables, DynamoChallenges};
use crate::stores::earning::read_zones;
use crate::stores::ledger::{
    account_pk, append_items, balance_from_item, gather_budget, DynamoLedger, Gathered,
    LedgerRefusal, OutboxRecord, GATHERS,
};
use crate::stores::profiles::standing_check;
use crate::tx::{Refused, Tx};

/// Event markers outlive any partner's retry schedule by far.
const EVENT_TTL_SECS: i64 = 90 * 24 * 3600;
/// Cap counters are needed for their month and a little after (late reversals).
const CAP_TTL_SECS: i64 = 400 * 24 * 3600;
/// How long a warm function trusts the partner rates, regional minimums and whether any
/// challenge exists, unless configured (`CASHBACK_SETTINGS_CACHE_SECS`). A change made
/// through this function's own admin routes is seen at once by that instance.
pub const DEFAULT_SETTINGS_TTL_SECS: i64 = 60;

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
    /// Where profiles live: a credit checks its participant's standing in the same
    /// transaction.
    pub participants: String,
}

fn order_pk(partner: &PartnerId, order: &OrderId) -> String {
    format!("ORDER#{partner}#{order}")
}

fn cap_key(participant: &ParticipantId, month: &str) -> Item {
    key(format!("CAP#{participant}"), format!("MONTH#{month}"))
}

/// What a refused cashback transaction means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CashbackRefusal {
    /// The event marker exists: this event was applied before (its item holds the result).
    EventSeen,
    /// The order exists where none was expected, or its status is no longer the one
    /// expected (its item, if any, is the order now).
    OrderMoved,
    /// The month's cap counter no longer leaves the room (its item holds `used`).
    CapMoved,
    /// The credited participant has no profile or is blocked.
    ParticipantNotActive,
    Ledger(LedgerRefusal),
}

impl From<LedgerRefusal> for CashbackRefusal {
    fn from(r: LedgerRefusal) -> Self {
        Self::Ledger(r)
    }
}

/// Settings a warm function remembers, each with the time (by the caller's clock) it was read.
#[derive(Default)]
struct SettingsCache {
    inner: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    partners: BTreeMap<PartnerId, (DateTime<Utc>, Option<PartnerTerms>)>,
    minimums: BTreeMap<RegionId, (DateTime<Utc>, Option<MinimumOrder>)>,
    challenges: Option<(DateTime<Utc>, bool)>,
    zones: Option<(DateTime<Utc>, Zones)>,
}

fn fresh<T: Clone>(
    entry: Option<&(DateTime<Utc>, T)>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Option<T> {
    entry
        .filter(|(at, _)| now >= *at && now - *at < ttl)
        .map(|(_, v)| v.clone())
}

impl SettingsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn partner(
        &self,
        p: &PartnerId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Option<Option<PartnerTerms>> {
        fresh(self.lock().partners.get(p), now, ttl)
    }
    fn set_partner(&self, p: &PartnerId, terms: Option<PartnerTerms>, now: DateTime<Utc>) {
        self.lock().partners.insert(p.clone(), (now, terms));
    }
    fn minimum(
        &self,
        r: &RegionId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Option<Option<MinimumOrder>> {
        fresh(self.lock().minimums.get(r), now, ttl)
    }
    fn set_minimum(&self, r: &RegionId, minimum: Option<MinimumOrder>, now: DateTime<Utc>) {
        self.lock().minimums.insert(r.clone(), (now, minimum));
    }
    fn challenges(&self, now: DateTime<Utc>, ttl: Duration) -> Option<bool> {
        fresh(self.lock().challenges.as_ref(), now, ttl)
    }
    fn set_challenges(&self, any: bool, now: DateTime<Utc>) {
        self.lock().challenges = Some((now, any));
    }
    fn zones(&self, now: DateTime<Utc>, ttl: Duration) -> Option<Zones> {
        fresh(self.lock().zones.as_ref(), now, ttl)
    }
    fn set_zones(&self, zones: Zones, now: DateTime<Utc>) {
        self.lock().zones = Some((now, zones));
    }
}

pub struct DynamoCashback {
    client: Client,
    tables: CashbackTables,
    policy: CashbackPolicy,
    challenges: DynamoChallenges,
    cache: SettingsCache,
    settings_ttl: Duration,
}

impl DynamoCashback {
    pub fn new(client: Client, tables: CashbackTables, policy: CashbackPolicy) -> Self {
        let challenges = DynamoChallenges::new(
            client.clone(),
            ChallengeTables {
                programme: tables.programme.clone(),
                activity: tables.activity.clone(),
                ledger: tables.ledger.clone(),
                outbox: tables.outbox.clone(),
                participants: tables.participants.clone(),
            },
        );
        Self {
            client,
            tables,
            policy,
            challenges,
            cache: SettingsCache::default(),
            settings_ttl: Duration::seconds(DEFAULT_SETTINGS_TTL_SECS),
        }
    }

    /// How long partner rates, regional minimums and the existence of challenges are
    /// remembered (0: read them for every event).
    pub fn with_settings_ttl(mut self, ttl: Duration) -> Self {
        self.settings_ttl = ttl;
        self
    }

    pub fn policy(&self) -> &CashbackPolicy {
        &self.policy
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
        self.cache.set_partner(partner, Some(terms.clone()), now);
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
        self.cache.set_minimum(region, Some(minimum), now);
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

    /// Orders delivered in `month` and awaiting release, for settlement: every page.
    pub async fn awaiting_release(
        &self,
        month: &str,
    ) -> Result<Vec<(PartnerId, OrderId)>, InfraError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let (page, next) = self.awaiting_release_page(month, None, start).await?;
            found.extend(page);
            match next {
                Some(k) => start = Some(k),
                None => return Ok(found),
            }
        }
    }

    /// One page of [`Self::awaiting_release`]: at most `limit` orders (DynamoDB's 1 MB page
    /// when `None`) from `start`, and the key the next page starts from.
    pub async fn awaiting_release_page(
        &self,
        month: &str,
        limit: Option<i32>,
        start: Option<Item>,
    ) -> Result<(Vec<(PartnerId, OrderId)>, Option<Item>), InfraError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.activity)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :q")
            .expression_attribute_values(":q", s(release_queue(month)))
            .set_limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("read release queue", e))?;
        let bad = |e: CashbackError| InfraError::permanent("decode order", e.to_string());
        let mut page = Vec::new();
        for item in out.items() {
            page.push((
                PartnerId::parse(item.string("partner_id")?).map_err(bad)?,
                OrderId::parse(item.string("order_id")?).map_err(bad)?,
            ));
        }
        Ok((page, out.last_evaluated_key))
    }

    // ------------------------------------------------------------------ events

    /// Releases a delivered order's pending cashback to available (the domain's
    /// [`cashback::release`]): settlement calls this on the monthly processing day for each
    /// order in [`Self::awaiting_release`]. Safe to repeat.
    pub async fn release_order(
        &self,
        partner: &PartnerId,
        id: &OrderId,
        now: DateTime<Utc>,
    ) -> Result<ReleaseOutcome, CashbackError> {
        cashback::release(self, partner, id, now).await
    }

    /// Counts a delivered order's units towards challenges, one source per supplier. This
    /// runs before the event is marked: recording a source twice counts it once, so a
    /// delivery whose marking fails and is retried never counts twice, and never not at all.
    async fn count_for_challenges(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        // A challenge's days are the order's region's, as its cap month is.
        let zone = CashbackStore::zones(self, now)
            .await?
            .for_region(Some(&order.region));
        for source in ProgressSource::of_order(order, zone, now) {
            match record_progress(&self.challenges, &source).await {
                // A blocked participant's order counts towards no challenge (their cashback
                // was refused the same way when the order was created).
                Ok(recorded) if recorded.not_active => break,
                Ok(recorded) => log_out_of_budget(&recorded.out_of_budget),
                Err(ProgressError::Infra(e)) => return Err(e),
                // A challenge removed while we were counting: nothing left to count towards.
                Err(ProgressError::NotFound(_)) => {}
                // Not returned by record_progress: it skips a challenge out of budget and
                // answers a participant who is not active in `Recorded::not_active`.
                Err(ProgressError::BudgetExhausted(_) | ProgressError::ParticipantNotActive) => {}
            }
        }
        Ok(())
    }

    /// The decision as one `TransactWriteItems`, each conditional item tagged with what its
    /// failure means.
    fn transaction(
        &self,
        d: &Decision,
        now: DateTime<Utc>,
    ) -> Result<Tx<CashbackRefusal>, InfraError> {
        let mut tx = Tx::new();
        if let Some((event, result)) = &d.event {
            let mut item = key(marker_pk(&d.partner, event), "EVENT");
            item.insert(
                "result".into(),
                s(serde_json::to_string(result).expect("results serialise")),
            );
            item.insert("received_at".into(), s(now.to_rfc3339()));
            item.insert("ttl".into(), n(now.timestamp() + EVENT_TTL_SECS));
            tx.put(
                Put::builder()
                    .table_name(&self.tables.activity)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)"),
                CashbackRefusal::EventSeen,
            )?;
        }
        let pk = order_pk(&d.partner, &d.order_id);
        match &d.order {
            OrderWrite::None => {}
            OrderWrite::Create(order) => {
                tx.put(
                    Put::builder()
                        .table_name(&self.tables.activity)
                        .set_item(Some(order_item(order, now)))
                        .condition_expression("attribute_not_exists(pk)"),
                    CashbackRefusal::OrderMoved,
                )?;
            }
            OrderWrite::Transition {
                expect,
                to,
                stamp,
                queue,
                clawback,
            } => {
                let mut set = vec![
                    "#st = :to".to_string(),
                    format!("{} = :now", stamp.attribute()),
                ];
                let mut remove = Vec::new();
                let mut update = Update::builder()
                    .table_name(&self.tables.activity)
                    .set_key(Some(key(pk.clone(), "ORDER")))
                    .condition_expression("#st = :expect")
                    .expression_attribute_names("#st", "status")
                    .expression_attribute_values(":expect", s(expect.as_str()))
                    .expression_attribute_values(":to", s(to.as_str()))
                    .expression_attribute_values(":now", s(now.to_rfc3339()));
                if let Some((taken, rest)) = clawback {
                    set.push("clawed_back = :taken".into());
                    set.push("outstanding_clawback = :rest".into());
                    update = update
                        .expression_attribute_values(":taken", n(taken.get()))
                        .expression_attribute_values(":rest", n(rest.get()));
                }
                match queue {
                    QueueMove::Keep => {}
                    QueueMove::Leave => remove.extend(["gsi1pk", "gsi1sk"]),
                    QueueMove::Enter(q) => {
                        // The queue's sort key was stored with the order (`queue_sk`), so a
                        // delivery needs no read of the order to queue it.
                        set.push("gsi1pk = :q".into());
                        // (Orders stored before `queue_sk` existed sort by their key alone.)
                        set.push("gsi1sk = if_not_exists(queue_sk, :pk)".into());
                        let q = match q {
                            Queue::Release(month) => release_queue(month),
                            Queue::OutstandingClawback => OUTSTANDING_CLAWBACKS.to_string(),
                        };
                        update = update
                            .expression_attribute_values(":q", s(q))
                            .expression_attribute_values(":pk", s(pk.clone()));
                    }
                }
                let mut expression = format!("SET {}", set.join(", "));
                if !remove.is_empty() {
                    expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
                }
                tx.update(
                    update.update_expression(expression),
                    CashbackRefusal::OrderMoved,
                )?;
            }
        }
        if let Some(participant) = &d.standing {
            // Cashback is for registered participants in good standing; checked in the
            // transaction, so it costs no round trip and races no block.
            tx.check(
                standing_check(&self.tables.participants, participant),
                CashbackRefusal::ParticipantNotActive,
            )?;
        }
        if let Some(cap) = &d.cap {
            let update = Update::builder()
                .table_name(&self.tables.activity)
                .set_key(Some(cap_key(&cap.participant, &cap.month)))
                .expression_attribute_values(":c", n(cap.delta));
            match cap.at_most {
                Some(limit) => {
                    tx.update(
                        update
                            .update_expression("ADD used :c SET #ttl = :ttl")
                            .condition_expression("attribute_not_exists(used) OR used <= :limit")
                            .expression_attribute_names("#ttl", "ttl")
                            .expression_attribute_values(":limit", n(limit))
                            .expression_attribute_values(":ttl", n(now.timestamp() + CAP_TTL_SECS)),
                        CashbackRefusal::CapMoved,
                    )?;
                }
                None => {
                    tx.update_always(update.update_expression("ADD used :c"))?;
                }
            }
        }
        if let Some((entry, announce)) = &d.entry {
            let outbox = announce
                .clone()
                .map(|event| OutboxRecord::new(&self.tables.outbox, event, now));
            // A debit's overdraft guard fails if the balance was spent meanwhile; the use
            // case then reads the balance again.
            tx.append(append_items(&self.tables.ledger, entry, outbox)?);
        }
        Ok(tx)
    }

    /// What a refused transaction means, from the items as they were (`ALL_OLD`); an item
    /// the emulator did not return is read (a refusal only, never the steady state).
    async fn refusal(
        &self,
        d: &Decision,
        refused: &Refused<CashbackRefusal>,
    ) -> Result<Refusal, InfraError> {
        if let Some((event, _)) = &d.event {
            if refused.contains(&CashbackRefusal::EventSeen) {
                let first = match refused.get(&CashbackRefusal::EventSeen) {
                    Some(item) => stored_result(item)?,
                    None => self
                        .replayed(&d.partner, event)
                        .await?
                        .ok_or_else(|| InfraError::retryable("read event", "marker vanished"))?,
                };
                return Ok(Refusal::EventSeen(first));
            }
        }
        if refused.contains(&CashbackRefusal::ParticipantNotActive) {
            return Ok(Refusal::ParticipantNotActive);
        }
        if refused.contains(&CashbackRefusal::OrderMoved) {
            let now_is = match refused.get(&CashbackRefusal::OrderMoved) {
                Some(item) => Some(order_from_item(&d.partner, &d.order_id, item)?),
                None => self.order(&d.partner, &d.order_id).await?,
            };
            return Ok(Refusal::OrderMoved(now_is));
        }
        if refused.contains(&CashbackRefusal::CapMoved) {
            let used = match refused.get(&CashbackRefusal::CapMoved) {
                Some(item) => item.opt_number("used")?.unwrap_or(0),
                None => {
                    let cap = d.cap.as_ref().expect("a cap refusal has a cap move");
                    self.used_this_month(&cap.participant, &cap.month).await?
                }
            };
            return Ok(Refusal::CapMovedTo(used));
        }
        if refused.contains(&CashbackRefusal::Ledger(LedgerRefusal::BudgetExhausted)) {
            return Ok(Refusal::BudgetExhausted);
        }
        if refused.contains(&CashbackRefusal::Ledger(LedgerRefusal::InsufficientBalance)) {
            return Ok(Refusal::BalanceMoved);
        }
        // The entry or outbox record exists while the order still had the status read: only
        // corrupt data does this.
        Err(InfraError::permanent(
            "cashback transaction",
            format!("refused by the ledger: {}", refused.describe()),
        ))
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
}

impl CashbackSettings for DynamoCashback {
    async fn partner(&self, partner: &PartnerId) -> Result<Option<PartnerTerms>, InfraError> {
        DynamoCashback::partner(self, partner).await
    }

    async fn put_partner(
        &self,
        partner: &PartnerId,
        terms: &PartnerTerms,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        DynamoCashback::put_partner(self, partner, terms, now).await
    }

    async fn put_minimum_order(
        &self,
        region: &RegionId,
        minimum: MinimumOrder,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        DynamoCashback::put_minimum_order(self, region, minimum, now).await
    }
}

/// Partners' funds live on the ledger table, beside the cashback they pay.
impl Budgets for DynamoCashback {
    async fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Funded, InfraError> {
        DynamoLedger::new(self.client.clone(), &self.tables.ledger)
            .fund_budget(account, amount, funding_id, now)
            .await
    }

    async fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> Result<ProgrammeBalance, InfraError> {
        DynamoLedger::new(self.client.clone(), &self.tables.ledger)
            .programme_balance(account)
            .await
    }
}

impl CashbackStore for DynamoCashback {
    async fn terms(
        &self,
        partner: &PartnerId,
        region: &RegionId,
        now: DateTime<Utc>,
    ) -> Result<(Option<PartnerTerms>, Option<MinimumOrder>), InfraError> {
        let terms = match self.cache.partner(partner, now, self.settings_ttl) {
            Some(t) => t,
            None => {
                let t = self.partner(partner).await?;
                self.cache.set_partner(partner, t.clone(), now);
                t
            }
        };
        let minimum = match self.cache.minimum(region, now, self.settings_ttl) {
            Some(m) => m,
            None => {
                let m = self.minimum_order(region).await?;
                self.cache.set_minimum(region, m, now);
                m
            }
        };
        Ok((terms, minimum))
    }

    async fn zones(&self, now: DateTime<Utc>) -> Result<Zones, InfraError> {
        if let Some(zones) = self.cache.zones(now, self.settings_ttl) {
            return Ok(zones);
        }
        let zones = read_zones(&self.client, &self.tables.programme).await?;
        self.cache.set_zones(zones.clone(), now);
        Ok(zones)
    }

    async fn order(&self, partner: &PartnerId, id: &OrderId) -> Result<Option<Order>, InfraError> {
        DynamoCashback::order(self, partner, id).await
    }

    async fn available(&self, participant: &ParticipantId) -> Result<u64, InfraError> {
        let item = self
            .get(&self.tables.ledger, account_pk(participant), "BALANCE")
            .await?
            .unwrap_or_default();
        Ok(balance_from_item(&item)?.available)
    }

    async fn counts_deliveries(&self, now: DateTime<Utc>) -> Result<bool, InfraError> {
        if let Some(any) = self.cache.challenges(now, self.settings_ttl) {
            return Ok(any);
        }
        let any = !ChallengeStore::challenges(&self.challenges)
            .await?
            .is_empty();
        self.cache.set_challenges(any, now);
        Ok(any)
    }

    async fn commit(
        &self,
        decision: &Decision,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Refusal>, InfraError> {
        if let Some(order) = &decision.count_for_challenges {
            if self.counts_deliveries(now).await? {
                self.count_for_challenges(order, now).await?;
            }
        }
        for attempt in 0..=GATHERS {
            let tx = self.transaction(decision, now)?;
            let refused = match tx.commit(&self.client, "cashback transaction").await? {
                Ok(()) => return Ok(Ok(())),
                Err(refused) => self.refusal(decision, &refused).await?,
            };
            // Budgets are a storage detail spread over shards: the port refuses only when
            // the partner's whole fund cannot cover the credit, so a dry shard is refilled
            // from the others before the refusal is believed.
            if let (Refusal::BudgetExhausted, Some((entry, _))) = (&refused, &decision.entry) {
                if attempt < GATHERS
                    && gather_budget(&self.client, &self.tables.ledger, entry).await?
                        == Gathered::Ready
                {
                    continue;
                }
            }
            return Ok(Err(refused));
        }
        unreachable!("the last attempt returns")
    }
}

fn marker_pk(partner: &PartnerId, event: &EventId) -> String {
    format!("WEBHOOK#{partner}#{event}")
}

fn stored_result(item: &Item) -> Result<EventResult, InfraError> {
    serde_json::from_str(item.string("result")?)
        .map_err(|e| InfraError::permanent("decode event result", e.to_string()))
}

fn order_item(order: &Order, now: DateTime<Utc>) -> Item {
    let pk = order_pk(&order.partner, &order.id);
    HashMap::from([
        (
            "queue_sk".to_string(),
            s(format!("{}#{pk}", order.participant)),
        ),
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s("ORDER")),
        ("partner_id".to_string(), s(order.partner.as_str())),
        ("order_id".to_string(), s(order.id.as_str())),
        ("participant_id".to_string(), s(order.participant.as_str())),
        ("region".to_string(), s(order.region.as_str())),
        ("channel".to_string(), s(&order.channel)),
        ("category".to_string(), s(&order.category)),
        ("amount_minor".to_string(), n(order.amount_minor)),
        ("status".to_string(), s(order.status.as_str())),
        ("cashback".to_string(), n(order.cashback.get())),
        ("month".to_string(), s(&order.month)),
        (
            "lines".to_string(),
            s(serde_json::to_string(&order.lines).expect("lines serialise")),
        ),
        ("ordered_at".to_string(), s(order.ordered_at.to_rfc3339())),
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
        channel: item.opt_string("channel").unwrap_or_default().to_string(),
        category: item.opt_string("category").unwrap_or_default().to_string(),
        amount_minor: item.opt_number("amount_minor")?.unwrap_or(0),
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
