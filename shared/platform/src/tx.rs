//! The one builder of `TransactWriteItems`.
//!
//! Each conditional item is added with the refusal it stands for: a tag of the store's own
//! small enum (`CashbackRefusal::EventSeen`, `LedgerRefusal::Overdrawn`, ...). When DynamoDB
//! cancels the transaction, its cancellation reasons come back one per item, in item order;
//! [`Tx::commit`] pairs them with the items' tags here, so that a store asks "did the
//! `EventSeen` condition fail?" and never "did item 2 fail?". Reordering items, or adding
//! one, cannot change what a refusal means. Nothing outside this module reads cancellation
//! reasons.
//!
//! Every conditional item asks for the item as it was when its condition failed
//! (`ReturnValuesOnConditionCheckFailure::AllOld`), so a refusal carries it ([`Refused::get`]).
//!
//! A cancellation is decoded as:
//! - any `ConditionalCheckFailed`: `Ok(Err(Refused))` with the tag of every failed item;
//! - only `TransactionConflict` (another transaction touched an item): a retryable
//!   [`InfraError`] from [`Tx::commit`]; a store with its own retry loop uses
//!   [`Tx::commit_reporting_conflicts`] instead, which answers `Ok(Err(Refused))` with
//!   [`Refused::is_conflict`] (and does the same for `TransactionInProgress`, the same
//!   `ClientRequestToken` still in flight);
//! - anything else (throttling, validation, an item collection too large): an `InfraError`,
//!   retryable for throttling and capacity, permanent (a bug in our request) otherwise.
//!
//! Any other failure goes through the one classifier, [`crate::dynamo::classify`].

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::builders::{
    ConditionCheckBuilder, DeleteBuilder, PutBuilder, UpdateBuilder,
};
use aws_sdk_dynamodb::types::{
    CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use loyalty_domain::InfraError;

use crate::dynamo::{classify, Item};

/// `CancellationReason.code` values (an API string field, read only here).
const CONDITION_FAILED: &str = "ConditionalCheckFailed";
const CONFLICT: &str = "TransactionConflict";
/// Reasons that mean "not now" rather than "never": the transaction may succeed if retried.
const TRANSIENT: [&str; 3] = [CONFLICT, "ThrottlingError", "ProvisionedThroughputExceeded"];

/// A `TransactWriteItems` under construction: its items, each conditional one tagged with
/// the refusal `T` its condition stands for.
#[derive(Debug, Clone)]
pub struct Tx<T> {
    items: Vec<(TransactWriteItem, Option<T>)>,
    token: Option<String>,
}

impl<T> Default for Tx<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            token: None,
        }
    }
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> InfraError {
    InfraError::permanent("build transaction", e.to_string())
}

impl<T> Tx<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, item: TransactWriteItem, refusal: Option<T>) -> &mut Self {
        self.items.push((item, refusal));
        self
    }

    /// A conditional put: `refusal` is what a failure of its condition means.
    pub fn put(&mut self, put: PutBuilder, refusal: T) -> Result<&mut Self, InfraError> {
        let put = put
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(self.push(TransactWriteItem::builder().put(put).build(), Some(refusal)))
    }

    /// A conditional update: `refusal` is what a failure of its condition means.
    pub fn update(&mut self, update: UpdateBuilder, refusal: T) -> Result<&mut Self, InfraError> {
        let update = update
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(self.push(
            TransactWriteItem::builder().update(update).build(),
            Some(refusal),
        ))
    }

    /// A condition on an item this transaction does not write.
    pub fn check(
        &mut self,
        check: ConditionCheckBuilder,
        refusal: T,
    ) -> Result<&mut Self, InfraError> {
        let check = check
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(self.push(
            TransactWriteItem::builder().condition_check(check).build(),
            Some(refusal),
        ))
    }

    /// A conditional delete: `refusal` is what a failure of its condition means.
    pub fn delete(&mut self, delete: DeleteBuilder, refusal: T) -> Result<&mut Self, InfraError> {
        let delete = delete
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(self.push(
            TransactWriteItem::builder().delete(delete).build(),
            Some(refusal),
        ))
    }

    /// A put with no condition: it cannot refuse.
    pub fn put_always(&mut self, put: PutBuilder) -> Result<&mut Self, InfraError> {
        let put = put.build().map_err(build_err)?;
        Ok(self.push(TransactWriteItem::builder().put(put).build(), None))
    }

    /// An update with no condition (a counter `ADD`): it cannot refuse.
    pub fn update_always(&mut self, update: UpdateBuilder) -> Result<&mut Self, InfraError> {
        let update = update.build().map_err(build_err)?;
        Ok(self.push(TransactWriteItem::builder().update(update).build(), None))
    }

    /// Adds the items another module built with its own tag type (the ledger's append
    /// items, an idempotency record), keeping their refusals as `T`. Their position in this
    /// transaction does not matter. A `ClientRequestToken` of `other` is not carried over.
    pub fn append<U: Into<T>>(&mut self, other: Tx<U>) -> &mut Self {
        self.items.extend(
            other
                .items
                .into_iter()
                .map(|(item, refusal)| (item, refusal.map(Into::into))),
        );
        self
    }

    /// The `ClientRequestToken`: DynamoDB treats a repeat with the same token within ten
    /// minutes as the same transaction (the SDK's retry of a request whose answer was lost).
    pub fn idempotency_token(&mut self, token: impl Into<String>) -> &mut Self {
        self.token = Some(token.into());
        self
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Writes the transaction. `Ok(Err(refused))` when conditions refused it, with the tag of
    /// every item whose condition failed. A cancellation by a conflicting transaction alone
    /// is a retryable [`InfraError`] (503 at the HTTP edge).
    pub async fn commit(
        self,
        client: &Client,
        operation: &'static str,
    ) -> Result<Result<(), Refused<T>>, InfraError> {
        self.send(client, operation, false).await
    }

    /// Like [`Self::commit`], for a store that retries contention itself: a cancellation by
    /// conflicting transactions alone, or `TransactionInProgress` (the same token still in
    /// flight), is `Ok(Err(refused))` with [`Refused::is_conflict`] and no failed condition.
    pub async fn commit_reporting_conflicts(
        self,
        client: &Client,
        operation: &'static str,
    ) -> Result<Result<(), Refused<T>>, InfraError> {
        self.send(client, operation, true).await
    }

    async fn send(
        self,
        client: &Client,
        operation: &'static str,
        report_conflicts: bool,
    ) -> Result<Result<(), Refused<T>>, InfraError> {
        let (items, tags): (Vec<_>, Vec<_>) = self.items.into_iter().unzip();
        let result = client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(self.token)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Ok(())),
            Err(err) => err,
        };
        match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => decode(
                operation,
                tags,
                cancelled.cancellation_reasons(),
                report_conflicts,
            ),
            Some(TransactWriteItemsError::TransactionInProgressException(_))
                if report_conflicts =>
            {
                Ok(Err(Refused {
                    failed: Vec::new(),
                    conflict: true,
                }))
            }
            _ => Err(classify(operation, err)),
        }
    }
}

