//! Helpers shared by the DynamoDB stores: attribute conversion, SDK-error classification,
//! and opaque pagination cursors.

use std::collections::HashMap;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use loyalty_domain::InfraError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn corrupt(attr: &str, what: &str) -> InfraError {
    InfraError::permanent(
        "decode item",
        format!("attribute {attr} is missing or not {what}"),
    )
}

/// Typed reads from an item. A missing or mistyped attribute is an infrastructure error:
/// our own writes put it there, so its absence is a bug or corruption, never user input.
pub trait ItemExt {
    fn string(&self, attr: &str) -> Result<&str, InfraError>;
    fn opt_string(&self, attr: &str) -> Option<&str>;
    fn number(&self, attr: &str) -> Result<u64, InfraError>;
    fn opt_number(&self, attr: &str) -> Result<Option<u64>, InfraError>;
    fn signed(&self, attr: &str) -> Result<i64, InfraError>;
}

impl ItemExt for Item {
    fn string(&self, attr: &str) -> Result<&str, InfraError> {
        self.opt_string(attr)
            .ok_or_else(|| corrupt(attr, "a string"))
    }

    fn opt_string(&self, attr: &str) -> Option<&str> {
        self.get(attr)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }

    fn number(&self, attr: &str) -> Result<u64, InfraError> {
        self.opt_number(attr)?
            .ok_or_else(|| corrupt(attr, "a number"))
    }

    fn opt_number(&self, attr: &str) -> Result<Option<u64>, InfraError> {
        match self.get(attr) {
            None => Ok(None),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .map(Some)
                .ok_or_else(|| corrupt(attr, "an unsigned number")),
        }
    }

    fn signed(&self, attr: &str) -> Result<i64, InfraError> {
        self.get(attr)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt(attr, "a number"))
    }
}

/// Classifies a DynamoDB failure that the caller did not handle as a business outcome: the one
/// classifier of DynamoDB errors. The SDK's transport failures are classified by
/// [`crate::aws::classify_with`]; a service error is converted into the service-wide
/// [`aws_sdk_dynamodb::Error`] and matched on its variants:
///
/// | error | retryable | HTTP edge |
/// |---|---|---|
/// | timeout, dispatch failure, unreadable response | yes | 503 + Retry-After |
/// | `ProvisionedThroughputExceeded`, `Throttling`, `RequestLimitExceeded`, `InternalServerError` | yes | 503 + Retry-After |
/// | `TransactionConflict`, `TransactionInProgress`, `ReplicatedWriteConflict` | yes | 503 + Retry-After |
/// | `IdempotentParameterMismatch` (logged: a fresh request succeeds) | yes | 503 + Retry-After |
/// | any unmodelled error with a 5xx status | yes | 503 + Retry-After |
/// | anything else (`ValidationException`, `ResourceNotFound`, ...): a bug in our request | no | 500 |
///
/// The message keeps the error code and message, so the 500 log says what was wrong.
pub fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> InfraError
where
    E: Into<aws_sdk_dynamodb::Error> + std::error::Error + 'static,
{
    crate::aws::classify_with(operation, err, |e: &aws_sdk_dynamodb::Error| {
        retryable_service_error(operation, e)
    })
}

fn retryable_service_error(operation: &'static str, err: &aws_sdk_dynamodb::Error) -> bool {
    use aws_sdk_dynamodb::Error as E;
    match err {
        E::ProvisionedThroughputExceededException(_)
        | E::ThrottlingException(_)
        | E::RequestLimitExceeded(_)
        | E::InternalServerError(_)
        | E::TransactionConflictException(_)
        | E::TransactionInProgressException(_)
        | E::ReplicatedWriteConflictException(_) => true,
        // A ClientRequestToken reused with other parameters within its ten minutes: a retry
        // of the caller's request builds a fresh request and succeeds, so never a 500.
        E::IdempotentParameterMismatchException(e) => {
            tracing::warn!(
                operation,
                error = %e,
                "idempotent parameter mismatch: a client request token was reused with other parameters"
            );
            true
        }
        _ => false,
    }
}

/// Every item a query matches, across all its pages.
pub async fn query_all(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    operation: &'static str,
) -> Result<Vec<Item>, InfraError> {
    query
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(operation, e))
}

/// BatchGetItem's limit of keys per request.
pub const MAX_BATCH_GET_KEYS: usize = 100;

/// Every item of `keys` in `table` that exists, read consistently with `BatchGetItem` (up to
/// [`MAX_BATCH_GET_KEYS`] a request; unprocessed keys are asked for again).
pub async fn batch_get_all(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    operation: &'static str,
) -> Result<Vec<Item>, InfraError> {
    let mut items = Vec::new();
    for chunk in keys.chunks(MAX_BATCH_GET_KEYS) {
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| InfraError::permanent(operation, e.to_string()))?,
        );
        while let Some(wanted) = request.take() {
            let mut out = client
                .batch_get_item()
                .request_items(table, wanted)
                .send()
                .await
                .map_err(|e| classify(operation, e))?;
            items.extend(
                out.responses
                    .as_mut()
                    .and_then(|r| r.remove(table))
                    .unwrap_or_default(),
            );
            request = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys().is_empty());
        }
    }
    Ok(items)
}

