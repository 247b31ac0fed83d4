//! The cashback store in memory: [`MemoryCashback`] implements [`CashbackStore`] with the
//! semantics of [`crate::stores::cashback::DynamoCashback`], without its AWS types.
//!
//! What it copies from the DynamoDB transaction, item by item:
//!
//! | DynamoDB item (in transaction order)                        | here                          |
//! |-------------------------------------------------------------|-------------------------------|
//! | event marker: `attribute_not_exists(pk)`, holds the result  | [`CashbackWorld::events`]     |
//! | order: created on `attribute_not_exists(pk)`, moved on `status = :expect`; `gsi1pk` | [`CashbackWorld::orders`] |
//! | profile check of a credit's participant: exists, active     | [`CashbackWorld::profiles`]   |
//! | cap counter: `attribute_not_exists(used) OR used <= :limit`, `ADD used` | [`CashbackWorld::caps`] |
//! | ledger entry `attribute_not_exists(pk)`, balance `ADD` (a debit: its bucket covers it) | [`CashbackWorld::entries`], [`CashbackWorld::balances`] |
//! | outbox record: `attribute_not_exists(pk)`                   | [`CashbackWorld::outbox`]     |
//!
//! Every condition is checked before anything is written, and a refusal is the one
//! `DynamoCashback` reports when several fail: the marker, then the participant's standing,
//! then the order, then the cap, then the balance. Settings are never cached here (the DynamoDB adapter's cache is per warm
//! function and bounded; a test of staleness belongs to it).

use loyalty_domain::zone::Zones;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use loyalty_domain::cashback::{
    CashbackSettings, CashbackStore, Decision, EventId, EventResult, MinimumOrder, Order, OrderId,
    OrderWrite, PartnerId, PartnerTerms, Queue, QueueMove, Refusal,
};
use loyalty_domain::ids::{EntryId, ParticipantId, RegionId};
use loyalty_domain::ledger::{
    Balance, Budgets, Entry, EntryKind, Funded, ProgrammeAccount, ProgrammeBalance,
};
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::{InfraError, Points};

use crate::memory::participants::ProfileChecks;
use crate::stores::cashback::{release_queue, OUTSTANDING_CLAWBACKS};
use crate::stores::ledger::Gathered;

/// An order's key: its partner and the partner's order id.
pub type OrderKey = (PartnerId, OrderId);

/// An order and the queue it is listed in (DynamoDB's `gsi1pk`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub order: Order,
    pub queue: Option<String>,
}

/// Everything the adapter stores, in ordered maps.
#[derive(Debug, Clone, Default)]
pub struct CashbackWorld {
    pub partners: BTreeMap<PartnerId, PartnerTerms>,
    pub minimums: BTreeMap<RegionId, MinimumOrder>,
    /// The zones accrual's admin routes set (DynamoDB: ProgrammeTable `ZONES`).
    pub zones: Zones,
    pub events: BTreeMap<(PartnerId, EventId), EventResult>,
    pub orders: BTreeMap<(PartnerId, OrderId), StoredOrder>,
    /// Registered participants (the profile items of ParticipantsTable).
    pub profiles: ProfileChecks,
    /// `(participant, YYYY-MM)` → points counted against the month's cap.
    pub caps: BTreeMap<(ParticipantId, String), i64>,
    /// Each participant's entries, in the order they were appended.
    pub entries: BTreeMap<ParticipantId, Vec<Entry>>,
    /// Every entry id appended (an entry id is unique across accounts).
    pub entry_ids: std::collections::BTreeSet<EntryId>,
    pub balances: BTreeMap<ParticipantId, Balance>,
    /// Outbox records by event id.
    pub outbox: BTreeMap<String, OutboxEvent>,
    /// Delivered orders counted towards challenges: `(partner, order)` → times counted.
    pub challenge_counts: BTreeMap<(PartnerId, OrderId), u32>,
    /// The programme side of every entry: partners' funds, with their budgets.
    pub accounts: super::ledger::ProgrammeShards,
}

/// A deliberate bug, only to prove that the contract and the simulator catch bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The cap counter's condition is never checked.
    IgnoreCap,
    /// The event marker's condition is never checked: a replay applies again.
    ForgetReplays,
}

#[derive(Default)]
pub struct MemoryCashback {
    world: Mutex<CashbackWorld>,
    /// Whether deliveries count towards challenges (the order is read first then).
    challenges: bool,
    bug: Option<PlantedBug>,
}

