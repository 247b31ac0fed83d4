//! [`ChallengeStore`] in memory, with [`crate::stores::challenges::DynamoChallenges`]'
//! conditions and precedence: the source's marker must be new, then the participant must be
//! registered and active (the profiles of the ledger's world, [`MemoryActions::register`]),
//! then the progress must still be what was read, then the bonus (when the step carries one) must be creditable: its
//! entry and event new and its challenge's budget covering it. Everything is checked before
//! anything is written.
//!
//! The bonus lands in a [`MemoryActions`] ledger (entries, balances, outbox, programme
//! accounts with their budgets), shared with the function's other ports when built
//! [`MemoryChallenges::with_ledger`], so a budget funded for a challenge is the one its
//! bonuses are checked against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use loyalty_domain::challenge::{
    Challenge, ChallengeId, ChallengeStore, Progress, StepCommit, StepRefusal,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::InfraError;

use super::MemoryActions;
use crate::stores::ledger::LedgerRefusal;

#[derive(Debug, Default)]
pub struct ChallengesWorld {
    pub challenges: BTreeMap<ChallengeId, Challenge>,
    pub progress: BTreeMap<(ParticipantId, ChallengeId), Progress>,
    /// (participant, marker key): the sources counted, as `SOURCE#<challenge>#<reference>`.
    pub markers: BTreeSet<(ParticipantId, String)>,
}

/// Challenges and progress over ordered maps behind one lock; bonuses in a shared ledger.
#[derive(Debug, Default)]
pub struct MemoryChallenges {
    world: Mutex<ChallengesWorld>,
    ledger: Arc<MemoryActions>,
    bug: Option<ChallengesBug>,
}

/// A deliberate bug, only to prove that the contract catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengesBug {
    /// Source markers are written but never checked: a source recorded again counts again.
    IgnoreMarkers,
    /// The participant's standing is never checked: a blocked participant's source counts
    /// and may pay a bonus.
    IgnoreStanding,
}

impl MemoryChallenges {
    /// A store with a ledger of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose bonuses land in `ledger`.
    pub fn with_ledger(ledger: Arc<MemoryActions>) -> Self {
        Self {
            ledger,
            ..Self::default()
        }
    }

    pub fn with_planted_bug(bug: ChallengesBug) -> Self {
        Self {
            bug: Some(bug),
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChallengesWorld> {
        self.world.lock().expect("challenges world")
    }

    /// The ledger bonuses land in: entries, balances, outbox, budgets.
    pub fn ledger(&self) -> &Arc<MemoryActions> {
        &self.ledger
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&ChallengesWorld) -> R) -> R {
        f(&self.lock())
    }

    /// Whether the source's marker for `challenge` exists.
    pub fn counted(&self, participant: &ParticipantId, marker_key: &str) -> bool {
        self.lock()
            .markers
            .contains(&(participant.clone(), marker_key.to_string()))
    }
}

impl ChallengeStore for MemoryChallenges {
    async fn challenges(&self) -> Result<Vec<Challenge>, InfraError> {
        Ok(self.lock().challenges.values().cloned().collect())
    }

    async fn put_challenge(&self, c: &Challenge, _now: DateTime<Utc>) -> Result<(), InfraError> {
        self.lock().challenges.insert(c.id.clone(), c.clone());
        Ok(())
    }

    async fn progress(
        &self,
        participant: &ParticipantId,
        challenge: &ChallengeId,
    ) -> Result<Option<Progress>, InfraError> {
        Ok(self
            .lock()
            .progress
            .get(&(participant.clone(), challenge.clone()))
            .copied())
    }

    async fn progresses(
        &self,
        participant: &ParticipantId,
    ) -> Result<Vec<(ChallengeId, Progress)>, InfraError> {
        Ok(self
            .lock()
            .progress
            .iter()
            .filter(|((p, _), _)| p == participant)
            .map(|((_, c), progress)| (c.clone(), *progress))
            .collect())
    }

    async fn commit_step(&self, step: &StepCommit) -> Result<Result<(), StepRefusal>, InfraError> {
        // Held until the end: the bonus is credited under it, so the step is one atomic write.
        let mut w = self.lock();
        let participant = &step.source.participant;
        let marker = (participant.clone(), step.source.marker_key(&step.challenge));
        if w.markers.contains(&marker) && self.bug != Some(ChallengesBug::IgnoreMarkers) {
            return Ok(Err(StepRefusal::SourceCounted));
        }
        if !self.ledger.inspect(|l| l.profiles.is_active(participant))
            && self.bug != Some(ChallengesBug::IgnoreStanding)
        {
            return Ok(Err(StepRefusal::ParticipantNotActive));
        }
        let progress_key = (participant.clone(), step.challenge.clone());
        // `attribute_not_exists(pk)` or `units = :read`: only the units are compared.
        let current = w.progress.get(&progress_key).map(|p| p.units);
        if current != step.read.map(|p| p.units) {
            return Ok(Err(StepRefusal::ProgressMoved));
        }
        if let Some(entry) = &step.bonus {
            let event = OutboxEvent::ChallengeCompleted {
                participant_id: participant.clone(),
                entry_id: entry.id.clone(),
                challenge_id: step.challenge.clone(),
                points: entry.amount,
            };
            match self.ledger.credit(entry, event, step.source.at) {
                Ok(()) => {}
                Err(LedgerRefusal::BudgetExhausted) => {
                    return Ok(Err(StepRefusal::BudgetExhausted))
                }
                Err(other) => {
                    return Err(InfraError::permanent(
                        "record progress",
                        format!("unexpected refusal: {other:?}"),
                    ))
                }
            }
        }
        w.markers.insert(marker);
        w.progress.insert(progress_key, step.next);
        Ok(Ok(()))
    }
}
