//! [`SellInStore`] in memory, with [`crate::stores::earning::EarningStore`]'s conditions: a
//! line's marker holding another fingerprint refuses the credit as `Changed`, then the
//! participant's entry existing as `AlreadyImported`, then the entry's outbox record
//! existing for another participant as `Changed`, then the participant not registered and
//! active (the world's profiles) as `ParticipantNotActive`; all checked before anything is
//! written.
//!
//! As on DynamoDB, where sell-in writes the ledger and reads the ProgrammeTable that actions
//! use, the adapter works on a [`MemoryActions`] world: its tiers, the balances (so the
//! earned months that set a tier count every credit), the entries, the outbox and the
//! programme accounts ([`ProgrammeAccount::SellIn`]) are the ones actions, settings and
//! challenges use. [`MemorySellIn::on`] shares an app's ledger; [`MemorySellIn::new`] has
//! one of its own.

use std::sync::Arc;

use loyalty_domain::earning::{MonthlyEarned, RuleId, Tiers};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{Entry, ProgrammeAccount};
use loyalty_domain::outbox::{Envelope, OutboxEvent as DomainEvent};
use loyalty_domain::sellin::{SellInCredit, SellInStore};
use loyalty_domain::settings::EarningSettings;
use loyalty_domain::InfraError;

use super::actions::{put_outbox, ActionsWorld};
use super::claims::StoredBalance;
use super::MemoryActions;

/// A line's marker: kept forever, keyed by the line (its entry id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineMarker {
    pub fingerprint: String,
    pub participant: ParticipantId,
    pub rule: RuleId,
}

/// Sell-in on a [`MemoryActions`] world.
#[derive(Debug, Default)]
pub struct MemorySellIn {
    ledger: Arc<MemoryActions>,
    bug: Option<SellInBug>,
}

/// A deliberate bug, only to prove that the contract catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellInBug {
    /// The marker's fingerprint is never compared (neither by the check nor by the write): a
    /// line moved to another participant is credited again.
    IgnoreFingerprint,
    /// The participant's standing is never checked: a blocked participant's line is credited.
    IgnoreStanding,
}

impl MemorySellIn {
    /// Sell-in on a ledger of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sell-in on `ledger`: the programme and ledger of the app's actions.
    pub fn on(ledger: Arc<MemoryActions>) -> Self {
        Self { ledger, bug: None }
    }

    pub fn with_planted_bug(bug: SellInBug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    /// The ledger credited to: seeds tiers and other credits, inspects budgets.
    pub fn ledger(&self) -> &MemoryActions {
        &self.ledger
    }

    fn checks_fingerprint(&self) -> bool {
        self.bug != Some(SellInBug::IgnoreFingerprint)
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&ActionsWorld) -> R) -> R {
        self.ledger.inspect(f)
    }

    pub fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.ledger.entries(participant)
    }

    pub fn balance(&self, participant: &ParticipantId) -> Option<StoredBalance> {
        self.ledger.balance(participant)
    }

    pub fn marker(&self, entry: &EntryId) -> Option<LineMarker> {
        self.ledger.inspect(|w| w.lines.get(entry).cloned())
    }
}

impl SellInStore for MemorySellIn {
    async fn changed_lines(&self, lines: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
        let w = self.ledger.lock();
        Ok(lines
            .iter()
            .enumerate()
            .filter(|(_, (id, fp))| {
                self.checks_fingerprint() && w.lines.get(id).is_some_and(|m| &m.fingerprint != fp)
            })
            .map(|(i, _)| i)
            .collect())
    }

    async fn tiers(&self) -> Result<Tiers, InfraError> {
        EarningSettings::tiers(&*self.ledger).await
    }

    async fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> Result<MonthlyEarned, InfraError> {
        EarningSettings::earned_months(&*self.ledger, participant).await
    }

    async fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        let mut w = self.ledger.lock();
        if self.checks_fingerprint()
            && w.lines
                .get(&entry.id)
                .is_some_and(|m| m.fingerprint != fingerprint)
        {
            return Ok(SellInCredit::Changed);
        }
        let key = (entry.participant.clone(), entry.id.clone());
        if w.entries.contains_key(&key) {
            return Ok(SellInCredit::AlreadyImported);
        }
        let envelope = Envelope::new(
            DomainEvent::PointsCredited {
                participant_id: entry.participant.clone(),
                entry_id: entry.id.clone(),
                rule_id: rule.clone(),
                points: entry.amount,
            },
            entry.created_at,
        );
        if self.checks_fingerprint() && w.outbox.contains_key(&envelope.event_id) {
            return Ok(SellInCredit::Changed);
        }
        if !w.profiles.is_active(&entry.participant) && self.bug != Some(SellInBug::IgnoreStanding)
        {
            return Ok(SellInCredit::ParticipantNotActive);
        }
        // No route funds the sell-in account, but one funded by hand bounds it as on
        // DynamoDB, where `credit_sell_in` neither gathers a dry shard nor takes the refusal
        // for a business outcome: an infrastructure error.
        if !w.accounts.covers(entry) {
            return Err(InfraError::retryable(
                "credit sell-in",
                format!("budget of {:?} exhausted", ProgrammeAccount::of(entry)),
            ));
        }
        w.lines.insert(
            entry.id.clone(),
            LineMarker {
                fingerprint: fingerprint.to_string(),
                participant: entry.participant.clone(),
                rule: rule.clone(),
            },
        );
        let delta = entry.delta();
        w.balances
            .entry(entry.participant.clone())
            .or_default()
            .add(&delta, entry.created_at);
        if let Some(outlet) = &entry.outlet {
            w.outlet_totals
                .entry(outlet.clone())
                .or_default()
                .add(&delta, entry.created_at);
        }
        put_outbox(&mut w, &envelope);
        w.accounts.apply(entry);
        w.entries.insert(key, entry.clone());
        Ok(SellInCredit::Credited)
    }
}