impl MemoryCashback {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_planted_bug(bug: PlantedBug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    /// A store where some challenge exists, so deliveries are counted.
    pub fn with_challenges(mut self) -> Self {
        self.challenges = true;
        self
    }

    fn world(&self) -> MutexGuard<'_, CashbackWorld> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ------------------------------------------------------------------ settings

    /// Seeds a partner's terms (the admin route goes through [`CashbackSettings`]).
    pub fn set_partner(&self, partner: &PartnerId, terms: &PartnerTerms) {
        self.world().partners.insert(partner.clone(), terms.clone());
    }

    pub fn set_minimum_order(&self, region: &RegionId, minimum: MinimumOrder) {
        self.world().minimums.insert(region.clone(), minimum);
    }

    /// Seeds the time zones (on DynamoDB accrual's admin routes write them).
    pub fn set_zones(&self, zones: Zones) {
        self.world().zones = zones;
    }

    /// Registers `participant`, active (what registration writes to ParticipantsTable).
    pub fn register(&self, participant: &ParticipantId, facts: ProfileFacts) {
        self.world().profiles.register(participant, facts);
    }

    /// Blocks or unblocks a registered participant (the admin's standing change).
    pub fn set_active(&self, participant: &ParticipantId, active: bool) {
        self.world().profiles.set_active(participant, active);
    }

    // ------------------------------------------------------------------ inspection

    /// A copy of everything stored.
    pub fn inspect(&self) -> CashbackWorld {
        self.world().clone()
    }

    /// Looks at everything stored without copying it (the simulator's checker).
    pub fn with_world<R>(&self, f: impl FnOnce(&CashbackWorld) -> R) -> R {
        f(&self.world())
    }

    /// Gives a programme account (a partner's fund) a budget or tops it up, as
    /// `DynamoLedger::fund_budget` does.
    pub fn fund_budget(
        &self,
        account: &loyalty_domain::ledger::ProgrammeAccount,
        amount: Points,
        funding_id: &str,
    ) -> crate::stores::ledger::Funded {
        self.world().accounts.fund(account, amount, funding_id)
    }

    /// One programme account's balance, as `DynamoLedger::programme_balance` reads it.
    pub fn programme_balance(
        &self,
        account: &loyalty_domain::ledger::ProgrammeAccount,
    ) -> crate::stores::ledger::ProgrammeBalance {
        self.world().accounts.balance(account)
    }

    /// The sum over every member account (available + pending + held).
    pub fn member_points(&self) -> i64 {
        self.world()
            .balances
            .values()
            .map(|b| (b.available + b.pending + b.held) as i64)
            .sum()
    }

    /// The sum over every programme account.
    pub fn programme_points(&self) -> i64 {
        self.world().accounts.sum()
    }

    /// How many entries every account holds together.
    pub fn entry_count(&self) -> usize {
        self.world().entry_ids.len()
    }

    pub fn stored_order(&self, partner: &PartnerId, id: &OrderId) -> Option<StoredOrder> {
        self.world()
            .orders
            .get(&(partner.clone(), id.clone()))
            .cloned()
    }

    pub fn used_this_month(&self, participant: &ParticipantId, month: &str) -> i64 {
        self.world()
            .caps
            .get(&(participant.clone(), month.to_string()))
            .copied()
            .unwrap_or(0)
    }

    pub fn balance(&self, participant: &ParticipantId) -> Balance {
        self.world()
            .balances
            .get(participant)
            .copied()
            .unwrap_or_default()
    }

    pub fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.world()
            .entries
            .get(participant)
            .cloned()
            .unwrap_or_default()
    }

