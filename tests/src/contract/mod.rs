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
pub mod passcodes;
pub mod reviews;
pub mod sellin;
pub mod settings;

/// One `#[tokio::test]` per case of a contract suite, for the harness factory given:
/// `contract_cases!(module, harness; case, ..)` runs `contract::module::case(harness().await)`.
/// Each suite's macro lists its cases once and hands them here.
#[macro_export]
macro_rules! contract_cases {
    ($module:ident, $harness:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contract::$module::$case($harness().await).await
            }
        )*
    };
}
