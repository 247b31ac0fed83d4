//! The review queue: claims flagged by a fraud rule, and actions whose rule's budget could
//! not cover them (`over_budget: hold`), wait here for an admin's decision.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::ids::{EntryId, ParticipantId};
use crate::ledger::{entry_ids, Entry, EntryKind};
use crate::outbox::{OutboxEvent, ReviewVerdict};
pub use crate::participant::Page;
use crate::{Classified, InfraError, Kind};

/// Names one flagged entry: `<participant>.<entry>`. The dot never occurs in either id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewId {
    pub participant: ParticipantId,
    pub entry: EntryId,
}

impl ReviewId {
    pub fn of(participant: &ParticipantId, entry: &EntryId) -> Self {
        Self {
            participant: participant.clone(),
            entry: entry.clone(),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ReviewError> {
        let (p, e) = raw.split_once('.').ok_or(ReviewError::BadId)?;
        Ok(Self {
            participant: ParticipantId::parse(p).map_err(|_| ReviewError::BadId)?,
            entry: EntryId::parse(e).map_err(|_| ReviewError::BadId)?,
        })
    }
}

impl std::fmt::Display for ReviewId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.participant, self.entry)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn entry_kind(self) -> EntryKind {
        match self {
            Decision::Approve => EntryKind::ReviewApproved,
            Decision::Reject => EntryKind::ReviewRejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PendingReview {
    pub id: ReviewId,
    pub entry: Entry,
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("a review id looks like <participant>.<entry>")]
    BadId,
    #[error("no claim awaiting review has this id")]
    NotFound,
    #[error("this claim has already been reviewed")]
    AlreadyDecided,
    #[error("the cursor is not valid for this listing")]
    InvalidCursor,
    #[error("the rule's budget cannot cover these points yet; the credit stays held")]
    BudgetExhausted,
    #[error("the participant is blocked or no longer registered; the credit stays held")]
    ParticipantNotActive,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ReviewError {
    fn kind(&self) -> Kind {
        match self {
            ReviewError::BadId => Kind::BadInput,
            ReviewError::NotFound => Kind::NotFound,
            ReviewError::AlreadyDecided => Kind::Conflict,
            ReviewError::InvalidCursor => Kind::BadInput,
            ReviewError::BudgetExhausted => Kind::Unprocessable,
            ReviewError::ParticipantNotActive => Kind::Conflict,
            ReviewError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ReviewError::BadId => "review_id_invalid",
            ReviewError::NotFound => "review_not_found",
            ReviewError::AlreadyDecided => "review_already_decided",
            ReviewError::InvalidCursor => "invalid_cursor",
            ReviewError::BudgetExhausted => "budget_exhausted",
            ReviewError::ParticipantNotActive => "participant_not_active",
            ReviewError::Infra(e) => e.code(),
        }
    }
}

// ---------------------------------------------------------------- use case and port

/// A decision on one flagged claim, as it is committed: the reviewed entry leaves the
/// queue, `entry` is appended (approval moves the points from pending to available,
/// rejection removes them from pending), and `event` is announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub id: ReviewId,
    pub reviewed: Entry,
    pub decision: Decision,
    pub reviewer: String,
    pub entry: Entry,
    pub event: OutboxEvent,
    pub at: DateTime<Utc>,
}

impl Decided {
    /// The decision `decision` on `reviewed`, by `reviewer` at `now`. Pure.
    pub fn of(reviewed: &Entry, decision: Decision, reviewer: &str, now: DateTime<Utc>) -> Self {
        // Approving a held accrual pays it from its rule: the source names the rule
        // (`Entry::transfers`), so the budget condition goes with the decision.
        let pays = match (decision, reviewed.kind) {
            (Decision::Approve, EntryKind::AccrualUnderReview) => {
                crate::ledger::rule_of_source(&reviewed.source)
            }
            _ => None,
        };
        let entry = Entry {
            id: entry_ids::review_decision(&reviewed.id),
            participant: reviewed.participant.clone(),
            outlet: reviewed.outlet.clone(),
            kind: decision.entry_kind(),
            amount: reviewed.amount,
            source: match pays {
                Some(rule) => format!("rule {rule}: review of {}", reviewed.id),
                None => format!("review of {}", reviewed.id),
            },
            created_at: now,
            expires_on: reviewed.expires_on,
        };
        let event = OutboxEvent::ClaimReviewed {
            participant_id: reviewed.participant.clone(),
            entry_id: reviewed.id.clone(),
            decision: match decision {
                Decision::Approve => ReviewVerdict::Approved,
                Decision::Reject => ReviewVerdict::Rejected,
            },
            points: reviewed.amount,
        };
        Self {
            id: ReviewId::of(&reviewed.participant, &reviewed.id),
            reviewed: reviewed.clone(),
            decision,
            reviewer: reviewer.to_string(),
            entry,
            event,
            at: now,
        }
    }
}

/// How a commit of a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Ok,
    /// The entry was no longer on the queue: nothing was written.
    AlreadyDecided,
    /// The approval of a held accrual, paid from its rule's budget in the same write
    /// ([`crate::ledger::Entry::transfers`]), was refused: the whole budget cannot cover it.
    /// Nothing was written; the credit stays held. Stores that hold no accruals never say so.
    BudgetRefused,
    /// An approval for a participant who is not registered and active (blocked since the
    /// entry was held): a blocked participant spends nothing, so their held points are not
    /// made available. Nothing was written; the entry stays held, to be approved after an
    /// unblock or rejected. A rejection never checks the standing.
    ParticipantNotActive,
}

/// The port through which review decisions reach storage.
pub trait ReviewStore: Send + Sync {
    /// The entry `id` names, if it is a claim under review (decided or not).
    fn entry_under_review(
        &self,
        id: &ReviewId,
    ) -> impl Future<Output = Result<Option<Entry>, InfraError>> + Send;

