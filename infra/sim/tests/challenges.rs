//! Challenges in the simulator: a store that counts a source again is caught, and the
//! failure replays exactly from its seed and step.

use loyalty_platform::memory::challenges::ChallengesBug;
use loyalty_sim::{run, Config};

const SEED: u64 = 20_261_122;

fn with_bug(ops: u64) -> Config {
    Config {
        challenges_bug: Some(ChallengesBug::IgnoreMarkers),
        ..Config::new(SEED, ops)
    }
}

#[test]
fn a_challenge_store_that_counts_a_source_again_is_caught_and_replays_at_the_same_step() {
    let first = run(&with_bug(8_000)).expect_err("the bug is caught");
    assert!(
        first.violation.contains("already_counted: true")
            || first.violation.contains("SourceCounted"),
        "caught as a source counted again: {first}"
    );
    assert!(first.to_string().contains(&format!(
        "replay exactly: ./dev sim --seed {SEED} --ops {}",
        first.step + 1
    )));
    let again = run(&with_bug(first.step + 1)).expect_err("the replay fails too");
    assert_eq!((again.step, again.violation), (first.step, first.violation));
}

#[test]
fn a_challenge_store_that_ignores_a_block_is_caught() {
    let config = Config {
        challenges_bug: Some(ChallengesBug::IgnoreStanding),
        ..Config::new(SEED, 20_000)
    };
    let failure = run(&config).expect_err("the bug is caught");
    assert!(
        [
            "not_active: true",
            "ParticipantNotActive",
            "is blocked but earned"
        ]
        .iter()
        .any(|symptom| failure.violation.contains(symptom)),
        "caught as a blocked participant's source counted: {failure}"
    );
}
