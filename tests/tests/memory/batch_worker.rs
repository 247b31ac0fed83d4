//! The batch worker on the memory adapters and a fixed clock: the SQS events in
//! `events/batch-worker/`, and what each job wrote. No emulator.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use lambda_runtime::{Context, LambdaEvent};
use loyalty_domain::batch::BatchSpec;
use loyalty_domain::batch::{Batch, BatchRecords, BatchSeed, BatchStatus, ChunkPlan, PackSize};
use loyalty_domain::code::Code;
use loyalty_domain::ids::RegionId;
use loyalty_domain::ports::FixedClock;
use loyalty_domain::Points;
use loyalty_platform::memory::{MemoryBatches, MemoryExports};
use serde_json::{json, Value};

type App = batch_worker::App<MemoryBatches, MemoryExports, FixedClock>;

const BASE_URL: &str = "https://club.example.com";
/// The message of `events/batch-worker/job.json` (batch 1, chunk 0).
const SAMPLE_MESSAGE: &str = "059f36b4-87a3-44ab-83d2-661975830a7d";

fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// Batch 1: `count` codes in chunks of `chunk_size`, generating.
pub(crate) fn batch(count: u32, chunk_size: u32) -> Batch {
    Batch {
        number: 1,
        spec: BatchSpec {
            sku: "COLA-05".into(),
            product_type: "Cola 0.5 l PET".into(),
            pack_size: PackSize::Millilitres(500),
            points_per_pack: Points(10),
            region: RegionId::parse("north").unwrap(),
            valid_until: NaiveDate::from_ymd_opt(2030, 12, 31).unwrap(),
            count,
        },
        seed: BatchSeed([7; 32]),
        plan: ChunkPlan { count, chunk_size },
        status: BatchStatus::Generating,
        created_at: event_time() - Duration::hours(1),
    }
}

/// A worker over a store holding `batch`.
pub(crate) async fn app(batch: &Batch) -> App {
    let store = MemoryBatches::new();
    store
        .create(batch, "admin-1", None)
        .await
        .unwrap()
        .expect("a fresh batch");
    batch_worker::App::with_ports(
        store,
        MemoryExports::new(),
        BASE_URL,
        FixedClock::at(event_time()),
    )
}

