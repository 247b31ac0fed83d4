//! Review decisions in the simulator: a reviewer approves or rejects claims the fraud rules
//! held, decides a decided one again, or names an entry that is no decision to make.
//!
//! Decisions run through the real use case [`decide`] over [`MemoryClaims`] (its
//! [`loyalty_domain::review::ReviewStore`]) behind [`FaultyClaims`]: throttled reads and
//! writes, `TransactionConflict`, and commits whose answer is lost. The reviewer retries a
//! failed request; after a lost answer the retry finds the review decided, and the reviewer
//! reads the decision back (as the function's Idempotency-Key answer would tell it): its own
//! decision is success, anything else is a bug. An approval for a blocked participant is
//! refused (`participant_not_active`) and the claim stays held. The model ([`Model::held`],
//! [`Model::decided`]) predicts every answer; the checker then holds the store to it: a held
//! claim credits at most once and only when approved, a rejected one never credits, and
//! member and programme accounts still sum to zero.

use std::fmt;

use chrono::{DateTime, Utc};
use futures::executor::block_on;
use loyalty_domain::ids::EntryId;
use loyalty_domain::ledger::{entry_ids, EntryKind};
use loyalty_domain::review::{decide, Decision, ReviewError, ReviewId};
use loyalty_platform::memory::MemoryClaims;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::claims::{Held, Model};
use crate::faults::{Fault, FaultyClaims};

/// Tries of one decision before the reviewer gives up.
const MAX_TRIES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOp {
    /// A held claim approved or rejected.
    Decide,
    /// A decided review decided again (the same or the other way).
    DecideAgain,
    /// A decision on an entry that was never held (a decision entry itself).
    NotHeld,
}

impl ReviewOp {
    /// Draws a review operation from the reviews' own random stream (so that every other
    /// sequence of a seed stayed as it was); weights per 1,000.
    pub fn generate(rng: &mut ChaCha8Rng) -> Option<ReviewOp> {
        Some(match rng.random_range(0..1_000) {
            0..40 => ReviewOp::Decide,
            40..52 => ReviewOp::DecideAgain,
            52..56 => ReviewOp::NotHeld,
            _ => return None,
        })
    }

    pub fn kind(self) -> &'static str {
        match self {
            ReviewOp::Decide => "review decide",
            ReviewOp::DecideAgain => "review decide again",
            ReviewOp::NotHeld => "review not held",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub op: ReviewOp,
    pub id: ReviewId,
    pub decision: Decision,
    /// The held claim, when the model knows one by this id.
    pub held: Option<Held>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}",
            self.op.kind(),
            self.decision.as_str(),
            self.id
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Decided(EntryKind),
    AlreadyDecided,
    /// An approval for a blocked participant: nothing moves, the claim stays held.
    NotActive,
    NotFound,
    GaveUp,
}

impl Answer {
    pub fn label(self) -> &'static str {
        match self {
            Answer::Decided(EntryKind::ReviewApproved) => "review approved",
            Answer::Decided(_) => "review rejected",
            Answer::AlreadyDecided => "review_already_decided",
            Answer::NotActive => "review participant_not_active",
            Answer::NotFound => "review_not_found",
            Answer::GaveUp => "review gave up",
        }
    }
}

/// The request of `op`; none when there is nothing to decide yet.
pub fn request(op: ReviewOp, rng: &mut ChaCha8Rng, model: &Model) -> Option<Request> {
    let decision = if rng.random_bool(0.7) {
        Decision::Approve
    } else {
        Decision::Reject
    };
    let decided = |rng: &mut ChaCha8Rng| {
        (!model.decided.is_empty()).then(|| {
            let i = rng.random_range(0..model.decided.len());
            model.decided.values().nth(i).map(|(h, _)| h.clone())
        })
    };
    let (id, held) = match op {
        ReviewOp::Decide => {
            if model.held.is_empty() {
                return None;
            }
            let h = model.held[rng.random_range(0..model.held.len())].clone();
            (ReviewId::of(&h.participant, &h.entry), Some(h))
        }
        ReviewOp::DecideAgain => {
            let h = decided(rng)??;
            (ReviewId::of(&h.participant, &h.entry), Some(h))
        }
        ReviewOp::NotHeld => {
            let h = decided(rng)??;
            let id = ReviewId::of(&h.participant, &entry_ids::review_decision(&h.entry));
            (id, None)
        }
    };
    Some(Request {
        op,
        id,
        decision,
        held,
    })
}

