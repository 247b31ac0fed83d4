//! One integration-test binary (one link of the SDK), one module per area.
//! Every test creates its own fresh resources on the local emulator.
mod accrual;
mod authz;
mod batches;
mod cashback;
mod claim_mocks;
mod claims;
mod contract;
mod docs;
mod double_entry;
mod ledger_check;
mod local_runner;
mod moto_fidelity;
mod participants;
mod provisioning;
mod simulation;
mod transactions;
