//! Contract suites: one per domain port, each an `async fn` per case over a harness, run
//! once per adapter (memory in `tests/tests/memory/`, DynamoDB on the emulator in
//! `tests/tests/integration/contract.rs`).

pub mod actions;
pub mod answers;
pub mod batches;
pub mod cashback;
pub mod challenges;
pub mod claims;
pub mod ledger_reader;
pub mod participants;
pub mod reviews;
pub mod sellin;
pub mod settings;
