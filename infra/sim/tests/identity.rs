//! Phones, passcodes and invitations in the simulator: a fixed seed exercises every path with
//! every invariant holding, and a participant store that lets a passcode be tried too often,
//! a proof be used twice or an invitation guesser outrun its limit is caught, replaying
//! exactly from its seed and step.

use loyalty_platform::memory::participants::PlantedBug;
use loyalty_sim::{run, Config};

const SEED: u64 = 20_261_122;

fn with_bug(bug: PlantedBug, ops: u64) -> Config {
    Config {
        participants_bug: Some(bug),
        ..Config::new(SEED, ops)
    }
}

#[test]
fn a_fixed_seed_proves_phones_registers_adopts_and_locks_guessers_with_every_invariant_holding() {
    let summary = run(&Config::new(SEED, 8_000)).unwrap_or_else(|f| panic!("{f}"));
    for answer in [
        "passcode sent to a registered phone",
        "passcode sent to an unknown phone",
        "passcode requests limited",
        "phone proven",
        "passcode_invalid",
        "registered",
        "phone changed",
        "member adopted",
        "phone_not_proven",
        "phone_taken",
        "invitation_not_found",
        "invitation guesses locked",
    ] {
        assert!(
            summary.outcomes.get(answer).copied().unwrap_or(0) > 0,
            "no {answer} answers in {summary:?}"
        );
    }
}

#[test]
fn a_store_that_does_not_count_passcode_tries_is_caught_and_replays_at_the_same_step() {
    let first = run(&with_bug(PlantedBug::TriesNotCounted, 8_000)).expect_err("the bug is caught");
    assert!(
        first
            .violation
            .contains("let try 6 at one passcode through"),
        "caught as a sixth try: {first}"
    );
    let again = run(&with_bug(PlantedBug::TriesNotCounted, first.step + 1))
        .expect_err("the replay fails too");
    assert_eq!((again.step, again.violation), (first.step, first.violation));
}

#[test]
fn a_store_that_leaves_a_used_proof_in_place_is_caught() {
    let failure =
        run(&with_bug(PlantedBug::ProofsNotConsumed, 8_000)).expect_err("the bug is caught");
    assert!(
        failure.violation.contains("without a live proof"),
        "caught as a phone taken on a used proof: {failure}"
    );
}

#[test]
fn a_store_that_ignores_the_invitation_guess_limits_is_caught() {
    let failure =
        run(&with_bug(PlantedBug::GuessesNotLimited, 8_000)).expect_err("the bug is caught");
    assert!(
        failure
            .violation
            .contains("wrong invitation codes answered in one window"),
        "caught as a guesser past its limit: {failure}"
    );
}
