//! Reporting a target action (`POST /actions`): a rule credits points, scaled by the
//! participant's tier, at most as often as the rule's limits allow, once per Idempotency-Key.
//!
//! The whole report is one atomic write (the [`ActionStore::try_accrue`] port): the
//! idempotency record of the answer, the limit counters, the ledger entry, the balance (whose
//! version is the condition the tier was computed from), the outlet totals and the outbox
//! record. A refusal says what changed (the stored answer, a counter's value, the current
//! balance), so the steady state is one write and every other path is decided from the
//! refusal without a read. This module decides what a refusal means and what to try next.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::earning::{
    check_action, earned_trailing_12_months, entry_ids, month_key, with_multiplier, AccrualError,
    Action, LimitCounter, LimitScope, MonthlyEarned, OverBudget, Reporter, Rule, RuleId, Tier,
    Tiers,
};
use crate::ids::{EntryId, IdempotencyKey, OutletId, ParticipantId};
use crate::ledger::{Entry, EntryKind};
use crate::participant::ProfileFacts;
use crate::zone::Zones;
use crate::{Classified, InfraError, Kind, Points};

/// Programme settings an action needs: safe to cache in a warm function for a bounded time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Programme {
    pub rules: Vec<Rule>,
    pub tiers: Tiers,
    /// Where each region counts its periods and local validity bounds.
    pub zones: Zones,
}

impl Programme {
    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.id == id)
    }

    /// One tier means nobody's multiplier depends on their balance.
    pub fn tiered(&self) -> bool {
        self.tiers.as_slice().len() > 1
    }
}

/// The part of a balance the tier is computed from, with the version that dates it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierBasis {
    pub version: u64,
    pub months: MonthlyEarned,
}

impl TierBasis {
    /// The basis after crediting `points` at `at`.
    pub fn credited(&self, points: Points, at: DateTime<Utc>) -> TierBasis {
        let mut months = self.months.clone();
        *months.entry(month_key(at)).or_insert(0) += points.get() as i64;
        TierBasis {
            version: self.version + 1,
            months,
        }
    }
}

/// What the write expects of the balance item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceExpectation {
    /// The multiplier does not depend on the balance (a single tier): no condition.
    Any,
    /// An account that has never had an entry.
    Absent,
    /// The balance at this version.
    Version(u64),
}

/// The Idempotency-Key of a request: whose key, the key, and the fingerprint of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRequest {
    /// Keys are only unique per caller.
    pub scope: String,
    pub key: IdempotencyKey,
    /// Route, path and body, hashed: the same key with another fingerprint is a misuse.
    pub fingerprint: String,
}

/// An answer stored under an Idempotency-Key, as the store returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
}

/// What a participant, a reviewer or a service reports.
#[derive(Debug, Clone)]
pub struct ActionReport {
    /// Who earns.
    pub participant: ParticipantId,
    /// Who reports: must be the rule's reporter.
    pub reporter: Reporter,
    pub outlet: Option<OutletId>,
    /// The region and outlet of the participant's profile as assumed (a warm function's
    /// cache, else the participant's own token as a hint): the write checks them against
    /// the profile, and the report is decided in the profile's region.
    pub profile: ProfileFacts,
    pub rule: RuleId,
    /// What was done and, from a reviewer, the evidence; bounded by the caller (the handler:
    /// 120 characters each); empty when none.
    pub reference: String,
    pub key: KeyedRequest,
}

/// The answer to a credited action; stored under the key in the same write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReceipt {
    pub entry_id: EntryId,
    pub rule_id: RuleId,
    pub action: Action,
    pub points: Points,
    pub base_points: Points,
    pub tier: String,
    pub multiplier_percent: u32,
    /// The rule's budget could not cover the points and the rule holds such credits: they
    /// are pending, awaiting a reviewer.
    pub held: bool,
}

impl ActionReceipt {
    /// HTTP status of a credited action.
    pub const STATUS: u16 = 201;

