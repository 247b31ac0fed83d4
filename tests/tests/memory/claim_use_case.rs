//! The claim use case on the memory store, for paths the handler cannot reach.

use chrono::{TimeZone, Utc};
use loyalty_domain::claim::{claim, BatchInfo, ClaimPolicy, Claimant};
use loyalty_domain::code::Code;
use loyalty_domain::ids::{ParticipantId, RegionId};
use loyalty_domain::ledger::Balance;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryClaims;

/// Found by the simulator (`./dev sim --seed 1` before the fix): the store reports a missing
/// balance as version 0, and expecting `Some` of it was refused on every attempt.
#[tokio::test]
async fn expecting_an_empty_balance_for_an_account_that_does_not_exist_yet_still_commits() {
    let store = MemoryClaims::new();
    let batch = BatchInfo {
        number: 5,
        sku: "COLA-05".into(),
        product_type: "Cola 0.5 l".into(),
        points: Points(10),
        region: RegionId::parse("north").unwrap(),
        valid_until: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
    };
    let code = Code::chunk(&[5; 32], 5, 0, 1)[0];
    store.add_batch(batch.clone());
    store.issue(&batch, &[code]);
    let claimant = Claimant {
        participant: ParticipantId::parse("p-new").unwrap(),
        outlet: None,
        region: RegionId::parse("north").ok(),
    };
    store.register(&claimant.participant);
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
