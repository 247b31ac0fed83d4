//! codes-admin on the memory adapters and a fixed clock: the handler's answers to
//! `events/codes-admin/*.json`, and what each request wrote. No emulator.
//!
//! Review routes on `MemoryReviews`; batch routes on `MemoryBatches`, `MemoryJobs` and
//! `MemoryExports`, with the batch worker on the same memory world where a test follows an
//! order to its exports.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_http::http::StatusCode;
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind};
use loyalty_domain::outbox::{OutboxEvent, ReviewVerdict};
use loyalty_domain::ports::FixedClock;
use loyalty_domain::review::{Decision, ReviewId};
use loyalty_domain::zone::{Zone, Zones};
use loyalty_domain::Points;
use loyalty_platform::memory::{MemoryBatches, MemoryExports, MemoryJobs, MemoryReviews};
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

type App = codes_admin::App<MemoryReviews, MemoryBatches, MemoryJobs, MemoryExports>;

/// The review the sample decision names.
const SAMPLE_REVIEW: &str = "p-7f3a9c.claim-5d41402abc4b2a76b971";

fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn flagged(participant: &str, entry: &str, points: u64, minutes_ago: i64) -> Entry {
    Entry {
        id: EntryId::parse(entry).unwrap(),
        participant: ParticipantId::parse(participant).unwrap(),
        outlet: Some(OutletId::parse("o-5d2e8b").unwrap()),
        kind: EntryKind::CodeClaimUnderReview,
        amount: Points(points),
        source: "batch 17 COLA-05".into(),
        created_at: event_time() - Duration::minutes(minutes_ago),
        expires_on: None,
    }
}

/// An app whose queue holds the sample review (40 points) and one more claim.
fn app() -> (App, Arc<FixedClock>) {
    let store = MemoryReviews::new();
    store.flag(
        flagged("p-7f3a9c", "claim-5d41402abc4b2a76b971", 40, 30),
        &["velocity"],
    );
    store.flag(flagged("p-2", "claim-0002", 10, 20), &["region"]);
    let clock = Arc::new(FixedClock::at(event_time()));
    (with_desk(store, MemoryBatches::new(), clock.clone()), clock)
}

/// Chunks of 1,000 codes, so the sample order of 2,500 is three jobs.
const CODES_PER_CHUNK: u32 = 1_000;

/// An app over `desk` and `batches`, with fresh jobs and exports.
fn with_desk(desk: MemoryReviews, batches: MemoryBatches, clock: Arc<FixedClock>) -> App {
    codes_admin::App::with_ports(
        desk,
        codes_admin::BatchPorts {
            records: batches,
            jobs: MemoryJobs::new(),
            links: MemoryExports::new(),
            settings: codes_admin::BatchSettings {
                chunk_size: CODES_PER_CHUNK,
                exports_bucket: "exports".into(),
            },
        },
        clock,
    )
}

async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value, bool) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    let replayed = response.headers().contains_key("idempotent-replayed");
    (response.status(), body_json(&response), replayed)
}

fn decide(review: &str, decision: &str, key: &str) -> ApiEvent {
    ApiEvent::load("codes-admin/decide-review.json")
        .path_param("reviewId", review)
        .header("idempotency-key", key)
        .body(json!({ "decision": decision }))
}

fn sample() -> ReviewId {
    ReviewId::parse(SAMPLE_REVIEW).unwrap()
}

fn participant() -> ParticipantId {
    ParticipantId::parse("p-7f3a9c").unwrap()
}

#[tokio::test]
async fn the_sample_listing_shows_the_queue_oldest_first_with_reasons() {
    let (app, _) = app();
    let (status, body, _) = send(&app, ApiEvent::load("codes-admin/list-reviews.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reviews = body["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["review_id"], SAMPLE_REVIEW);
    assert_eq!(reviews[0]["points"], 40);
    assert_eq!(reviews[0]["reasons"], json!(["velocity"]));
    assert_eq!(reviews[1]["reasons"], json!(["region"]));
    assert_eq!(body["next_cursor"], Value::Null);

    // One at a time, with the cursor; a cursor it did not hand out is 400.
    let first = ApiEvent::load("codes-admin/list-reviews.json").query("limit", "1");
    let (_, page, _) = send(&app, first).await;
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let next = ApiEvent::load("codes-admin/list-reviews.json")
        .query("limit", "1")
        .query("cursor", &cursor);
    let (_, page, _) = send(&app, next).await;
    assert_eq!(page["reviews"][0]["review_id"], "p-2.claim-0002");
    let bad = ApiEvent::load("codes-admin/list-reviews.json").query("cursor", "AAAA");
    let (status, body, _) = send(&app, bad).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    let bad = ApiEvent::load("codes-admin/list-reviews.json").query("limit", "0");
    let (status, body, _) = send(&app, bad).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_limit"))
    );
}

