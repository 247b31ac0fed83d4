//! Adapters and edges between the pure domain and AWS.
//!
//! - [`config`]: configuration read once at init, with clear errors.
//! - [`telemetry`]: JSON tracing.
//! - [`aws`]: SDK clients built once from one `SdkConfig`.
//! - [`http`]: the HTTP edge: verified claims, JSON bodies, `application/problem+json`.
//! - [`dynamo`]: attribute helpers and the one classifier of DynamoDB errors.
//! - [`tx`]: the one `TransactWriteItems` builder, whose refusals are decoded by tag.

pub mod aws;
pub mod config;
pub mod dynamo;
pub mod http;
pub mod idempotency;
pub mod stores;
pub mod telemetry;
pub mod tx;

pub use loyalty_domain as domain;
pub use tx::{Refused, Tx};
