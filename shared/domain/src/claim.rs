//! Claiming a pack code: one code counts once, ever.
//!
//! The whole claim is one atomic write (the [`ClaimStore::try_claim`] port): the code flips
//! from issued to claimed, the ledger entry is appended, the balance and outlet totals move,
//! the velocity counter ticks, lock items are checked, an audit record and an outbox record
//! are written. The store reports why a write was refused; this module decides what that
//! means and what to try next.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};

use crate::code::Code;
use crate::fraud::{AttemptOutcome, FlagReason, FraudPolicy, Subject, Window};
use crate::ids::{EntryId, OutletId, ParticipantId, RegionId};
use crate::ledger::{entry_ids, Balance, EntryKind};
use crate::participant::ProfileFacts;
use crate::zone::{Zone, Zones};
use crate::{Classified, InfraError, Kind, Points};

/// Immutable metadata of a batch, safe to cache in a warm function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub number: u32,
    pub sku: String,
    pub product_type: String,
    pub points: Points,
    pub region: RegionId,
    pub valid_until: NaiveDate,
}

/// Who claims: the participant from the verified token, and the outlet and region of their
/// profile as assumed (a warm function's cache, else the token's claims as a hint). The
/// claim transaction checks the assumption against the profile; a wrong one is refused with
/// the profile's facts and the claim is decided again with them, so the fraud rules never
/// judge by a token's claims nor skip a rule because a token lacks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub participant: ParticipantId,
    pub outlet: Option<OutletId>,
    pub region: Option<RegionId>,
}

impl Claimant {
    pub fn facts(&self) -> ProfileFacts {
        ProfileFacts {
            region: self.region.clone(),
            outlet: self.outlet.clone(),
        }
    }

    fn with_facts(&self, facts: ProfileFacts) -> Claimant {
        Claimant {
            participant: self.participant.clone(),
            outlet: facts.outlet,
            region: facts.region,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimStatus {
    /// Points are spendable now.
    Accepted,
    /// A fraud rule flagged the claim: points are pending until an admin decides.
    PendingReview,
}

impl ClaimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimStatus::Accepted => "accepted",
            ClaimStatus::PendingReview => "pending_review",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "accepted" => Some(ClaimStatus::Accepted),
            "pending_review" => Some(ClaimStatus::PendingReview),
            _ => None,
        }
    }
}

/// The answer to a successful claim. It is stored on the code, so a retry returns it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimReceipt {
    pub entry_id: EntryId,
    pub status: ClaimStatus,
    pub points: Points,
    pub batch: u32,
    pub sku: String,
    pub product_type: String,
    pub balance: Balance,
    pub claimed_at: DateTime<Utc>,
}

/// Everything the store needs to write one claim atomically.
#[derive(Debug, Clone)]
pub struct ClaimAttempt {
    pub claimant: Claimant,
    pub code: Code,
    pub batch: BatchInfo,
    pub kind: EntryKind,
    pub flags: Vec<FlagReason>,
    pub now: DateTime<Utc>,
    /// The claimant's date in their region zone: a code valid until a date stays valid
    /// through that local day (`valid_until >= today`).
    pub today: NaiveDate,
    /// The balance the write expects to find (its `version` is the condition); `None` for
    /// an account that has never had an entry.
    pub expected_balance: Option<Balance>,
    pub receipt: ClaimReceipt,
    /// The last day the credit counts, a date in the claimant's region zone (expiring at
    /// the end of that local day).
    pub credit_expires_on: NaiveDate,
    pub velocity_window: Window,
    /// `None` once the velocity limit is known to be exceeded: then the counter still
    /// ticks, but unconditionally.
    pub velocity_limit: Option<u64>,
}

/// What the code looked like when the write was refused because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeState {
    Missing,
    Expired,
    ClaimedBy {
        participant: ParticipantId,
        receipt: ClaimReceipt,
    },
}

/// Why the atomic write did not commit. Several conditions can fail at once; the store
/// reports the first that applies in this order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The claimant has no profile, or an admin blocked them: they earn nothing.
    ParticipantNotActive,
    /// The profile is active but its region or outlet is not the claimant's assumed one:
    /// here are the profile's.
    ProfileDiffers(ProfileFacts),
    Locked {
        until: i64,
    },
    Code(CodeState),
    VelocityExceeded,
    /// The balance moved since we read it; here is what it is now.
    BalanceMoved(Balance),
    /// Another transaction touched the same items at the same moment; retry.
    Contended,
}

