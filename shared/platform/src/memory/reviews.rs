//! [`ReviewStore`] in memory: a tiny seeded ledger of claims under review, with the same
//! conditions as [`crate::stores::ledger::DynamoLedger::commit_decision`] (the entry must
//! still be on the queue, then an approval's participant must be active) checked before
//! anything is written.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use loyalty_domain::action::{KeyedRequest, StoredAnswer};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind};
use loyalty_domain::outbox::OutboxEvent;
use loyalty_domain::review::{
    Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::InfraError;

/// How long an answer holds its key, as in `crate::idempotency`.
const ANSWER_TTL_SECS: i64 = 24 * 3600;

const CURSOR_PREFIX: &str = "memory-review:";

/// The position after the last review a memory queue handed out, from its cursor
/// `<prefix><created at>#<entry id>`; a cursor of another queue or a tampered one is
/// `InvalidCursor`. Shared by every memory adapter with a review queue.
pub(crate) fn decode_cursor(
    prefix: &str,
    cursor: Option<&str>,
) -> Result<Option<(String, EntryId)>, ReviewError> {
    let Some(c) = cursor else {
        return Ok(None);
    };
    let rest = c.strip_prefix(prefix).ok_or(ReviewError::InvalidCursor)?;
    let (at, entry) = rest.rsplit_once('#').ok_or(ReviewError::InvalidCursor)?;
    let entry = EntryId::parse(entry).map_err(|_| ReviewError::InvalidCursor)?;
    Ok(Some((at.to_string(), entry)))
}

/// The cursor [`decode_cursor`] reads.
pub(crate) fn encode_cursor(prefix: &str, at: &str, entry: &EntryId) -> String {
    format!("{prefix}{at}#{entry}")
}

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
    /// Answers under Idempotency-Keys by (scope, key), with the second they expire at:
    /// the records `Idempotency` keeps in the activity table.
    pub answers: BTreeMap<(String, String), (StoredAnswer, i64)>,
    /// Participants an admin blocked (every flagged claim's participant was registered and
    /// active when they claimed).
    pub blocked: std::collections::BTreeSet<ParticipantId>,
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

    /// Blocks or unblocks a participant (the admin's standing change).
    pub fn set_active(&self, participant: &ParticipantId, active: bool) {
        let mut w = self.world.lock().unwrap();
        if active {
            w.blocked.remove(participant);
        } else {
            w.blocked.insert(participant.clone());
        }
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

fn answer_key(key: &KeyedRequest) -> (String, String) {
    (key.scope.clone(), key.key.as_str().to_string())
}

/// Answers under Idempotency-Keys, kept with the decisions so that a decision and its
/// answer are written together, as `DynamoLedger::commit_decision` does with its record.
impl MemoryReviews {
    /// The live answer under `key`, if any.
    pub fn answered(&self, key: &KeyedRequest, now: DateTime<Utc>) -> Option<StoredAnswer> {
        self.inspect(|w| Self::live(w, key, now))
    }

    fn live(w: &ReviewsWorld, key: &KeyedRequest, now: DateTime<Utc>) -> Option<StoredAnswer> {
        w.answers
            .get(&answer_key(key))
            .filter(|(_, ttl)| *ttl > now.timestamp())
            .map(|(a, _)| a.clone())
    }

    fn put_answer(
        w: &mut ReviewsWorld,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) {
        let stored = StoredAnswer {
            fingerprint: key.fingerprint.clone(),
            status,
            body,
            content_type: None,
        };
        w.answers
            .insert(answer_key(key), (stored, now.timestamp() + ANSWER_TTL_SECS));
    }

    /// Stores a refusal's answer; `Err(stored)` when a live answer holds the key.
    pub fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> Result<(), StoredAnswer> {
        let mut w = self.world.lock().unwrap();
        if let Some(stored) = Self::live(&w, key, now) {
            return Err(stored);
        }
        Self::put_answer(&mut w, key, status, body, now);
        Ok(())
    }

    /// [`ReviewStore::commit`] with the answer under `key` in the same write. The key is
    /// checked first (`Err(stored)`), then the queue.
    pub fn commit_answered(
        &self,
        decided: &Decided,
        key: &KeyedRequest,
        status: u16,
        body: String,
    ) -> Result<Result<Committed, StoredAnswer>, InfraError> {
        let mut w = self.world.lock().unwrap();
        if let Some(stored) = Self::live(&w, key, decided.at) {
            return Ok(Err(stored));
        }
        let committed = Self::commit_in(&mut w, decided)?;
        if committed == Committed::Ok {
            Self::put_answer(&mut w, key, status, body, decided.at);
        }
        Ok(Ok(committed))
    }

    fn commit_in(w: &mut ReviewsWorld, decided: &Decided) -> Result<Committed, InfraError> {
        let queued = queue_key(&decided.reviewed);
        // The condition first (`attribute_exists(gsi1pk)`), then the ledger's: nothing is
        // written unless every one holds.
        if !w.queue.contains_key(&queued) {
            return Ok(Committed::AlreadyDecided);
        }
        if decided.decision == Decision::Approve && w.blocked.contains(&decided.id.participant) {
            return Ok(Committed::ParticipantNotActive);
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
        Self::append(w, decided.entry.clone())?;
        w.outbox.push(decided.event.clone());
        Ok(Committed::Ok)
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
        let after = decode_cursor(CURSOR_PREFIX, cursor)?;
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
                .map(|((at, entry), _)| encode_cursor(CURSOR_PREFIX, at, entry))
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
        Self::commit_in(&mut self.world.lock().unwrap(), decided)
    }
}
