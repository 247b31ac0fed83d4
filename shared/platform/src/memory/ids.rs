//! Deterministic ids: [`SeededIds`] implements the domain's [`IdSource`] port for handler
//! tests and simulations, where [`loyalty_domain::ports::RandomIds`] would make every run
//! different.

use std::sync::atomic::{AtomicU64, Ordering};

use loyalty_domain::ports::IdSource;

/// `prefix-` and 16 hex digits, drawn from a seed: the same seed gives the same sequence.
#[derive(Debug)]
pub struct SeededIds {
    seed: u64,
    next: AtomicU64,
}

impl SeededIds {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            next: AtomicU64::new(0),
        }
    }

    /// How many ids have been drawn.
    pub fn drawn(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

/// SplitMix64: a bijection of u64, so distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdSource for SeededIds {
    fn new_id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:016x}", mix(self.seed.wrapping_add(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_distinct_ids() {
        let (a, b) = (SeededIds::new(7), SeededIds::new(7));
        let first: Vec<String> = (0..100).map(|_| a.new_id("o")).collect();
        let again: Vec<String> = (0..100).map(|_| b.new_id("o")).collect();
        assert_eq!(first, again);
        let unique: std::collections::BTreeSet<&String> = first.iter().collect();
        assert_eq!(unique.len(), 100);
        assert!(first[0].starts_with("o-") && first[0].len() == 18);
        assert_ne!(SeededIds::new(8).new_id("o"), first[0]);
        assert_eq!(a.drawn(), 100);
    }
}