/// A failed attempt, for the counters and the audit trail.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    pub claimant: Claimant,
    pub code_hint: String,
    pub outcome: AttemptOutcome,
    pub now: DateTime<Utc>,
    pub window: Window,
}

/// Failure counts in the current window after recording one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCounts {
    pub participant: u64,
    pub outlet: Option<u64>,
}

/// The port through which claims reach storage.
pub trait ClaimStore: Send + Sync {
    /// The programme's and the regions' zones (a warm function may cache them).
    fn zones(&self) -> impl Future<Output = Result<Zones, InfraError>> + Send;
    /// The facts of the participant's profile; `None` when there is none or it is not
    /// active. Only a claim refused before its transaction (an unknown batch) reads it.
    fn profile(
        &self,
        participant: &ParticipantId,
    ) -> impl Future<Output = Result<Option<ProfileFacts>, InfraError>> + Send;

    fn batch(
        &self,
        number: u32,
    ) -> impl Future<Output = Result<Option<BatchInfo>, InfraError>> + Send;

    /// One atomic write; `Ok(Err(refusal))` when a condition failed.
    fn try_claim(
        &self,
        attempt: &ClaimAttempt,
    ) -> impl Future<Output = Result<Result<(), Refusal>, InfraError>> + Send;

    /// Counts a failure for the claimant and their outlet and writes the audit record.
    fn record_failure(
        &self,
        failure: &FailedAttempt,
    ) -> impl Future<Output = Result<FailureCounts, InfraError>> + Send;