    /// The JSON body callers receive (and a replay receives again); a held credit says
    /// `"status": "pending_review"`.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "entry_id": self.entry_id.as_str(),
            "rule_id": self.rule_id.as_str(),
            "action": self.action,
            "points": self.points.get(),
            "base_points": self.base_points.get(),
            "tier": self.tier,
            "multiplier_percent": self.multiplier_percent,
        });
        if self.held {
            body["status"] = "pending_review".into();
        }
        body
    }
}

/// Everything the store needs to write one action atomically.
#[derive(Debug, Clone)]
pub struct ActionAttempt {
    pub key: KeyedRequest,
    pub rule: RuleId,
    pub counters: Vec<LimitCounter>,
    pub entry: Entry,
    pub expected_balance: BalanceExpectation,
    pub receipt: ActionReceipt,
    /// What the write assumes of the participant's profile (checked with its standing).
    pub profile: ProfileFacts,
    pub now: DateTime<Utc>,
}

/// Why the atomic write did not commit. When several conditions fail, the store reports the
/// first in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRefusal {
    /// The participant has no profile, or an admin blocked them: they earn nothing.
    ParticipantNotActive,
    /// The profile is active but its region or outlet is not the assumed one: here are
    /// the profile's.
    ProfileDiffers(ProfileFacts),
    /// A live answer is stored under this key; here it is.
    KeyTaken(StoredAnswer),
    /// The entry this key names exists, but no live answer: the key was used over 24 h ago.
    EntryExists,
    /// A counter of this scope has reached its ceiling; `used` is its value.
    Limit { scope: LimitScope, used: u64 },
    /// The balance is not the expected version; here is its tier basis now.
    BalanceMoved(TierBasis),
    /// The rule's budget (its programme account's shard) cannot cover the points. Never
    /// the answer to a held credit (`AccrualUnderReview`): `reviews` fronts it, unbudgeted.
    BudgetExhausted,
    /// Another transaction touched the same items at the same moment; retry.
    Contended,
}

/// The port through which actions reach storage.
pub trait ActionStore: Send + Sync {
    /// Rules and tiers, read fresh.
    fn programme(&self) -> impl Future<Output = Result<Programme, InfraError>> + Send;

    /// One atomic write; `Ok(Err(refusal))` when a condition failed.
    fn try_accrue(
        &self,
        attempt: &ActionAttempt,
    ) -> impl Future<Output = Result<Result<(), ActionRefusal>, InfraError>> + Send;

    /// Stores the answer to a refused report (nothing else is written) under its key, so a
    /// retry gets the same refusal; `Ok(Err(stored))` when a live answer already holds the key.
    fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Result<(), StoredAnswer>, InfraError>> + Send;
}

/// A shared store is a store: the memory adapter of an `App` that other ports of the same
/// function write to as well (challenge bonuses, budgets).
impl<T: ActionStore + ?Sized> ActionStore for std::sync::Arc<T> {
    fn programme(&self) -> impl Future<Output = Result<Programme, InfraError>> + Send {
        (**self).programme()
    }

    fn try_accrue(
        &self,
        attempt: &ActionAttempt,
    ) -> impl Future<Output = Result<Result<(), ActionRefusal>, InfraError>> + Send {
        (**self).try_accrue(attempt)
    }

