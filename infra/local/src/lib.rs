//! The local runner: provisions `template.yaml`'s resources on a local emulator and serves the
//! template's functions (HTTP routes, queue consumers, schedules) by calling the same
//! `App::handle` that runs in Lambda.

pub mod apigw;
pub mod client;
pub mod jwt;
pub mod openapi;
pub mod provision;
pub mod registry;
pub mod routes;
pub mod runtime;
pub mod schedule;
pub mod seed;
pub mod server;
pub mod template;

#[cfg(test)]
mod iam_policy_tests;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod protection_tests;
pub mod webhooks;

/// Issuer and audience of development tokens; the local values of the template's
/// `JwtIssuer` and `JwtAudience` parameters.
pub const LOCAL_ISSUER: &str = "loyalty-engine-local";
pub const LOCAL_AUDIENCE: &str = "loyalty-engine";
/// The local value of the template's `PasscodeHmacKey` parameter. Only local passcodes are
/// hashed with it; `./dev passcode PHONE` reads the codes from the emulator anyway.
pub const LOCAL_PASSCODE_KEY: &str = "loyalty-engine-local-passcode-key-not-a-secret";

/// An SDK configuration for the emulator at `endpoint`. Credentials and region come from
/// the usual environment variables when set, else the emulator's `test` defaults.
pub async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_string());
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".to_string());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".to_string());
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            key,
            secret,
            None,
            None,
            "loyalty-local",
        ))
        .load()
        .await
}
