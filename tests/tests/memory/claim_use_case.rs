//! The claim use case on the memory store, for paths the handler cannot reach.

use chrono::{TimeZone, Utc};
use loyalty_domain::claim::{claim, BatchInfo, ClaimError, ClaimPolicy, ClaimStatus, Claimant};
use loyalty_domain::code::Code;
use loyalty_domain::fraud::Subject;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::Balance;
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryClaims;

/// Found by the simulator (`./dev sim --seed 1` before the fix): the store reports a missing
/// balance as version 0, and expecting `Some` of it was refused on every attempt.
#[tokio::test]
async fn expecting_an_empty_balance_for_an_account_that_does_not_exist_yet_still_commits() {
    let store = MemoryClaims::new();
    let code = north_batch(&store, 1).1[0];
    let claimant = Claimant {
        participant: ParticipantId::parse("p-new").unwrap(),
        outlet: None,
        region: RegionId::parse("north").ok(),
    };
    store.register(&claimant.participant, claimant.facts());
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let claimed = claim(
        &store,
        &ClaimPolicy::default(),
        claimant,
        code,
        Some(Balance::default()),
        now,
    )
    .await
    .expect("the claim commits");
    assert!(!claimed.replayed);
    assert_eq!(claimed.receipt.balance.version, 1);
    assert_eq!(claimed.receipt.balance.available, 10);
}

fn north_batch(store: &MemoryClaims, count: u32) -> (BatchInfo, Vec<Code>) {
    let batch = BatchInfo {
        number: 6,
        sku: "COLA-05".into(),
        product_type: "Cola 0.5 l".into(),
        points: Points(10),
        region: RegionId::parse("north").unwrap(),
        valid_until: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    };
    let codes = Code::chunk(&[6; 32], 6, 0, count);
    store.add_batch(batch.clone());
    store.issue(&batch, &codes);
    (batch, codes)
}

fn facts(region: &str, outlet: Option<&str>) -> ProfileFacts {
    ProfileFacts {
        region: RegionId::parse(region).ok(),
        outlet: outlet.map(|o| OutletId::parse(o).unwrap()),
    }
}

fn assumed(participant: &ParticipantId, region: Option<&str>, outlet: Option<&str>) -> Claimant {
    Claimant {
        participant: participant.clone(),
        outlet: outlet.map(|o| OutletId::parse(o).unwrap()),
        region: region.map(|r| RegionId::parse(r).unwrap()),
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

#[tokio::test]
async fn a_claimant_without_a_region_is_still_flagged_for_a_code_of_another_region() {
    let store = MemoryClaims::new();
    let (_, codes) = north_batch(&store, 1);
    let p = ParticipantId::parse("p-south").unwrap();
    store.register(&p, facts("south", Some("o-1")));
    let claimed = claim(
        &store,
        &ClaimPolicy::default(),
        assumed(&p, None, None),
        codes[0],
        None,
        now(),
    )
    .await
    .expect("the claim commits");
    assert_eq!(claimed.receipt.status, ClaimStatus::PendingReview);
    assert_eq!(claimed.profile, facts("south", Some("o-1")));
    assert_eq!(store.entries(&p)[0].outlet, OutletId::parse("o-1").ok());
}

#[tokio::test]
async fn a_claimant_assumed_in_region_a_whose_profile_says_b_is_judged_by_b() {
    let store = MemoryClaims::new();
    let (_, codes) = north_batch(&store, 2);
    let south = ParticipantId::parse("p-south").unwrap();
    store.register(&south, facts("south", None));
    let north = ParticipantId::parse("p-north").unwrap();
    store.register(&north, facts("north", None));

    let flagged = claim(
        &store,
        &ClaimPolicy::default(),
        assumed(&south, Some("north"), None),
        codes[0],
        None,
        now(),
    )
    .await
    .expect("the claim commits");
    assert_eq!(flagged.receipt.status, ClaimStatus::PendingReview);
    let accepted = claim(
        &store,
        &ClaimPolicy::default(),
        assumed(&north, Some("south"), None),
        codes[1],
        None,
        now(),
    )
    .await
    .expect("the claim commits");
    assert_eq!(accepted.receipt.status, ClaimStatus::Accepted);
    assert_eq!(accepted.profile, facts("north", None));
}

#[tokio::test]
async fn failures_of_a_claimant_without_an_outlet_count_against_the_profiles_outlet() {
    let store = MemoryClaims::new();
    let (batch, _) = north_batch(&store, 1);
    let p = ParticipantId::parse("p-seller").unwrap();
    store.register(&p, facts("north", Some("o-shop")));
    let mut policy = ClaimPolicy::default();
    policy.fraud.max_failures_per_participant = 100;
    policy.fraud.max_failures_per_outlet = 2;
    // One code of an unknown batch (no transaction runs), one never issued in a known batch.
    let unknown_batch = Code::chunk(&[7; 32], 70, 0, 1)[0];
    let never_issued = Code::chunk(&[6; 32], batch.number, 9, 1)[0];
    for code in [unknown_batch, never_issued] {
        let err = claim(&store, &policy, assumed(&p, None, None), code, None, now()).await;
        assert_eq!(err, Err(ClaimError::UnknownCode));
    }
    let outlet = Subject::Outlet(OutletId::parse("o-shop").unwrap());
    let window = policy.fraud.failure_window(now());
    assert_eq!(store.failures(&outlet, window.start), 2);
    assert!(store.locked_until(&outlet).is_some());
}

#[tokio::test]
async fn an_unregistered_claimant_of_an_unknown_batch_is_not_active_and_nothing_is_counted() {
    let store = MemoryClaims::new();
    let p = ParticipantId::parse("p-nobody").unwrap();
    let code = Code::chunk(&[7; 32], 70, 0, 1)[0];
    let err = claim(
        &store,
        &ClaimPolicy::default(),
        assumed(&p, Some("north"), None),
        code,
        None,
        now(),
    )
    .await;
    assert_eq!(err, Err(ClaimError::ParticipantNotActive));
    assert!(store.audit().is_empty());
}
