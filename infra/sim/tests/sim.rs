//! The simulator passes on a fixed seed, replays exactly, and catches planted bugs.

use loyalty_platform::memory::claims::PlantedBug;
use loyalty_sim::{run, Config};

const SEED: u64 = 20_261_122;

#[test]
fn a_fixed_seed_runs_a_few_thousand_operations_with_every_invariant_holding() {
    let summary = run(&Config::new(SEED, 4_000)).unwrap_or_else(|f| panic!("{f}"));
    // The run exercised what it claims to: commits, refusals, replays and every fault.
    for answer in [
        "accepted",
        "pending_review",
        "replayed",
        "already_claimed",
        "unknown",
        "bad_input",
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
    assert_eq!(summary.outbox_records as u64, summary.claims_committed);
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
fn a_store_that_credits_without_the_programme_side_is_caught_at_the_first_claim() {
    let failure = run(&with_bug(PlantedBug::OneSided)).expect_err("the bug must be caught");
    assert!(
        failure.violation.contains("double entry broken"),
        "{failure}"
    );
    assert!(failure.step < 50, "{failure}");
}