#[tokio::test]
async fn the_sample_approval_moves_pending_to_available_once_and_its_retry_gets_the_first_answer() {
    let (app, clock) = app();
    let (status, body, replayed) =
        send(&app, ApiEvent::load("codes-admin/decide-review.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!replayed);
    assert_eq!(body["review_id"], SAMPLE_REVIEW);
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["points"], 40);

    let store = app.desk();
    let balance = store.balance(&participant());
    assert_eq!((balance.pending, balance.available), (0, 40));
    let entries = store.entries(&participant());
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].kind, EntryKind::ReviewApproved);
    assert_eq!(body["entry_id"], entries[1].id.as_str());
    assert_eq!(Balance::replay(&entries).unwrap().available, 40);
    let verdict = store.verdict(&sample()).unwrap();
    assert_eq!(
        (verdict.decision, verdict.reviewer.as_str()),
        (Decision::Approve, "admin-1")
    );
    assert_eq!(
        store.outbox(),
        vec![OutboxEvent::ClaimReviewed {
            participant_id: participant(),
            entry_id: sample().entry,
            decision: ReviewVerdict::Approved,
            points: Points(40),
        }]
    );
    assert_eq!(store.queued(), 1);

    // The retry after a lost response: the first answer, marked, nothing written.
    clock.advance(Duration::minutes(1));
    let (status, again, replayed) =
        send(&app, ApiEvent::load("codes-admin/decide-review.json")).await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(again, body);

    // Another decision with another key: refused, nothing written, and remembered.
    let (status, refused, _) = send(&app, decide(SAMPLE_REVIEW, "reject", "key-other-1")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["code"], "review_already_decided");
    let (status, _, replayed) = send(&app, decide(SAMPLE_REVIEW, "reject", "key-other-1")).await;
    assert_eq!((status, replayed), (StatusCode::CONFLICT, true));
    assert_eq!(store.entries(&participant()).len(), 2);
    assert_eq!(store.balance(&participant()).available, 40);
    assert_eq!(store.outbox().len(), 1);
}

