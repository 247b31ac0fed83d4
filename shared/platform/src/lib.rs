//! Adapters and edges between the pure domain and AWS.
//!
//! - [`config`]: configuration read once at init, with clear errors.
//! - [`telemetry`]: JSON tracing; [`metrics`]: business and operational metrics (EMF).
//! - [`aws`]: SDK clients built once from one `SdkConfig`.
//! - [`http`]: the HTTP edge: verified claims, JSON bodies, `application/problem+json`.
//! - [`dynamo`]: attribute helpers and the one classifier of DynamoDB errors.
//! - [`tx`]: the one `TransactWriteItems` builder, whose refusals are decoded by tag.
//! - [`stores`]: the DynamoDB adapters of the domain ports; [`memory`]: the same ports in
//!   memory, for handler tests and the simulator (one contract suite runs against both).

pub mod aws;
pub mod config;
pub mod dynamo;
pub mod http;
pub mod idempotency;
pub mod memory;
pub mod metrics;
pub mod stores;
pub mod telemetry;
pub mod tx;
pub mod warm;

pub use loyalty_domain as domain;
pub use tx::{Refused, Tx};
