//! [`ActionStore`] in memory, with [`crate::stores::actions::DynamoActions`]' conditions and
//! refusal precedence: the key's record, then the entry (and its outbox record), then the
//! limit counters (participant before period), then the balance version, then the rule's
//! budget (the programme side, [`super::ledger::ProgrammeShards`]), all checked before
//! anything is written.
//!
//! The same world is accrual's [`EarningSettings`] in memory (rules, tiers, budgets, earned
//! months) and the ledger [`super::MemoryChallenges`] credits bonuses to
//! ([`MemoryActions::credit`]) and [`super::MemorySellIn`] credits sell-in lines to, so an
//! `accrual::App` built on memory sees one programme.
//! A credit held over budget (`AccrualUnderReview`) waits on [`ActionsWorld::reviews`] and is
//! decided through this store's [`ReviewStore`], as `DynamoLedger` decides it on the ledger
//! table: an approval pays the rule within its budget, or is refused and stays held.

use loyalty_domain::zone::{Zone, ZoneSettings, Zones};
use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::action::{
    ActionAttempt, ActionReceipt, ActionRefusal, ActionStore, BalanceExpectation, KeyedRequest,
    Programme, StoredAnswer, TierBasis,
};
use loyalty_domain::earning::{LimitScope, MonthlyEarned, Rule, RuleId, Tiers};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Budgets, Entry, EntryKind, ProgrammeAccount};
use loyalty_domain::outbox::{Envelope, OutboxEvent as DomainEvent};
use loyalty_domain::participant::{ProfileFacts, ProfileRefusal};
use loyalty_domain::review::{
    Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::settings::EarningSettings;
use loyalty_domain::{InfraError, Points};

use super::claims::{OutboxEvent, StoredBalance};
use super::ledger::ProgrammeShards;
use super::participants::ProfileChecks;
use super::sellin::LineMarker;
use crate::stores::ledger::{Funded, LedgerRefusal, ProgrammeBalance};

/// How long an answer is kept under its key, as in DynamoDB (24 h TTL).
const RECORD_TTL_SECS: i64 = 24 * 3600;

/// An answer stored under (caller, key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub answer: StoredAnswer,
    /// Epoch seconds; at or past it the record counts as absent.
    pub ttl: i64,
}

#[derive(Debug, Default)]
pub struct ActionsWorld {
    pub programme: Programme,
    /// Registered participants (profile items of ParticipantsTable).
    pub profiles: ProfileChecks,
    /// (caller, key) → the first answer.
    pub records: BTreeMap<(String, String), KeyRecord>,
    /// (participant, rule, counter key) → used.
    pub counters: BTreeMap<(ParticipantId, String, String), u64>,
    pub entries: BTreeMap<(ParticipantId, EntryId), Entry>,
    pub balances: BTreeMap<ParticipantId, StoredBalance>,
    pub outlet_totals: BTreeMap<OutletId, StoredBalance>,
    pub outbox: BTreeMap<String, OutboxEvent>,
    /// The programme side of every entry: rules' accounts, with their budgets.
    pub accounts: ProgrammeShards,
    /// The review queue: credits held over budget, by (held at, entry id), as the ledger
    /// table's `gsi1` orders them.
    pub reviews: BTreeMap<(String, EntryId), ParticipantId>,
    /// Sell-in lines' markers, by the line's entry id ([`super::MemorySellIn`]).
    pub lines: BTreeMap<EntryId, LineMarker>,
}

/// Actions over ordered maps behind one lock.
#[derive(Debug, Default)]
pub struct MemoryActions {
    world: Mutex<ActionsWorld>,
    bug: Option<ActionsBug>,
}

/// A deliberate bug, only to prove that the contract catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionsBug {
    /// Limit counters are counted but never checked.
    IgnoreLimits,
    /// A rule's budget is never checked: its shards may be overdrawn.
    IgnoreBudgets,
}

