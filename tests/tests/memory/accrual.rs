//! `POST /actions` on the memory action store and a fixed clock: the handler's answers to
//! `events/accrual/report-action.json` and what each request wrote. No emulator.

use accrual::ActionSettings;
use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use loyalty_domain::earning::{Action, Period, PeriodLimit, Rule, RuleId, Tier, Tiers, Trigger};
use loyalty_domain::ids::{OutletId, ParticipantId};
use loyalty_domain::ports::FixedClock;
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryActions;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

/// The participant and outlet of the sample event.
const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_OUTLET: &str = "o-5d2e8b";

type App = accrual::App<MemoryActions, FixedClock>;

/// The sample event's time: 22 Nov 2026, 10:00 UTC.
fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// The sample event's rule: a survey worth `points`, limited as asked.
fn survey(points: u64, per_participant: Option<u32>, per_month: Option<u32>) -> Rule {
    Rule {
        id: RuleId::parse("survey-q4").unwrap(),
        trigger: Trigger::Action(Action::Survey),
        points: Points(points),
        per_participant,
        per_period: per_month.map(|max| PeriodLimit {
            max,
            period: Period::Month,
        }),
        valid_from: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
        valid_until: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
        over_budget: loyalty_domain::earning::OverBudget::Refuse,
    }
}

fn app(rule: Rule) -> App {
    let store = MemoryActions::new();
    store.put_rule(rule);
    accrual::App::with_store(
        store,
        ActionSettings::default(),
        FixedClock::at(event_time()),
    )
}

fn sample() -> ApiEvent {
    ApiEvent::load("accrual/report-action.json")
}

fn keyed(key: &str) -> ApiEvent {
    sample().header("idempotency-key", key)
}

async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value, Response<Body>) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response), response)
}

fn content_type(response: &Response<Body>) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

fn replayed(response: &Response<Body>) -> bool {
    response.headers().get("idempotent-replayed").is_some()
}

fn participant() -> ParticipantId {
    ParticipantId::parse(SAMPLE_PARTICIPANT).unwrap()
}

fn silver_tiers() -> Tiers {
    Tiers::parse(vec![
        Tier {
            name: "bronze".into(),
            threshold: 0,
            multiplier_percent: 100,
        },
        Tier {
            name: "silver".into(),
            threshold: 100,
            multiplier_percent: 150,
        },
    ])
    .unwrap()
}

#[tokio::test]
async fn the_sample_action_credits_once_with_entry_balance_totals_counters_and_outbox_record() {
    let app = app(survey(40, Some(3), Some(2)));
    let (status, body, response) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(content_type(&response), "application/json");
    assert!(!replayed(&response));
    assert_eq!(
        (
            &body["rule_id"],
            &body["action"],
            &body["points"],
            &body["base_points"],
            &body["tier"],
            &body["multiplier_percent"]
        ),
        (
            &json!("survey-q4"),
            &json!("survey"),
            &json!(40),
            &json!(40),
            &json!("base"),
            &json!(100)
        )
    );
    let store = app.store();
    let entries = store.entries(&participant());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id.as_str(), body["entry_id"].as_str().unwrap());
    assert_eq!(entries[0].source, "rule survey-q4: survey-2026-11");
    assert_eq!(
        entries[0].outlet,
        Some(OutletId::parse(SAMPLE_OUTLET).unwrap())
    );
    assert_eq!(store.balance(&participant()).unwrap().available, 40);
    assert_eq!(
        store
            .outlet_totals(&OutletId::parse(SAMPLE_OUTLET).unwrap())
            .unwrap()
            .available,
        40
    );
    assert_eq!(store.used(&participant(), "survey-q4", "EVER"), 1);
    assert_eq!(store.used(&participant(), "survey-q4", "M2026-11"), 1);
    let outbox = store.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].payload["type"], "points_credited");
    assert_eq!(outbox[0].payload["points"], 40);
}

#[tokio::test]
async fn a_replay_answers_the_first_answer_and_credits_nothing_more() {
    let app = app(survey(40, None, None));
    let (status, first, _) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again, response) = send(&app, sample()).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &first));
    assert!(replayed(&response));
    assert_eq!(app.store().entries(&participant()).len(), 1);
    assert_eq!(app.store().balance(&participant()).unwrap().available, 40);

    // The same key with another body is a misuse, and writes nothing.
    let other = sample().body(json!({ "rule_id": "survey-q4", "reference": "another" }));
    let (status, body, response) = send(&app, other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "idempotency_key_reused");
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(app.store().entries(&participant()).len(), 1);
}

