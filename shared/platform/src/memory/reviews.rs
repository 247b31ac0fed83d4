//! [`ReviewStore`] in memory: a tiny seeded ledger of claims under review, with the same
//! condition as [`crate::stores::ledger::DynamoLedger::commit_decision`] (the entry must
//! still be on the queue) checked before anything is written.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind};
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::review::{
    Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::InfraError;

const CURSOR_PREFIX: &str = "memory-review:";

/// How a flagged entry was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub reviewer: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct ReviewsWorld {
    /// Every entry by (participant, entry id).
    pub entries: BTreeMap<(ParticipantId, EntryId), Entry>,
    /// Append order of each participant's entries.
    pub order: BTreeMap<ParticipantId, Vec<EntryId>>,
    pub balances: BTreeMap<ParticipantId, Balance>,
    /// The queue, ordered like the DynamoDB index: claimed at, then entry id.
    pub queue: BTreeMap<(String, EntryId), (ParticipantId, Vec<String>)>,
    pub verdicts: BTreeMap<(ParticipantId, EntryId), Verdict>,
    pub outbox: Vec<OutboxEvent>,
}

#[derive(Debug, Default)]
pub struct MemoryReviews {
    world: Mutex<ReviewsWorld>,
}

fn queue_key(entry: &Entry) -> (String, EntryId) {
    (entry.created_at.to_rfc3339(), entry.id.clone())
}

impl MemoryReviews {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds a claim a fraud rule flagged: its entry (points to pending) on the queue.
    pub fn flag(&self, entry: Entry, reasons: &[&str]) {
        assert_eq!(entry.kind, EntryKind::CodeClaimUnderReview);
        let mut w = self.world.lock().unwrap();
        Self::append(&mut w, entry.clone()).expect("a flagged claim only credits");
        w.queue.insert(
            queue_key(&entry),
            (
                entry.participant.clone(),
                reasons.iter().map(|r| r.to_string()).collect(),
            ),
        );
    }

    fn append(w: &mut ReviewsWorld, entry: Entry) -> Result<(), InfraError> {
        let balance = w
            .balances
            .get(&entry.participant)
            .copied()
            .unwrap_or_default()
            .apply(entry.kind, entry.amount)
            .map_err(|e| InfraError::permanent("append entry", e.to_string()))?;
        w.balances.insert(entry.participant.clone(), balance);
        w.order
            .entry(entry.participant.clone())
            .or_default()
            .push(entry.id.clone());
        w.entries
            .insert((entry.participant.clone(), entry.id.clone()), entry);
        Ok(())
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&ReviewsWorld) -> R) -> R {
        f(&self.world.lock().unwrap())
    }

    /// The participant's entries in append order.
    pub fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        self.inspect(|w| {
            w.order
                .get(participant)
                .into_iter()
                .flatten()
                .map(|id| w.entries[&(participant.clone(), id.clone())].clone())
                .collect()
        })
    }

    pub fn balance(&self, participant: &ParticipantId) -> Balance {
        self.inspect(|w| w.balances.get(participant).copied().unwrap_or_default())
    }

    pub fn outbox(&self) -> Vec<OutboxEvent> {
        self.inspect(|w| w.outbox.clone())
    }

    pub fn verdict(&self, id: &ReviewId) -> Option<Verdict> {
        self.inspect(|w| {
            w.verdicts
                .get(&(id.participant.clone(), id.entry.clone()))
                .cloned()
        })
    }

    pub fn queued(&self) -> usize {
        self.inspect(|w| w.queue.len())
    }
}

impl ReviewStore for MemoryReviews {
    async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
        Ok(self.inspect(|w| {
            w.entries
                .get(&(id.participant.clone(), id.entry.clone()))
                .cloned()
        }))
    }

    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingReview>, ReviewError> {
        let after = match cursor {
            None => None,
            Some(c) => {
                let rest = c
                    .strip_prefix(CURSOR_PREFIX)
                    .ok_or(ReviewError::InvalidCursor)?;
                let (at, entry) = rest.rsplit_once('#').ok_or(ReviewError::InvalidCursor)?;
                let entry = EntryId::parse(entry).map_err(|_| ReviewError::InvalidCursor)?;
                Some((at.to_string(), entry))
            }
        };
        let w = self.world.lock().unwrap();
        let rest: Vec<_> = w
            .queue
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .take(limit + 1)
            .collect();
        let more = rest.len() > limit;
        let page: Vec<_> = rest.into_iter().take(limit).collect();
        let next_cursor = if more {
            page.last()
                .map(|((at, entry), _)| format!("{CURSOR_PREFIX}{at}#{entry}"))
        } else {
            None
        };
        let items = page
            .into_iter()
            .map(|((_, entry), (participant, reasons))| {
                let e = w.entries[&(participant.clone(), entry.clone())].clone();
                PendingReview {
                    id: ReviewId::of(participant, entry),
                    entry: e,
                    reasons: reasons.clone(),
                }
            })
            .collect();
        Ok(Page { items, next_cursor })
    }

    async fn commit(&self, decided: &Decided) -> Result<Committed, InfraError> {
        let mut w = self.world.lock().unwrap();
        let queued = queue_key(&decided.reviewed);
        // The condition first (`attribute_exists(gsi1pk)`), then the ledger's: nothing is
        // written unless every one holds.
        if !w.queue.contains_key(&queued) {
            return Ok(Committed::AlreadyDecided);
        }
        let key = (decided.entry.participant.clone(), decided.entry.id.clone());
        if w.entries.contains_key(&key) {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (EntryExists)",
            ));
        }
        let balance = w
            .balances
            .get(&decided.entry.participant)
            .copied()
            .unwrap_or_default();
        if balance
            .apply(decided.entry.kind, decided.entry.amount)
            .is_err()
        {
            return Err(InfraError::retryable(
                "decide review",
                "cancelled by a concurrent change (InsufficientBalance)",
            ));
        }
        w.queue.remove(&queued);
        w.verdicts.insert(
            (decided.id.participant.clone(), decided.id.entry.clone()),
            Verdict {
                decision: decided.decision,
                reviewer: decided.reviewer.clone(),
                at: decided.at,
            },
        );
        Self::append(&mut w, decided.entry.clone())?;
        w.outbox.push(decided.event.clone());
        Ok(Committed::Ok)
    }
}