#[tokio::test]
async fn approving_a_participant_blocked_since_is_409_participant_not_active_and_stays_held() {
    let (app, _) = app();
    app.desk().set_active(&participant(), false);
    let (status, body, _) = send(&app, ApiEvent::load("codes-admin/decide-review.json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("participant_not_active"))
    );
    let store = app.desk();
    let balance = store.balance(&participant());
    assert_eq!((balance.pending, balance.available), (40, 0));
    assert_eq!(store.entries(&participant()).len(), 1);
    assert!(store.outbox().is_empty());
    assert_eq!(store.queued(), 2);
    // Unblocked, the same approval under a new key goes through.
    app.desk().set_active(&participant(), true);
    let (status, body, _) = send(&app, decide(SAMPLE_REVIEW, "approve", "key-after-unblock")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(store.balance(&participant()).available, 40);
}

#[tokio::test]
async fn a_rejection_removes_the_pending_points() {
    let (app, _) = app();
    let (status, body, _) = send(&app, decide(SAMPLE_REVIEW, "reject", "key-reject-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "rejected");
    let balance = app.desk().balance(&participant());
    assert_eq!((balance.pending, balance.available), (0, 0));
    assert!(matches!(
        app.desk().outbox()[0],
        OutboxEvent::ClaimReviewed {
            decision: ReviewVerdict::Rejected,
            ..
        }
    ));
}

#[tokio::test]
async fn refusals_write_nothing_to_the_ledger() {
    let (app, _) = app();
    let untouched = |app: &App| {
        let store = app.desk();
        assert_eq!(store.queued(), 2);
        assert!(store.outbox().is_empty());
        assert_eq!(store.balance(&participant()).pending, 40);
    };
    // Without a key: 400 before anything is read.
    let mut no_key = ApiEvent::load("codes-admin/decide-review.json");
    no_key = no_key.header("idempotency-key", "");
    let (status, body, _) = send(&app, no_key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    untouched(&app);
    // A participant may not decide.
    let (status, _, _) = send(
        &app,
        ApiEvent::load("codes-admin/decide-review.json").role("participant"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    untouched(&app);
    // An unknown review, a bad id, a bad decision.
    let (status, body, _) = send(
        &app,
        decide("p-7f3a9c.claim-9999", "approve", "key-unknown-1"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("review_not_found"))
    );
    let (status, body, _) = send(&app, decide("no-dot", "approve", "key-bad-id-1")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("review_id_invalid"))
    );
    let (status, _, _) = send(&app, decide(SAMPLE_REVIEW, "maybe", "key-bad-decision")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The key of the unknown review, reused on the sample one: another request, refused.
    let (status, body, _) = send(&app, decide(SAMPLE_REVIEW, "approve", "key-unknown-1")).await;
    assert_eq!(body["code"], "idempotency_key_reused", "{status} {body}");
    untouched(&app);
}

// ---------------------------------------------------------------- batch routes

/// An app with no reviews, its batch records and a clock at the sample events' time.
fn batch_app(batches: MemoryBatches) -> (App, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::at(event_time()));
    (
        with_desk(MemoryReviews::new(), batches, clock.clone()),
        clock,
    )
}

fn order() -> ApiEvent {
    ApiEvent::load("codes-admin/create-batch.json")
}

fn jobs_of(app: &App) -> Vec<(u32, u32)> {
    app.jobs()
        .drain()
        .into_iter()
        .map(|j| (j.batch, j.chunk))
        .collect()
}

#[tokio::test]
async fn an_order_writes_the_batch_and_enqueues_one_job_per_chunk() {
    let (app, _) = batch_app(MemoryBatches::new());
    let response = app.handle(order().request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/admin/batches/1");
    assert_eq!(
        body_json(&response),
        json!({"batch": 1, "status": "generating", "count": 2500, "chunks": 3})
    );
    let stored = app.records().stored(1).expect("the batch is written");
    assert_eq!(stored.spec.sku, "COLA-05");
    assert_eq!(stored.created_at, event_time());
    assert_eq!(jobs_of(&app), [(1, 0), (1, 1), (1, 2)]);

    // Without a key, the same order again is another batch.
    let (status, body, replayed) = send(&app, order()).await;
    assert_eq!(
        (status, &body["batch"], replayed),
        (StatusCode::ACCEPTED, &json!(2), false)
    );
}

#[tokio::test]
async fn an_order_retried_with_its_idempotency_key_is_answered_again_and_orders_nothing_more() {
    let (app, _) = batch_app(MemoryBatches::new());
    let keyed = || order().header("idempotency-key", "order-2026-11-cola");
    let (status, first, replayed) = send(&app, keyed()).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, false));
    assert_eq!(jobs_of(&app).len(), 3);

    let response = app.handle(keyed().request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(response.headers()["location"], "/admin/batches/1");
    assert_eq!(body_json(&response), first);
    assert!(app.records().stored(2).is_none(), "no second batch");
    assert_eq!(
        app.records().inspect(|w| w.last_number),
        1,
        "no batch number spent on the retry"
    );
}

#[tokio::test]
async fn a_retried_order_sends_again_the_jobs_of_chunks_not_yet_done() {
    use loyalty_domain::batch::{BatchProgress, ChunkExports, ChunkMarker};
    let (app, _) = batch_app(MemoryBatches::new());
    let keyed = || order().header("idempotency-key", "order-2026-11-cola");
    send(&app, keyed()).await;
    // The first request's jobs were lost, and chunk 1 got done by one that was not.
    app.jobs().drain();
    app.records()
        .mark_chunk_done(
            1,
            &ChunkMarker {
                chunk: 1,
                codes: 1_000,
                exports: ChunkExports {
                    csv_key: "batches/1/chunk-1.csv".into(),
                    qr_prefix: "batches/1/qr/chunk-1/".into(),
                },
                done_at: event_time(),
            },
        )
        .await
        .unwrap();
    let (status, _, replayed) = send(&app, keyed()).await;
    assert_eq!((status, replayed), (StatusCode::ACCEPTED, true));
    assert_eq!(jobs_of(&app), [(1, 0), (1, 2)]);
}

#[tokio::test]
async fn a_key_reused_for_another_order_is_refused_and_orders_nothing() {
    let (app, _) = batch_app(MemoryBatches::new());
    send(
        &app,
        order().header("idempotency-key", "order-2026-11-cola"),
    )
    .await;
    app.jobs().drain();
    let other = order()
        .header("idempotency-key", "order-2026-11-cola")
        .body(
            json!({"sku": "COLA-1L", "product_type": "Cola 1 l PET", "pack_size": "1 l",
            "points_per_pack": 20, "region": "north", "valid_until": "2030-12-31", "count": 10}),
        );
    let response = app.handle(other.request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(body_json(&response)["code"], "idempotency_key_reused");
    assert!(app.records().stored(2).is_none());
    assert!(app.jobs().is_empty());
}

#[tokio::test]
async fn an_invalid_order_is_refused_before_anything_is_written() {
    let (app, _) = batch_app(MemoryBatches::new());
    let cases = [
        (
            ApiEvent::load("codes-admin/create-batch-invalid.json"),
            StatusCode::BAD_REQUEST,
            "invalid_pack_size",
        ),
        (
            order().text_body("{\"sku\":"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            order().header("idempotency-key", "short"),
            StatusCode::BAD_REQUEST,
            "idempotency_key_invalid",
        ),
        (
            ApiEvent::load("codes-admin/create-batch-as-participant.json"),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            order().without_claims(),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
    ];
    for (event, status, code) in cases {
        let response = app.handle(event.request()).await.unwrap();
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{code}"
        );
        assert_eq!(body_json(&response)["code"], code);
    }
    assert_eq!(
        app.records().inspect(|w| (w.last_number, w.batches.len())),
        (0, 0)
    );
    assert!(app.jobs().is_empty());
}

#[tokio::test]
async fn valid_until_is_in_the_past_by_the_date_in_the_batchs_region_zone() {
    let batches = MemoryBatches::new();
    batches.set_zones(Zones {
        programme: Zone::UTC,
        regions: [(
            RegionId::parse("north").unwrap(),
            Zone::parse("Asia/Omsk").unwrap(),
        )]
        .into(),
    });
    let (app, clock) = batch_app(batches);
    // 19:00 UTC on 30 November: already 1 December in Omsk (UTC+6), not in UTC.
    clock.advance(Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0).unwrap() - event_time());
    let until_30_november = |region: &str| {
        order().body(json!({
            "sku": "COLA-05", "product_type": "Cola 0.5 l PET", "pack_size": "0.5 l",
            "points_per_pack": 10, "region": region, "valid_until": "2026-11-30", "count": 10
        }))
    };

    let (status, body, _) = send(&app, until_30_november("north")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "valid_until_in_past");
    assert_eq!(app.records().inspect(|w| w.batches.len()), 0);
    assert!(app.jobs().is_empty());

    // A region without a zone of its own counts in the programme's (UTC): still 30 November.
    let (status, body, _) = send(&app, until_30_november("south")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn an_order_when_every_batch_number_is_used_is_a_conflict() {
    let last = loyalty_domain::code::BATCHES - 1;
    let (app, _) = batch_app(MemoryBatches::new().with_last_number(last));
    let (status, body, _) = send(&app, order()).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("batch_numbers_exhausted"))
    );
    assert!(app.jobs().is_empty());
}

#[tokio::test]
async fn a_batch_shows_its_progress_and_a_download_link_for_each_finished_chunk() {
    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_runtime::{Context, LambdaEvent};

    let batches = MemoryBatches::new();
    let (app, clock) = batch_app(batches.clone());
    send(&app, order()).await;
    let status_of = || ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", "1");
    let (status, view, _) = send(&app, status_of()).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        (&view["status"], &view["chunks"], &view["chunks_done"]),
        (&json!("generating"), &json!(3), &json!(0))
    );
    assert_eq!(view["exports"], json!([]));

    // The worker, on the same records, takes the jobs one by one.
    let worker = batch_worker::App::with_ports(
        batches,
        MemoryExports::new(),
        "https://club.example.com",
        FixedClock::at(event_time()),
    );
    let jobs = app.jobs().drain();
    for (i, job) in jobs.iter().enumerate() {
        let event: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": format!("m-{i}"),
            "body": serde_json::to_string(job).unwrap(),
            "eventSource": "aws:sqs",
        }]}))
        .unwrap();
        let response = worker
            .handle(LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let (_, view, _) = send(&app, status_of()).await;
        assert_eq!(view["chunks_done"], i + 1);
        let expected = if i + 1 == jobs.len() {
            "ready"
        } else {
            "generating"
        };
        assert_eq!(view["status"], expected);
    }

    clock.advance(Duration::minutes(5));
    let (_, view, _) = send(&app, status_of()).await;
    let expires = event_time() + Duration::minutes(5 + 15);
    assert_eq!(
        view["exports"][2],
        json!({
            "chunk": 2,
            "codes": 500,
            "csv_key": "batches/1/chunk-2.csv",
            "csv_url": format!("memory://batches/1/chunk-2.csv?expires={}", expires.timestamp()),
            "csv_url_expires_at": expires.to_rfc3339(),
            "qr_prefix": "batches/1/qr/chunk-2/",
        })
    );
}

#[tokio::test]
async fn an_unknown_batch_is_not_found_and_a_batch_id_must_be_a_number() {
    let (app, _) = batch_app(MemoryBatches::new());
    let (status, body, _) = send(
        &app,
        ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", "4000"),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("batch_not_found"))
    );
    let (status, body, _) = send(
        &app,
        ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", "b-1"),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_batch_id"))
    );
}
