//! The simulator passes on a fixed seed, replays exactly, and catches planted bugs.

use loyalty_platform::memory::cashback::PlantedBug as CashbackBug;
use loyalty_platform::memory::claims::PlantedBug;
use loyalty_sim::{run, Config};

const SEED: u64 = 20_261_122;

/// 8,000 operations: budgets gather dry shards, so fewer credits are held over budget and
/// the run needs this many for an approval of a held one to come up.
#[test]
fn a_fixed_seed_runs_a_few_thousand_operations_with_every_invariant_holding() {
    let summary = run(&Config::new(SEED, 8_000)).unwrap_or_else(|f| panic!("{f}"));
    // The run exercised what it claims to: commits, refusals, replays and every fault.
    for answer in [
        "accepted",
        "pending_review",
        "replayed",
        "already_claimed",
        "unknown",
        "bad_input",
        "action credited",
        "action replayed",
        "period_limit_reached",
        "participant_limit_reached",
        "idempotency_key_reused",
        "reporter_not_allowed",
    ] {
        assert!(
            summary.outcomes.get(answer).copied().unwrap_or(0) > 0,
            "no {answer} answers in {summary}"
        );
    }
    for fault in [
        "contended",
        "crash_after_commit",
        "throttled_read",
        "throttled_write",
    ] {
        assert!(
            summary.faults.get(fault).copied().unwrap_or(0) > 0,
            "no {fault} faults in {summary}"
        );
    }
    for answer in [
        "review approved",
        "review rejected",
        "review_already_decided",
        "review_not_found",
        "action held for review",
        "held action approved",
        "held action rejected",
        "budget_exhausted",
        "budget topped up",
        "budget top-up replayed",
        "sell-in race: line_changed",
        "sell-in change refused",
        "challenge completed",
        "source already counted",
        "challenge out of budget",
        "source counts for no challenge",
        "challenge race: progress moved",
        "challenge race: source counted",
        "challenge topped up",
        "challenge top-up replayed",
    ] {
        assert!(
            summary.outcomes.get(answer).copied().unwrap_or(0) > 0,
            "no {answer} answers in {summary}"
        );
    }
    for fault in [
        "throttled_failure_count",
        "failure_count_answer_lost",
        "review_conflict",
    ] {
        assert!(
            summary.faults.get(fault).copied().unwrap_or(0) > 0,
            "no {fault} faults in {summary}"
        );
    }
    assert_eq!(
        summary.outbox_records as u64,
        summary.claims_committed + summary.review_decisions
    );
}

#[test]
fn the_same_seed_replays_the_same_run_and_another_seed_does_not() {
    let a = run(&Config::new(7, 2_000)).unwrap_or_else(|f| panic!("{f}"));
    let b = run(&Config::new(7, 2_000)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(a, b);
    let c = run(&Config::new(8, 2_000)).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(a.outcomes, c.outcomes);
}

fn with_bug(bug: PlantedBug) -> Config {
    Config {
        planted_bug: Some(bug),
        ..Config::new(SEED, 4_000)
    }
}

#[test]
fn a_store_that_credits_twice_is_caught_at_the_first_claim_and_replays_at_the_same_step() {
    let failure = run(&with_bug(PlantedBug::CreditTwice)).expect_err("the bug must be caught");
    assert!(
        failure.violation.contains("is not the sum of its entries"),
        "{failure}"
    );
    assert!(failure.to_string().contains(&format!(
        "./dev sim --seed {SEED} --ops {}",
        failure.step + 1
    )));
    assert!(!failure.history.is_empty() && failure.history.len() <= 20);
    let again = run(&with_bug(PlantedBug::CreditTwice)).expect_err("the bug must be caught");
    assert_eq!(
        (again.step, again.violation),
        (failure.step, failure.violation)
    );
}

#[test]
fn a_store_that_lets_a_claimed_code_be_claimed_again_is_caught() {
    let failure = run(&with_bug(PlantedBug::ReclaimableCodes)).expect_err("the bug must be caught");
    assert!(
        [
            "expected Replay",
            "expected AlreadyClaimed",
            "credited twice"
        ]
        .iter()
        .any(|symptom| failure.violation.contains(symptom)),
        "{failure}"
    );
}

#[test]
fn a_claim_store_that_ignores_a_block_is_caught() {
    let failure = run(&with_bug(PlantedBug::IgnoreStanding)).expect_err("the bug must be caught");
    assert!(
        ["expected NotActive", "is blocked but earned"]
            .iter()
            .any(|symptom| failure.violation.contains(symptom)),
        "{failure}"
    );
}

#[test]
fn a_fixed_seed_exercises_every_partner_order_path_with_every_invariant_holding() {
    let summary = run(&Config::new(SEED, 20_000)).unwrap_or_else(|f| panic!("{f}"));
    for answer in [
        "order_credited",
        "order_capped",
        "order_cap_reached",
        "order_no_cashback",
        "order_delivered",
        "order_reversed",
        "order_released",
        "order_clawed_back",
        "order_closed",
        "order_no_change",
        "order_unknown",
        "order_not_releasable",
        "order_participant_not_active",
        "participant_not_active",
        "block participant",
        "unblock participant",
        "spent",
    ] {
        assert!(
            summary.outcomes.get(answer).copied().unwrap_or(0) > 0,
            "no {answer} answers in {summary}"
        );
    }
    for op in [
        "order_out_of_order",
        "order_replayed",
        "order_redelivered",
        "order_returned",
    ] {
        assert!(
            summary.ops_by_kind.get(op).copied().unwrap_or(0) > 0,
            "no {op} operations in {summary}"
        );
    }
    assert!(summary.cashback_entries > 0 && summary.cashback_events > summary.cashback_orders);
}

fn with_cashback_bug(bug: CashbackBug) -> Config {
    Config {
        cashback_bug: Some(bug),
        ..Config::new(SEED, 20_000)
    }
}

#[test]
fn a_cashback_store_that_ignores_the_monthly_cap_is_caught() {
    let failure =
        run(&with_cashback_bug(CashbackBug::IgnoreCap)).expect_err("the bug must be caught");
    assert!(
        failure.violation.contains("expected Result") || failure.violation.contains("cap counter"),
        "{failure}"
    );
}

#[test]
fn a_cashback_store_that_applies_a_replayed_event_again_is_caught() {
    let failure =
        run(&with_cashback_bug(CashbackBug::ForgetReplays)).expect_err("the bug must be caught");
    assert!(failure.violation.contains("expected Result"), "{failure}");
}

#[test]
fn a_store_that_credits_without_the_programme_side_is_caught_at_the_first_claim() {
    let failure = run(&with_bug(PlantedBug::OneSided)).expect_err("the bug must be caught");
    assert!(
        failure.violation.contains("double entry broken"),
        "{failure}"
    );
    assert!(failure.step < 50, "{failure}");
}

#[test]
fn a_store_whose_rejections_credit_the_held_points_is_caught_and_replays_at_the_same_step() {
    let first = run(&with_bug(PlantedBug::RejectionCredits)).expect_err("the bug is caught");
    let last = first.history.last().expect("a history");
    assert!(
        last.contains(": rejected ") && first.violation.contains("the model expects"),
        "caught at the rejection: {first}"
    );
    assert!(first.to_string().contains(&format!(
        "replay exactly: ./dev sim --seed {SEED} --ops {}",
        first.step + 1
    )));
    let again = run(&Config {
        ops: first.step + 1,
        ..with_bug(PlantedBug::RejectionCredits)
    })
    .expect_err("the replay fails too");
    assert_eq!((again.step, again.violation), (first.step, first.violation));
}
