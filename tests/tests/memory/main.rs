//! Tests that need no emulator: the port contracts on the memory adapters, and handler
//! tests of functions wired to them, fed from the sample events in `events/`.
//!
//! `cargo nextest run -p loyalty-tests --test memory`

mod code_claim;

mod contract {
    mod claims {
        loyalty_tests::claim_store_contract!(loyalty_tests::contract::claims::memory);
    }
}
