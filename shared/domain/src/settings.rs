//! Accrual's admin settings: earning rules, tiers and programme budgets
//! (`/admin/rules`, `/admin/tiers`, `/admin/{rules,challenges}/{id}/budget`), and a
//! participant's current tier, over the [`EarningSettings`] port.
//!
//! The rules themselves are pure and live in [`crate::earning`] (`Rule::parse`,
//! `Tiers::parse`, `Tiers::tier_for`, `earned_trailing_12_months`); this port only stores
//! and reads them.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::earning::{earned_trailing_12_months, MonthlyEarned, Rule, RuleId, Tier, Tiers};
use crate::ids::ParticipantId;
use crate::ledger::Budgets;
use crate::InfraError;

/// The port through which the settings reach storage.
/// Budgets ([`Budgets`]) are settings too: an admin funds a rule's or a challenge's.
pub trait EarningSettings: Budgets {
    /// Every earning rule, ordered by id.
    fn rules(&self) -> impl Future<Output = Result<Vec<Rule>, InfraError>> + Send;

    fn rule(&self, id: &RuleId) -> impl Future<Output = Result<Option<Rule>, InfraError>> + Send;

    /// Adds or replaces a rule.
    fn put_rule(
        &self,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The configured tiers, or one base tier at ×1 when none are.
    fn tiers(&self) -> impl Future<Output = Result<Tiers, InfraError>> + Send;

    fn put_tiers(
        &self,
        tiers: &Tiers,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The points the participant earned per month: the basis of their tier.
    fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> impl Future<Output = Result<MonthlyEarned, InfraError>> + Send;
}

/// A shared store is a store: one memory ledger behind several ports of a function.
impl<T: EarningSettings + ?Sized> EarningSettings for std::sync::Arc<T> {
    fn rules(&self) -> impl Future<Output = Result<Vec<Rule>, InfraError>> + Send {
        (**self).rules()
    }
    fn rule(&self, id: &RuleId) -> impl Future<Output = Result<Option<Rule>, InfraError>> + Send {
        (**self).rule(id)
    }
    fn put_rule(
        &self,
        rule: &Rule,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send {
        (**self).put_rule(rule, now)
    }
    fn tiers(&self) -> impl Future<Output = Result<Tiers, InfraError>> + Send {
        (**self).tiers()
    }
    fn put_tiers(
        &self,
        tiers: &Tiers,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), InfraError>> + Send {
        (**self).put_tiers(tiers, now)
    }
    fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> impl Future<Output = Result<MonthlyEarned, InfraError>> + Send {
        (**self).earned_months(participant)
    }
}

/// The participant's tier at `now`: the highest whose threshold the points they earned in
/// the trailing 12 months reach.
pub async fn current_tier<S: EarningSettings>(
    store: &S,
    participant: &ParticipantId,
    now: DateTime<Utc>,
) -> Result<Tier, InfraError> {
    let (tiers, months) = (
        store.tiers().await?,
        store.earned_months(participant).await?,
    );
    Ok(tiers
        .tier_for(earned_trailing_12_months(&months, now))
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earning::month_key;
    use crate::ledger::{Funded, ProgrammeAccount, ProgrammeBalance};
    use crate::Points;
    use chrono::TimeZone;

    /// Tiers and one participant's months; nothing else is read by [`current_tier`].
    struct Fake(Tiers, MonthlyEarned);

    impl EarningSettings for Fake {
        async fn rules(&self) -> Result<Vec<Rule>, InfraError> {
            unreachable!()
        }
        async fn rule(&self, _: &RuleId) -> Result<Option<Rule>, InfraError> {
            unreachable!()
        }
        async fn put_rule(&self, _: &Rule, _: DateTime<Utc>) -> Result<(), InfraError> {
            unreachable!()
        }
        async fn tiers(&self) -> Result<Tiers, InfraError> {
            Ok(self.0.clone())
        }
        async fn put_tiers(&self, _: &Tiers, _: DateTime<Utc>) -> Result<(), InfraError> {
            unreachable!()
        }
        async fn earned_months(&self, _: &ParticipantId) -> Result<MonthlyEarned, InfraError> {
            Ok(self.1.clone())
        }
    }

    impl Budgets for Fake {
        async fn fund_budget(
            &self,
            _: &ProgrammeAccount,
            _: Points,
            _: &str,
            _: DateTime<Utc>,
        ) -> Result<Funded, InfraError> {
            unreachable!()
        }
        async fn programme_balance(
            &self,
            _: &ProgrammeAccount,
        ) -> Result<ProgrammeBalance, InfraError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn the_current_tier_counts_only_the_trailing_12_months() {
        let tier = |name: &str, threshold| Tier {
            name: name.into(),
            threshold,
            multiplier_percent: 100,
        };
        let tiers = Tiers::parse(vec![tier("base", 0), tier("gold", 1_000)]).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let year_ago = Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap();
        let p = ParticipantId::parse("p-1").unwrap();
        let months = MonthlyEarned::from([(month_key(year_ago), 600), (month_key(now), 600)]);
        let store = Fake(tiers, months);
        assert_eq!(current_tier(&store, &p, now).await.unwrap().name, "base");
        let october = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let mut months = store.1.clone();
        months.insert(month_key(october), 400);
        let store = Fake(store.0, months);
        assert_eq!(current_tier(&store, &p, now).await.unwrap().name, "gold");
    }
}
