//! The one builder of `TransactWriteItems`.
//!
//! Each conditional item is added with the refusal it stands for: a tag of the store's own
//! small enum (`CashbackRefusal::EventSeen`, `LedgerRefusal::InsufficientBalance`, ...). When DynamoDB
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
use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
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

/// A tagged item must have a condition (else its tag could never be reported) and an
/// untagged one must not (else its failure could not be named): a bug in the store.
fn expect_condition(condition: &Option<String>, tagged: bool) -> Result<(), InfraError> {
    match (condition.is_some(), tagged) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(InfraError::permanent(
            "build transaction",
            "an item added with a refusal has no condition expression",
        )),
        (true, false) => Err(InfraError::permanent(
            "build transaction",
            "an item added without a refusal has a condition expression",
        )),
    }
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
        expect_condition(put.get_condition_expression(), true)?;
        let put = put
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(self.push(TransactWriteItem::builder().put(put).build(), Some(refusal)))
    }

    /// A conditional update: `refusal` is what a failure of its condition means.
    pub fn update(&mut self, update: UpdateBuilder, refusal: T) -> Result<&mut Self, InfraError> {
        expect_condition(update.get_condition_expression(), true)?;
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
        expect_condition(delete.get_condition_expression(), true)?;
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
        expect_condition(put.get_condition_expression(), false)?;
        let put = put.build().map_err(build_err)?;
        Ok(self.push(TransactWriteItem::builder().put(put).build(), None))
    }

    /// An update with no condition (a counter `ADD`): it cannot refuse.
    pub fn update_always(&mut self, update: UpdateBuilder) -> Result<&mut Self, InfraError> {
        expect_condition(update.get_condition_expression(), false)?;
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
    /// minutes as the same transaction (the SDK's retry of a request whose answer was lost),
    /// and a repeat with other items as `IdempotentParameterMismatch`. A token must
    /// therefore never be shared by two different transactions: prefer
    /// [`Self::content_token`], which cannot be.
    pub fn idempotency_token(&mut self, token: impl Into<String>) -> &mut Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the `ClientRequestToken` to a hash of the whole transaction as it stands (every
    /// item: its kind, table, key or item, expressions, names and values), so identical
    /// transactions share a token and different ones never do. Call it after the last item.
    ///
    /// Why not a token from the request's identity (code, participant, ...): two requests
    /// with the same identity but other items (another timestamp, another audit record)
    /// would share it, and DynamoDB would refuse the second for ten minutes with
    /// `IdempotentParameterMismatch` instead of answering it. Why a token at all: the SDK
    /// resends the very same request when an answer is lost, and DynamoDB then answers the
    /// first outcome instead of refusing the repeat against the transaction's own writes.
    pub fn content_token(&mut self) -> &mut Self {
        let token = content_hash(self.items.iter().map(|(item, _)| item));
        self.idempotency_token(token)
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

/// 36 hex characters (DynamoDB's limit for a token) of a SHA-256 over a canonical encoding
/// of the items: maps in key order, every string length-prefixed.
fn content_hash<'a>(items: impl Iterator<Item = &'a TransactWriteItem>) -> String {
    use sha2::{Digest, Sha256};

    fn text(h: &mut Sha256, v: &str) {
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_bytes());
    }
    fn opt(h: &mut Sha256, v: Option<&str>) {
        match v {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                text(h, v);
            }
        }
    }
    fn names(h: &mut Sha256, map: Option<&HashMap<String, String>>) {
        let sorted: BTreeMap<_, _> = map.into_iter().flatten().collect();
        h.update((sorted.len() as u64).to_be_bytes());
        for (k, v) in sorted {
            text(h, k);
            text(h, v);
        }
    }
    fn values(h: &mut Sha256, map: Option<&HashMap<String, AttributeValue>>) {
        let sorted: BTreeMap<_, _> = map.into_iter().flatten().collect();
        h.update((sorted.len() as u64).to_be_bytes());
        for (k, v) in sorted {
            text(h, k);
            value(h, v);
        }
    }
    fn value(h: &mut Sha256, v: &AttributeValue) {
        let list = |h: &mut Sha256, tag: &str, vs: &[String]| {
            text(h, tag);
            h.update((vs.len() as u64).to_be_bytes());
            vs.iter().for_each(|v| text(h, v));
        };
        match v {
            AttributeValue::S(v) => list(h, "S", std::slice::from_ref(v)),
            AttributeValue::N(v) => list(h, "N", std::slice::from_ref(v)),
            AttributeValue::Ss(v) => list(h, "SS", v),
            AttributeValue::Ns(v) => list(h, "NS", v),
            AttributeValue::Bool(v) => list(h, "BOOL", &[v.to_string()]),
            AttributeValue::Null(v) => list(h, "NULL", &[v.to_string()]),
            AttributeValue::B(v) => {
                text(h, "B");
                h.update((v.as_ref().len() as u64).to_be_bytes());
                h.update(v.as_ref());
            }
            AttributeValue::Bs(vs) => {
                text(h, "BS");
                h.update((vs.len() as u64).to_be_bytes());
                for v in vs {
                    h.update((v.as_ref().len() as u64).to_be_bytes());
                    h.update(v.as_ref());
                }
            }
            AttributeValue::L(vs) => {
                text(h, "L");
                h.update((vs.len() as u64).to_be_bytes());
                vs.iter().for_each(|v| value(h, v));
            }
            AttributeValue::M(m) => {
                text(h, "M");
                values(h, Some(m));
            }
            // A variant this SDK does not know cannot be built by our stores; its debug text
            // is still content.
            other => list(h, "?", &[format!("{other:?}")]),
        }
    }

    let mut h = Sha256::new();
    for item in items {
        if let Some(p) = item.put() {
            text(&mut h, "put");
            text(&mut h, p.table_name());
            values(&mut h, Some(p.item()));
            opt(&mut h, p.condition_expression());
            names(&mut h, p.expression_attribute_names());
            values(&mut h, p.expression_attribute_values());
        } else if let Some(u) = item.update() {
            text(&mut h, "update");
            text(&mut h, u.table_name());
            values(&mut h, Some(u.key()));
            text(&mut h, u.update_expression());
            opt(&mut h, u.condition_expression());
            names(&mut h, u.expression_attribute_names());
            values(&mut h, u.expression_attribute_values());
        } else if let Some(d) = item.delete() {
            text(&mut h, "delete");
            text(&mut h, d.table_name());
            values(&mut h, Some(d.key()));
            opt(&mut h, d.condition_expression());
            names(&mut h, d.expression_attribute_names());
            values(&mut h, d.expression_attribute_values());
        } else if let Some(c) = item.condition_check() {
            text(&mut h, "check");
            text(&mut h, c.table_name());
            values(&mut h, Some(c.key()));
            text(&mut h, c.condition_expression());
            names(&mut h, c.expression_attribute_names());
            values(&mut h, c.expression_attribute_values());
        }
    }
    h.finalize()
        .iter()
        .take(18)
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// A DynamoDB client answered by `aws-smithy-mocks` rules, without the SDK's own retries.
#[cfg(test)]
pub(crate) mod mock {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    use aws_sdk_dynamodb::Client;
    use aws_smithy_mocks::{create_mock_http_client, MockResponseInterceptor, Rule, RuleMode};

    pub fn client(rules: &[&Rule]) -> Client {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for rule in rules {
            interceptor = interceptor.with_rule(rule);
        }
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "mock"))
            .http_client(create_mock_http_client())
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .interceptor(interceptor)
            .build();
        Client::from_conf(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::operation::transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
    };
    use aws_sdk_dynamodb::types::error::{
        IdempotentParameterMismatchException, TransactionCanceledException,
    };
    use aws_sdk_dynamodb::types::{AttributeValue, Put, Update};
    use aws_smithy_mocks::{mock, MockResponse};

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Refusal {
        First,
        Second,
    }

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }

    fn put_new(pk: &str) -> PutBuilder {
        Put::builder()
            .table_name("t")
            .item("pk", s(pk))
            .item("sk", s("X"))
            .condition_expression("attribute_not_exists(pk)")
    }

    /// A transaction built afresh each call, so its maps have fresh hash orders.
    fn sample(amount: &str, nested: &str) -> Tx<Refusal> {
        let mut tx = Tx::new();
        tx.put(
            put_new("A")
                .item("a", s("1"))
                .item("b", s("2"))
                .item("c", s("3"))
                .item(
                    "m",
                    AttributeValue::M(HashMap::from([
                        ("x".to_string(), s(nested)),
                        ("y".to_string(), AttributeValue::N("1".into())),
                        ("z".to_string(), AttributeValue::L(vec![s("l")])),
                    ])),
                ),
            Refusal::First,
        )
        .unwrap();
        tx.update_always(
            Update::builder()
                .table_name("t")
                .key("pk", s("B"))
                .key("sk", s("X"))
                .update_expression("ADD n :n SET #t = :t")
                .expression_attribute_names("#t", "ttl")
                .expression_attribute_values(":n", AttributeValue::N(amount.into()))
                .expression_attribute_values(":t", AttributeValue::N("9".into())),
        )
        .unwrap();
        tx
    }

    fn token_of(mut tx: Tx<Refusal>) -> String {
        tx.content_token();
        tx.token.unwrap()
    }

    #[test]
    fn identical_transactions_share_a_content_token_and_different_ones_never_do() {
        let token = token_of(sample("5", "n"));
        assert_eq!(token.len(), 36, "DynamoDB takes at most 36 characters");
        for _ in 0..20 {
            assert_eq!(token_of(sample("5", "n")), token);
        }
        assert_ne!(token_of(sample("6", "n")), token, "another value");
        assert_ne!(token_of(sample("5", "o")), token, "another nested value");
        let mut more = sample("5", "n");
        more.put_always(Put::builder().table_name("t").item("pk", s("C")))
            .unwrap();
        assert_ne!(token_of(more), token, "another item");
        let mut other_table = Tx::<Refusal>::new();
        other_table
            .put(put_new("A").table_name("u"), Refusal::First)
            .unwrap();
        let mut same_table = Tx::<Refusal>::new();
        same_table.put(put_new("A"), Refusal::First).unwrap();
        assert_ne!(token_of(other_table), token_of(same_table), "another table");
        // Length prefixes keep "ab"+"c" apart from "a"+"bc".
        let split = |a: &str, b: &str| {
            let mut tx = Tx::<Refusal>::new();
            tx.put_always(Put::builder().table_name("t").item(a, s(b)))
                .unwrap();
            token_of(tx)
        };
        assert_ne!(split("ab", "c"), split("a", "bc"));
    }

    fn reason(code: &str, item: Option<Item>) -> CancellationReason {
        CancellationReason::builder()
            .code(code)
            .set_item(item)
            .build()
    }

    fn cancelled(reasons: Vec<CancellationReason>) -> TransactWriteItemsError {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
                .message("Transaction cancelled")
                .set_cancellation_reasons(Some(reasons))
                .build(),
        )
    }

    /// Like DynamoDB: the condition of the put of `pk = "B"` fails, wherever it is, and the
    /// reason carries the item as it was.
    fn b_exists(
        input: &TransactWriteItemsInput,
    ) -> MockResponse<TransactWriteItemsOutput, TransactWriteItemsError> {
        let reasons = input
            .transact_items()
            .iter()
            .map(|item| {
                let pk = item.put().and_then(|p| p.item().get("pk")).cloned();
                if pk == Some(s("B")) {
                    let old = HashMap::from([
                        ("pk".to_string(), s("B")),
                        ("note".to_string(), s("was here")),
                    ]);
                    reason(CONDITION_FAILED, Some(old))
                } else {
                    reason("None", None)
                }
            })
            .collect();
        MockResponse::Error(cancelled(reasons))
    }

    #[tokio::test]
    async fn a_refusal_is_decoded_by_its_tag_whatever_the_item_order() {
        let rule = mock!(Client::transact_write_items).then_compute_response(b_exists);
        let client = mock::client(&[&rule]);

        let mut in_order = Tx::new();
        in_order.put(put_new("A"), Refusal::First).unwrap();
        in_order.put(put_new("B"), Refusal::Second).unwrap();
        let mut reversed = Tx::new();
        reversed.put(put_new("B"), Refusal::Second).unwrap();
        reversed.put(put_new("A"), Refusal::First).unwrap();

        for tx in [in_order, reversed] {
            let refused = tx.commit(&client, "test").await.unwrap().unwrap_err();
            assert!(refused.contains(&Refusal::Second));
            assert!(!refused.contains(&Refusal::First));
            assert_eq!(refused.tags().collect::<Vec<_>>(), [&Refusal::Second]);
            assert_eq!(
                refused.get(&Refusal::Second).and_then(|i| i.get("note")),
                Some(&s("was here"))
            );
            assert!(!refused.is_conflict());
        }
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn every_conditional_item_asks_for_the_item_as_it_was_and_unconditional_ones_do_not() {
        let rule = mock!(Client::transact_write_items)
            .match_requests(|input| {
                let items = input.transact_items();
                items[0]
                    .put()
                    .and_then(|p| p.return_values_on_condition_check_failure())
                    == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                    && items[1]
                        .update()
                        .and_then(|u| u.return_values_on_condition_check_failure())
                        .is_none()
                    && input.client_request_token() == Some("token-1")
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let client = mock::client(&[&rule]);
        let mut tx = Tx::new();
        tx.put(put_new("A"), Refusal::First).unwrap();
        tx.update_always(
            Update::builder()
                .table_name("t")
                .key("pk", s("C"))
                .key("sk", s("X"))
                .update_expression("ADD n :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into())),
        )
        .unwrap();
        tx.idempotency_token("token-1");
        assert_eq!(tx.len(), 2);

        assert_eq!(tx.commit(&client, "test").await, Ok(Ok(())));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_cancellation_by_transaction_conflicts_alone_is_retryable() {
        let rule = mock!(Client::transact_write_items).then_error(|| {
            cancelled(vec![
                reason("None", None),
                reason("TransactionConflict", None),
            ])
        });
        let client = mock::client(&[&rule]);
        let tx = || {
            let mut tx = Tx::new();
            tx.put(put_new("A"), Refusal::First).unwrap();
            tx.put(put_new("B"), Refusal::Second).unwrap();
            tx
        };

        let err = tx().commit(&client, "test").await.unwrap_err();
        assert!(err.retryable, "{err:?}");
        assert!(err.message.contains("TransactionConflict"), "{err:?}");

        // A store with its own retry loop gets it as a refusal that names no condition.
        let refused = tx()
            .commit_reporting_conflicts(&client, "test")
            .await
            .unwrap()
            .unwrap_err();
        assert!(refused.is_conflict());
        assert_eq!(refused.first(), None);
    }

    #[tokio::test]
    async fn a_failed_condition_alongside_a_conflict_is_a_refusal_that_also_reports_the_conflict() {
        let rule = mock!(Client::transact_write_items).then_error(|| {
            cancelled(vec![
                reason("TransactionConflict", None),
                reason(CONDITION_FAILED, None),
            ])
        });
        let client = mock::client(&[&rule]);
        let mut tx = Tx::new();
        tx.put(put_new("A"), Refusal::First).unwrap();
        tx.put(put_new("B"), Refusal::Second).unwrap();

        let refused = tx.commit(&client, "test").await.unwrap().unwrap_err();
        assert_eq!(refused.first(), Some(&(Refusal::Second, None)));
        assert!(refused.is_conflict());
    }

    #[tokio::test]
    async fn a_cancellation_for_a_validation_error_is_a_permanent_bug_and_throttling_is_retryable()
    {
        let rule = mock!(Client::transact_write_items)
            .sequence()
            .error(|| cancelled(vec![reason("None", None), reason("ValidationError", None)]))
            .error(|| cancelled(vec![reason("ThrottlingError", None)]))
            .build();
        let client = mock::client(&[&rule]);
        let tx = || {
            let mut tx = Tx::new();
            tx.put(put_new("A"), Refusal::First).unwrap();
            tx
        };

        let validation = tx().commit(&client, "test").await.unwrap_err();
        assert!(!validation.retryable, "{validation:?}");
        assert!(validation.message.contains("ValidationError"));
        let throttled = tx().commit(&client, "test").await.unwrap_err();
        assert!(throttled.retryable, "{throttled:?}");
    }

    #[tokio::test]
    async fn an_idempotent_parameter_mismatch_is_retryable_not_a_500() {
        let rule = mock!(Client::transact_write_items).then_error(|| {
            TransactWriteItemsError::IdempotentParameterMismatchException(
                IdempotentParameterMismatchException::builder()
                    .message("token reused")
                    .build(),
            )
        });
        let client = mock::client(&[&rule]);
        let mut tx = Tx::new();
        tx.put(put_new("A"), Refusal::First).unwrap();
        tx.idempotency_token("token-1");

        let err = tx.commit(&client, "test").await.unwrap_err();
        assert!(err.retryable, "{err:?}");
        assert!(
            err.message.contains("IdempotentParameterMismatch"),
            "{err:?}"
        );
    }

    #[test]
    fn a_refusal_needs_a_condition_and_an_unconditional_item_has_none() {
        let mut tx: Tx<Refusal> = Tx::new();
        let unconditional = Put::builder()
            .table_name("t")
            .item("pk", s("A"))
            .item("sk", s("X"));
        assert!(tx.put(unconditional.clone(), Refusal::First).is_err());
        assert!(tx.put_always(put_new("A")).is_err());
        assert!(tx.put_always(unconditional).is_ok());
        assert!(tx.put(put_new("B"), Refusal::Second).is_ok());
        assert_eq!(tx.len(), 2);
    }

    #[test]
    fn appended_items_keep_their_refusals_under_the_new_tag_type() {
        #[derive(Debug, Clone, PartialEq)]
        enum Outer {
            Mine,
            Theirs(Refusal),
        }
        impl From<Refusal> for Outer {
            fn from(r: Refusal) -> Self {
                Outer::Theirs(r)
            }
        }
        let mut theirs = Tx::new();
        theirs.put(put_new("B"), Refusal::Second).unwrap();
        let mut tx = Tx::new();
        tx.put(put_new("A"), Outer::Mine).unwrap();
        tx.append(theirs);

        let tags: Vec<_> = tx.items.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            tags,
            [Some(Outer::Mine), Some(Outer::Theirs(Refusal::Second))]
        );
    }
}
