//! The review routes of codes-admin on `MemoryReviews` and a fixed clock: the handler's
//! answers to `events/codes-admin/*review*.json`, and what each request wrote. No emulator.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_http::http::StatusCode;
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{Balance, Entry, EntryKind};
use loyalty_domain::outbox::{OutboxEvent, ReviewVerdict};
use loyalty_domain::ports::FixedClock;
use loyalty_domain::review::{Decision, ReviewId};
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryReviews;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

type App = codes_admin::App<MemoryReviews>;

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
    (App::with_desk(store, clock.clone()), clock)
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
