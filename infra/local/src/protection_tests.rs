//! template.yaml protects the data that is money: these read the raw template, since the
//! local runner's own model keeps only what it provisions.

use serde_yaml::Value;

use crate::template::default_template_path;

fn template() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(default_template_path()).unwrap()).unwrap()
}

fn resources_of(doc: &Value, kind: &str) -> Vec<(String, Value)> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// Tables holding balances, codes, participants, programme settings or activity.
const MONEY_TABLES: &[&str] = &[
    "ParticipantsTable",
    "CodesTable",
    "LedgerTable",
    "ProgrammeTable",
    "ActivityTable",
];

fn tagged_target(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(t) => t.value.as_str().map(String::from),
        _ => None,
    }
}

#[test]
fn money_tables_survive_stack_deletion_and_replacement_and_refuse_delete_table() {
    let doc = template();
    for table in MONEY_TABLES {
        let r = &doc["Resources"][*table];
        assert_eq!(r["Type"].as_str(), Some("AWS::DynamoDB::Table"), "{table}");
        assert_eq!(r["DeletionPolicy"].as_str(), Some("Retain"), "{table}");
        assert_eq!(r["UpdateReplacePolicy"].as_str(), Some("Retain"), "{table}");
        assert_eq!(
            r["Properties"]["DeletionProtectionEnabled"].as_bool(),
            Some(true),
            "{table}"
        );
    }
}

#[test]
fn every_table_has_point_in_time_recovery() {
    let doc = template();
    for (id, table) in resources_of(&doc, "AWS::DynamoDB::Table") {
        assert_eq!(
            table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
                .as_bool(),
            Some(true),
            "{id}"
        );
    }
}

#[test]
fn every_function_logs_to_its_own_group_kept_for_the_retention_parameter() {
    let doc = template();
    for (id, function) in resources_of(&doc, "AWS::Serverless::Function") {
        let group = tagged_target(&function["Properties"]["LoggingConfig"]["LogGroup"])
            .unwrap_or_else(|| panic!("{id} names no log group"));
        let log_group = &doc["Resources"][group.as_str()];
        assert_eq!(
            log_group["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{id}"
        );
        assert_eq!(
            tagged_target(&log_group["Properties"]["RetentionInDays"]).as_deref(),
            Some("LogRetentionDays"),
            "{id}"
        );
    }
}

#[test]
fn every_function_alarms_on_errors_and_throttles_and_the_dead_letters_and_api_5xx_alarm_too() {
    let doc = template();
    let alarms = resources_of(&doc, "AWS::CloudWatch::Alarm");
    // Alarms on metric math (the business alarms) have no single MetricName.
    let watched: Vec<(String, String)> = alarms
        .iter()
        .filter_map(|(_, a)| {
            let p = &a["Properties"];
            let dimension = &p["Dimensions"][0]["Value"];
            let target = tagged_target(dimension).unwrap_or_default();
            let target = target.split('.').next().unwrap().to_string();
            Some((p["MetricName"].as_str()?.to_string(), target))
        })
        .collect();
    for (id, _) in resources_of(&doc, "AWS::Serverless::Function") {
        for metric in ["Errors", "Throttles"] {
            assert!(
                watched.contains(&(metric.to_string(), id.clone())),
                "no {metric} alarm on {id}"
            );
        }
    }
    assert!(watched.contains(&(
        "ApproximateNumberOfMessagesVisible".into(),
        "BatchJobsDeadLetterQueue".into()
    )));
    assert!(watched.contains(&("5xx".into(), "HttpApi".into())));
    for (id, alarm) in &alarms {
        // Every alarm notifies the topic parameter (when one is given).
        let actions = format!("{:?}", alarm["Properties"]["AlarmActions"]);
        assert!(actions.contains("AlarmTopicArn"), "{id}");
    }
}

#[test]
fn the_unauthenticated_webhook_and_the_batch_worker_have_reserved_concurrency() {
    let doc = template();
    for (function, parameter) in [
        ("PartnerWebhooksFunction", "WebhookReservedConcurrency"),
        ("BatchWorkerFunction", "BatchWorkerReservedConcurrency"),
    ] {
        let reserved = &doc["Resources"][function]["Properties"]["ReservedConcurrentExecutions"];
        assert_eq!(tagged_target(reserved).as_deref(), Some(parameter));
        assert!(doc["Parameters"][parameter]["Default"].as_u64().is_some());
    }
}

#[test]
fn the_api_is_throttled_and_allows_only_the_configured_origins() {
    let doc = template();
    let api = &doc["Resources"]["HttpApi"]["Properties"];
    let routes = &api["DefaultRouteSettings"];
    assert_eq!(
        tagged_target(&routes["ThrottlingBurstLimit"]).as_deref(),
        Some("ApiThrottlingBurstLimit")
    );
    assert_eq!(
        tagged_target(&routes["ThrottlingRateLimit"]).as_deref(),
        Some("ApiThrottlingRateLimit")
    );
    assert_eq!(
        tagged_target(&api["CorsConfiguration"]["AllowOrigins"][0]).as_deref(),
        Some("CorsAllowedOrigin")
    );
}

#[test]
fn the_exports_bucket_is_private_tls_only_and_expires_exports() {
    let doc = template();
    let bucket = &doc["Resources"]["ExportsBucket"]["Properties"];
    let block = &bucket["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(rule["Status"].as_str(), Some("Enabled"));
    assert_eq!(
        tagged_target(&rule["ExpirationInDays"]).as_deref(),
        Some("ExportsExpirationDays")
    );
    let policies = resources_of(&doc, "AWS::S3::BucketPolicy");
    let denies_plain_http = policies.iter().any(|(_, p)| {
        tagged_target(&p["Properties"]["Bucket"]).as_deref() == Some("ExportsBucket")
            && p["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|s| {
                    s["Effect"].as_str() == Some("Deny")
                        && s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
                })
    });
    assert!(denies_plain_http);
}
