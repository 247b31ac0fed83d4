//! One integration-test binary (one link of the SDK), one module per area.
//! Every test creates its own fresh resources on the local emulator.
mod moto_fidelity;
mod provisioning;
mod local_runner;
mod authz;
mod participants;
mod batches;
mod claims;
mod ledger_check;
mod claim_mocks;
mod simulation;
