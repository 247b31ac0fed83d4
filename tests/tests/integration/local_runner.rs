//! The local queue consumer behaves like Lambda's SQS event source mapping on the emulator:
//! processed messages are deleted, reported failures come back, and repeated failures end
//! in the dead-letter queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageAttributeValue;
use lambda_runtime::LambdaEvent;
use loyalty_local::provision::{provision, Options};
use loyalty_local::registry::{Factory, Handler, Registry};
use loyalty_local::runtime::{poll_once, queue_sources};
use loyalty_local::template::Template;
use loyalty_tests::{sdk_config, unique_name};

const FIXTURE: &str = r#"
Resources:
  Dlq:
    Type: AWS::SQS::Queue
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy: { deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 2 }
  Worker:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: worker } }
    Properties:
      Events:
        Jobs: { Type: SQS, Properties: { Queue: !GetAtt Jobs.Arn, BatchSize: 10, FunctionResponseTypes: [ReportBatchItemFailures] } }
"#;

type Seen = Arc<Mutex<Vec<SqsEvent>>>;

/// Reports messages whose body starts with "bad" as failed; fails the whole invocation on
/// a body of "crash".
fn worker(seen: Seen) -> Factory {
    Arc::new(
        move |_aws: &aws_config::SdkConfig, _env: &loyalty_platform::config::Env| {
            let seen = seen.clone();
            Ok(Handler::Sqs(Arc::new(
                move |event: LambdaEvent<SqsEvent>| {
                    seen.lock().unwrap().push(event.payload.clone());
                    let records = event.payload.records;
                    Box::pin(async move {
                        if records.iter().any(|r| r.body.as_deref() == Some("crash")) {
                            return Err("worker crashed".into());
                        }
                        let mut response = SqsBatchResponse::default();
                        for record in records
                            .iter()
                            .filter(|r| r.body.as_deref().is_some_and(|b| b.starts_with("bad")))
                        {
                            let mut failure = BatchItemFailure::default();
                            failure.item_identifier = record.message_id.clone().unwrap_or_default();
                            response.batch_item_failures.push(failure);
                        }
                        Ok(response)
                    })
                },
            )))
        },
    )
}

async fn visible_count(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    // Receive everything visible, then hand it back at once (visibility 0).
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = out.messages.unwrap_or_default();
    for m in &messages {
        sqs.change_message_visibility()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    messages.len()
}

#[tokio::test]
async fn the_queue_consumer_deletes_processed_messages_and_redrives_repeated_failures() {
    let aws = sdk_config().await;
    let template = Template::parse(FIXTURE).unwrap();
    let resources = provision(&aws, &template, &Options::local(unique_name("q")))
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let apps = Registry::empty()
        .with("worker", worker(seen.clone()))
        .instantiate(&aws, &resources)
        .unwrap();
    let source = queue_sources(&apps, &resources).unwrap().remove(0);
    let app = apps.get("Worker").unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let jobs = resources.queue_url("Jobs").unwrap().to_string();
    let dlq = resources.queue_url("Dlq").unwrap().to_string();

    for body in ["good-1", "bad-1", "good-2"] {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("demo")
            .build()
            .unwrap();
        sqs.send_message()
            .queue_url(&jobs)
            .message_body(body)
            .message_attributes("origin", attribute)
            .send()
            .await
            .unwrap();
    }
    // Poll as the event source mapping would, until nothing is left to deliver.
    let mut idle = 0;
    while idle < 3 {
        let received = poll_once(&sqs, app, &source, &resources.region, 1)
            .await
            .unwrap();
        idle = if received == 0 { idle + 1 } else { 0 };
    }

    let events = seen.lock().unwrap().clone();
    let first = events[0].records[0].clone();
    assert_eq!(first.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(
        first.event_source_arn.as_deref(),
        Some(resources.get("Jobs").unwrap().arn.as_str())
    );
    assert_eq!(
        first.message_attributes["origin"].string_value.as_deref(),
        Some("demo")
    );
    assert!(first.attributes.contains_key("ApproximateReceiveCount"));

    let deliveries = |body: &str| {
        events
            .iter()
            .flat_map(|e| &e.records)
            .filter(|r| r.body.as_deref() == Some(body))
            .count()
    };
    assert_eq!(
        (deliveries("good-1"), deliveries("good-2")),
        (1, 1),
        "processed messages are deleted"
    );
    assert_eq!(
        deliveries("bad-1"),
        2,
        "a reported failure comes back until maxReceiveCount"
    );
    assert_eq!(visible_count(&sqs, &jobs).await, 0);
    assert_eq!(visible_count(&sqs, &dlq).await, 1);
}

#[tokio::test]
async fn a_crashed_invocation_leaves_the_whole_batch_for_redelivery() {
    let aws = sdk_config().await;
    let template = Template::parse(FIXTURE).unwrap();
    let resources = provision(&aws, &template, &Options::local(unique_name("q")))
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let apps = Registry::empty()
        .with("worker", worker(seen.clone()))
        .instantiate(&aws, &resources)
        .unwrap();
    let source = queue_sources(&apps, &resources).unwrap().remove(0);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let jobs = resources.queue_url("Jobs").unwrap().to_string();
    let entries: Vec<_> = ["good", "crash"]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(*body)
                .build()
                .unwrap()
        })
        .collect();
    sqs.send_message_batch()
        .queue_url(&jobs)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();

    let received = poll_once(
        &sqs,
        apps.get("Worker").unwrap(),
        &source,
        &resources.region,
        1,
    )
    .await
    .unwrap();
    assert_eq!(received, 2, "both messages arrive in one batch");
    // Waits on the emulator's own timer, not on ours: the messages reappear when SQS's
    // visibility timeout ends, and no clock of ours can move that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(visible_count(&sqs, &jobs).await, 2);
}
