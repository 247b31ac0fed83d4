//! Event sources other than HTTP: queue consumers and schedules, delivered as Lambda would
//! deliver them (same event JSON, same partial-batch semantics).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::provision::Resources;
use crate::registry::{App, Apps, Handler};
use crate::schedule::Schedule;
use crate::template::{EventSource, Intrinsic};

/// A Lambda invocation context for a local call.
pub fn context(function_id: &str, region: &str) -> Context {
    let mut context = Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    context.invoked_function_arn =
        format!("arn:aws:lambda:{region}:123456789012:function:{function_id}");
    let deadline = chrono::Utc::now() + chrono::Duration::minutes(15);
    context.deadline = deadline.timestamp_millis() as u64;
    context
}

/// One queue consumer: a function's SQS event source, resolved to a local queue.
#[derive(Debug, Clone)]
pub struct QueueSource {
    pub function_id: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: u32,
    pub report_batch_item_failures: bool,
}

pub fn queue_sources(apps: &Apps, resources: &Resources) -> Result<Vec<QueueSource>, String> {
    let mut sources = Vec::new();
    for app in apps.iter() {
        for event in &app.function.events {
            let EventSource::Sqs {
                queue,
                batch_size,
                report_batch_item_failures,
            } = &event.source
            else {
                continue;
            };
            let queue_id = match Intrinsic::of(queue) {
                Some(Intrinsic::GetAtt { resource, .. }) | Some(Intrinsic::Ref(resource)) => {
                    resource
                }
                _ => {
                    return Err(format!(
                        "{} event {}: Queue must be !GetAtt QUEUE.Arn",
                        app.function.logical_id, event.name
                    ))
                }
            };
            let physical = resources.get(&queue_id).ok_or_else(|| {
                format!(
                    "{}: queue {queue_id} was not provisioned",
                    app.function.logical_id
                )
            })?;
            if !matches!(app.handler, Handler::Sqs(_)) {
                return Err(format!(
                    "{} has an SQS event but its registered handler does not take SQS events",
                    app.function.logical_id
                ));
            }
            sources.push(QueueSource {
                function_id: app.function.logical_id.clone(),
                queue_url: physical.url.clone().unwrap_or_default(),
                queue_arn: physical.arn.clone(),
                batch_size: (*batch_size).clamp(1, 10),
                report_batch_item_failures: *report_batch_item_failures,
            });
        }
    }
    Ok(sources)
}

/// The `Records` Lambda's SQS event source mapping would send for these messages.
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            let message_attributes: Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            let binary = v.binary_value().map(|b| base64_encode(b.as_ref()));
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "binaryValue": binary,
                                    "stringListValues": v.string_list_values(),
                                    "binaryListValues": v.binary_list_values().iter().map(|b| base64_encode(b.as_ref())).collect::<Vec<_>>(),
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "md5OfMessageAttributes": m.md5_of_message_attributes(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Receives one batch, hands it to the function, and deletes what it processed. Returns
/// how many messages were received.
pub async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    app: &App,
    source: &QueueSource,
    region: &str,
    wait_seconds: i32,
) -> Result<usize, String> {
    let Handler::Sqs(handler) = &app.handler else {
        return Err(format!("{} does not take SQS events", source.function_id));
    };
    let received = sqs
        .receive_message()
        .queue_url(&source.queue_url)
        .max_number_of_messages(source.batch_size as i32)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| {
            format!(
                "ReceiveMessage: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let event = serde_json::from_value(sqs_event(&messages, &source.queue_arn, region))
        .map_err(|e| format!("building the SQS event: {e}"))?;
    let started = std::time::Instant::now();
    let outcome = handler(LambdaEvent::new(
        event,
        context(&source.function_id, region),
    ))
    .await;
    let failed: HashSet<String> = match outcome {
        // Without ReportBatchItemFailures, Lambda ignores the response: success deletes all.
        Ok(response) if source.report_batch_item_failures => response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect(),
        Ok(_) => HashSet::new(),
        Err(error) => {
            // As in AWS, a failed invocation leaves the whole batch to reappear after the
            // visibility timeout, and to move to the dead-letter queue after maxReceiveCount.
            tracing::error!(function = %source.function_id, messages = messages.len(), error = %error, "queue batch failed; left for redelivery");
            return Ok(messages.len());
        }
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.message_id().is_some_and(|id| failed.contains(id)))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    let deleted = entries.len();
    if !entries.is_empty() {
        sqs.delete_message_batch()
            .queue_url(&source.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "DeleteMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?;
    }
    tracing::info!(
        function = %source.function_id,
        received = messages.len(),
        deleted,
        failed = messages.len() - deleted,
        latency_ms = started.elapsed().as_millis() as u64,
        "queue batch"
    );
    Ok(messages.len())
}

pub fn spawn_pollers(
    sqs: aws_sdk_sqs::Client,
    apps: &Apps,
    sources: Vec<QueueSource>,
    region: String,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    sources
        .into_iter()
        .filter_map(|source| {
            let app = apps.get(&source.function_id)?.clone();
            let (sqs, region, mut shutdown) = (sqs.clone(), region.clone(), shutdown.clone());
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        result = poll_once(&sqs, &app, &source, &region, 10) => {
                            if let Err(error) = result {
                                tracing::warn!(function = %source.function_id, %error, "queue poll failed; retrying");
                                tokio::select! {
                                    _ = shutdown.changed() => break,
                                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                                }
                            }
                        }
                    }
                }
            }))
        })
        .collect()
}

