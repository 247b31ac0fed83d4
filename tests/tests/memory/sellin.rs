//! Sell-in imports through the use case [`sellin::import`] on [`MemorySellIn`], fed from the
//! sample event `events/accrual/import-sell-in.json` (its CSV body parsed and priced as the
//! function does). No emulator. The route itself (`POST /admin/sell-in`: idempotency and
//! challenge progress) runs on the emulator in `tests/tests/integration/accrual.rs`.

use chrono::{DateTime, TimeZone, Utc};
use loyalty_domain::earning::{
    parse_sell_in_csv, price_lines, Rule, RuleId, Sku, Tier, Tiers, Trigger,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::sellin::{self, ImportOutcome, SellInCredit};
use loyalty_domain::Points;
use loyalty_platform::memory::MemorySellIn;

fn body() -> String {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/accrual/import-sell-in.json"
    ))
    .expect("sample event");
    let event: serde_json::Value = serde_json::from_str(&raw).expect("event json");
    event["body"].as_str().expect("a text body").to_string()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn rules() -> Vec<Rule> {
    let rule = |id: &str, sku: &str, points| Rule {
        id: RuleId::parse(id).unwrap(),
        trigger: Trigger::SellIn(Sku::parse(sku).unwrap()),
        points: Points(points),
        per_participant: None,
        per_period: None,
        valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        valid_until: None,
        over_budget: loyalty_domain::earning::OverBudget::Refuse,
    };
    vec![rule("cola-05", "COLA-05", 2), rule("cola-1", "COLA-1", 5)]
}

async fn import(store: &MemorySellIn, csv: &str) -> ImportOutcome {
    let priced = price_lines(parse_sell_in_csv(csv).expect("valid lines"), &rules())
        .expect("every line priced");
    sellin::import(store, priced, at())
        .await
        .expect("no infra error")
}

fn pid() -> ParticipantId {
    ParticipantId::parse("p-7f3a9c").unwrap()
}

#[tokio::test]
async fn the_sample_import_credits_each_line_once_at_the_participants_tier() {
    let store = MemorySellIn::new();
    store.put_tiers(
        Tiers::parse(vec![
            Tier {
                name: "base".into(),
                threshold: 0,
                multiplier_percent: 100,
            },
            Tier {
                name: "gold".into(),
                threshold: 1_000,
                multiplier_percent: 150,
            },
        ])
        .unwrap(),
    );
    store.credit_elsewhere(&pid(), 1_000, at());
    let ImportOutcome::Imported(lines) = import(&store, &body()).await else {
        panic!("the sample is imported");
    };
    // 24 × 2 and 6 × 5 points, at gold (×1.5).
    assert_eq!(ImportOutcome::counts(&lines), (2, 0, 72 + 45));
    assert_eq!(store.entries(&pid()).len(), 2);
    assert_eq!(store.balance(&pid()).unwrap().available, 1_000 + 117);
    assert!(lines.iter().all(|l| l.progress(at()).is_some()));

    // The same file again (a retry whose answer was lost): nothing credited twice.
    let ImportOutcome::Imported(again) = import(&store, &body()).await else {
        panic!("the same file is imported again");
    };
    assert_eq!(ImportOutcome::counts(&again), (0, 2, 0));
    assert!(again
        .iter()
        .all(|l| l.credit == SellInCredit::AlreadyImported));
    assert_eq!(store.balance(&pid()).unwrap().available, 1_117);
}

#[tokio::test]
async fn the_sample_with_a_changed_quantity_is_refused_whole_and_names_the_line() {
    let store = MemorySellIn::new();
    import(&store, &body()).await;
    let before = store.balance(&pid());
    let changed = body().replace("COLA-1,6", "COLA-1,7")
        + "INV-2026-0043,2026-11-21,o-5d2e8b,p-7f3a9c,acme,COLA-1,1\n";
    match import(&store, &changed).await {
        ImportOutcome::Changed(errors) => {
            assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3])
        }
        other => panic!("a changed line refuses the import: {other:?}"),
    }
    assert_eq!(store.balance(&pid()), before);
    assert_eq!(store.entries(&pid()).len(), 2);
}