    /// Claims awaiting a decision, oldest first; `Err(InvalidCursor)` for a cursor this
    /// listing did not hand out.
    fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<PendingReview>, ReviewError>> + Send;

    /// One atomic write: dequeue the reviewed entry (refused if it is no longer queued),
    /// for an approval check the participant's standing, append the decision entry, move the
    /// balance (and, for an approved held accrual, pay it from its rule's budget), write the
    /// outbox event. Refusals rank: already decided, participant not active, budget.
    fn commit(
        &self,
        decided: &Decided,
    ) -> impl Future<Output = Result<Committed, InfraError>> + Send;
}

/// The decision to commit: `id` must name a claim under review. Reads, writes nothing.
/// An adapter that commits more in the same write (an HTTP answer under its
/// Idempotency-Key) prepares, then commits itself; everyone else calls [`decide`].
pub async fn prepare<S: ReviewStore>(
    store: &S,
    id: &ReviewId,
    decision: Decision,
    reviewer: &str,
    now: DateTime<Utc>,
) -> Result<Decided, ReviewError> {
    let reviewed = store
        .entry_under_review(id)
        .await?
        .filter(|e| e.kind.is_under_review() && e.id == id.entry)
        .ok_or(ReviewError::NotFound)?;
    Ok(Decided::of(&reviewed, decision, reviewer, now))
}

/// Approves or rejects the held entry `id` (a flagged claim or an over-budget accrual): at
/// most once. Approving a held accrual its rule's budget cannot cover yet is refused
/// (`BudgetExhausted`) and leaves it held; so is approving anything of a participant who is
/// blocked (`ParticipantNotActive`).
pub async fn decide<S: ReviewStore>(
    store: &S,
    id: &ReviewId,
    decision: Decision,
    reviewer: &str,
    now: DateTime<Utc>,
) -> Result<Decided, ReviewError> {
    let decided = prepare(store, id, decision, reviewer, now).await?;
    match store.commit(&decided).await? {
        Committed::Ok => Ok(decided),
        Committed::AlreadyDecided => Err(ReviewError::AlreadyDecided),
        Committed::BudgetRefused => Err(ReviewError::BudgetExhausted),
        Committed::ParticipantNotActive => Err(ReviewError::ParticipantNotActive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_id_round_trips_and_rejects_garbage() {
        let id = ReviewId::parse("p-1.claim-ABC").unwrap();
        assert_eq!(id.to_string(), "p-1.claim-ABC");
        assert!(ReviewId::parse("no-dot").is_err());
        assert!(ReviewId::parse("p 1.x").is_err());
    }

    use crate::ids::OutletId;
    use crate::Points;
    use chrono::TimeZone;
    use std::sync::Mutex;

    /// A store holding one entry, whose commit answers what it is told to.
    struct OneEntry {
        entry: Entry,
        answer: Committed,
        commits: Mutex<u32>,
    }

    impl ReviewStore for OneEntry {
        async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
            Ok((id.entry == self.entry.id).then(|| self.entry.clone()))
        }
        async fn pending(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<Page<PendingReview>, ReviewError> {
            Err(ReviewError::InvalidCursor)
        }
        async fn commit(&self, _: &Decided) -> Result<Committed, InfraError> {
            *self.commits.lock().unwrap() += 1;
            Ok(self.answer)
        }
    }

    fn store(kind: EntryKind, answer: Committed) -> OneEntry {
        OneEntry {
            entry: Entry {
                id: EntryId::parse("claim-ABC").unwrap(),
                participant: ParticipantId::parse("p-1").unwrap(),
                outlet: Some(OutletId::parse("o-1").unwrap()),
                kind,
                amount: Points(40),
                source: "batch 1".into(),
                created_at: Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap(),
                expires_on: None,
            },
            answer,
            commits: Mutex::new(0),
        }
    }

    #[tokio::test]
    async fn a_decision_moves_the_held_points_by_its_verdict_and_names_the_review() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let id = ReviewId::parse("p-1.claim-ABC").unwrap();
        for (decision, kind, verdict) in [
            (
                Decision::Approve,
                EntryKind::ReviewApproved,
                ReviewVerdict::Approved,
            ),
            (
                Decision::Reject,
                EntryKind::ReviewRejected,
                ReviewVerdict::Rejected,
            ),
        ] {
            let s = store(EntryKind::CodeClaimUnderReview, Committed::Ok);
            let d = decide(&s, &id, decision, "admin-1", now).await.unwrap();
            assert_eq!(
                (d.entry.kind, d.entry.amount, d.at),
                (kind, Points(40), now)
            );
            assert_eq!(d.entry.id, entry_ids::review_decision(&s.entry.id));
            assert_eq!(d.id, id);
            assert!(
                matches!(d.event, OutboxEvent::ClaimReviewed { decision: v, .. } if v == verdict)
            );
        }
    }

    #[tokio::test]
    async fn approving_a_held_accrual_pays_its_rule_and_a_budget_refusal_leaves_it_held() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let id = ReviewId::parse("p-1.claim-ABC").unwrap();
        let mut s = store(EntryKind::AccrualUnderReview, Committed::Ok);
        s.entry.source = "rule quiz: ref-1".into();
        let approved = decide(&s, &id, Decision::Approve, "admin-1", now)
            .await
            .unwrap();
        let legs = approved.entry.transfers();
        assert_eq!(approved.entry.source, "rule quiz: review of claim-ABC");
        assert_eq!(
            legs.iter()
                .map(|t| (t.account.key(), t.change))
                .collect::<Vec<_>>(),
            vec![("rule:quiz".into(), -40), ("reviews".into(), 40)]
        );
        let rejected = decide(&s, &id, Decision::Reject, "admin-1", now)
            .await
            .unwrap();
        assert_eq!(rejected.entry.source, "review of claim-ABC");
        assert_eq!(
            rejected.entry.transfers(),
            vec![crate::ledger::Transfer {
                account: crate::ledger::ProgrammeAccount::Reviews,
                change: 40
            }],
            "a rejection repays the reviews account and touches no budget"
        );

        struct NoBudget(OneEntry);
        impl ReviewStore for NoBudget {
            async fn entry_under_review(&self, id: &ReviewId) -> Result<Option<Entry>, InfraError> {
                self.0.entry_under_review(id).await
            }
            async fn pending(
                &self,
                c: Option<&str>,
                l: usize,
            ) -> Result<Page<PendingReview>, ReviewError> {
                self.0.pending(c, l).await
            }
            async fn commit(&self, _: &Decided) -> Result<Committed, InfraError> {
                Ok(Committed::BudgetRefused)
            }
        }
        let refusing = NoBudget(s);
        let e = decide(&refusing, &id, Decision::Approve, "admin-1", now)
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.kind()),
            ("budget_exhausted", Kind::Unprocessable)
        );
    }

    #[tokio::test]
    async fn an_unknown_or_unflagged_entry_is_not_found_and_a_refused_commit_is_already_decided() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let id = ReviewId::parse("p-1.claim-ABC").unwrap();
        let other = ReviewId::parse("p-1.claim-XYZ").unwrap();
        let s = store(EntryKind::CodeClaimUnderReview, Committed::AlreadyDecided);
        assert!(matches!(
            decide(&s, &other, Decision::Approve, "a", now).await,
            Err(ReviewError::NotFound)
        ));
        assert!(matches!(
            decide(&s, &id, Decision::Approve, "a", now).await,
            Err(ReviewError::AlreadyDecided)
        ));
        let approved = store(EntryKind::ReviewApproved, Committed::Ok);
        assert!(matches!(
            decide(&approved, &id, Decision::Reject, "a", now).await,
            Err(ReviewError::NotFound)
        ));
        assert_eq!(*approved.commits.lock().unwrap(), 0);
    }
}
