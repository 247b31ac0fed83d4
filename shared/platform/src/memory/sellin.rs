//! [`SellInStore`] in memory, with [`crate::stores::earning::EarningStore`]'s conditions: a
//! line's marker holding another fingerprint refuses the credit as `Changed`, then the
//! participant's entry existing as `AlreadyImported`, then the entry's outbox record
//! existing for another participant as `Changed`; all checked before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::earning::{MonthlyEarned, RuleId, Tiers};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{Delta, Entry};
use loyalty_domain::sellin::{SellInCredit, SellInStore};
use loyalty_domain::{InfraError, Points};

use super::claims::StoredBalance;

/// A line's marker: kept forever, keyed by the line (its entry id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMarker {
    pub fingerprint: String,
    pub participant: ParticipantId,
    pub rule: RuleId,
}

#[derive(Debug, Default)]
pub struct SellInWorld {
    pub tiers: Tiers,
    pub markers: BTreeMap<EntryId, LineMarker>,
    pub entries: BTreeMap<(ParticipantId, EntryId), Entry>,
    pub balances: BTreeMap<ParticipantId, StoredBalance>,
    /// Entry ids with a `PointsCredited` record.
    pub outbox: BTreeSet<EntryId>,
}

/// Sell-in over ordered maps behind one lock.
#[derive(Debug, Default)]
pub struct MemorySellIn {
    world: Mutex<SellInWorld>,
    bug: Option<SellInBug>,
}

/// A deliberate bug, only to prove that the contract catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellInBug {
    /// The marker's fingerprint is never compared (neither by the check nor by the write): a
    /// line moved to another participant is credited again.
    IgnoreFingerprint,
}

impl MemorySellIn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_planted_bug(bug: SellInBug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SellInWorld> {
        self.world.lock().expect("sell-in world lock")
    }

    pub fn put_tiers(&self, tiers: Tiers) {
        self.lock().tiers = tiers;
    }

    /// Moves a balance as another feature's write would: the month's earned points.
    pub fn credit_elsewhere(&self, participant: &ParticipantId, points: u64, at: DateTime<Utc>) {
        let delta = Delta::of(loyalty_domain::ledger::EntryKind::Accrual, Points(points));
        self.lock()
            .balances
            .entry(participant.clone())
            .or_default()
            .add(&delta, at);
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&SellInWorld) -> R) -> R {
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

    pub fn marker(&self, entry: &EntryId) -> Option<LineMarker> {
        self.lock().markers.get(entry).cloned()
    }
}

impl SellInStore for MemorySellIn {
    async fn changed_lines(&self, lines: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
        let w = self.lock();
        let check_fingerprint = self.bug != Some(SellInBug::IgnoreFingerprint);
        Ok(lines
            .iter()
            .enumerate()
            .filter(|(_, (id, fp))| {
                check_fingerprint && w.markers.get(id).is_some_and(|m| &m.fingerprint != fp)
            })
            .map(|(i, _)| i)
            .collect())
    }

    async fn tiers(&self) -> Result<Tiers, InfraError> {
        Ok(self.lock().tiers.clone())
    }

    async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        Ok(self
            .lock()
            .balances
            .get(participant)
            .map(|b| b.earned_by_month.clone())
            .unwrap_or_default())
    }

    async fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        let mut w = self.lock();
        let check_fingerprint = self.bug != Some(SellInBug::IgnoreFingerprint);
        if check_fingerprint
            && w.markers
                .get(&entry.id)
                .is_some_and(|m| m.fingerprint != fingerprint)
        {
            return Ok(SellInCredit::Changed);
        }
        let key = (entry.participant.clone(), entry.id.clone());
        if w.entries.contains_key(&key) {
            return Ok(SellInCredit::AlreadyImported);
        }
        if check_fingerprint && w.outbox.contains(&entry.id) {
            return Ok(SellInCredit::Changed);
        }
        w.markers.insert(
            entry.id.clone(),
            LineMarker {
                fingerprint: fingerprint.to_string(),
                participant: entry.participant.clone(),
                rule: rule.clone(),
            },
        );
        w.entries.insert(key, entry.clone());
        w.balances
            .entry(entry.participant.clone())
            .or_default()
            .add(&Delta::of(entry.kind, entry.amount), entry.created_at);
        w.outbox.insert(entry.id.clone());
        Ok(SellInCredit::Credited)
    }
}