/// What the answer must be.
pub fn predict(model: &Model, r: &Request) -> Answer {
    match &r.held {
        None => Answer::NotFound,
        Some(h) if model.decided.contains_key(h.entry.as_str()) => Answer::AlreadyDecided,
        Some(h) if r.decision == Decision::Approve && model.blocked.contains(&h.participant) => {
            Answer::NotActive
        }
        Some(_) => Answer::Decided(r.decision.entry_kind()),
    }
}

/// Runs the decision through the real use case, retrying what a reviewer retries.
pub fn execute(
    store: &FaultyClaims<MemoryClaims>,
    r: &Request,
    now: DateTime<Utc>,
    faults: &mut Vec<Fault>,
) -> Answer {
    let mut lost = false;
    for _ in 0..MAX_TRIES {
        let result = block_on(decide(store, &r.id, r.decision, "admin-sim", now));
        let injected = store.take_review_faults();
        lost |= injected.contains(&Fault::CrashAfterCommit);
        faults.extend(injected);
        return match result {
            Ok(d) => Answer::Decided(d.entry.kind),
            Err(ReviewError::Infra(e)) if e.retryable => continue,
            Err(ReviewError::AlreadyDecided) if lost => {
                // Our answer was lost: the decision on record says whose it was.
                match decision_of(store.inner(), &r.id) {
                    Some(kind) if kind == r.decision.entry_kind() => Answer::Decided(kind),
                    _ => Answer::AlreadyDecided,
                }
            }
            Err(ReviewError::AlreadyDecided) => Answer::AlreadyDecided,
            Err(ReviewError::NotFound) => Answer::NotFound,
            Err(ReviewError::ParticipantNotActive) => Answer::NotActive,
            Err(e) => panic!("a review decision cannot fail with {e:?} here"),
        };
    }
    Answer::GaveUp
}

/// The kind of the decision entry on record for review `id`.
fn decision_of(store: &MemoryClaims, id: &ReviewId) -> Option<EntryKind> {
    let decision: EntryId = entry_ids::review_decision(&id.entry);
    store.inspect(|w| {
        // The decision is among the newest entries: look from the end.
        w.entries
            .get(&id.participant)?
            .iter()
            .rev()
            .find(|e| e.id == decision)
            .map(|e| e.kind)
    })
}

/// Compares the answer with the prediction, then moves the model.
pub fn settle(
    model: &mut Model,
    r: &Request,
    expected: Answer,
    actual: Answer,
) -> Result<(), String> {
    if actual == Answer::GaveUp {
        return Err(format!(
            "liveness: all {MAX_TRIES} tries of {r} failed with retryable errors; expected {expected:?}"
        ));
    }
    if expected != actual {
        return Err(format!("{r}: expected {expected:?}, got {actual:?}"));
    }
    let (Answer::Decided(kind), Some(h)) = (actual, &r.held) else {
        return Ok(());
    };
    let balance = model.balances.entry(h.participant.clone()).or_default();
    *balance = balance
        .apply(kind, h.points)
        .map_err(|e| format!("{r}: the model cannot apply {kind:?}: {e}"))?;
    if let Some(o) = &h.outlet {
        let totals = model.outlet_totals.entry(o.clone()).or_default();
        *totals = totals
            .apply(kind, h.points)
            .map_err(|e| format!("{r}: outlet totals: {e}"))?;
    }
    model.points_pending -= h.points.get();
    if kind == EntryKind::ReviewApproved {
        model.points_available += h.points.get();
    }
    model.decisions += 1;
    model.entry_owner.insert(
        entry_ids::review_decision(&h.entry).as_str().to_string(),
        h.participant.clone(),
    );
    model.held.retain(|x| x.entry != h.entry);
    model
        .decided
        .insert(h.entry.as_str().to_string(), (h.clone(), r.decision));
    Ok(())
}