    /// An audit record of an attempt that is not a failure (a replay, a locked attempt).
    fn record_attempt(
        &self,
        attempt: &FailedAttempt,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    fn lock(
        &self,
        subject: &Subject,
        until: i64,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("only a registered participant in good standing can claim codes")]
    ParticipantNotActive,
    #[error("this code is not known; please check it and try again")]
    UnknownCode,
    #[error("this code has expired")]
    Expired,
    #[error("this code has already been claimed")]
    AlreadyClaimed,
    #[error("claiming is locked after too many failed attempts; try again later")]
    Locked { retry_after_secs: u64 },
    #[error("the claim could not be completed because of concurrent activity; please retry")]
    TooMuchContention,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for ClaimError {
    fn kind(&self) -> Kind {
        match self {
            ClaimError::ParticipantNotActive => Kind::Forbidden,
            ClaimError::UnknownCode => Kind::NotFound,
            ClaimError::Expired => Kind::Unprocessable,
            ClaimError::AlreadyClaimed => Kind::Conflict,
            ClaimError::Locked { retry_after_secs } => Kind::TooManyAttempts {
                retry_after_secs: *retry_after_secs,
            },
            ClaimError::TooMuchContention => Kind::Infrastructure { retryable: true },
            ClaimError::Infra(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ClaimError::ParticipantNotActive => "participant_not_active",
            ClaimError::UnknownCode => "code_unknown",
            ClaimError::Expired => "code_expired",
            ClaimError::AlreadyClaimed => "code_already_claimed",
            ClaimError::Locked { .. } => "claims_locked",
            ClaimError::TooMuchContention => "contention",
            ClaimError::Infra(e) => e.code(),
        }
    }
}

/// Settings of the claim service.
#[derive(Debug, Clone)]
pub struct ClaimPolicy {
    pub fraud: FraudPolicy,
    /// How long claimed points stay valid.
    pub credit_validity_days: i64,
    /// Attempts of the atomic write before giving up under contention.
    pub max_attempts: usize,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        Self {
            fraud: FraudPolicy::default(),
            credit_validity_days: 730,
            max_attempts: 6,
        }
    }
}

/// A successful claim; `replayed` when the claimant had already claimed this code and gets
/// the first answer again. `profile` is the claimant's profile as the transaction verified
/// it, for the caller's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub receipt: ClaimReceipt,
    pub replayed: bool,
    pub profile: ProfileFacts,
}

/// Claims `code` for `claimant`. `known_balance` is the caller's cached view of the
/// claimant's balance: when it is current the claim is one write; when it is stale or
/// absent the store's refusal tells us the real one and we write again. The claimant's
/// region and outlet are checked the same way (see [`Claimant`]).
pub async fn claim<S: ClaimStore>(
    store: &S,
    policy: &ClaimPolicy,
    claimant: Claimant,
    code: Code,
    known_balance: Option<Balance>,
    now: DateTime<Utc>,
) -> Result<Claimed, ClaimError> {
    // Failures count against the outlet of the profile: callers pass a verified claimant.
    let failed = |claimant: &Claimant, outcome| FailedAttempt {
        claimant: claimant.clone(),
        code_hint: crate::redact::tail(code.canonical()),
        outcome,
        now,
        window: policy.fraud.failure_window(now),
    };

    let Some(batch) = store.batch(code.batch_number()).await? else {
        // No transaction runs to verify the claimant, and failures are rare: read the profile.
        let Some(facts) = store.profile(&claimant.participant).await? else {
            return Err(ClaimError::ParticipantNotActive);
        };
        return Err(fail(
            store,
            policy,
            failed(&claimant.with_facts(facts), AttemptOutcome::Unknown),
            ClaimError::UnknownCode,
        )
        .await);
    };

    let mut claimant = claimant;
    let mut expected = known_balance;
    let mut velocity_limit = Some(policy.fraud.max_claims_per_hour);
    let zones = store.zones().await?;

    for _ in 0..policy.max_attempts {
        // The zone of the region this attempt assumes (today the claimant's token says it):
        // resolved on every attempt, so an attempt that learns another region dates the code's
        // validity in that region's zone. Velocity and failure windows are clock hours and
        // fixed windows, not calendar periods: they stay in UTC.
        let zone = zones.for_region(claimant.region.as_ref());
        let mut flags = Vec::new();
        if policy.fraud.flag_foreign_region
            && claimant.region.as_ref().is_some_and(|r| *r != batch.region)
        {
            flags.push(FlagReason::ForeignRegion);
        }
        if velocity_limit.is_none() {
            flags.push(FlagReason::Velocity);
        }
        let attempt = build_attempt(
            policy,
            &claimant,
            &code,
            &batch,
            &flags,
            expected,
            velocity_limit,
            now,
            zone,
        );
        match store.try_claim(&attempt).await? {
            Ok(()) => {
                return Ok(Claimed {
                    receipt: attempt.receipt,
                    replayed: false,
                    profile: claimant.facts(),
                })
            }
            // Not a failed guess: nothing is counted, and nothing was written.
            Err(Refusal::ParticipantNotActive) => return Err(ClaimError::ParticipantNotActive),
            // Outranks every other refusal, so nothing below was judged by a wrong outlet.
            Err(Refusal::ProfileDiffers(facts)) => claimant = claimant.with_facts(facts),
            Err(Refusal::Locked { until }) => {
                store
                    .record_attempt(&failed(&claimant, AttemptOutcome::Locked))
                    .await?;
                let retry_after_secs = (until - now.timestamp()).max(1) as u64;
                return Err(ClaimError::Locked { retry_after_secs });
            }
            Err(Refusal::Code(CodeState::ClaimedBy {
                participant,
                receipt,
            })) if participant == claimant.participant => {
                store
                    .record_attempt(&failed(&claimant, AttemptOutcome::Replayed))
                    .await?;
                return Ok(Claimed {
                    receipt,
                    replayed: true,
                    profile: claimant.facts(),
                });
            }
            Err(Refusal::Code(CodeState::ClaimedBy { .. })) => {
                return Err(fail(
                    store,
                    policy,
                    failed(&claimant, AttemptOutcome::AlreadyClaimed),
                    ClaimError::AlreadyClaimed,
                )
                .await)
            }
            Err(Refusal::Code(CodeState::Missing)) => {
                return Err(fail(
                    store,
                    policy,
                    failed(&claimant, AttemptOutcome::Unknown),
                    ClaimError::UnknownCode,
                )
                .await)
            }
            Err(Refusal::Code(CodeState::Expired)) => {
                return Err(fail(
                    store,
                    policy,
                    failed(&claimant, AttemptOutcome::Expired),
                    ClaimError::Expired,
                )
                .await)
            }
            Err(Refusal::VelocityExceeded) => velocity_limit = None,
            // Version 0 is an account without entries, which the store's condition can
            // only match as "no balance item yet": expecting `Some` of it would be refused
            // forever (found by the simulator, `./dev sim --seed 1`).
            Err(Refusal::BalanceMoved(current)) => {
                expected = (current.version > 0).then_some(current)
            }
            Err(Refusal::Contended) => {}
        }
    }
    Err(ClaimError::TooMuchContention)
}

#[allow(clippy::too_many_arguments)]
fn build_attempt(
    policy: &ClaimPolicy,
    claimant: &Claimant,
    code: &Code,
    batch: &BatchInfo,
    flags: &[FlagReason],
    expected: Option<Balance>,
    velocity_limit: Option<u64>,
    now: DateTime<Utc>,
    zone: Zone,
) -> ClaimAttempt {
    let (kind, status) = if flags.is_empty() {
        (EntryKind::CodeClaim, ClaimStatus::Accepted)
    } else {
        (EntryKind::CodeClaimUnderReview, ClaimStatus::PendingReview)
    };
    let balance = expected
        .unwrap_or_default()
        .apply(kind, batch.points)
        .expect("a credit never lacks funds");
    ClaimAttempt {
        claimant: claimant.clone(),
        code: *code,
        batch: batch.clone(),
        kind,
        flags: flags.to_vec(),
        now,
        today: zone.date_of(now),
        expected_balance: expected,
        receipt: ClaimReceipt {
            entry_id: entry_ids::code_claim(code.canonical()),
            status,
            points: batch.points,
            batch: batch.number,
            sku: batch.sku.clone(),
            product_type: batch.product_type.clone(),
            balance,
            claimed_at: now,
        },
        credit_expires_on: credit_expires_on(policy, now, zone),
        velocity_window: policy.fraud.velocity_window(now),
        velocity_limit,
    }
}

/// The last local day a credit counts: `credit_validity_days` after the claimant's date in
/// their region zone, so a credit expires at a local midnight, the one the wallet's date
/// names, and not at 05:00 or 19:00 local time (a participant in Omsk who claims at 01:00
/// on 1 December keeps the credit through 1 December, not 30 November, of the last year).
fn credit_expires_on(policy: &ClaimPolicy, now: DateTime<Utc>, zone: Zone) -> NaiveDate {
    zone.date_of(now) + chrono::Duration::days(policy.credit_validity_days)
}

/// Records a failed attempt, locks whoever crossed a limit, and hands back `error`.
async fn fail<S: ClaimStore>(
    store: &S,
    policy: &ClaimPolicy,
    failure: FailedAttempt,
    error: ClaimError,
) -> ClaimError {
    let counts = match store.record_failure(&failure).await {
        Ok(counts) => counts,
        Err(e) => return ClaimError::Infra(e),
    };
    let mut subjects = vec![(
        Subject::Participant(failure.claimant.participant.clone()),
        counts.participant,
    )];
    if let (Some(outlet), Some(n)) = (&failure.claimant.outlet, counts.outlet) {
        subjects.push((Subject::Outlet(outlet.clone()), n));
    }
    for (subject, n) in subjects {
        if let Some(until) = policy.fraud.lock_until(&subject, n, failure.now) {
            if let Err(e) = store.lock(&subject, until).await {
                return ClaimError::Infra(e);
            }
        }
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_credit_expires_on_the_local_day_its_validity_ends_in_the_claimants_zone() {
        let policy = ClaimPolicy {
            credit_validity_days: 365,
            ..ClaimPolicy::default()
        };
        // 19:00 UTC on 30 November is already 1 December in Omsk (UTC+6).
        let omsk = Zone::parse("Asia/Omsk").unwrap();
        let late = at("2026-11-30T19:00:00Z");
        assert_eq!(credit_expires_on(&policy, late, omsk), day("2027-12-01"));
        assert_eq!(
            credit_expires_on(&policy, late, Zone::UTC),
            day("2027-11-30")
        );
        // 03:00 UTC on 1 December is still 30 November in Bogotá (UTC−5).
        let bogota = Zone::parse("America/Bogota").unwrap();
        let early = at("2026-12-01T03:00:00Z");
        assert_eq!(credit_expires_on(&policy, early, bogota), day("2027-11-30"));
        assert_eq!(
            credit_expires_on(&policy, early, Zone::UTC),
            day("2027-12-01")
        );
    }
}