    /// Orders listed in `queue` (`RELEASE#<month>` or `CLAWBACK#OUTSTANDING`), a page at a
    /// time: up to `limit` after `after`, and where the next page starts.
    pub fn queued(
        &self,
        queue: &str,
        after: Option<&(PartnerId, OrderId)>,
        limit: usize,
    ) -> (Vec<OrderKey>, Option<OrderKey>) {
        let world = self.world();
        let mut page: Vec<(PartnerId, OrderId)> = world
            .orders
            .iter()
            .filter(|(k, o)| o.queue.as_deref() == Some(queue) && after.is_none_or(|a| *k > a))
            .map(|(k, _)| k.clone())
            .take(limit + 1)
            .collect();
        let next = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().cloned().expect("a full page has a last")
        });
        (page, next)
    }

    /// Orders delivered in `month` and awaiting release, every page.
    pub fn awaiting_release(&self, month: &str) -> Vec<(PartnerId, OrderId)> {
        let queue = release_queue(month);
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = self.queued(&queue, after.as_ref(), 100);
            found.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => return found,
            }
        }
    }

    /// Spends points from the available balance (a redemption elsewhere), for tests and the
    /// simulator: `false` if the balance does not cover it.
    pub fn spend(
        &self,
        participant: &ParticipantId,
        id: EntryId,
        points: Points,
        now: DateTime<Utc>,
    ) -> bool {
        let mut world = self.world();
        let balance = world.balances.get(participant).copied().unwrap_or_default();
        let Ok(next) = balance.apply(EntryKind::Redemption, points) else {
            return false;
        };
        if !world.entry_ids.insert(id.clone()) {
            return false;
        }
        world.balances.insert(participant.clone(), next);
        let entry = Entry {
            id,
            participant: participant.clone(),
            outlet: None,
            kind: EntryKind::Redemption,
            amount: points,
            source: "spent".into(),
            created_at: now,
            expires_on: None,
        };
        world.accounts.apply(&entry);
        world
            .entries
            .entry(participant.clone())
            .or_default()
            .push(entry);
        true
    }
}

impl CashbackWorld {
    /// Every condition of `d`, in `DynamoCashback`'s precedence; `Ok` when all hold.
    fn check(
        &self,
        d: &Decision,
        bug: Option<PlantedBug>,
    ) -> Result<Result<Option<Balance>, Refusal>, InfraError> {
        if let Some((event, _)) = d
            .event
            .as_ref()
            .filter(|_| bug != Some(PlantedBug::ForgetReplays))
        {
            if let Some(first) = self.events.get(&(d.partner.clone(), event.clone())) {
                return Ok(Err(Refusal::EventSeen(first.clone())));
            }
        }
        if let Some(participant) = &d.standing {
            if !self.profiles.is_active(participant) {
                return Ok(Err(Refusal::ParticipantNotActive));
            }
        }
        let current = self
            .orders
            .get(&(d.partner.clone(), d.order_id.clone()))
            .map(|o| o.order.clone());
        let moved = match &d.order {
            OrderWrite::None => false,
            OrderWrite::Create(_) => current.is_some(),
            OrderWrite::Transition { expect, .. } => {
                current.as_ref().map(|o| o.status) != Some(*expect)
            }
        };
        if moved {
            return Ok(Err(Refusal::OrderMoved(current)));
        }
        if let Some(cap) = d
            .cap
            .as_ref()
            .filter(|_| bug != Some(PlantedBug::IgnoreCap))
        {
            if let Some(limit) = cap.at_most {
                let used = self
                    .caps
                    .get(&(cap.participant.clone(), cap.month.clone()))
                    .copied();
                // DynamoDB: `attribute_not_exists(used) OR used <= :limit`.
                if let Some(used) = used.filter(|u| *u > limit as i64) {
                    return Ok(Err(Refusal::CapMovedTo(used.max(0) as u64)));
                }
            }
        }
        let Some((entry, announce)) = &d.entry else {
            return Ok(Ok(None));
        };
        let balance = self
            .balances
            .get(&entry.participant)
            .copied()
            .unwrap_or_default();
        if !self.accounts.covers(entry) {
            return Ok(Err(Refusal::BudgetExhausted));
        }
        let next = match balance.apply(entry.kind, entry.amount) {
            Ok(next) => next,
            Err(_) => return Ok(Err(Refusal::BalanceMoved)),
        };
        let exists = self.entry_ids.contains(&entry.id)
            || announce
                .as_ref()
                .is_some_and(|a| self.outbox.contains_key(&outbox_id(a)));
        if exists {
            return Err(InfraError::permanent(
                "cashback transaction",
                "refused by the ledger: the entry or its outbox record exists",
            ));
        }
        Ok(Ok(Some(next)))
    }
}

fn outbox_id(event: &OutboxEvent) -> String {
    loyalty_domain::outbox::Envelope::new(event.clone(), DateTime::<Utc>::UNIX_EPOCH).event_id
}

impl CashbackSettings for MemoryCashback {
    async fn partner(&self, partner: &PartnerId) -> Result<Option<PartnerTerms>, InfraError> {
        Ok(self.world().partners.get(partner).cloned())
    }

    async fn put_partner(
        &self,
        partner: &PartnerId,
        terms: &PartnerTerms,
        _now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.set_partner(partner, terms);
        Ok(())
    }

