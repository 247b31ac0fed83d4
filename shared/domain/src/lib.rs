//! The pure domain of Loyalty Engine.
//!
//! Nothing here knows about AWS, HTTP or Lambda. Business rules are plain functions and
//! types; the outside world is reached only through the small traits in [`ports`], which
//! the `loyalty-platform` crate implements over DynamoDB, SQS and S3.

pub mod auth;
pub mod error;
pub mod ids;
pub mod phone;
pub mod points;
pub mod ports;
pub mod redact;

pub use error::{Classified, InfraError, Kind};
pub use points::Points;

// Feature modules. Each is owned by one feature; see docs/architecture.md.
pub mod action;
pub mod batch;
pub mod cashback;
pub mod challenge;
pub mod claim;
pub mod code;
pub mod earning;
pub mod fraud;
pub mod ledger;
pub mod outbox;
pub mod participant;
pub mod passcode;
pub mod review;
pub mod sellin;
pub mod settings;
pub mod zone;
