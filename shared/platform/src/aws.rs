//! SDK clients, built once per process from one shared `SdkConfig`.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use loyalty_domain::InfraError;

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

pub fn sns(aws: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(aws)
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

/// The one shape of SDK-error classification, shared by every service's classifier
/// ([`crate::dynamo::classify`], [`classify_s3`]). The SDK's own failures are matched on its
/// variants: a timeout, a dispatch failure (connection refused or reset) and a response that
/// could not be read are retryable; a request that could not even be built is our bug. A
/// service error is converted into the service-wide error enum `S` and `retryable` decides
/// by its variant; an error `retryable` does not know is retryable only with a 5xx status
/// (the service failed), otherwise it is a bug in our request (a validation error).
pub fn classify_with<E, S>(
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
    retryable: impl FnOnce(&S) -> bool,
) -> InfraError
where
    E: Into<S> + std::error::Error + 'static,
    S: ProvideErrorMetadata + std::fmt::Display,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            InfraError::retryable(operation, DisplayErrorContext(&err).to_string())
        }
        SdkError::ServiceError(context) => {
            let status = context.raw().status();
            let service: S = context.into_err().into();
            // The variant and its message ("ThrottlingException: ..."), or for an unmodelled
            // error its code ("unhandled error (ValidationException)") and then its message.
            let mut message = service.to_string();
            if let Some(detail) = service.message().filter(|m| !message.contains(m)) {
                message = format!("{message}: {detail}");
            }
            let message = format!("{message} (HTTP {})", status.as_u16());
            if retryable(&service) || status.is_server_error() {
                InfraError::retryable(operation, message)
            } else {
                InfraError::permanent(operation, message)
            }
        }
        // A request the SDK could not build, or a failure this SDK version does not name.
        other => InfraError::permanent(operation, DisplayErrorContext(&other).to_string()),
    }
}

/// The classifier of S3 failures, of the same shape as [`crate::dynamo::classify`]: `SlowDown`
/// and other throttling answers are 503s, so the 5xx rule makes them retryable; every modelled
/// S3 error (`NoSuchBucket`, ...) is a bug in our request or configuration.
pub fn classify_s3<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> InfraError
where
    E: Into<aws_sdk_s3::Error> + std::error::Error + 'static,
{
    classify_with(operation, err, |_: &aws_sdk_s3::Error| false)
}

/// The classifier of SQS failures, of the same shape as [`crate::dynamo::classify`]:
/// `RequestThrottled`, `KmsThrottled` and `OverLimit` are retryable, as is any 5xx; every
/// other modelled SQS error (`QueueDoesNotExist`, `InvalidMessageContents`, ...) is a bug in
/// our request or configuration.
pub fn classify_sqs<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> InfraError
where
    E: Into<aws_sdk_sqs::Error> + std::error::Error + 'static,
{
    classify_with(operation, err, |e: &aws_sdk_sqs::Error| {
        matches!(
            e,
            aws_sdk_sqs::Error::RequestThrottled(_)
                | aws_sdk_sqs::Error::KmsThrottled(_)
                | aws_sdk_sqs::Error::OverLimit(_)
        )
    })
}

/// `Throttled`, `KmsThrottling` and `InternalError` are retryable, as is any 5xx; every other
/// modelled SNS error (`InvalidParameter`, `OptedOut`, `AuthorizationError`, ...) is a bug in
/// our request or configuration, or a number that cannot take SMS.
pub fn classify_sns<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> InfraError
where
    E: Into<aws_sdk_sns::Error> + std::error::Error + 'static,
{
    classify_with(operation, err, |e: &aws_sdk_sns::Error| {
        matches!(
            e,
            aws_sdk_sns::Error::ThrottledException(_)
                | aws_sdk_sns::Error::KmsThrottlingException(_)
                | aws_sdk_sns::Error::InternalErrorException(_)
        )
    })
}
