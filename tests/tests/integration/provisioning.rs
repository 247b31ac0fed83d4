//! Local resources come from the template's own definitions.

use aws_sdk_dynamodb::types::{ProjectionType, StreamViewType, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use loyalty_local::provision::{provision, Options};
use loyalty_tests::{sdk_config, template, unique_name, ApiEvent, TestStack};

#[tokio::test]
async fn provisioning_creates_the_tables_queues_and_bucket_the_template_declares() {
    let stack = TestStack::fresh().await;
    let dynamo = stack.dynamodb();

    let ledger = dynamo
        .describe_table()
        .table_name(stack.table_name("LedgerTable"))
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<_> = ledger
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("pk".to_string(), "HASH".to_string()),
            ("sk".to_string(), "RANGE".to_string())
        ]
    );
    let lsi = &ledger.local_secondary_indexes()[0];
    assert_eq!(lsi.index_name(), Some("by_time"));
    assert_eq!(lsi.key_schema()[1].attribute_name(), "lsi1sk");
    let gsi = &ledger.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("gsi1"));
    assert_eq!(
        gsi.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All)
    );

    let outbox = dynamo
        .describe_table()
        .table_name(stack.table_name("OutboxTable"))
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let stream = outbox.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::NewImage));

    for (table, has_ttl) in [
        ("ParticipantsTable", true),
        ("FraudTable", true),
        ("OutboxTable", true),
        ("CodesTable", false),
    ] {
        let ttl = dynamo
            .describe_time_to_live()
            .table_name(stack.table_name(table))
            .send()
            .await
            .unwrap();
        let description = ttl.time_to_live_description.unwrap();
        let enabled = description.time_to_live_status() == Some(&TimeToLiveStatus::Enabled);
        assert_eq!(enabled, has_ttl, "TTL of {table}");
        if has_ttl {
            assert_eq!(description.attribute_name(), Some("ttl"));
        }
    }

    let sqs = stack.sqs();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(stack.queue_url("BatchJobsQueue"))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "5400");
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"],
        stack.arn("BatchJobsDeadLetterQueue")
    );
    assert_eq!(redrive["maxReceiveCount"], 5);
    let dlq = sqs
        .get_queue_attributes()
        .queue_url(stack.queue_url("BatchJobsDeadLetterQueue"))
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(dlq[&QueueAttributeName::MessageRetentionPeriod], "1209600");

    stack
        .s3()
        .head_bucket()
        .bucket(stack.bucket("ExportsBucket"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn provisioning_twice_is_harmless_and_finds_the_same_resources() {
    let aws = sdk_config().await;
    let options = Options::local(unique_name("twice"));
    let first = provision(&aws, template(), &options).await.unwrap();
    let second = provision(&aws, template(), &options).await.unwrap();
    for (id, physical) in first.iter() {
        let again = second.get(id).unwrap();
        assert_eq!(
            (&physical.name, &physical.arn, &physical.url),
            (&again.name, &again.arn, &again.url),
            "{id}"
        );
    }
    let declared = template()
        .resources
        .values()
        .filter(|r| loyalty_local::provision::is_provisionable(&r.kind))
        .count();
    assert_eq!(first.iter().count(), declared);
}

#[tokio::test]
async fn a_function_environment_points_at_the_stack_resources() {
    let stack = TestStack::for_function("CodesAdminFunction").await;
    let env = stack.env_for("CodesAdminFunction");
    assert_eq!(
        env.required("CODES_TABLE").unwrap(),
        stack.table_name("CodesTable")
    );
    assert_eq!(
        env.required("BATCH_JOBS_QUEUE_URL").unwrap(),
        stack.queue_url("BatchJobsQueue")
    );
    assert_eq!(
        env.required("EXPORTS_BUCKET").unwrap(),
        stack.bucket("ExportsBucket")
    );
    assert_eq!(env.required("RUST_LOG").unwrap(), "info");
    assert_eq!(env.required("S3_FORCE_PATH_STYLE").unwrap(), "true");
    // Only what the function needs (and its queue's dead-letter queue) was created.
    assert!(stack.resources.get("FraudTable").is_none());
    assert!(stack.resources.get("BatchJobsDeadLetterQueue").is_some());
}

#[test]
fn a_varied_sample_event_reaches_the_handler_as_lambda_would_deliver_it() {
    use lambda_http::RequestExt;
    let req = ApiEvent::load("participants/list-outlet-members.json")
        .role("rep")
        .sub("R7")
        .without_outlet()
        .region("south")
        .path_param("outletId", "O2")
        .query("limit", "5")
        .request();
    let caller = loyalty_platform::http::caller(&req).unwrap();
    assert_eq!(caller.subject.as_str(), "R7");
    assert_eq!(caller.role.as_str(), "rep");
    assert_eq!(caller.outlet, None);
    assert_eq!(
        caller.region.map(|r| r.as_str().to_string()).as_deref(),
        Some("south")
    );
    assert_eq!(
        req.path_parameters_ref().and_then(|p| p.first("outletId")),
        Some("O2")
    );
    assert_eq!(
        req.query_string_parameters_ref()
            .and_then(|q| q.first("limit")),
        Some("5")
    );
    assert_eq!(req.uri().path(), "/outlets/O2/members");
    assert_eq!(
        loyalty_platform::http::route_key(&req),
        "GET /outlets/{outletId}/members"
    );

    let anonymous = ApiEvent::load("participants/get-profile.json")
        .without_claims()
        .request();
    assert_eq!(
        loyalty_platform::http::caller(&anonymous).unwrap_err().code,
        "unauthenticated"
    );

    let with_body = ApiEvent::load("participants/update-profile.json")
        .body(serde_json::json!({ "name": "Ann" }))
        .request();
    let body: serde_json::Value = loyalty_platform::http::json_body(&with_body).unwrap();
    assert_eq!(body, serde_json::json!({ "name": "Ann" }));
}

#[tokio::test]
async fn topics_and_fifo_queues_are_provisioned_and_referenced_by_arn_and_url() {
    let fixture = loyalty_local::template::Template::parse(
        r#"
Resources:
  Alerts: { Type: AWS::SNS::Topic }
  Orders: { Type: AWS::SQS::Queue, Properties: { FifoQueue: true, ContentBasedDeduplication: true } }
  Notifier:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: notifier } }
    Properties:
      Environment: { Variables: { TOPIC_ARN: !Ref Alerts, ORDERS_URL: !Ref Orders, ORDERS_ARN: !GetAtt Orders.Arn } }
"#,
    )
    .unwrap();
    let aws = sdk_config().await;
    let options = Options::local(unique_name("sns"));
    let resources = provision(&aws, &fixture, &options).await.unwrap();
    let again = provision(&aws, &fixture, &options).await.unwrap();
    let topic = resources.topic_arn("Alerts").unwrap();
    assert!(
        topic.starts_with("arn:aws:sns:") && topic.ends_with(&format!("{}-Alerts", options.prefix)),
        "{topic}"
    );
    assert_eq!(again.topic_arn("Alerts"), Some(topic));

    let env = resources.env_for("Notifier").unwrap();
    assert_eq!(env.required("TOPIC_ARN").unwrap(), topic);
    let url = env.required("ORDERS_URL").unwrap();
    assert!(url.ends_with(".fifo"), "{url}");
    assert!(env
        .required("ORDERS_ARN")
        .unwrap()
        .starts_with("arn:aws:sqs:"));
    let fifo = aws_sdk_sqs::Client::new(&aws)
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ContentBasedDeduplication)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(fifo[&QueueAttributeName::ContentBasedDeduplication], "true");
}