/// Pairs the cancellation reasons with the items' tags (one reason per item, in order).
fn decode<T>(
    operation: &'static str,
    tags: Vec<Option<T>>,
    reasons: &[CancellationReason],
    report_conflicts: bool,
) -> Result<Result<(), Refused<T>>, InfraError> {
    let conflict = reasons.iter().any(|r| code(r) == CONFLICT);
    let mut failed = Vec::new();
    for (tag, reason) in tags.into_iter().zip(reasons) {
        if code(reason) != CONDITION_FAILED {
            continue;
        }
        match tag {
            Some(tag) => failed.push((tag, reason.item().cloned())),
            None => {
                return Err(InfraError::permanent(
                    operation,
                    format!(
                        "a condition failed on an item added without one: {}",
                        describe(reasons)
                    ),
                ))
            }
        }
    }
    if !failed.is_empty() {
        return Ok(Err(Refused { failed, conflict }));
    }
    let others: Vec<&str> = reasons.iter().map(code).filter(|c| *c != "None").collect();
    if conflict && others.iter().all(|c| *c == CONFLICT) {
        return if report_conflicts {
            Ok(Err(Refused {
                failed: Vec::new(),
                conflict: true,
            }))
        } else {
            Err(InfraError::retryable(operation, describe(reasons)))
        };
    }
    if others.iter().all(|c| TRANSIENT.contains(c)) {
        Err(InfraError::retryable(operation, describe(reasons)))
    } else {
        // A validation error, an item collection too large: a bug in our request.
        Err(InfraError::permanent(operation, describe(reasons)))
    }
}

fn code(reason: &CancellationReason) -> &str {
    reason.code().unwrap_or("None")
}

fn describe(reasons: &[CancellationReason]) -> String {
    let reasons: Vec<String> = reasons
        .iter()
        .map(|r| match r.message() {
            Some(m) => format!("{}: {m}", r.code().unwrap_or("None")),
            None => r.code().unwrap_or("None").to_string(),
        })
        .collect();
    format!("transaction cancelled: [{}]", reasons.join(", "))
}

/// Why conditions refused a transaction: the tag of every item whose condition failed, in
/// the order the items were added, each with the item as it was (when it existed).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused<T> {
    failed: Vec<(T, Option<Item>)>,
    conflict: bool,
}

impl<T> Refused<T> {
    /// The first failed condition, in the order the items were added.
    pub fn first(&self) -> Option<&(T, Option<Item>)> {
        self.failed.first()
    }

    /// The tags of every failed condition, in the order the items were added.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.failed.iter().map(|(tag, _)| tag)
    }

    /// Whether a conflicting transaction also cancelled this one (the only reason when no
    /// condition failed, from [`Tx::commit_reporting_conflicts`]).
    pub fn is_conflict(&self) -> bool {
        self.conflict
    }
}

impl<T: PartialEq> Refused<T> {
    /// Whether the condition of an item tagged `tag` failed.
    pub fn contains(&self, tag: &T) -> bool {
        self.failed.iter().any(|(t, _)| t == tag)
    }

    /// The item as it was when the condition of the (first) item tagged `tag` failed; `None`
    /// when that condition did not fail or the item did not exist.
    pub fn get(&self, tag: &T) -> Option<&Item> {
        self.failed
            .iter()
            .find(|(t, _)| t == tag)
            .and_then(|(_, item)| item.as_ref())
    }
}

impl<T: std::fmt::Debug> Refused<T> {
    /// For logs and error messages: the failed tags, without the items.
    pub fn describe(&self) -> String {
        let tags: Vec<&T> = self.tags().collect();
        format!("conditions failed: {tags:?}, conflict: {}", self.conflict)
    }
}
