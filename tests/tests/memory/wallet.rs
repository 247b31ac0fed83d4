//! The wallet on the memory ledger and a fixed clock: the answers to the sample events in
//! `events/wallet/` after entries were appended. No emulator.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use lambda_http::http::StatusCode;
use loyalty_domain::earning::{Tier, Tiers};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{Entry, EntryKind};
use loyalty_domain::ports::FixedClock;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryLedger;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::Value;

/// The participant and outlet of the sample events.
const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_OUTLET: &str = "o-5d2e8b";

type App = wallet::App<MemoryLedger, FixedClock>;

/// The sample events' time: 22 Nov 2026, 10:00 UTC.
fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

pub(crate) fn app() -> App {
    wallet::App::with_ledger(MemoryLedger::new(), FixedClock::at(event_time()))
}

/// An entry of the sample participant at the sample outlet, `hours_ago` before the events.
fn entry(id: &str, kind: EntryKind, points: u64, hours_ago: i64) -> Entry {
    Entry {
        id: EntryId::parse(id).unwrap(),
        participant: ParticipantId::parse(SAMPLE_PARTICIPANT).unwrap(),
        outlet: Some(OutletId::parse(SAMPLE_OUTLET).unwrap()),
        kind,
        amount: Points(points),
        source: format!("test {id}"),
        created_at: event_time() - Duration::hours(hours_ago),
        expires_on: None,
    }
}

pub(crate) async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value, String) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (response.status(), body_json(&response), content_type)
}