/// One schedule: a function's `Schedule`/`ScheduleV2` event.
#[derive(Debug, Clone)]
pub struct ScheduleSource {
    pub function_id: String,
    pub event_name: String,
    pub expression: String,
    pub schedule: Schedule,
    pub enabled: bool,
    pub input: Option<Value>,
}

pub fn schedule_sources(apps: &Apps) -> Result<Vec<ScheduleSource>, String> {
    let mut sources = Vec::new();
    for app in apps.iter() {
        for event in &app.function.events {
            let EventSource::Schedule {
                expression,
                enabled,
                input,
            } = &event.source
            else {
                continue;
            };
            let schedule = Schedule::parse(expression)
                .map_err(|e| format!("{} event {}: {e}", app.function.logical_id, event.name))?;
            let input = input
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| {
                    format!(
                        "{} event {}: Input is not JSON: {e}",
                        app.function.logical_id, event.name
                    )
                })?;
            if !matches!(app.handler, Handler::Event(_)) {
                return Err(format!(
                    "{} has a schedule but its registered handler does not take events",
                    app.function.logical_id
                ));
            }
            sources.push(ScheduleSource {
                function_id: app.function.logical_id.clone(),
                event_name: event.name.clone(),
                expression: expression.clone(),
                schedule,
                enabled: *enabled,
                input,
            });
        }
    }
    Ok(sources)
}

/// The event EventBridge sends a scheduled target: the schedule's `Input` if it has one.
pub fn scheduled_event(
    source: &ScheduleSource,
    region: &str,
    time: chrono::DateTime<chrono::Utc>,
) -> Value {
    if let Some(input) = &source.input {
        return input.clone();
    }
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:123456789012:rule/{}-{}", source.function_id, source.event_name)],
        "detail": {},
    })
}

/// Runs a scheduled function once, now.
pub async fn run_schedule(
    app: &App,
    source: &ScheduleSource,
    region: &str,
) -> Result<Value, String> {
    let Handler::Event(handler) = &app.handler else {
        return Err(format!("{} does not take events", source.function_id));
    };
    let event = scheduled_event(source, region, chrono::Utc::now());
    let started = std::time::Instant::now();
    let result = handler(LambdaEvent::new(
        event,
        context(&source.function_id, region),
    ))
    .await
    .map_err(|e| e.to_string());
    tracing::info!(function = %source.function_id, event = %source.event_name, ok = result.is_ok(), latency_ms = started.elapsed().as_millis() as u64, "schedule ran");
    result
}

pub fn spawn_schedules(
    apps: &Apps,
    sources: Vec<ScheduleSource>,
    region: String,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    sources
        .into_iter()
        .filter(|s| s.enabled)
        .filter_map(|source| {
            let app = apps.get(&source.function_id)?.clone();
            let (region, mut shutdown) = (region.clone(), shutdown.clone());
            Some(tokio::spawn(async move {
                let mut last = chrono::Utc::now();
                while let Some(next) = source.schedule.next_after(last) {
                    let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if let Err(error) = run_schedule(&app, &source, &region).await {
                        tracing::error!(function = %source.function_id, %error, "scheduled run failed");
                    }
                    last = next;
                }
            }))
        })
        .collect()
}