impl MemoryActions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `participant`, active, in the region and outlet of `facts` (what
    /// registration writes to ParticipantsTable).
    pub fn register(&self, participant: &ParticipantId, facts: ProfileFacts) {
        self.lock().profiles.register(participant, facts);
    }

    /// Blocks or unblocks a registered participant (the admin's standing change).
    pub fn set_active(&self, participant: &ParticipantId, active: bool) {
        self.lock().profiles.set_active(participant, active);
    }

    pub fn with_planted_bug(bug: ActionsBug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ActionsWorld> {
        self.world.lock().expect("actions world")
    }

    /// Adds or replaces a rule (as `PUT /admin/rules/{id}` does).
    pub fn put_rule(&self, rule: Rule) {
        let mut w = self.lock();
        w.programme.rules.retain(|r| r.id != rule.id);
        w.programme.rules.push(rule);
        w.programme.rules.sort_by(|a, b| a.id.cmp(&b.id));
    }

    /// Seeds the time zones (the admin routes go through [`ZoneSettings`]).
    pub fn set_zones(&self, zones: Zones) {
        self.lock().programme.zones = zones;
    }

    pub fn put_tiers(&self, tiers: Tiers) {
        self.lock().programme.tiers = tiers;
    }

    /// Moves a balance as another feature's write would (a sell-in credit): bumps its
    /// version and the month's earned points, and debits the sell-in programme account, so
    /// member and programme accounts still sum to zero.
    pub fn credit_elsewhere(&self, participant: &ParticipantId, points: u64, at: DateTime<Utc>) {
        let delta = loyalty_domain::ledger::Delta::of(
            loyalty_domain::ledger::EntryKind::Accrual,
            loyalty_domain::Points(points),
        );
        let mut w = self.lock();
        w.balances
            .entry(participant.clone())
            .or_default()
            .add(&delta, at);
        *w.accounts
            .balances
            .entry((loyalty_domain::ledger::ProgrammeAccount::SellIn, 0))
            .or_default() -= points as i64;
    }

    /// Gives a programme account (a rule's) a budget or tops it up, as
    /// `DynamoLedger::fund_budget` does.
    pub fn fund_budget(
        &self,
        account: &loyalty_domain::ledger::ProgrammeAccount,
        amount: loyalty_domain::Points,
        funding_id: &str,
    ) -> Funded {
        self.lock().accounts.fund(account, amount, funding_id)
    }

    /// One programme account's balance, as `DynamoLedger::programme_balance` reads it.
    pub fn programme_balance(
        &self,
        account: &loyalty_domain::ledger::ProgrammeAccount,
    ) -> ProgrammeBalance {
        self.lock().accounts.balance(account)
    }

    /// Appends a credit another accrual feature decided (a challenge bonus) with its outbox
    /// event, as [`crate::stores::ledger::append_items`] does: refused, with nothing
    /// written, when the entry or its event exists or the programme account's budget
    /// cannot cover it (checked in that order).
    pub fn credit(
        &self,
        entry: &Entry,
        event: DomainEvent,
        at: DateTime<Utc>,
    ) -> Result<(), LedgerRefusal> {
        let mut w = self.lock();
        let envelope = Envelope::new(event, at);
        let id = (entry.participant.clone(), entry.id.clone());
        if w.entries.contains_key(&id) {
            return Err(LedgerRefusal::EntryExists);
        }
        if w.outbox.contains_key(&envelope.event_id) {
            return Err(LedgerRefusal::OutboxExists);
        }
        if !w.accounts.cover(entry) {
            return Err(LedgerRefusal::BudgetExhausted);
        }
        w.balances
            .entry(entry.participant.clone())
            .or_default()
            .add(&entry.delta(), at);
        let payload: serde_json::Value =
            serde_json::from_str(&envelope.to_json()).expect("an envelope is JSON");
        w.outbox.insert(
            envelope.event_id.clone(),
            OutboxEvent {
                event_id: envelope.event_id.clone(),
                payload,
                at,
            },
        );
        w.accounts.apply(entry);
        w.entries.insert(id, entry.clone());
        Ok(())
    }

    /// The sum over every member account (available + pending + held).
    pub fn member_points(&self) -> i64 {
        self.lock()
            .balances
            .values()
            .map(|b| b.available + b.pending + b.held)
            .sum()
    }

    /// The sum over every programme account.
    pub fn programme_points(&self) -> i64 {
        self.lock().accounts.sum()
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&ActionsWorld) -> R) -> R {
        f(&self.lock())
    }

    pub fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.lock()
            .entries
            .iter()
            .filter(|((p, _), _)| p == participant)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub fn balance(&self, participant: &ParticipantId) -> Option<StoredBalance> {
        self.lock().balances.get(participant).cloned()
    }

    pub fn outlet_totals(&self, outlet: &OutletId) -> Option<StoredBalance> {
        self.lock().outlet_totals.get(outlet).cloned()
    }

    pub fn outbox(&self) -> Vec<OutboxEvent> {
        self.lock().outbox.values().cloned().collect()
    }

    /// A limit counter's value (0 when never written).
    pub fn used(&self, participant: &ParticipantId, rule: &str, counter: &str) -> u64 {
        self.lock()
            .counters
            .get(&(participant.clone(), rule.to_string(), counter.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The record stored under a caller's key, expired or not.
    pub fn record(&self, scope: &str, key: &str) -> Option<KeyRecord> {
        self.lock()
            .records
            .get(&(scope.to_string(), key.to_string()))
            .cloned()
    }
}

/// The settings port over the same world: rules and tiers are the programme actions read,
/// budgets the programme accounts actions are paid from.
impl EarningSettings for MemoryActions {
    async fn rules(&self) -> Result<Vec<Rule>, InfraError> {
        Ok(self.lock().programme.rules.clone())
    }

    async fn rule(&self, id: &RuleId) -> Result<Option<Rule>, InfraError> {
        Ok(self.lock().programme.rule(id).cloned())
    }

    async fn put_rule(&self, rule: &Rule, _now: DateTime<Utc>) -> Result<(), InfraError> {
        MemoryActions::put_rule(self, rule.clone());
        Ok(())
    }

    async fn tiers(&self) -> Result<Tiers, InfraError> {
        Ok(self.lock().programme.tiers.clone())
    }

    async fn put_tiers(&self, tiers: &Tiers, _now: DateTime<Utc>) -> Result<(), InfraError> {
        MemoryActions::put_tiers(self, tiers.clone());
        Ok(())
    }

    async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        Ok(basis(self.lock().balances.get(participant)).months)
    }
}

/// The zones live in the programme the actions read, as on DynamoDB in ProgrammeTable.
impl ZoneSettings for MemoryActions {
    async fn zones(&self) -> Result<Zones, InfraError> {
        Ok(self.lock().programme.zones.clone())
    }

    async fn put_programme_zone(&self, zone: Zone, _now: DateTime<Utc>) -> Result<(), InfraError> {
        self.lock().programme.zones.programme = zone;
        Ok(())
    }

    async fn put_region_zone(
        &self,
        region: &RegionId,
        zone: Zone,
        _now: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.lock()
            .programme
            .zones
            .regions
            .insert(region.clone(), zone);
        Ok(())
    }
}

impl Budgets for MemoryActions {
    async fn fund_budget(
        &self,
        account: &ProgrammeAccount,
        amount: Points,
        funding_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<Funded, InfraError> {
        Ok(MemoryActions::fund_budget(
            self, account, amount, funding_id,
        ))
    }

    async fn programme_balance(
        &self,
        account: &ProgrammeAccount,
    ) -> Result<ProgrammeBalance, InfraError> {
        Ok(MemoryActions::programme_balance(self, account))
    }
}

pub(super) fn put_outbox(w: &mut ActionsWorld, envelope: &Envelope) {
    let payload: serde_json::Value =
        serde_json::from_str(&envelope.to_json()).expect("an envelope is JSON");
    w.outbox.insert(
        envelope.event_id.clone(),
        OutboxEvent {
            event_id: envelope.event_id.clone(),
            payload,
            at: envelope.occurred_at,
        },
    );
}

fn review_key(entry: &Entry) -> (String, EntryId) {
    (entry.created_at.to_rfc3339(), entry.id.clone())
}

fn basis(b: Option<&StoredBalance>) -> TierBasis {
    b.map(|b| TierBasis {
        version: b.version,
        months: b.earned_by_month.clone(),
    })
    .unwrap_or_default()
}

impl ActionStore for MemoryActions {
    async fn programme(&self) -> Result<Programme, InfraError> {
        Ok(self.lock().programme.clone())
    }

    async fn try_accrue(&self, a: &ActionAttempt) -> Result<Result<(), ActionRefusal>, InfraError> {
        let mut w = self.lock();
        let entry = &a.entry;
        let record_id = (a.key.scope.clone(), a.key.key.as_str().to_string());
        if let Some(r) = w.records.get(&record_id) {
            if r.ttl > a.now.timestamp() {
                return Ok(Err(ActionRefusal::KeyTaken(r.answer.clone())));
            }
        }
        // The profile check, after the key as `DynamoActions` ranks it.
        match w.profiles.check(&entry.participant, &a.profile) {
            Ok(()) => {}
            Err(ProfileRefusal::NotActive) => return Ok(Err(ActionRefusal::ParticipantNotActive)),
            Err(ProfileRefusal::Differs(facts)) => {
                return Ok(Err(ActionRefusal::ProfileDiffers(facts)))
            }
        }
        let envelope = Envelope::new(
            DomainEvent::PointsCredited {
                participant_id: entry.participant.clone(),
                entry_id: entry.id.clone(),
                rule_id: a.rule.clone(),
                points: entry.amount,
            },
            a.now,
        );
        let entry_id = (entry.participant.clone(), entry.id.clone());
        // A held credit announces nothing until it is decided.
        let held = entry.kind == EntryKind::AccrualUnderReview;
        if w.entries.contains_key(&entry_id) || w.outbox.contains_key(&envelope.event_id) {
            return Ok(Err(ActionRefusal::EntryExists));
        }
        let counter_ids: Vec<_> = a
            .counters
            .iter()
            .map(|c| {
                (
                    (
                        entry.participant.clone(),
                        a.rule.as_str().to_string(),
                        c.key.clone(),
                    ),
                    c,
                )
            })
            .collect();
        for scope in [LimitScope::Participant, LimitScope::Period] {
            for (id, c) in &counter_ids {
                let used = w.counters.get(id).copied();
                // `attribute_not_exists(used) OR used < :max`
                if c.scope == scope
                    && used.is_some_and(|u| u >= c.max as u64)
                    && self.bug != Some(ActionsBug::IgnoreLimits)
                {
                    return Ok(Err(ActionRefusal::Limit {
                        scope,
                        used: used.unwrap_or(0),
                    }));
                }
            }
        }
        let current = w.balances.get(&entry.participant);
        let balance_ok = match a.expected_balance {
            BalanceExpectation::Any => true,
            BalanceExpectation::Absent => current.is_none(),
            BalanceExpectation::Version(v) => current.is_some_and(|b| b.version == v),
        };
        if !balance_ok {
            return Ok(Err(ActionRefusal::BalanceMoved(basis(current))));
        }
        if self.bug != Some(ActionsBug::IgnoreBudgets) && !w.accounts.cover(entry) {
            return Ok(Err(ActionRefusal::BudgetExhausted));
        }

        // Every condition holds: write everything.
        w.records.insert(
            record_id,
            KeyRecord {
                answer: StoredAnswer {
                    fingerprint: a.key.fingerprint.clone(),
                    status: ActionReceipt::STATUS,
                    body: a.receipt.body().to_string(),
                    content_type: Some("application/json".into()),
                },
                ttl: a.now.timestamp() + RECORD_TTL_SECS,
            },
        );
        for (id, _) in counter_ids {
            *w.counters.entry(id).or_default() += 1;
        }
        let delta = entry.delta();
        w.balances
            .entry(entry.participant.clone())
            .or_default()
            .add(&delta, a.now);
        if let Some(outlet) = &entry.outlet {
            w.outlet_totals
                .entry(outlet.clone())
                .or_default()
                .add(&delta, a.now);
        }
        if held {
            w.reviews
                .insert(review_key(entry), entry.participant.clone());
        } else {
            put_outbox(&mut w, &envelope);
        }
        w.accounts.apply(entry);
        w.entries.insert(entry_id, entry.clone());
        Ok(Ok(()))
    }

    async fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> Result<Result<(), StoredAnswer>, InfraError> {
        let mut w = self.lock();
        let id = (key.scope.clone(), key.key.as_str().to_string());
        if let Some(r) = w.records.get(&id) {
            if r.ttl > now.timestamp() {
                return Ok(Err(r.answer.clone()));
            }
        }
        let content_type = if status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        };
        w.records.insert(
            id,
            KeyRecord {
                answer: StoredAnswer {
                    fingerprint: key.fingerprint.clone(),
                    status,
                    body,
                    content_type: Some(content_type.into()),
                },
                ttl: now.timestamp() + RECORD_TTL_SECS,
            },
        );
        Ok(Ok(()))
    }
}

const REVIEW_CURSOR_PREFIX: &str = "memory-actions-review:";

/// Review decisions on credits held over budget, with `DynamoLedger::commit_decision`'s
/// conditions, checked before anything is written: the entry still queued, the decision
/// entry new, the pending bucket covering it, and (an approval) the rule's budget shard
/// covering the points.
impl ReviewStore for MemoryActions {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        Ok(self
            .lock()
            .entries
            .get(&(id.participant.clone(), id.entry.clone()))
            .cloned())
    }

    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingReview>, ReviewError> {
        let after = super::reviews::decode_cursor(REVIEW_CURSOR_PREFIX, cursor)?;
        let w = self.lock();
        let rest: Vec<_> = w
            .reviews
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .take(limit + 1)
            .collect();
        let more = rest.len() > limit;
        let page = &rest[..rest.len().min(limit)];
        let next_cursor = more
            .then(|| page.last())
            .flatten()
            .map(|((at, entry), _)| super::reviews::encode_cursor(REVIEW_CURSOR_PREFIX, at, entry));
        let items = page
            .iter()
            .map(|((_, entry), participant)| PendingReview {
                id: ReviewId::of(participant, entry),
                entry: w.entries[&((*participant).clone(), entry.clone())].clone(),
                reasons: vec![crate::stores::ledger::OVER_BUDGET.to_string()],
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    async fn commit(&self, d: &Decided) -> Result<Committed, InfraError> {
        let mut w = self.lock();
        if w.reviews.remove(&review_key(&d.reviewed)).is_none() {
            return Ok(Committed::AlreadyDecided);
        }
        // Put back until every other condition holds: nothing is written before then.
        w.reviews
            .insert(review_key(&d.reviewed), d.reviewed.participant.clone());
        if d.decision == Decision::Approve && !w.profiles.is_active(&d.id.participant) {
            return Ok(Committed::ParticipantNotActive);
        }
        let entry = &d.entry;
        let key = (entry.participant.clone(), entry.id.clone());
        if w.entries.contains_key(&key) {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (EntryExists)",
            ));
        }
        let delta = entry.delta();
        let pending = w
            .balances
            .get(&entry.participant)
            .map(|b| b.pending)
            .unwrap_or(0);
        if pending + delta.pending < 0 {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (InsufficientBalance)",
            ));
        }
        if self.bug != Some(ActionsBug::IgnoreBudgets) && !w.accounts.cover(entry) {
            return Ok(Committed::BudgetRefused);
        }
        w.reviews.remove(&review_key(&d.reviewed));
        w.balances
            .entry(entry.participant.clone())
            .or_default()
            .add(&delta, d.at);
        if let Some(outlet) = &entry.outlet {
            w.outlet_totals
                .entry(outlet.clone())
                .or_default()
                .add(&delta, d.at);
        }
        w.accounts.apply(entry);
        put_outbox(&mut w, &Envelope::new(d.event.clone(), d.at));
        w.entries.insert(key, entry.clone());
        Ok(Committed::Ok)
    }
}
