//! The local emulator keeps the DynamoDB guarantees the claim path relies on: conditional
//! writes and transactions are atomic under concurrency, a cancelled transaction writes nothing,
//! and serialising DynamoDB does not stall SQS long polls (infra/moto_server.py explains why
//! stock moto needs help with the first two).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TransactWriteItem, Update,
};
use futures::future::join_all;
use loyalty_tests::{sdk_config, unique_name};

const ROUNDS: usize = 30;
const CONTENDERS: usize = 64;
const STARTING_BALANCE: i64 = 10;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

/// A fresh table shaped like ours (string `pk`/`sk`), with a `gsi1` index.
async fn fresh_table(db: &aws_sdk_dynamodb::Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key_element = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .unwrap()
    };
    db.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .attribute_definitions(attribute("gsi1pk"))
        .attribute_definitions(attribute("gsi1sk"))
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key_element("gsi1pk", KeyType::Hash))
                .key_schema(key_element("gsi1sk", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    name
}

async fn balance(db: &aws_sdk_dynamodb::Client, table: &str) -> i64 {
    let item = db
        .get_item()
        .table_name(table)
        .set_key(Some(key("ACCOUNT#p1", "BALANCE")))
        .consistent_read(true)
        .send()
        .await
        .expect("get balance")
        .item
        .expect("balance item exists");
    match item.get("balance") {
        Some(AttributeValue::N(value)) => value.parse().expect("numeric balance"),
        other => panic!("balance attribute is not a number: {other:?}"),
    }
}

async fn reset_balance(db: &aws_sdk_dynamodb::Client, table: &str) {
    let mut item = key("ACCOUNT#p1", "BALANCE");
    item.insert("balance".to_string(), n(STARTING_BALANCE));
    db.put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .expect("reset balance");
}

const DECREMENT: &str = "SET balance = balance - :one";
const AT_LEAST_ONE: &str = "balance >= :one";

fn decrement(table: &str) -> Update {
    Update::builder()
        .table_name(table)
        .set_key(Some(key("ACCOUNT#p1", "BALANCE")))
        .update_expression(DECREMENT)
        .condition_expression(AT_LEAST_ONE)
        .expression_attribute_values(":one", n(1))
        .build()
        .unwrap()
}

async fn all_items(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = db
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    items.sort_by_key(|item| format!("{:?}/{:?}", item.get("pk"), item.get("sk")));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_decrements_never_exceed_the_condition() {
    let db = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = fresh_table(&db, "fidelity-decrements").await;

    for round in 0..ROUNDS {
        reset_balance(&db, &table).await;
        let attempts = (0..CONTENDERS).map(|_| {
            db.update_item()
                .table_name(&table)
                .set_key(Some(key("ACCOUNT#p1", "BALANCE")))
                .update_expression(DECREMENT)
                .condition_expression(AT_LEAST_ONE)
                .expression_attribute_values(":one", n(1))
                .send()
        });
        let mut succeeded = 0;
        for outcome in join_all(attempts).await {
            match outcome.map_err(SdkError::into_service_error) {
                Ok(_) => succeeded += 1,
                Err(UpdateItemError::ConditionalCheckFailedException(_)) => {}
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(
            succeeded, STARTING_BALANCE,
            "round {round}: decrements that passed the condition"
        );
        assert_eq!(
            balance(&db, &table).await,
            0,
            "round {round}: final balance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transactional_decrements_never_exceed_the_condition() {
    let db = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = fresh_table(&db, "fidelity-transactions").await;

    for round in 0..ROUNDS {
        reset_balance(&db, &table).await;
        // Each attempt also records an entry, as a claim does: only winners may leave one.
        let attempts = (0..CONTENDERS).map(|attempt| {
            let mut entry = key("ACCOUNT#p1", &format!("ENTRY#{round}-{attempt}"));
            entry.insert("round".to_string(), n(round as i64));
            db.transact_write_items()
                .transact_items(
                    TransactWriteItem::builder()
                        .update(decrement(&table))
                        .build(),
                )
                .transact_items(
                    TransactWriteItem::builder()
                        .put(
                            Put::builder()
                                .table_name(&table)
                                .set_item(Some(entry))
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .send()
        });
        let mut succeeded = 0;
        for outcome in join_all(attempts).await {
            match outcome.map_err(SdkError::into_service_error) {
                Ok(_) => succeeded += 1,
                Err(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let codes: Vec<_> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code())
                        .collect();
                    assert_eq!(
                        codes,
                        [Some("ConditionalCheckFailed"), Some("None")],
                        "round {round}"
                    );
                }
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
            }
        }
        assert_eq!(
            succeeded, STARTING_BALANCE,
            "round {round}: transactions that passed the condition"
        );
        assert_eq!(
            balance(&db, &table).await,
            0,
            "round {round}: final balance"
        );
        let entries = db
            .query()
            .table_name(&table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s("ACCOUNT#p1"))
            .expression_attribute_values(":prefix", s(&format!("ENTRY#{round}-")))
            .consistent_read(true)
            .send()
            .await
            .expect("query entries");
        assert_eq!(
            entries.count(),
            STARTING_BALANCE as i32,
            "round {round}: entries written"
        );
    }
}

#[tokio::test]
async fn a_cancelled_transaction_leaves_nothing_behind() {
    let db = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let ledger = fresh_table(&db, "fidelity-ledger").await;
    let codes = fresh_table(&db, "fidelity-codes").await;

    let mut account = key("ACCOUNT#p1", "BALANCE");
    account.insert("balance".to_string(), n(5));
    let mut code = key("CODE#ABC123", "CODE");
    code.insert("state".to_string(), s("issued"));
    let mut spent_code = key("CODE#SPENT1", "CODE");
    spent_code.insert("state".to_string(), s("claimed"));
    for (table, item) in [(&ledger, account), (&codes, code), (&codes, spent_code)] {
        db.put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .expect("seed");
    }
    let ledger_before = all_items(&db, &ledger).await;
    let codes_before = all_items(&db, &codes).await;

    let mut entry = key("ACCOUNT#p1", "ENTRY#e1");
    entry.insert("gsi1pk".to_string(), s("REVIEW#PENDING"));
    entry.insert("gsi1sk".to_string(), s("e1"));
    entry.insert("points".to_string(), n(100));
    let mut audit = key("ATTEMPTS#p1", "ts#e1");
    audit.insert("code_tail".to_string(), s("123"));
    let claim_issued = Update::builder()
        .table_name(&codes)
        .set_key(Some(key("CODE#ABC123", "CODE")))
        .update_expression("SET #state = :claimed")
        .condition_expression("#state = :issued")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":claimed", s("claimed"))
        .expression_attribute_values(":issued", s("issued"))
        .build()
        .unwrap();
    let credit = Update::builder()
        .table_name(&ledger)
        .set_key(Some(key("ACCOUNT#p1", "BALANCE")))
        .update_expression("ADD balance :points")
        .expression_attribute_values(":points", n(100))
        .build()
        .unwrap();
    let claim_spent = Update::builder()
        .table_name(&codes)
        .set_key(Some(key("CODE#SPENT1", "CODE")))
        .update_expression("SET #state = :claimed")
        .condition_expression("#state = :issued")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":claimed", s("claimed"))
        .expression_attribute_values(":issued", s("issued"))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .unwrap();

    let outcome = db
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(claim_issued).build())
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&ledger)
                        .set_item(Some(entry))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(TransactWriteItem::builder().update(credit).build())
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&codes)
                        .set_item(Some(audit))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(TransactWriteItem::builder().update(claim_spent).build())
        .send()
        .await
        .map_err(SdkError::into_service_error);

    let Err(TransactWriteItemsError::TransactionCanceledException(cancelled)) = outcome else {
        panic!("expected the transaction to be cancelled, got {outcome:?}");
    };
    let reasons = cancelled.cancellation_reasons();
    let codes_of_reasons: Vec<_> = reasons.iter().map(|r| r.code()).collect();
    assert_eq!(
        codes_of_reasons,
        [
            Some("None"),
            Some("None"),
            Some("None"),
            Some("None"),
            Some("ConditionalCheckFailed")
        ]
    );
    assert_eq!(
        reasons[4].item().and_then(|item| item.get("pk")),
        Some(&s("CODE#SPENT1")),
        "the failing item is returned with ALL_OLD"
    );

    assert_eq!(
        all_items(&db, &ledger).await,
        ledger_before,
        "ledger table unchanged"
    );
    assert_eq!(
        all_items(&db, &codes).await,
        codes_before,
        "codes table unchanged"
    );
    let pending = db
        .query()
        .table_name(&ledger)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pending")
        .expression_attribute_values(":pending", s("REVIEW#PENDING"))
        .send()
        .await
        .expect("query gsi1");
    assert_eq!(pending.count(), 0, "no entry reaches the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_long_polls_stay_concurrent_with_dynamodb_traffic() {
    const LONG_POLLS: usize = 3;
    const WRITES: i64 = 20;
    let config = sdk_config().await;
    let db = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let table = fresh_table(&db, "fidelity-polls").await;
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("fidelity-polls"))
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");

    let polls: Vec<_> = (0..LONG_POLLS)
        .map(|_| {
            let receive = sqs
                .receive_message()
                .queue_url(&queue_url)
                .wait_time_seconds(20)
                .max_number_of_messages(1);
            tokio::spawn(receive.send())
        })
        .collect();
    // Lets the polls reach the emulator first; a server that serialised them with DynamoDB
    // would then hold every write below for up to 20 s per poll. A wait on the emulator
    // (no time of ours passes), so no clock can replace it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    for i in 0..WRITES {
        let mut item = key("ACCOUNT#p1", &format!("ENTRY#{i}"));
        item.insert("points".to_string(), n(i));
        db.put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .expect("put while polls wait");
    }
    let written = all_items(&db, &table).await;
    assert_eq!(written.len() as i64, WRITES, "every write is visible");
    assert!(
        polls.iter().all(|poll| !poll.is_finished()),
        "the writes completed while every long poll was still waiting"
    );

    // The polls were live all along: a message now wakes one of them.
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("wake")
        .send()
        .await
        .expect("send");
    let (first, _, rest) = futures::future::select_all(polls).await;
    let received = first.expect("poll task").expect("receive");
    let bodies: Vec<_> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .collect();
    assert_eq!(bodies, ["wake"]);
    for poll in rest {
        poll.abort();
    }
}
