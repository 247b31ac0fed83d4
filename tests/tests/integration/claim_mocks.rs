//! Claim paths the emulator cannot produce (moto never reports `TransactionConflict`, never
//! honours `ClientRequestToken`, never throttles), driven through `aws-smithy-mocks`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::error::{
    IdempotentParameterMismatchException, ProvisionedThroughputExceededException,
    TransactionCanceledException, TransactionInProgressException,
};
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode};
use chrono::Utc;
use loyalty_domain::claim::{claim, ClaimError, ClaimPolicy, Claimant};
use loyalty_domain::code::Code;
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::{Classified, Kind};
use loyalty_platform::stores::claims::{ClaimTables, DynamoClaims};

const BATCH: u32 = 3;

fn client(rules: &[&Rule]) -> Client {
    // No time zones configured: every claimant's day is UTC's.
    let zones = mock!(Client::query)
        .then_output(|| aws_sdk_dynamodb::operation::query::QueryOutput::builder().build());
    let mut interceptor = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(&zones);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "mock"))
        .http_client(create_mock_http_client())
        // The SDK's own retries would only repeat the mocked answer, slowly.
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .interceptor(interceptor)
        .build();
    Client::from_conf(config)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn batch_rule() -> Rule {
    mock!(Client::get_item).then_output(|| {
        let item = HashMap::from([
            ("pk".to_string(), s(&format!("BATCH#{BATCH}"))),
            ("sk".to_string(), s("BATCH")),
            ("batch_number".to_string(), n(BATCH as u64)),
            ("sku".to_string(), s("COLA-05")),
            ("product_type".to_string(), s("Cola 0.5 l")),
            ("pack_size".to_string(), s("0.5 l")),
            ("points_per_pack".to_string(), n(15)),
            ("region".to_string(), s("north")),
            ("valid_until".to_string(), s("2099-12-31")),
            ("count".to_string(), n(10)),
            ("chunk_size".to_string(), n(10)),
            ("chunks".to_string(), n(1)),
            (
                "seed".to_string(),
                s("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ),
            ("status".to_string(), s("ready")),
            ("created_at".to_string(), s("2026-11-22T10:00:00Z")),
        ]);
        GetItemOutput::builder().set_item(Some(item)).build()
    })
}

fn cancelled(codes: &[&str]) -> TransactWriteItemsError {
    let reasons = codes
        .iter()
        .map(|c| CancellationReason::builder().code(*c).build())
        .collect();
    TransactWriteItemsError::TransactionCanceledException(
        TransactionCanceledException::builder()
            .set_cancellation_reasons(Some(reasons))
            .build(),
    )
}

fn store(client: Client) -> DynamoClaims {
    DynamoClaims::new(
        client,
        ClaimTables {
            codes: "codes".into(),
            ledger: "ledger".into(),
            fraud: "fraud".into(),
            outbox: "outbox".into(),
            participants: "participants".into(),
            programme: "programme".into(),
        },
    )
}

fn claimant(p: &str) -> Claimant {
    Claimant {
        participant: ParticipantId::parse(p).unwrap(),
        outlet: None,
        region: None,
    }
}

fn code() -> Code {
    Code::chunk(&[1; 32], BATCH, 0, 1)[0]
}

#[tokio::test]
async fn a_transaction_conflict_is_retried_and_the_claim_then_succeeds() {
    let conflict = mock!(Client::transact_write_items)
        .sequence()
        .error(|| {
            cancelled(&[
                "None",
                "TransactionConflict",
                "None",
                "None",
                "None",
                "None",
                "None",
            ])
        })
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let batch = batch_rule();
    let claims = store(client(&[&batch, &conflict]));

    let claimed = claim(
        &claims,
        &ClaimPolicy::default(),
        claimant("p-1"),
        code(),
        None,
        Utc::now(),
    )
    .await
    .unwrap();

    assert_eq!(conflict.num_calls(), 2);
    assert_eq!(claimed.receipt.points.get(), 15);
    assert_eq!(claimed.receipt.balance.available, 15);
}

#[tokio::test]
async fn endless_contention_gives_up_with_a_retryable_error_instead_of_looping() {
    let conflict = mock!(Client::transact_write_items)
        .sequence()
        .error(|| cancelled(&["TransactionConflict"]))
        .repeatedly()
        .build();
    let batch = batch_rule();
    let claims = store(client(&[&batch, &conflict]));
    let policy = ClaimPolicy::default();

    let err = claim(&claims, &policy, claimant("p-1"), code(), None, Utc::now())
        .await
        .unwrap_err();

    assert_eq!(err, ClaimError::TooMuchContention);
    assert_eq!(err.kind(), Kind::Infrastructure { retryable: true });
    assert_eq!(conflict.num_calls(), policy.max_attempts);
}

#[tokio::test]
async fn a_claim_transaction_carries_a_client_request_token_that_no_other_claim_shares() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let seen = tokens.clone();
    let tx = mock!(Client::transact_write_items)
        .match_requests(move |req| {
            seen.lock()
                .unwrap()
                .push(req.client_request_token().map(String::from));
            true
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let batch = batch_rule();
    let claims = store(client(&[&batch, &tx]));
    let policy = ClaimPolicy::default();
    let now = Utc::now();

    // The same claim twice at the same instant is still two requests (two audit records):
    // the token is the SDK's, for resending one request, never shared by two.
    claim(&claims, &policy, claimant("p-1"), code(), None, now)
        .await
        .unwrap();
    claim(&claims, &policy, claimant("p-1"), code(), None, now)
        .await
        .unwrap();
    claim(&claims, &policy, claimant("p-2"), code(), None, now)
        .await
        .unwrap();

    let tokens = tokens.lock().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    assert!(tokens
        .iter()
        .all(|t| t.as_ref().is_some_and(|t| !t.is_empty() && t.len() <= 36)));
    assert_ne!(tokens[0], tokens[1], "two requests share a token");
    assert_ne!(
        tokens[0], tokens[2],
        "two participants' claims share a token"
    );
}

#[tokio::test]
async fn throttling_is_a_retryable_infrastructure_failure_not_a_business_outcome() {
    let throttled = mock!(Client::transact_write_items).then_error(|| {
        TransactWriteItemsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .build(),
        )
    });
    let batch = batch_rule();
    let claims = store(client(&[&batch, &throttled]));

    let err = claim(
        &claims,
        &ClaimPolicy::default(),
        claimant("p-1"),
        code(),
        None,
        Utc::now(),
    )
    .await
    .unwrap_err();

    assert!(
        matches!(err, ClaimError::Infra(ref e) if e.retryable),
        "{err:?}"
    );
    assert_eq!(err.code(), "internal_error");
}

#[tokio::test]
async fn a_transaction_still_in_progress_under_the_same_token_is_contention_and_is_retried() {
    let in_progress = mock!(Client::transact_write_items)
        .sequence()
        .error(|| {
            TransactWriteItemsError::TransactionInProgressException(
                TransactionInProgressException::builder().build(),
            )
        })
        .output(|| TransactWriteItemsOutput::builder().build())
        .build();
    let batch = batch_rule();
    let claims = store(client(&[&batch, &in_progress]));

    let claimed = claim(
        &claims,
        &ClaimPolicy::default(),
        claimant("p-1"),
        code(),
        None,
        Utc::now(),
    )
    .await
    .unwrap();

    assert_eq!(in_progress.num_calls(), 2);
    assert_eq!(claimed.receipt.points.get(), 15);
}

#[tokio::test]
async fn an_idempotent_parameter_mismatch_is_a_retryable_failure_never_a_500() {
    let mismatch = mock!(Client::transact_write_items).then_error(|| {
        TransactWriteItemsError::IdempotentParameterMismatchException(
            IdempotentParameterMismatchException::builder()
                .message("token reused with other parameters")
                .build(),
        )
    });
    let batch = batch_rule();
    let claims = store(client(&[&batch, &mismatch]));

    let err = claim(
        &claims,
        &ClaimPolicy::default(),
        claimant("p-1"),
        code(),
        None,
        Utc::now(),
    )
    .await
    .unwrap_err();

    assert_eq!(
        err.kind(),
        Kind::Infrastructure { retryable: true },
        "{err:?}"
    );
}

/// DynamoDB as far as one code's first claim goes: the first transaction commits; a later
/// one under the same `ClientRequestToken` within ten minutes is the same transaction when
/// its items are identical and `IdempotentParameterMismatch` when they are not; any other
/// finds the code claimed, with the item the first transaction wrote.
struct OneCode {
    committed: Mutex<Option<(Option<String>, Vec<TransactWriteItem>)>>,
}

impl OneCode {
    fn rules(self: &Arc<Self>) -> [Rule; 3] {
        let db = self.clone();
        let same_token = move |req: &TransactWriteItemsInput, identical: bool| {
            db.committed
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(t, items)| {
                    req.client_request_token().is_some()
                        && req.client_request_token() == t.as_deref()
                        && (req.transact_items() == items.as_slice()) == identical
                })
        };
        let mismatch_matches = same_token.clone();
        let mismatch = mock!(Client::transact_write_items)
            .match_requests(move |req| mismatch_matches(req, false))
            .then_error(|| {
                TransactWriteItemsError::IdempotentParameterMismatchException(
                    IdempotentParameterMismatchException::builder()
                        .message("token reused with other parameters")
                        .build(),
                )
            });
        let db = self.clone();
        let commit = mock!(Client::transact_write_items)
            .match_requests(move |req| {
                if same_token(req, true) {
                    return true;
                }
                let mut committed = db.committed.lock().unwrap();
                if committed.is_some() {
                    return false;
                }
                *committed = Some((
                    req.client_request_token().map(String::from),
                    req.transact_items().to_vec(),
                ));
                true
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let db = self.clone();
        let claimed = mock!(Client::transact_write_items).then_error(move || {
            let committed = db.committed.lock().unwrap();
            let (_, items) = committed.as_ref().expect("the first claim committed");
            let code = items[0].update().expect("the code update comes first");
            let values = code.expression_attribute_values().unwrap();
            let item = HashMap::from([
                ("status".to_string(), s("claimed")),
                ("claimed_by".to_string(), values[":p"].clone()),
                ("receipt".to_string(), values[":receipt"].clone()),
            ]);
            let mut reasons = vec![CancellationReason::builder()
                .code("ConditionalCheckFailed")
                .set_item(Some(item))
                .build()];
            reasons.extend(
                (1..items.len()).map(|_| CancellationReason::builder().code("None").build()),
            );
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .set_cancellation_reasons(Some(reasons))
                    .build(),
            )
        });
        [mismatch, commit, claimed]
    }
}

#[tokio::test]
async fn two_cold_functions_racing_a_new_participants_first_claim_of_a_code_both_get_the_first_answer(
) {
    let db = Arc::new(OneCode {
        committed: Mutex::new(None),
    });
    let [mismatch, commit, claimed] = db.rules();
    let batch = batch_rule();
    let policy = ClaimPolicy::default();
    let now = Utc::now();
    // Two functions, each with its own store and no known balance: the participant is new.
    // The replay's audit record.
    let audit = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let rules = [&batch, &mismatch, &commit, &claimed, &audit];
    let first = store(client(&rules));
    let second = store(client(&rules));

    let a = claim(&first, &policy, claimant("p-new"), code(), None, now)
        .await
        .unwrap();
    let b = claim(
        &second,
        &policy,
        claimant("p-new"),
        code(),
        None,
        now + chrono::Duration::milliseconds(40),
    )
    .await;

    assert!(!a.replayed);
    let b = b.expect("the documented answer: the claimant's own repeat gets the first answer");
    assert!(b.replayed);
    assert_eq!(b.receipt, a.receipt);
    assert_eq!(
        mismatch.num_calls(),
        0,
        "a token was reused for another request"
    );
}

/// DynamoDB as far as a new participant's balance goes: a claim commits when its balance
/// condition holds (no balance item yet, or the version it expects), else it is refused
/// with the balance as it is; a token reused with other items is a mismatch.
#[derive(Default)]
struct NewAccount {
    state: Mutex<(u64, u64, HashMap<String, Vec<TransactWriteItem>>)>,
}

fn balance_at(items: &[TransactWriteItem]) -> usize {
    items
        .iter()
        .position(|i| {
            i.update()
                .is_some_and(|u| u.key().get("sk") == Some(&s("BALANCE")))
        })
        .expect("a claim moves the balance")
}

impl NewAccount {
    fn rules(self: &Arc<Self>) -> [Rule; 3] {
        let db = self.clone();
        let mismatch = mock!(Client::transact_write_items)
            .match_requests(move |req| {
                let state = db.state.lock().unwrap();
                req.client_request_token()
                    .and_then(|t| state.2.get(t))
                    .is_some_and(|items| items.as_slice() != req.transact_items())
            })
            .then_error(|| {
                TransactWriteItemsError::IdempotentParameterMismatchException(
                    IdempotentParameterMismatchException::builder().build(),
                )
            });
        let db = self.clone();
        let commit = mock!(Client::transact_write_items)
            .match_requests(move |req| {
                let mut state = db.state.lock().unwrap();
                let items = req.transact_items();
                let balance = items[balance_at(items)].update().unwrap();
                let holds = match balance.condition_expression() {
                    Some("attribute_not_exists(version)") => state.0 == 0,
                    _ => balance.expression_attribute_values().unwrap()[":expected"] == n(state.0),
                };
                if holds {
                    state.0 += 1;
                    state.1 += 15;
                    if let Some(t) = req.client_request_token() {
                        state.2.insert(t.to_string(), items.to_vec());
                    }
                }
                holds
            })
            .then_output(|| TransactWriteItemsOutput::builder().build());
        let db = self.clone();
        let moved = mock!(Client::transact_write_items).then_error(move || {
            let state = db.state.lock().unwrap();
            let (_, items) = state.2.iter().next().expect("a claim committed first");
            let at = balance_at(items);
            let reasons = (0..items.len())
                .map(|i| {
                    let reason = CancellationReason::builder();
                    if i == at {
                        reason
                            .code("ConditionalCheckFailed")
                            .set_item(Some(HashMap::from([
                                ("version".to_string(), n(state.0)),
                                ("available".to_string(), n(state.1)),
                                ("lifetime_earned".to_string(), n(state.1)),
                            ])))
                            .build()
                    } else {
                        reason.code("None").build()
                    }
                })
                .collect();
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .set_cancellation_reasons(Some(reasons))
                    .build(),
            )
        });
        [mismatch, commit, moved]
    }
}

#[tokio::test]
async fn two_cold_functions_racing_a_new_participants_first_claims_of_two_codes_are_both_accepted()
{
    let db = Arc::new(NewAccount::default());
    let [mismatch, commit, moved] = db.rules();
    let batch = batch_rule();
    let rules = [&batch, &mismatch, &commit, &moved];
    let policy = ClaimPolicy::default();
    let now = Utc::now();
    let codes = Code::chunk(&[1; 32], BATCH, 0, 2);
    let first = store(client(&rules));
    let second = store(client(&rules));

    let a = claim(&first, &policy, claimant("p-new"), codes[0], None, now)
        .await
        .unwrap();
    // The second also expected no balance yet: refused, it retries with the balance it saw.
    let b = claim(&second, &policy, claimant("p-new"), codes[1], None, now)
        .await
        .expect("the documented answer: accepted, on the balance as it now is");

    assert_eq!(a.receipt.balance.available, 15);
    assert_eq!(b.receipt.balance.available, 30);
    assert_eq!(moved.num_calls(), 1);
    assert_eq!(commit.num_calls(), 2);
    assert_eq!(
        mismatch.num_calls(),
        0,
        "a token was reused for another request"
    );
}
