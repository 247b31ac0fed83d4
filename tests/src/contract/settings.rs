//! The contract of the [`EarningSettings`] port (accrual's rules, tiers and budgets, and a
//! participant's current tier) and of the [`ZoneSettings`] port (the programme's and the
//! regions' time zones), run against both adapters: [`MemoryActions`]
//! (`tests/tests/memory/`) and [`EarningStore`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`SettingsHarness`]; [`earning_settings_contract!`](crate::earning_settings_contract)
//! turns every case into a test for one adapter. If the two adapters disagree, the memory
//! one is wrong.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use loyalty_domain::earning::{Rule, Tier, Tiers};
use loyalty_domain::ids::RegionId;
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{
    Budgets, Entry, EntryKind, Funded, ProgrammeAccount, PROGRAMME_SHARDS,
};
use loyalty_domain::settings::{current_tier, EarningSettings};
use loyalty_domain::zone::{Zone, ZoneSettings, Zones};
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryActions;
use loyalty_platform::stores::earning::EarningStore;
use loyalty_platform::stores::ledger::append_items;

use crate::contract::actions::rule;
use crate::TestStack;

/// One adapter of the port, with what the contract needs to seed it, written through the
/// adapter's own storage, never through the port under test.
#[allow(async_fn_in_trait)]
pub trait SettingsHarness {
    type Store: EarningSettings + ZoneSettings;
    fn store(&self) -> &Self::Store;
    /// Credits the participant `points` at `at`, as any accrual would.
    async fn credit(&self, participant: &ParticipantId, points: u64, at: DateTime<Utc>);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemoryActions,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemoryActions::new(),
    }
}

impl SettingsHarness for MemoryHarness {
    type Store = MemoryActions;

    fn store(&self) -> &MemoryActions {
        &self.store
    }

    async fn credit(&self, participant: &ParticipantId, points: u64, at: DateTime<Utc>) {
        self.store.credit_elsewhere(participant, points, at);
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: EarningStore,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("AccrualFunction").await;
    DynamoHarness {
        store: stack.earning_store(),
        stack,
    }
}

impl SettingsHarness for DynamoHarness {
    type Store = EarningStore;

    fn store(&self) -> &EarningStore {
        &self.store
    }

    async fn credit(&self, participant: &ParticipantId, points: u64, at: DateTime<Utc>) {
        let entry = Entry {
            id: EntryId::parse(&format!("test-credit-{}", at.timestamp())).unwrap(),
            participant: participant.clone(),
            outlet: None,
            kind: EntryKind::Accrual,
            amount: Points(points),
            source: "test credit".into(),
            created_at: at,
            expires_on: None,
        };
        append_items(self.stack.table_name("LedgerTable"), &entry, None)
            .expect("ledger items")
            .commit(&self.stack.dynamodb(), "test credit")
            .await
            .expect("no infrastructure error")
            .expect("credited");
    }
}

// --- Helpers ---------------------------------------------------------------------------

/// Now, in whole microseconds (what a stored timestamp keeps).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).expect("participant id")
}

fn tiers() -> Tiers {
    let tier = |name: &str, threshold, multiplier_percent| Tier {
        name: name.into(),
        threshold,
        multiplier_percent,
    };
    Tiers::parse(vec![tier("base", 0, 100), tier("silver", 1_000, 150)]).unwrap()
}

// --- The cases -------------------------------------------------------------------------

pub async fn rules_are_listed_by_id_read_one_by_one_and_a_put_replaces_one(
    h: impl SettingsHarness,
) {
    let s = h.store();
    assert!(s.rules().await.unwrap().is_empty());
    let (b, a) = (
        rule("b-survey", 10, None, None),
        rule("a-survey", 20, None, None),
    );
    s.put_rule(&b, now()).await.unwrap();
    s.put_rule(&a, now()).await.unwrap();
    let changed = Rule {
        points: Points(30),
        ..b.clone()
    };
    s.put_rule(&changed, now()).await.unwrap();
    assert_eq!(s.rules().await.unwrap(), vec![a.clone(), changed.clone()]);
    assert_eq!(s.rule(&b.id).await.unwrap(), Some(changed));
    assert_eq!(
        s.rule(&loyalty_domain::earning::Slug::parse("none").unwrap())
            .await
            .unwrap(),
        None
    );
}

