//! Anti-fraud rules for code claims: lockouts after failed attempts, and flags that send a
//! claim's points to review instead of the spendable balance.

use chrono::{DateTime, Utc};

use crate::ids::{OutletId, ParticipantId};

/// The configurable thresholds. Defaults suit a club of a few thousand outlets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudPolicy {
    /// Failed attempts (unknown, expired or someone else's code) a participant may make in
    /// one window before claiming is locked.
    pub max_failures_per_participant: u64,
    /// The same for all participants of one outlet together.
    pub max_failures_per_outlet: u64,
    pub failure_window_secs: i64,
    pub lock_secs: i64,
    /// Claims per participant per clock hour before further claims go to review.
    pub max_claims_per_hour: u64,
    /// Whether a code from a batch shipped to another region goes to review.
    pub flag_foreign_region: bool,
}

impl Default for FraudPolicy {
    fn default() -> Self {
        Self {
            max_failures_per_participant: 5,
            max_failures_per_outlet: 20,
            failure_window_secs: 15 * 60,
            lock_secs: 60 * 60,
            max_claims_per_hour: 60,
            flag_foreign_region: true,
        }
    }
}

/// Why a claim went to review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagReason {
    Velocity,
    ForeignRegion,
}

impl FlagReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagReason::Velocity => "velocity",
            FlagReason::ForeignRegion => "foreign_region",
        }
    }
}

/// Whose failures are counted, and who gets locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Participant(ParticipantId),
    Outlet(OutletId),
}

impl Subject {
    /// The key fragment for counters and locks.
    pub fn key(&self) -> String {
        match self {
            Subject::Participant(p) => format!("P#{p}"),
            Subject::Outlet(o) => format!("O#{o}"),
        }
    }
}

/// Fixed windows keep counters to one item per subject per window (and let TTL delete them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl FraudPolicy {
    pub fn failure_window(&self, now: DateTime<Utc>) -> Window {
        window(now.timestamp(), self.failure_window_secs)
    }

    pub fn velocity_window(&self, now: DateTime<Utc>) -> Window {
        window(now.timestamp(), 3600)
    }

    /// Given a subject's failure count in the current window, until when it is locked.
    pub fn lock_until(&self, subject: &Subject, failures: u64, now: DateTime<Utc>) -> Option<i64> {
        let limit = match subject {
            Subject::Participant(_) => self.max_failures_per_participant,
            Subject::Outlet(_) => self.max_failures_per_outlet,
        };
        (failures >= limit).then(|| now.timestamp() + self.lock_secs)
    }
}

/// Who guesses invitation codes: the token subject, and the address the request came from
/// (one attacker may hold many tokens). Their failures are counted and locked apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guesser {
    Caller(ParticipantId),
    Source(String),
}

impl Guesser {
    /// The key fragment for counters and locks.
    pub fn key(&self) -> String {
        match self {
            Guesser::Caller(p) => format!("C#{p}"),
            Guesser::Source(ip) => format!("S#{ip}"),
        }
    }
}

impl FraudPolicy {
    /// Wrong invitation codes a guesser may try in one failure window: a caller as many as
    /// a participant may mistype pack codes, a source (many people behind one address) as
    /// many as an outlet.
    pub fn guess_limit(&self, guesser: &Guesser) -> u64 {
        match guesser {
            Guesser::Caller(_) => self.max_failures_per_participant,
            Guesser::Source(_) => self.max_failures_per_outlet,
        }
    }
}

pub(crate) fn window(t: i64, secs: i64) -> Window {
    let start = t - t.rem_euclid(secs);
    Window {
        start,
        end: start + secs,
    }
}

/// The outcome of one attempt, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Accepted,
    Flagged,
    Replayed,
    AlreadyClaimed,
    Unknown,
    Expired,
    Locked,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Accepted => "accepted",
            AttemptOutcome::Flagged => "flagged",
            AttemptOutcome::Replayed => "replayed",
            AttemptOutcome::AlreadyClaimed => "already_claimed",
            AttemptOutcome::Unknown => "unknown",
            AttemptOutcome::Expired => "expired",
            AttemptOutcome::Locked => "locked",
        }
    }

    /// Failures count towards a lockout; a replay of one's own claim does not.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            AttemptOutcome::AlreadyClaimed | AttemptOutcome::Unknown | AttemptOutcome::Expired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    #[test]
    fn the_fifth_failure_of_a_participant_locks_claiming_for_an_hour() {
        let policy = FraudPolicy::default();
        let p = Subject::Participant(ParticipantId::parse("p1").unwrap());
        assert_eq!(policy.lock_until(&p, 4, at(10, 0, 0)), None);
        assert_eq!(
            policy.lock_until(&p, 5, at(10, 0, 0)),
            Some(at(11, 0, 0).timestamp())
        );
    }

    #[test]
    fn an_outlet_tolerates_more_failures_than_one_participant() {
        let policy = FraudPolicy::default();
        let o = Subject::Outlet(OutletId::parse("o1").unwrap());
        assert_eq!(policy.lock_until(&o, 19, at(10, 0, 0)), None);
        assert!(policy.lock_until(&o, 20, at(10, 0, 0)).is_some());
    }

    #[test]
    fn failures_in_one_window_share_a_counter_and_the_next_window_starts_afresh() {
        let policy = FraudPolicy::default();
        assert_eq!(
            policy.failure_window(at(10, 1, 0)),
            policy.failure_window(at(10, 14, 59))
        );
        assert_ne!(
            policy.failure_window(at(10, 14, 59)),
            policy.failure_window(at(10, 15, 0))
        );
        assert_eq!(
            policy.velocity_window(at(10, 59, 59)).end,
            at(11, 0, 0).timestamp()
        );
    }

    #[test]
    fn a_source_of_invitation_guesses_tolerates_more_failures_than_one_caller() {
        let policy = FraudPolicy::default();
        let caller = Guesser::Caller(ParticipantId::parse("p1").unwrap());
        let source = Guesser::Source("203.0.113.10".into());
        assert_eq!(policy.guess_limit(&caller), 5);
        assert_eq!(policy.guess_limit(&source), 20);
        assert_ne!(caller.key(), source.key());
    }

    #[test]
    fn replays_do_not_count_as_failures() {
        assert!(!AttemptOutcome::Replayed.is_failure());
        assert!(AttemptOutcome::Unknown.is_failure());
    }
}
