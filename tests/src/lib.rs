//! Support for the integration tests: an SDK configuration pointed at the local emulator.
//!
//! The emulator's address comes from `LOCAL_AWS_ENDPOINT` (the test command starts moto and
//! sets it); tests create their own fresh resources, so they can run in parallel.

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4567";

pub fn endpoint() -> String {
    std::env::var("LOCAL_AWS_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string())
}

/// An SDK configuration for the local emulator, with static test credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "loyalty-tests"))
        .load()
        .await
}

/// A name no other test uses, for fresh tables and queues.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
