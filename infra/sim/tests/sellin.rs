//! Sell-in in the simulator, driven on its own: every path with the invariants holding, and
//! a store with a planted bug caught.

use loyalty_platform::memory::sellin::SellInBug;
use loyalty_platform::memory::MemorySellIn;
use loyalty_sim::sellin::{SellIn, SellInOp};
use loyalty_sim::world::World;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn run(sell_in: SellIn, steps: usize) -> Result<Vec<&'static str>, String> {
    run_blocking(sell_in, steps, 0)
}

/// Runs `steps` imports; the first `blocked` participants are blocked for the first half
/// and unblocked for the second.
fn run_blocking(
    mut sell_in: SellIn,
    steps: usize,
    blocked: usize,
) -> Result<Vec<&'static str>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let world = World::generate(&mut rng, 6, 2);
    sell_in.register(&world);
    let set_blocked = |sell_in: &mut SellIn, block: bool| {
        for actor in &world.actors[..blocked] {
            let p = &actor.participant;
            sell_in.store.ledger().set_active(p, !block);
            if block {
                sell_in.blocked.insert(p.clone());
            } else {
                sell_in.blocked.remove(p);
            }
        }
    };
    set_blocked(&mut sell_in, true);
    let now = loyalty_sim::start();
    let mut labels = Vec::new();
    for step in 0..steps {
        if step == steps / 2 {
            set_blocked(&mut sell_in, false);
        }
        let op = [
            SellInOp::Fresh,
            SellInOp::Same,
            SellInOp::Changed,
            SellInOp::Retried,
        ][step % 4];
        let (described, label, result) = sell_in.apply(op, &mut rng, &world, now);
        result.map_err(|v| format!("step {step}: {described}: {v}"))?;
        labels.push(label);
    }
    sell_in.check_everything(&world)?;
    Ok(labels)
}

#[test]
fn fresh_repeated_changed_and_retried_imports_never_count_a_line_twice() {
    let labels = run(SellIn::new(), 400).expect("every invariant holds");
    assert!(labels.contains(&"sell-in imported"));
    assert!(labels.contains(&"sell-in line changed"));
}

#[test]
fn a_store_that_ignores_fingerprints_is_caught() {
    let buggy = SellIn::with_store(MemorySellIn::with_planted_bug(SellInBug::IgnoreFingerprint));
    let failure = run(buggy, 400).expect_err("the bug is caught");
    assert!(failure.contains("sell-in changed"), "{failure}");
}

#[test]
fn blocked_participants_lines_are_credited_nothing_until_unblocked_and_then_once() {
    let labels = run_blocking(SellIn::new(), 400, 3).expect("every invariant holds");
    assert!(labels.contains(&"sell-in imported"));
}

#[test]
fn a_store_that_ignores_a_block_is_caught() {
    let buggy = SellIn::with_store(MemorySellIn::with_planted_bug(SellInBug::IgnoreStanding));
    let failure = run_blocking(buggy, 400, 3).expect_err("the bug is caught");
    assert!(
        failure.contains("expected ParticipantNotActive"),
        "{failure}"
    );
}
