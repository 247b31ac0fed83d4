//! The local runner: provisions `template.yaml`'s resources on a local emulator and serves the
//! template's functions (HTTP routes, queue consumers, schedules) by calling the same
//! `App::handle` that runs in Lambda.

pub mod apigw;
pub mod client;
pub mod provision;
pub mod template;

/// Issuer and audience of development tokens; the local values of the template's
/// `JwtIssuer` and `JwtAudience` parameters.
pub const LOCAL_ISSUER: &str = "loyalty-engine-local";
pub const LOCAL_AUDIENCE: &str = "loyalty-engine";