pub(crate) fn load(file: &str) -> Value {
    let path = loyalty_tests::repo_root()
        .join("events/batch-worker")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sample job's record with another message id and job.
pub(crate) fn record(message_id: &str, body: Value) -> Value {
    let mut r = load("job.json")["Records"][0].clone();
    r["messageId"] = json!(message_id);
    r["body"] = json!(body.to_string());
    r
}

pub(crate) async fn deliver(app: &App, records: Vec<Value>) -> Vec<String> {
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    let response: SqsBatchResponse = app
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

async fn deliver_sample(app: &App) -> Vec<String> {
    deliver(app, load("job.json")["Records"].as_array().unwrap().clone()).await
}

#[tokio::test]
async fn a_job_stores_and_exports_its_codes_and_marks_its_chunk() {
    let b = batch(250, 1_000);
    let app = app(&b).await;
    assert!(deliver_sample(&app).await.is_empty());

    let store = app.worker().store();
    let codes = Code::chunk(&b.seed.0, 1, 0, 250);
    assert!(codes.iter().all(|c| store
        .code(c)
        .is_some_and(|s| s.batch == 1 && s.status == "issued")));
    assert_eq!(store.inspect(|w| w.codes.len()), 250);

    let exports = app.worker().exports();
    let csv = exports.object("batches/1/chunk-0.csv").expect("the CSV");
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    let csv = String::from_utf8(csv.body).unwrap();
    assert_eq!(csv.lines().count(), 251, "a header and one row per code");
    assert!(csv.contains(&codes[0].qr_payload(BASE_URL)));
    assert_eq!(
        exports.keys(),
        [
            "batches/1/chunk-0.csv",
            "batches/1/qr/chunk-0/sheet-000.svg",
            "batches/1/qr/chunk-0/sheet-001.svg",
            "batches/1/qr/chunk-0/sheet-002.svg",
        ]
    );
    let marker = store.inspect(|w| w.markers[&(1, 0)].clone());
    assert_eq!((marker.codes, marker.done_at), (250, event_time()));
    assert_eq!(
        store.stored(1).unwrap().status,
        BatchStatus::Ready,
        "its only chunk is done"
    );
}

#[tokio::test]
async fn a_redelivered_job_writes_its_codes_exactly_once() {
    let app = app(&batch(250, 1_000)).await;
    for _ in 0..3 {
        assert!(deliver_sample(&app).await.is_empty());
    }
    assert_eq!(app.worker().store().most_writes_of_one_code(), 1);
    assert_eq!(app.worker().store().inspect(|w| w.markers.len()), 1);
}

#[tokio::test]
async fn a_malformed_job_is_dropped_and_the_rest_of_the_delivery_is_processed() {
    let app = app(&batch(250, 1_000)).await;
    let mut records = load("job-malformed.json")["Records"]
        .as_array()
        .unwrap()
        .clone();
    records.extend(load("job.json")["Records"].as_array().unwrap().clone());
    let failures = deliver(&app, records).await;
    assert!(
        failures.is_empty(),
        "a job that can never succeed is not handed back: {failures:?}"
    );
    assert_eq!(app.worker().store().inspect(|w| w.markers.len()), 1);
}

#[tokio::test]
async fn a_job_failing_on_infrastructure_is_the_only_one_handed_back_and_succeeds_when_redelivered()
{
    let b = batch(30, 10);
    let app = app(&b).await;
    // The first export write fails: chunk 0's job, not chunk 1's or 2's.
    app.worker().exports().refuse_next_puts(1);
    let records = vec![
        record(SAMPLE_MESSAGE, json!({"batch": 1, "chunk": 0})),
        record("m-1", json!({"batch": 1, "chunk": 1})),
        record("m-2", json!({"batch": 1, "chunk": 2})),
    ];
    assert_eq!(deliver(&app, records).await, [SAMPLE_MESSAGE]);
    let store = app.worker().store();
    assert_eq!(
        store.inspect(|w| w.markers.keys().copied().collect::<Vec<_>>()),
        [(1, 1), (1, 2)],
        "no marker for the chunk that failed"
    );
    assert_eq!(store.stored(1).unwrap().status, BatchStatus::Generating);

    assert!(deliver_sample(&app).await.is_empty());
    assert_eq!(store.stored(1).unwrap().status, BatchStatus::Ready);
    assert_eq!(store.inspect(|w| w.codes.len()), 30);
}

#[tokio::test]
async fn a_batch_becomes_ready_with_its_last_chunk_at_the_clocks_time() {
    let app = app(&batch(30, 10)).await;
    let store = app.worker().store();
    for chunk in [2, 0] {
        let failures = deliver(&app, vec![record("m", json!({"batch": 1, "chunk": chunk}))]).await;
        assert!(failures.is_empty());
        assert_eq!(store.stored(1).unwrap().status, BatchStatus::Generating);
    }
    app.worker().clock().advance(Duration::minutes(3));
    deliver(&app, vec![record("m", json!({"batch": 1, "chunk": 1}))]).await;
    assert_eq!(store.stored(1).unwrap().status, BatchStatus::Ready);
    assert_eq!(
        store.inspect(|w| w.ready_at[&1]),
        event_time() + Duration::minutes(3)
    );
}

#[tokio::test]
async fn a_job_for_an_unknown_batch_or_chunk_is_dropped_without_writing() {
    let app = app(&batch(30, 10)).await;
    let records = vec![
        record("m-1", json!({"batch": 2, "chunk": 0})),
        record("m-2", json!({"batch": 1, "chunk": 3})),
    ];
    assert!(deliver(&app, records).await.is_empty());
    assert_eq!(app.worker().store().inspect(|w| w.codes.len()), 0);
    assert!(app.worker().exports().keys().is_empty());
}