#[tokio::test]
async fn the_balance_is_what_the_entries_moved() {
    let app = app();
    app.ledger()
        .append(entry("claim-1", EntryKind::CodeClaim, 40, 3))
        .unwrap();
    app.ledger()
        .append(entry("claim-2", EntryKind::CodeClaimUnderReview, 25, 2))
        .unwrap();
    app.ledger()
        .append(entry("spend-1", EntryKind::Redemption, 15, 1))
        .unwrap();
    let (status, body, _) = send(&app, ApiEvent::load("wallet/get-balance.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["participant_id"], SAMPLE_PARTICIPANT);
    assert_eq!(body["outlet_id"], SAMPLE_OUTLET);
    assert_eq!(
        (
            &body["available"],
            &body["pending"],
            &body["spent"],
            &body["lifetime_earned"],
            &body["version"]
        ),
        (
            &Value::from(25),
            &Value::from(25),
            &Value::from(15),
            &Value::from(40),
            &Value::from(3)
        )
    );
    assert_eq!(body["tier"], Value::Null, "no tiers are configured");
}

#[tokio::test]
async fn an_account_without_entries_has_a_zero_balance() {
    let (status, body, _) = send(&app(), ApiEvent::load("wallet/get-balance.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&body["available"], &body["version"]),
        (&0.into(), &0.into())
    );
}

#[tokio::test]
async fn the_tier_counts_only_points_earned_in_the_trailing_twelve_months() {
    let app = app();
    app.ledger().set_tiers(
        Tiers::parse(vec![
            Tier {
                name: "base".into(),
                threshold: 0,
                multiplier_percent: 100,
            },
            Tier {
                name: "gold".into(),
                threshold: 100,
                multiplier_percent: 150,
            },
        ])
        .unwrap(),
    );
    // 80 earned 13 months ago no longer counts; 60 earned last week does.
    app.ledger()
        .append(entry("claim-old", EntryKind::CodeClaim, 80, 24 * 400))
        .unwrap();
    app.ledger()
        .append(entry("claim-new", EntryKind::CodeClaim, 60, 24 * 7))
        .unwrap();
    let (_, body, _) = send(&app, ApiEvent::load("wallet/get-balance.json")).await;
    assert_eq!(body["tier"]["name"], "base");
    assert_eq!(body["tier"]["earned_last_12_months"], 60);

    app.ledger()
        .append(entry("claim-more", EntryKind::CodeClaim, 40, 1))
        .unwrap();
    let (_, body, _) = send(&app, ApiEvent::load("wallet/get-balance.json")).await;
    assert_eq!(
        (&body["tier"]["name"], &body["tier"]["multiplier_percent"]),
        (&"gold".into(), &150.into())
    );
}

#[tokio::test]
async fn the_history_pages_newest_first_without_gaps_or_repeats() {
    let app = app();
    for i in 0..5 {
        app.ledger()
            .append(entry(
                &format!("claim-{i}"),
                EntryKind::CodeClaim,
                10,
                10 - i,
            ))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut event = ApiEvent::load("wallet/get-ledger.json").query("limit", "2");
        if let Some(c) = &cursor {
            event = event.query("cursor", c);
        }
        let (status, body, _) = send(&app, event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for e in body["entries"].as_array().unwrap() {
            seen.push(e["entry_id"].as_str().unwrap().to_string());
            assert_eq!(e["available_change"], 10);
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["claim-4", "claim-3", "claim-2", "claim-1", "claim-0"]
    );
}

#[tokio::test]
async fn a_history_entry_shows_its_signed_changes_and_its_expiry_date() {
    let app = app();
    let mut credit = entry("claim-1", EntryKind::CodeClaim, 40, 2);
    credit.expires_on = Some(NaiveDate::from_ymd_opt(2027, 11, 30).unwrap());
    app.ledger().append(credit).unwrap();
    app.ledger()
        .append(entry("spend-1", EntryKind::Redemption, 15, 1))
        .unwrap();
    let (_, body, _) = send(&app, ApiEvent::load("wallet/get-ledger.json")).await;
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries[0]["entry_id"], "spend-1");
    assert_eq!(entries[0]["available_change"], -15);
    assert_eq!(entries[0]["expires_on"], Value::Null);
    assert_eq!(entries[1]["kind"], "code_claim");
    assert_eq!(entries[1]["expires_on"], "2027-11-30");
    assert_eq!(body["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_tampered_cursor_is_a_bad_request() {
    let app = app();
    for i in 0..3 {
        app.ledger()
            .append(entry(
                &format!("claim-{i}"),
                EntryKind::CodeClaim,
                10,
                5 - i,
            ))
            .unwrap();
    }
    let (_, body, _) = send(
        &app,
        ApiEvent::load("wallet/get-ledger.json").query("limit", "1"),
    )
    .await;
    let cursor = body["next_cursor"].as_str().unwrap().to_string();
    let mut tampered = cursor.clone();
    tampered.insert(3, 'x');
    let (status, body, content_type) = send(
        &app,
        ApiEvent::load("wallet/get-ledger.json").query("cursor", &tampered),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["code"], "invalid_cursor");
}

#[tokio::test]
async fn another_participants_cursor_is_a_bad_request() {
    let app = app();
    for i in 0..2 {
        app.ledger()
            .append(entry(
                &format!("claim-{i}"),
                EntryKind::CodeClaim,
                10,
                5 - i,
            ))
            .unwrap();
    }
    let (_, body, _) = send(
        &app,
        ApiEvent::load("wallet/get-ledger.json").query("limit", "1"),
    )
    .await;
    let cursor = body["next_cursor"].as_str().unwrap().to_string();
    let (status, body, _) = send(
        &app,
        ApiEvent::load("wallet/get-ledger.json")
            .sub("p-other")
            .query("cursor", &cursor),
    )
    .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &"invalid_cursor".into())
    );
}

#[tokio::test]
async fn a_page_size_out_of_range_is_a_bad_request() {
    for limit in ["0", "101", "ten"] {
        let (status, body, _) = send(
            &app(),
            ApiEvent::load("wallet/get-ledger.json").query("limit", limit),
        )
        .await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::BAD_REQUEST, &"invalid_limit".into()),
            "limit={limit}"
        );
    }
}

#[tokio::test]
async fn a_request_without_verified_claims_is_unauthenticated() {
    for file in [
        "wallet/get-balance.json",
        "wallet/get-ledger.json",
        "wallet/get-outlet-totals.json",
    ] {
        let (status, body, content_type) =
            send(&app(), ApiEvent::load(file).without_claims()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{file}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["code"], "unauthenticated");
    }
}

#[tokio::test]
async fn an_owner_sees_the_outlet_totals_and_a_seller_does_not() {
    let app = app();
    app.ledger()
        .append(entry("claim-1", EntryKind::CodeClaim, 40, 2))
        .unwrap();
    let owner = ApiEvent::load("wallet/get-outlet-totals.json")
        .outlet(SAMPLE_OUTLET, "owner")
        .path_param("outletId", SAMPLE_OUTLET);
    let (status, body, _) = send(&app, owner).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totals"]["available"], 40);

    let seller = ApiEvent::load("wallet/get-outlet-totals.json")
        .outlet(SAMPLE_OUTLET, "seller")
        .path_param("outletId", SAMPLE_OUTLET);
    let (status, _, _) = send(&app, seller).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