    fn remember(
        &self,
        key: &KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Result<(), StoredAnswer>, InfraError>> + Send {
        (**self).remember(key, status, body, now)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("only a registered participant in good standing earns points")]
    ParticipantNotActive,
    #[error(transparent)]
    Refused(#[from] AccrualError),
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("this Idempotency-Key was used more than 24 hours ago; send a new key")]
    KeyExpired,
    #[error("the action could not be recorded because of concurrent activity; please retry")]
    TooMuchContention,
    #[error(transparent)]
    Infra(InfraError),
}

impl From<InfraError> for ActionError {
    fn from(e: InfraError) -> Self {
        ActionError::Infra(e)
    }
}

impl Classified for ActionError {
    fn kind(&self) -> Kind {
        match self {
            ActionError::ParticipantNotActive => Kind::Forbidden,
            ActionError::Refused(e) => e.kind(),
            ActionError::KeyReused | ActionError::KeyExpired => Kind::Unprocessable,
            ActionError::TooMuchContention => Kind::Infrastructure { retryable: true },
            ActionError::Infra(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ActionError::ParticipantNotActive => "participant_not_active",
            ActionError::Refused(e) => e.code(),
            ActionError::KeyReused => "idempotency_key_reused",
            ActionError::KeyExpired => "idempotency_key_expired",
            ActionError::TooMuchContention => "contention",
            ActionError::Infra(e) => e.code(),
        }
    }
}

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Credited now. `basis` is the balance's tier basis after the write (for the caller's
    /// cache), when the write knew it; `profile` the participant's profile facts as the write
    /// verified them.
    Credited {
        receipt: ActionReceipt,
        basis: Option<TierBasis>,
        profile: ProfileFacts,
    },
    /// The key was answered before: the first answer, to give again.
    Replay(StoredAnswer),
}

/// Attempts of the atomic write before giving up when the balance keeps moving or
/// transactions keep colliding.
pub const MAX_ATTEMPTS: usize = 6;

/// Reports an action. `programme` is the caller's (possibly cached) view of the settings;
/// `known` its cached view of the participant's tier basis: when current, the report is one
/// write; when stale or absent, the refusal tells the real one and the write is tried again.
pub async fn report_action<S: ActionStore>(
    store: &S,
    programme: &Programme,
    report: &ActionReport,
    known: Option<TierBasis>,
    now: DateTime<Utc>,
) -> Result<Reported, ActionError> {
    let rule = programme
        .rule(&report.rule)
        .ok_or_else(|| AccrualError::UnknownRule(report.rule.clone()))?;
    // Keys are unique per caller: a reviewer's or a service's key is qualified by its scope,
    // so it cannot name a participant's own report. A participant's stays as it always was.
    let entry_id = if report.key.scope == report.participant.as_str() {
        entry_ids::action(&report.participant, report.key.key.as_str())
    } else {
        entry_ids::action(
            &report.participant,
            &format!("{}/{}", report.key.scope, report.key.key.as_str()),
        )
    };
    let mut basis = known;
    // Set once the budget refused the credit and the rule holds such credits for review.
    let mut held = false;
    let mut profile = report.profile.clone();
    for _ in 0..MAX_ATTEMPTS {
        // The participant's region as the write will verify it; a refusal that names
        // another sends the report round again with the profile's, counted in that region's
        // zone (its local validity bounds and day, week and month windows).
        let zone = programme.zones.for_region(profile.region.as_ref());
        let action = check_action(rule, report.reporter, now, zone)?;
        let counters = rule.counters(now, zone);
        let (tier, expected_balance) = if programme.tiered() {
            match &basis {
                // A balance item has version 1 from its first entry on; 0 is no item.
                Some(b) if b.version > 0 => (
                    tier_of(&programme.tiers, b, now),
                    BalanceExpectation::Version(b.version),
                ),
                _ => (
                    programme.tiers.tier_for(0).clone(),
                    BalanceExpectation::Absent,
                ),
            }
        } else {
            (programme.tiers.tier_for(0).clone(), BalanceExpectation::Any)
        };
        let points = with_multiplier(rule.points, &tier);
        let receipt = ActionReceipt {
            entry_id: entry_id.clone(),
            rule_id: rule.id.clone(),
            action,
            points,
            base_points: rule.points,
            tier: tier.name.clone(),
            multiplier_percent: tier.multiplier_percent,
            held,
        };
        let attempt = ActionAttempt {
            key: report.key.clone(),
            rule: rule.id.clone(),
            counters,
            entry: Entry {
                id: entry_id.clone(),
                participant: report.participant.clone(),
                outlet: report.outlet.clone(),
                kind: if held {
                    EntryKind::AccrualUnderReview
                } else {
                    EntryKind::Accrual
                },
                amount: points,
                source: if report.reference.is_empty() {
                    format!("rule {}", rule.id)
                } else {
                    format!("rule {}: {}", rule.id, report.reference)
                },
                created_at: now,
                expires_on: None,
            },
            expected_balance,
            receipt,
            profile: profile.clone(),
            now,
        };
        match store.try_accrue(&attempt).await? {
            Ok(()) => {
                let after = match attempt.expected_balance {
                    BalanceExpectation::Any => None,
                    BalanceExpectation::Absent => Some(TierBasis::default()),
                    BalanceExpectation::Version(_) => basis.clone(),
                }
                .map(|b| {
                    if held {
                        // Pending points earn nothing towards a tier until approved.
                        TierBasis {
                            version: b.version + 1,
                            months: b.months,
                        }
                    } else {
                        b.credited(points, now)
                    }
                });
                return Ok(Reported::Credited {
                    receipt: attempt.receipt,
                    basis: after,
                    profile,
                });
            }
            Err(ActionRefusal::KeyTaken(stored)) => {
                return if stored.fingerprint == report.key.fingerprint {
                    Ok(Reported::Replay(stored))
                } else {
                    Err(ActionError::KeyReused)
                };
            }
            Err(ActionRefusal::ParticipantNotActive) => {
                return Err(ActionError::ParticipantNotActive)
            }
            // Ranked before the limits and the budget, so nothing was judged in a wrong region.
            Err(ActionRefusal::ProfileDiffers(facts)) => profile = facts,
            Err(ActionRefusal::EntryExists) => return Err(ActionError::KeyExpired),
            Err(ActionRefusal::Limit { scope, .. }) => {
                return Err(match scope {
                    LimitScope::Participant => AccrualError::ParticipantLimit(rule.id.clone()),
                    LimitScope::Period => AccrualError::PeriodLimit(rule.id.clone()),
                }
                .into())
            }
            Err(ActionRefusal::BudgetExhausted)
                if rule.over_budget == OverBudget::Hold && !held =>
            {
                held = true;
            }
            Err(ActionRefusal::BudgetExhausted) => {
                return Err(AccrualError::BudgetExhausted(rule.id.clone()).into())
            }
            Err(ActionRefusal::BalanceMoved(now_basis)) => basis = Some(now_basis),
            Err(ActionRefusal::Contended) => {}
        }
    }
    Err(ActionError::TooMuchContention)
}

/// The tier a basis earns at `now`.
pub fn tier_of(tiers: &Tiers, basis: &TierBasis, now: DateTime<Utc>) -> Tier {
    tiers
        .tier_for(earned_trailing_12_months(&basis.months, now))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earning::{Period, PeriodLimit, Trigger};
    use crate::ids::RegionId;
    use std::sync::Mutex;

    /// A scripted store: answers each write with the next refusal, then commits.
    #[derive(Default)]
    struct Scripted {
        refusals: Mutex<Vec<ActionRefusal>>,
        seen: Mutex<Vec<ActionAttempt>>,
    }

    impl ActionStore for Scripted {
        async fn programme(&self) -> Result<Programme, InfraError> {
            Ok(Programme::default())
        }
        async fn try_accrue(
            &self,
            attempt: &ActionAttempt,
        ) -> Result<Result<(), ActionRefusal>, InfraError> {
            self.seen.lock().unwrap().push(attempt.clone());
            let mut r = self.refusals.lock().unwrap();
            Ok(if r.is_empty() {
                Ok(())
            } else {
                Err(r.remove(0))
            })
        }
        async fn remember(
            &self,
            _: &KeyedRequest,
            _: u16,
            _: String,
            _: DateTime<Utc>,
        ) -> Result<Result<(), StoredAnswer>, InfraError> {
            Ok(Ok(()))
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn rule(id: &str, points: u64) -> Rule {
        Rule {
            id: RuleId::parse(id).unwrap(),
            trigger: Trigger::Action(Action::Survey),
            points: Points(points),
            per_participant: Some(3),
            per_period: Some(PeriodLimit {
                max: 1,
                period: Period::Month,
            }),
            valid_from: at("2026-01-01T00:00:00Z").into(),
            valid_until: Some(at("2027-01-01T00:00:00Z").into()),
            over_budget: OverBudget::Refuse,
            reported_by: Reporter::Participant,
        }
    }

    fn tiered() -> Programme {
        Programme {
            rules: vec![rule("survey", 40)],
            tiers: Tiers::parse(vec![
                Tier {
                    name: "bronze".into(),
                    threshold: 0,
                    multiplier_percent: 100,
                },
                Tier {
                    name: "silver".into(),
                    threshold: 100,
                    multiplier_percent: 150,
                },
            ])
            .unwrap(),
            zones: Zones::default(),
        }
    }

    fn report(rule: &str, fingerprint: &str) -> ActionReport {
        ActionReport {
            participant: ParticipantId::parse("p-1").unwrap(),
            reporter: Reporter::Participant,
            outlet: None,
            profile: ProfileFacts::default(),
            rule: RuleId::parse(rule).unwrap(),
            reference: String::new(),
            key: KeyedRequest {
                scope: "p-1".into(),
                key: IdempotencyKey::parse("key-00000001").unwrap(),
                fingerprint: fingerprint.into(),
            },
        }
    }

    const NOW: &str = "2026-11-16T10:00:00Z";

    #[tokio::test]
    async fn an_unknown_or_inactive_rule_writes_nothing() {
        let store = Scripted::default();
        let mut p = tiered();
        let e = report_action(&store, &p, &report("nope", "f"), None, at(NOW)).await;
        assert_eq!(e.unwrap_err().code(), "rule_not_found");
        p.rules[0].valid_until = Some(at("2026-02-01T00:00:00Z").into());
        let e = report_action(&store, &p, &report("survey", "f"), None, at(NOW)).await;
        assert_eq!(e.unwrap_err().code(), "rule_not_active");
        assert!(store.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn only_the_rules_reporter_may_report_it_and_a_refused_reporter_writes_nothing() {
        let mut p = tiered();
        for (rule_reporter, reporter, allowed) in [
            (Reporter::Participant, Reporter::Participant, true),
            (Reporter::Participant, Reporter::Reviewer, false),
            (Reporter::Reviewer, Reporter::Participant, false),
            (Reporter::Reviewer, Reporter::Reviewer, true),
            (Reporter::Service, Reporter::Participant, false),
            (Reporter::Service, Reporter::Service, true),
        ] {
            let store = Scripted::default();
            p.rules[0].reported_by = rule_reporter;
            let mut r = report("survey", "f");
            r.reporter = reporter;
            let got = report_action(&store, &p, &r, None, at(NOW)).await;
            let seen = store.seen.lock().unwrap().len();
            if allowed {
                assert!(got.is_ok(), "{rule_reporter:?} by {reporter:?}: {got:?}");
                assert_eq!(seen, 1);
            } else {
                let e = got.unwrap_err();
                assert_eq!(e.code(), "reporter_not_allowed");
                assert_eq!(e.kind(), Kind::Forbidden);
                assert_eq!(seen, 0, "{rule_reporter:?} by {reporter:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_key_of_another_caller_than_the_participant_names_another_entry() {
        let mut p = tiered();
        p.rules[0].reported_by = Reporter::Service;
        let store = Scripted::default();
        let mut by_service = report("survey", "f");
        by_service.reporter = Reporter::Service;
        by_service.key.scope = "svc-orders".into();
        report_action(&store, &p, &by_service, None, at(NOW))
            .await
            .unwrap();
        p.rules[0].reported_by = Reporter::Participant;
        report_action(&store, &p, &report("survey", "f"), None, at(NOW))
            .await
            .unwrap();
        let seen = store.seen.lock().unwrap();
        assert_ne!(seen[0].entry.id, seen[1].entry.id);
        assert_eq!(
            seen[1].entry.id,
            entry_ids::action(&ParticipantId::parse("p-1").unwrap(), "key-00000001"),
            "a participant's own key names the entry it always named"
        );
    }

    #[tokio::test]
    async fn a_current_cache_is_one_write_and_the_tier_follows_the_basis() {
        let store = Scripted::default();
        let basis = TierBasis {
            version: 7,
            months: MonthlyEarned::from([(202611, 120)]),
        };
        let r = report_action(
            &store,
            &tiered(),
            &report("survey", "f"),
            Some(basis),
            at(NOW),
        )
        .await
        .unwrap();
        let Reported::Credited { receipt, basis, .. } = r else {
            panic!("credited")
        };
        assert_eq!(
            (receipt.points, receipt.tier.as_str()),
            (Points(60), "silver")
        );
        assert_eq!(basis.unwrap().version, 8);
        let seen = store.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].expected_balance, BalanceExpectation::Version(7));
        assert_eq!(seen[0].counters.len(), 2);
    }

    #[tokio::test]
    async fn a_moved_balance_is_retried_at_the_tier_it_reports() {
        let store = Scripted::default();
        store
            .refusals
            .lock()
            .unwrap()
            .push(ActionRefusal::BalanceMoved(TierBasis {
                version: 3,
                months: MonthlyEarned::from([(202611, 100)]),
            }));
        let r = report_action(&store, &tiered(), &report("survey", "f"), None, at(NOW))
            .await
            .unwrap();
        let Reported::Credited { receipt, basis, .. } = r else {
            panic!("credited")
        };
        assert_eq!(receipt.tier, "silver");
        assert_eq!(
            basis.unwrap().months.get(&202611).copied(),
            Some(160),
            "the cache learns the credit"
        );
        let seen = store.seen.lock().unwrap();
        assert_eq!(seen[0].expected_balance, BalanceExpectation::Absent);
        assert_eq!(seen[1].expected_balance, BalanceExpectation::Version(3));
    }

    #[tokio::test]
    async fn the_period_counter_is_the_participants_region_month_in_its_zone() {
        let omsk = RegionId::parse("omsk").unwrap();
        let mut p = tiered();
        p.zones
            .regions
            .insert(omsk.clone(), crate::zone::Zone::parse("Asia/Omsk").unwrap());
        // 00:30 on 1 December in Omsk, still 30 November in UTC (the programme zone).
        let now = at("2026-11-30T18:30:00Z");
        let month_of_attempt = |region: Option<RegionId>| {
            let store = Scripted::default();
            let p = p.clone();
            async move {
                let mut r = report("survey", "f");
                r.profile.region = region;
                report_action(&store, &p, &r, None, now).await.unwrap();
                let seen = store.seen.lock().unwrap();
                seen[0].counters[1].key.clone()
            }
        };
        assert_eq!(month_of_attempt(Some(omsk)).await, "M2026-12");
        assert_eq!(month_of_attempt(None).await, "M2026-11");
        let elsewhere = Some(RegionId::parse("south").unwrap());
        assert_eq!(month_of_attempt(elsewhere).await, "M2026-11");
    }

    #[tokio::test]
    async fn a_profile_in_another_region_than_assumed_is_retried_in_the_profiles_region() {
        let store = Scripted::default();
        let south = ProfileFacts {
            region: RegionId::parse("south").ok(),
            outlet: OutletId::parse("o-south").ok(),
        };
        store
            .refusals
            .lock()
            .unwrap()
            .push(ActionRefusal::ProfileDiffers(south.clone()));
        let mut r = report("survey", "f");
        r.profile.region = RegionId::parse("north").ok();
        let got = report_action(&store, &tiered(), &r, None, at(NOW))
            .await
            .unwrap();
        let Reported::Credited { profile, .. } = got else {
            panic!("credited")
        };
        assert_eq!(profile, south, "the caller learns the verified facts");
        let seen = store.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].profile.region, RegionId::parse("north").ok());
        assert_eq!(
            seen[1].profile, south,
            "the retry assumes what the profile says"
        );
    }

    #[tokio::test]
    async fn without_tiers_the_balance_is_no_condition() {
        let store = Scripted::default();
        let p = Programme {
            rules: vec![rule("survey", 40)],
            tiers: Tiers::default(),
            zones: Zones::default(),
        };
        report_action(&store, &p, &report("survey", "f"), None, at(NOW))
            .await
            .unwrap();
        assert_eq!(
            store.seen.lock().unwrap()[0].expected_balance,
            BalanceExpectation::Any
        );
    }

    #[tokio::test]
    async fn refusals_mean_replay_reuse_expiry_or_a_limit() {
        let stored = StoredAnswer {
            fingerprint: "f".into(),
            status: 201,
            body: "{}".into(),
            content_type: None,
        };
        let cases: Vec<(ActionRefusal, &str, Result<(), &str>)> = vec![
            (ActionRefusal::KeyTaken(stored.clone()), "f", Ok(())),
            (
                ActionRefusal::KeyTaken(stored.clone()),
                "other",
                Err("idempotency_key_reused"),
            ),
            (
                ActionRefusal::EntryExists,
                "f",
                Err("idempotency_key_expired"),
            ),
            (
                ActionRefusal::Limit {
                    scope: LimitScope::Participant,
                    used: 3,
                },
                "f",
                Err("participant_limit_reached"),
            ),
            (
                ActionRefusal::Limit {
                    scope: LimitScope::Period,
                    used: 1,
                },
                "f",
                Err("period_limit_reached"),
            ),
        ];
        for (refusal, fingerprint, want) in cases {
            let store = Scripted::default();
            store.refusals.lock().unwrap().push(refusal.clone());
            let got = report_action(
                &store,
                &tiered(),
                &report("survey", fingerprint),
                None,
                at(NOW),
            )
            .await;
            match (got, want) {
                (Ok(Reported::Replay(s)), Ok(())) => assert_eq!(s, stored),
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{refusal:?}"),
                (got, want) => panic!("{refusal:?}: {got:?} vs {want:?}"),
            }
            assert_eq!(
                store.seen.lock().unwrap().len(),
                1,
                "decided from the refusal"
            );
        }
    }

    #[tokio::test]
    async fn an_over_budget_credit_is_held_for_review_when_the_rule_says_hold_and_refused_otherwise(
    ) {
        for (over_budget, held) in [(OverBudget::Refuse, false), (OverBudget::Hold, true)] {
            let store = Scripted::default();
            store
                .refusals
                .lock()
                .unwrap()
                .push(ActionRefusal::BudgetExhausted);
            let mut p = tiered();
            p.rules[0].over_budget = over_budget;
            let basis = TierBasis {
                version: 2,
                months: MonthlyEarned::from([(202611, 10)]),
            };
            let got = report_action(&store, &p, &report("survey", "f"), Some(basis), at(NOW)).await;
            let seen = store.seen.lock().unwrap();
            if !held {
                assert_eq!(got.unwrap_err().code(), "budget_exhausted");
                assert_eq!(seen.len(), 1);
                continue;
            }
            let Ok(Reported::Credited { receipt, basis, .. }) = got else {
                panic!("held: {got:?}")
            };
            assert!(receipt.held);
            assert_eq!(receipt.body()["status"], "pending_review");
            assert_eq!(seen.len(), 2, "the same write again, held");
            assert_eq!(seen[0].entry.kind, EntryKind::Accrual);
            assert_eq!(seen[1].entry.kind, EntryKind::AccrualUnderReview);
            assert_eq!(
                seen[1].entry.id, seen[0].entry.id,
                "the same key, the same entry"
            );
            assert_eq!(
                seen[1].entry.transfer().unwrap().account,
                crate::ledger::ProgrammeAccount::Reviews,
                "the budget is not touched while the credit is held"
            );
            let basis = basis.unwrap();
            assert_eq!(
                (basis.version, basis.months.get(&202611).copied()),
                (3, Some(10)),
                "pending points earn nothing towards a tier"
            );
        }
    }

    #[tokio::test]
    async fn a_held_credit_refused_again_by_its_budget_is_refused() {
        // `reviews` has no budget, so only a store bug can refuse a held credit's budget;
        // the use case must not loop on it.
        let store = Scripted::default();
        *store.refusals.lock().unwrap() = vec![ActionRefusal::BudgetExhausted; 2];
        let mut p = tiered();
        p.rules[0].over_budget = OverBudget::Hold;
        let got = report_action(&store, &p, &report("survey", "f"), None, at(NOW)).await;
        assert_eq!(got.unwrap_err().code(), "budget_exhausted");
        assert_eq!(store.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn endless_contention_gives_up() {
        let store = Scripted::default();
        *store.refusals.lock().unwrap() = vec![ActionRefusal::Contended; MAX_ATTEMPTS];
        let e = report_action(&store, &tiered(), &report("survey", "f"), None, at(NOW)).await;
        assert_eq!(e.unwrap_err(), ActionError::TooMuchContention);
    }
}
