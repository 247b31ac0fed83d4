//! SDK clients, built once per process from one shared `SdkConfig`.

use crate::config::Env;

/// Loads region, credentials and endpoint the standard way (`AWS_ENDPOINT_URL` included).
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

pub fn dynamodb(aws: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(aws)
}

pub fn sqs(aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(aws)
}

/// S3 needs path-style addressing against a local emulator (`S3_FORCE_PATH_STYLE=true`).
pub fn s3(aws: &aws_config::SdkConfig, env: &Env) -> aws_sdk_s3::Client {
    let path_style = env
        .optional("S3_FORCE_PATH_STYLE")
        .is_some_and(|v| v == "true");
    let config = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