/// A `LastEvaluatedKey` as an opaque, URL-safe cursor.
pub fn encode_cursor(last_key: &Item) -> String {
    let flat: HashMap<&str, &str> = last_key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k.as_str(), s.as_str())))
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&flat).expect("string map serialises"))
}

/// Decodes a cursor, accepting it only if its partition key is `expected_pk`, so a cursor
/// forged or copied from another account cannot reach into someone else's partition, and
/// only if it carries exactly the non-empty `keys` the listing's index needs, so a tampered
/// one is refused here rather than by DynamoDB (a 500).
pub fn decode_cursor(cursor: &str, expected_pk: &str, keys: &[&str]) -> Option<Item> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let flat: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    if flat.get("pk").map(String::as_str) != Some(expected_pk)
        || flat.len() != keys.len()
        || !keys
            .iter()
            .all(|k| flat.get(*k).is_some_and(|v| !v.is_empty()))
    {
        return None;
    }
    Some(flat.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_only_within_its_own_partition() {
        let last = HashMap::from([
            ("pk".to_string(), s("ACCOUNT#p1")),
            ("sk".to_string(), s("ENTRY#e1")),
        ]);
        let cursor = encode_cursor(&last);
        let keys = ["pk", "sk"];
        assert_eq!(decode_cursor(&cursor, "ACCOUNT#p1", &keys), Some(last));
        assert_eq!(decode_cursor(&cursor, "ACCOUNT#p2", &keys), None);
        assert_eq!(decode_cursor("not-base64!", "ACCOUNT#p1", &keys), None);
    }

    #[test]
    fn a_cursor_without_exactly_the_index_keys_is_refused() {
        let cursor = |attrs: &[(&str, &str)]| {
            encode_cursor(&attrs.iter().map(|(k, v)| (k.to_string(), s(*v))).collect())
        };
        let keys = ["pk", "sk", "lsi1sk"];
        let fits = cursor(&[("pk", "A#1"), ("sk", "E#1"), ("lsi1sk", "t#1")]);
        assert!(decode_cursor(&fits, "A#1", &keys).is_some());
        for bad in [
            cursor(&[("pk", "A#1")]),
            cursor(&[("pk", "A#1"), ("sk", "E#1")]),
            cursor(&[("pk", "A#1"), ("sk", "E#1"), ("lsi1sk", "")]),
            cursor(&[("pk", "A#1"), ("sk", "E#1"), ("other", "t#1")]),
            cursor(&[("pk", "A#1"), ("sk", "E#1"), ("lsi1sk", "t#1"), ("x", "y")]),
        ] {
            assert_eq!(decode_cursor(&bad, "A#1", &keys), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod classify_tests {
    use aws_sdk_dynamodb::error::ConnectorError;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::ThrottlingException;
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::tx::mock;

    async fn get_item_failing_with(rule: aws_smithy_mocks::Rule) -> InfraError {
        let client = mock::client(&[&rule]);
        client
            .get_item()
            .table_name("t")
            .set_key(Some(key("A", "X")))
            .send()
            .await
            .map_err(|e| classify("read item", e))
            .unwrap_err()
    }

    #[test]
    fn a_timeout_is_retryable() {
        let err: SdkError<GetItemError, HttpResponse> = SdkError::timeout_error("took too long");
        let classified = classify("read item", err);
        assert!(classified.retryable);
        assert_eq!(classified.operation, "read item");
    }

    #[test]
    fn a_dispatch_failure_is_retryable() {
        let err: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert!(classify("read item", err).retryable);
    }

    #[tokio::test]
    async fn throttling_is_retryable() {
        let err = get_item_failing_with(mock!(Client::get_item).then_error(|| {
            GetItemError::ThrottlingException(
                ThrottlingException::builder().message("slow down").build(),
            )
        }))
        .await;
        assert!(err.retryable, "{err:?}");
        assert!(
            err.message.contains("ThrottlingException: slow down"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_validation_error_is_a_permanent_bug_with_its_detail() {
        let err = get_item_failing_with(
            mock!(Client::get_item)
                .sequence()
                .http_status(
                    400,
                    Some(
                        r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"The provided key element does not match the schema"}"#
                            .into(),
                    ),
                )
                .build(),
        )
        .await;
        assert!(!err.retryable, "{err:?}");
        assert!(err.message.contains("ValidationException"), "{err:?}");
        assert!(
            err.message
                .contains("The provided key element does not match the schema"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_unmodelled_error_with_a_5xx_status_is_retryable() {
        let err = get_item_failing_with(
            mock!(Client::get_item)
                .sequence()
                .http_status(
                    503,
                    Some(r#"{"__type":"ServiceUnavailable","message":"try again"}"#.into()),
                )
                .build(),
        )
        .await;
        assert!(err.retryable, "{err:?}");
    }
}
