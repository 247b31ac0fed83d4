//! DynamoDB implementations of the domain ports, one module per area.

pub mod claims;
pub mod codes;
pub mod ledger;
pub mod participants;