pub async fn tiers_are_one_base_tier_until_set_and_then_what_was_set(h: impl SettingsHarness) {
    let s = h.store();
    assert_eq!(s.tiers().await.unwrap(), Tiers::default());
    s.put_tiers(&tiers(), now()).await.unwrap();
    assert_eq!(s.tiers().await.unwrap(), tiers());
}

pub async fn the_current_tier_follows_the_points_earned_in_the_trailing_12_months(
    h: impl SettingsHarness,
) {
    let at = now();
    let p = pid("p-1");
    h.store().put_tiers(&tiers(), at).await.unwrap();
    assert_eq!(current_tier(h.store(), &p, at).await.unwrap().name, "base");
    h.credit(&p, 600, at - Duration::days(400)).await;
    h.credit(&p, 600, at - Duration::days(40)).await;
    assert_eq!(
        current_tier(h.store(), &p, at).await.unwrap().name,
        "base",
        "600 points over 12 months ago do not count"
    );
    h.credit(&p, 400, at).await;
    assert_eq!(
        current_tier(h.store(), &p, at).await.unwrap().name,
        "silver"
    );
    assert_eq!(
        current_tier(h.store(), &pid("p-2"), at).await.unwrap().name,
        "base"
    );
}

pub async fn a_budget_is_funded_once_per_funding_id_and_spread_over_the_shards(
    h: impl SettingsHarness,
) {
    let s = h.store();
    let account = ProgrammeAccount::Rule(rule("survey", 10, None, None).id);
    let unfunded = s.programme_balance(&account).await.unwrap();
    assert_eq!((unfunded.balance, unfunded.funded), (0, None));
    let amount = 10 * PROGRAMME_SHARDS as u64 + 3;
    assert_eq!(
        s.fund_budget(&account, Points(amount), "admin:key-1", now())
            .await
            .unwrap(),
        Funded::Funded
    );
    assert_eq!(
        s.fund_budget(&account, Points(amount), "admin:key-1", now())
            .await
            .unwrap(),
        Funded::AlreadyFunded
    );
    let funded = s.programme_balance(&account).await.unwrap();
    assert_eq!(
        (funded.balance, funded.funded),
        (amount as i64, Some(amount as i64))
    );
    assert_eq!(
        &funded.shards[..4],
        &[11, 11, 11, 10],
        "the rest one point each"
    );
    let issuer = s
        .programme_balance(&ProgrammeAccount::Issuer)
        .await
        .unwrap();
    assert_eq!(issuer.balance, -(amount as i64));
}

pub async fn zones_are_utc_until_set_and_a_region_without_its_own_counts_in_the_programmes(
    h: impl SettingsHarness,
) {
    let s = h.store();
    let zone = |name: &str| Zone::parse(name).unwrap();
    let region = |name: &str| RegionId::parse(name).unwrap();
    assert_eq!(s.zones().await.unwrap(), Zones::single(Zone::UTC));
    s.put_region_zone(&region("north"), zone("Asia/Omsk"), now())
        .await
        .unwrap();
    s.put_region_zone(&region("south"), zone("Asia/Dhaka"), now())
        .await
        .unwrap();
    s.put_region_zone(&region("south"), zone("America/Bogota"), now())
        .await
        .unwrap();
    assert_eq!(
        s.zones().await.unwrap().programme,
        Zone::UTC,
        "a region's zone is not the programme's"
    );
    s.put_programme_zone(zone("Asia/Dhaka"), now())
        .await
        .unwrap();
    let zones = s.zones().await.unwrap();
    assert_eq!(
        zones,
        Zones {
            programme: zone("Asia/Dhaka"),
            regions: [
                (region("north"), zone("Asia/Omsk")),
                (region("south"), zone("America/Bogota")),
            ]
            .into(),
        }
    );
    assert_eq!(zones.for_region(Some(&region("east"))), zone("Asia/Dhaka"));
}

#[macro_export]
macro_rules! earning_settings_contract {
    ($harness:path) => {
        $crate::contract_cases!(settings, $harness;
            rules_are_listed_by_id_read_one_by_one_and_a_put_replaces_one,
            tiers_are_one_base_tier_until_set_and_then_what_was_set,
            the_current_tier_follows_the_points_earned_in_the_trailing_12_months,
            a_budget_is_funded_once_per_funding_id_and_spread_over_the_shards,
            zones_are_utc_until_set_and_a_region_without_its_own_counts_in_the_programmes,
        );
    };
}
