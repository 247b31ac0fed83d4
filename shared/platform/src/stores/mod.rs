//! DynamoDB implementations of the domain ports, one module per area.

pub mod actions;
pub mod batch_jobs;
pub mod cashback;
pub mod challenges;
pub mod claims;
pub mod codes;
pub mod earning;
pub mod exports;
pub mod ledger;
pub mod participants;
pub mod partner_secrets;
pub mod passcodes;
pub mod profiles;
pub mod sms;
pub mod zones;