#[tokio::test]
async fn a_used_up_limit_is_409_remembered_under_its_key_and_writes_nothing() {
    let app = app(survey(40, Some(2), Some(1)));
    let (status, _, _) = send(&app, keyed("month-key-0001")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body, response) = send(&app, keyed("month-key-0002")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "period_limit_reached");
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(app.store().used(&participant(), "survey-q4", "M2026-11"), 1);
    assert_eq!(app.store().used(&participant(), "survey-q4", "EVER"), 1);

    // The key's refusal is the answer to a retry, while the record lives (24 h).
    let (status, again, response) = send(&app, keyed("month-key-0002")).await;
    assert_eq!((status, &again), (StatusCode::CONFLICT, &body));
    assert!(replayed(&response));
    // Next month the period counter starts again.
    app.clock().advance(Duration::days(10));
    let (status, _, _) = send(&app, keyed("month-key-0003")).await;
    assert_eq!(status, StatusCode::CREATED);
    // Two credits: the participant limit now refuses.
    let (status, body, _) = send(&app, keyed("month-key-0004")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("participant_limit_reached"))
    );
    assert_eq!(app.store().entries(&participant()).len(), 2);
    assert_eq!(app.store().balance(&participant()).unwrap().available, 80);
}

#[tokio::test]
async fn unknown_and_inactive_rules_and_bad_input_are_refused_before_any_write() {
    let app = app(survey(40, None, None));
    let (status, body, _) = send(
        &app,
        keyed("unknown-rule-01").body(json!({ "rule_id": "no-such-rule" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("rule_not_found"))
    );
    let (status, body, _) = send(
        &app,
        keyed("bad-rule-id-01").body(json!({ "rule_id": "Not A Slug" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_rule_id"))
    );
    let long = "x".repeat(121);
    let (status, body, _) = send(
        &app,
        keyed("long-reference-1").body(json!({ "rule_id": "survey-q4", "reference": long })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_reference"))
    );
    let mut missing = sample();
    missing = missing.header("idempotency-key", "short");
    let (status, body, _) = send(&app, missing).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("idempotency_key_invalid"))
    );
    app.clock().advance(Duration::days(60));
    let (status, body, _) = send(&app, keyed("too-late-key-01")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rule_not_active"))
    );
    assert!(app.store().entries(&participant()).is_empty());
    // An admin or rep has no participant to credit.
    let (status, body, _) = send(&app, keyed("admin-key-0001").role("admin")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
}

#[tokio::test]
async fn the_tier_follows_a_balance_moved_elsewhere_and_a_cached_rule_is_stale_within_the_bound() {
    let app = app(survey(40, None, None));
    app.store().put_tiers(silver_tiers());
    let (status, body, _) = send(&app, keyed("tier-key-00001")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (&body["tier"], &body["points"]),
        (&json!("bronze"), &json!(40))
    );
    // Another feature credits 60 points: the cached basis is stale, the write says so.
    app.store()
        .credit_elsewhere(&participant(), 60, event_time());
    let (status, body, _) = send(&app, keyed("tier-key-00002")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (&body["tier"], &body["points"]),
        (&json!("silver"), &json!(60))
    );
    let balance = app.store().balance(&participant()).unwrap();
    assert_eq!((balance.available, balance.version), (160, 3));

    // The rule changes behind the function's back: seen once the cached copy is stale.
    app.store().put_rule(survey(50, None, None));
    let (_, body, _) = send(&app, keyed("tier-key-00003")).await;
    assert_eq!(body["base_points"], 40, "within the staleness bound");
    app.clock()
        .advance(ActionSettings::default().programme_staleness);
    let (_, body, _) = send(&app, keyed("tier-key-00004")).await;
    assert_eq!(body["base_points"], 50, "read again after the bound");
}

#[tokio::test]
async fn an_action_over_its_rules_budget_is_held_for_review_when_the_rule_says_hold() {
    use loyalty_domain::earning::OverBudget;
    use loyalty_domain::ledger::{EntryKind, ProgrammeAccount};
    let account = ProgrammeAccount::Rule(RuleId::parse("survey-q4").unwrap());
    for (over_budget, want) in [
        (OverBudget::Refuse, StatusCode::UNPROCESSABLE_ENTITY),
        (OverBudget::Hold, StatusCode::CREATED),
    ] {
        let app = app(Rule {
            over_budget,
            ..survey(40, None, None)
        });
        // 16 shards of 1 point: none covers 40.
        app.store().fund_budget(&account, Points(16), "funding-1");
        let (status, body, _) = send(&app, keyed("key-over-budget-1")).await;
        assert_eq!(status, want, "{over_budget:?}: {body}");
        let balance = app.store().balance(&participant());
        if over_budget == OverBudget::Refuse {
            assert_eq!(body["code"], "budget_exhausted");
            assert!(balance.is_none(), "nothing written");
            continue;
        }
        assert_eq!(
            (&body["status"], &body["points"]),
            (&json!("pending_review"), &json!(40))
        );
        let balance = balance.unwrap();
        assert_eq!((balance.available, balance.pending), (0, 40));
        let entries = app.store().entries(&participant());
        assert_eq!(entries[0].kind, EntryKind::AccrualUnderReview);
        assert_eq!(
            app.store().programme_balance(&account).balance,
            16,
            "budget untouched"
        );
        assert!(
            app.store().outbox().is_empty(),
            "nothing announced until decided"
        );
        let (again, replay, response) = send(&app, keyed("key-over-budget-1")).await;
        assert_eq!((again, &replay), (StatusCode::CREATED, &body));
        assert!(replayed(&response));
    }
}
