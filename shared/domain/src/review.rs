//! The review queue: claims flagged by a fraud rule wait here for an admin's decision.

use crate::ids::{EntryId, ParticipantId};
use crate::ledger::{Entry, EntryKind};
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
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ReviewError {
    fn kind(&self) -> Kind {
        match self {
            ReviewError::BadId => Kind::BadInput,
            ReviewError::NotFound => Kind::NotFound,
            ReviewError::AlreadyDecided => Kind::Conflict,
            ReviewError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ReviewError::BadId => "review_id_invalid",
            ReviewError::NotFound => "review_not_found",
            ReviewError::AlreadyDecided => "review_already_decided",
            ReviewError::Infra(e) => e.code(),
        }
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
}