    async fn put_minimum_order(
        &self,
        region: &RegionId,
        minimum: MinimumOrder,
        _now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.set_minimum_order(region, minimum);
        Ok(())
    }
}

impl Budgets for MemoryCashback {
    async fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Funded, InfraError> {
        Ok(MemoryCashback::fund_budget(
            self, account, amount, funding_id,
        ))
    }

    async fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> Result<ProgrammeBalance, InfraError> {
        Ok(MemoryCashback::programme_balance(self, account))
    }
}

impl CashbackStore for MemoryCashback {
    async fn terms(
        &self,
        partner: &PartnerId,
        region: &RegionId,
        _now: DateTime<Utc>,
    ) -> Result<(Option<PartnerTerms>, Option<MinimumOrder>), InfraError> {
        let world = self.world();
        Ok((
            world.partners.get(partner).cloned(),
            world.minimums.get(region).copied(),
        ))
    }

    async fn zones(&self, _now: DateTime<Utc>) -> Result<Zones, InfraError> {
        Ok(self.world().zones.clone())
    }

    async fn order(&self, partner: &PartnerId, id: &OrderId) -> Result<Option<Order>, InfraError> {
        Ok(self.stored_order(partner, id).map(|o| o.order))
    }

    async fn available(&self, participant: &ParticipantId) -> Result<u64, InfraError> {
        Ok(self.balance(participant).available)
    }

    async fn counts_deliveries(&self, _now: DateTime<Utc>) -> Result<bool, InfraError> {
        Ok(self.challenges)
    }

    async fn commit(
        &self,
        d: &Decision,
        _now: DateTime<Utc>,
    ) -> Result<Result<(), Refusal>, InfraError> {
        let mut world = self.world();
        if let Some(order) = &d.count_for_challenges {
            // A participant who is not active counts towards no challenge: the challenge
            // store's every step checks the standing.
            if self.challenges && world.profiles.is_active(&order.participant) {
                // Counted before the commit and once per order, as the challenge store does.
                world
                    .challenge_counts
                    .entry((order.partner.clone(), order.id.clone()))
                    .or_insert(1);
            }
        }
        let mut checked = world.check(d, self.bug)?;
        if let (Err(Refusal::BudgetExhausted), Some((entry, _))) = (&checked, &d.entry) {
            // As the DynamoDB adapter: a dry shard is refilled from the fund's other
            // shards, then the transaction is tried again.
            if world.accounts.gather(entry) == Gathered::Ready {
                checked = world.check(d, self.bug)?;
            }
        }
        let balance = match checked {
            Ok(b) => b,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let Some((event, result)) = &d.event {
            world
                .events
                .insert((d.partner.clone(), event.clone()), result.clone());
        }
        let key = (d.partner.clone(), d.order_id.clone());
        match &d.order {
            OrderWrite::None => {}
            OrderWrite::Create(order) => {
                world.orders.insert(
                    key,
                    StoredOrder {
                        order: order.clone(),
                        queue: None,
                    },
                );
            }
            OrderWrite::Transition {
                to,
                queue,
                clawback,
                ..
            } => {
                let stored = world.orders.get_mut(&key).expect("checked above");
                stored.order.status = *to;
                if let Some((taken, rest)) = clawback {
                    stored.order.clawed_back = *taken;
                    stored.order.outstanding_clawback = *rest;
                }
                match queue {
                    QueueMove::Keep => {}
                    QueueMove::Leave => stored.queue = None,
                    QueueMove::Enter(Queue::Release(month)) => {
                        stored.queue = Some(release_queue(month))
                    }
                    QueueMove::Enter(Queue::OutstandingClawback) => {
                        stored.queue = Some(OUTSTANDING_CLAWBACKS.to_string())
                    }
                }
            }
        }
        if let Some(cap) = &d.cap {
            *world
                .caps
                .entry((cap.participant.clone(), cap.month.clone()))
                .or_default() += cap.delta;
        }
        if let (Some((entry, announce)), Some(next)) = (&d.entry, balance) {
            world.balances.insert(entry.participant.clone(), next);
            world.entry_ids.insert(entry.id.clone());
            world.accounts.apply(entry);
            world
                .entries
                .entry(entry.participant.clone())
                .or_default()
                .push(entry.clone());
            if let Some(a) = announce {
                world.outbox.insert(outbox_id(a), a.clone());
            }
        }
        Ok(Ok(()))
    }
}
