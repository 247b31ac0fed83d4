//! The accrual function on memory adapters and a fixed clock ([`memory_app`]): the handler's
//! answers to the sample events in `events/accrual/` (actions, rules, tiers, challenges,
//! budgets; sell-in in `sellin.rs`) and what each request wrote. No emulator.

use std::sync::Arc;

use accrual::ActionSettings;
use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use loyalty_domain::earning::{
    Action, Period, PeriodLimit, Reporter, Rule, RuleId, Tier, Tiers, Trigger,
};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{ProgrammeAccount, PROGRAMME_SHARDS};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::ports::FixedClock;
use loyalty_domain::{InfraError, Points};
use loyalty_platform::memory::{MemoryActions, MemoryAnswers, MemoryChallenges, MemorySellIn};
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

/// The participant and outlet of the sample event.
const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_OUTLET: &str = "o-5d2e8b";

/// Every port on memory: one ledger ([`MemoryActions`]) holds the rules, tiers, budgets,
/// action credits, sell-in credits ([`MemorySellIn::on`] it) and challenge bonuses.
pub type Admin = accrual::Admin<Arc<MemoryActions>, MemorySellIn, MemoryChallenges, MemoryAnswers>;
pub type App = accrual::App<Arc<MemoryActions>, FixedClock, Admin>;

/// The sample event's time: 22 Nov 2026, 10:00 UTC.
fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// The sample event's rule: a survey worth `points`, limited as asked.
pub(crate) fn survey(points: u64, per_participant: Option<u32>, per_month: Option<u32>) -> Rule {
    Rule {
        id: RuleId::parse("survey-q4").unwrap(),
        trigger: Trigger::Action(Action::Survey),
        points: Points(points),
        per_participant,
        per_period: per_month.map(|max| PeriodLimit {
            max,
            period: Period::Month,
        }),
        valid_from: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap().into(),
        valid_until: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap().into()),
        over_budget: loyalty_domain::earning::OverBudget::Refuse,
        reported_by: loyalty_domain::earning::Reporter::Participant,
    }
}

/// The function with every route on memory adapters, at the sample events' time.
pub fn memory_app() -> App {
    let ledger = Arc::new(MemoryActions::new());
    // Registered where the sample token says: north, at the sample outlet.
    ledger.register(
        &participant(),
        ProfileFacts {
            region: RegionId::parse("north").ok(),
            outlet: OutletId::parse("o-5d2e8b").ok(),
        },
    );
    let admin = accrual::Admin {
        settings: ledger.clone(),
        sell_in: MemorySellIn::on(ledger.clone()),
        challenges: MemoryChallenges::with_ledger(ledger.clone()),
        answers: MemoryAnswers::new(),
    };
    accrual::App::with_store(
        ledger,
        admin,
        ActionSettings::default(),
        FixedClock::at(event_time()),
    )
}

pub(crate) fn app(rule: Rule) -> App {
    let app = memory_app();
    app.store().put_rule(rule);
    app
}

pub(crate) fn sample() -> ApiEvent {
    ApiEvent::load("accrual/report-action.json")
}

pub(crate) fn keyed(key: &str) -> ApiEvent {
    sample().header("idempotency-key", key)
}

pub async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value, Response<Body>) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response), response)
}

pub fn content_type(response: &Response<Body>) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

pub fn replayed(response: &Response<Body>) -> bool {
    response.headers().get("idempotent-replayed").is_some()
}

pub fn participant() -> ParticipantId {
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
    // Reps report nothing; an admin reports as a reviewer, with evidence.
    let (status, body, _) = send(&app, keyed("rep-key-000001").role("rep")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body, _) = send(&app, keyed("admin-key-0001").role("admin")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_evidence"))
    );
}

// --- Who reports: the participant, a reviewer, a service -------------------------------

/// A rule of `action` reported by `reported_by`, otherwise the sample's survey.
fn reported_by(id: &str, action: Action, reported_by: Reporter) -> Rule {
    Rule {
        id: RuleId::parse(id).unwrap(),
        trigger: Trigger::Action(action),
        reported_by,
        ..survey(40, None, None)
    }
}

fn accrual_event(name: &str) -> ApiEvent {
    ApiEvent::load(&format!("accrual/{name}"))
}

#[tokio::test]
async fn a_reviewer_credits_the_participant_they_name_with_the_evidence_on_the_entry() {
    let app = app(reported_by(
        "outlet-audit-q4",
        Action::OutletSelfAudit,
        Reporter::Reviewer,
    ));
    let (status, body, _) = send(&app, accrual_event("report-action-by-reviewer.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["points"], 40);
    let entries = app.store().entries(&participant());
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].source,
        "rule outlet-audit-q4: evidence: photo audit 2026-11-21, shelf share 40%"
    );
    assert_eq!(
        entries[0].outlet, None,
        "the reviewer's token names no outlet"
    );
    let (status, body, _) = send(
        &app,
        accrual_event("report-action-by-reviewer.json")
            .header("idempotency-key", "review-no-evidence")
            .body(json!({ "rule_id": "outlet-audit-q4", "participant_id": SAMPLE_PARTICIPANT })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_evidence"))
    );
    let (status, body, _) = send(
        &app,
        accrual_event("report-action-by-reviewer.json")
            .header("idempotency-key", "review-no-participant")
            .body(json!({ "rule_id": "outlet-audit-q4", "evidence": "seen" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_participant_id"))
    );
    let (status, body, _) = send(
        &app,
        accrual_event("report-action-by-reviewer.json")
            .header("idempotency-key", "review-long-evidence")
            .body(
                json!({ "rule_id": "outlet-audit-q4", "participant_id": SAMPLE_PARTICIPANT,
                          "evidence": "x".repeat(121) }),
            ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_evidence"))
    );
    assert_eq!(app.store().entries(&participant()).len(), 1);
}

#[tokio::test]
async fn a_service_with_the_report_scope_credits_the_participant_it_names_once_per_key() {
    let app = app(reported_by(
        "first-app-order",
        Action::FirstAppOrder,
        Reporter::Service,
    ));
    let report = || accrual_event("report-action-by-service.json");
    let (status, body, _) = send(&app, report()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, again, response) = send(&app, report()).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &body));
    assert!(
        replayed(&response),
        "the service's key, the service's answer"
    );
    let (status, body, _) = send(
        &app,
        report()
            .without_claim("scope")
            .header("idempotency-key", "app-order-unscoped"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "a service token without the scope reports nothing"
    );
    assert_eq!(app.store().entries(&participant()).len(), 1);
}

#[tokio::test]
async fn a_participant_reporting_a_rule_that_is_not_self_reported_is_403_and_writes_nothing() {
    let reviewed = app(reported_by(
        "outlet-audit-q4",
        Action::OutletSelfAudit,
        Reporter::Reviewer,
    ));
    let (status, body, response) = send(
        &reviewed,
        accrual_event("report-reviewer-rule-as-participant.json"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("reporter_not_allowed")),
        "{body}"
    );
    assert_eq!(content_type(&response), "application/problem+json");
    assert!(reviewed.store().entries(&participant()).is_empty());
    // Nor may a participant credit someone else, even on a self-reported rule.
    let self_reported = app(survey(40, Some(3), None));
    let (status, body, _) = send(
        &self_reported,
        keyed("other-participant-1")
            .body(json!({ "rule_id": "survey-q4", "participant_id": "p-someone-else" })),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert!(self_reported.store().entries(&participant()).is_empty());
}

#[tokio::test]
async fn a_self_reported_rule_without_a_limit_is_400_when_saved() {
    let app = memory_app();
    let (status, body, _) = send(
        &app,
        admin_event("put-self-reported-rule-without-limit.json"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_rule")),
        "{body}"
    );
    assert!(body["title"].as_str().unwrap().contains("per_participant"));
    let (_, rules, _) = send(&app, admin_event("list-rules.json")).await;
    assert_eq!(rules["rules"], json!([]));
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

// --- Admin routes: rules, tiers, challenges, budgets -----------------------------------

fn admin_event(name: &str) -> ApiEvent {
    ApiEvent::load(&format!("accrual/{name}"))
}

#[tokio::test]
async fn a_rule_an_admin_puts_is_listed_and_earns_at_once() {
    let app = memory_app();
    let (status, body, _) = send(&app, admin_event("put-rule.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["id"], &body["points"]),
        (&json!("survey-q4"), &json!(40))
    );
    let (status, body, _) = send(&app, admin_event("list-rules.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<_> = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("survey-q4")]);
    let (status, body, _) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.store().balance(&participant()).unwrap().available, 40);
}

#[tokio::test]
async fn tiers_an_admin_sets_are_read_back_and_scale_the_next_action() {
    let app = app(survey(40, None, None));
    let (status, body, _) = send(&app, admin_event("put-tiers.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, read, _) = send(&app, admin_event("get-tiers.json")).await;
    assert_eq!((status, &read), (StatusCode::OK, &body));
    let names: Vec<_> = read["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["bronze", "silver", "gold"]);
    // 2,000 points earned this year: silver (×1.2), so the survey's 40 earn 48.
    app.store()
        .credit_elsewhere(&participant(), 2_000, event_time());
    let (status, body, _) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (&body["tier"], &body["points"]),
        (&json!("silver"), &json!(48))
    );
}

#[tokio::test]
async fn a_budget_is_funded_once_per_idempotency_key_and_a_replay_answers_the_first_answer() {
    let app = app(survey(40, None, None));
    let fund = || admin_event("fund-rule-budget.json");
    let (status, first, response) = send(&app, fund()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed(&response));
    assert_eq!(
        first,
        json!({ "account": "rule:survey-q4", "remaining": 100_000, "funded": 100_000,
                "paid_out": 0 })
    );
    let (status, again, response) = send(&app, fund()).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    assert!(replayed(&response));
    let account = ProgrammeAccount::Rule(RuleId::parse("survey-q4").unwrap());
    assert_eq!(app.store().programme_balance(&account).balance, 100_000);
    assert_eq!(app.store().programme_points(), 0, "funded from the issuer");

    // The same key for another amount is a misuse, and funds nothing.
    let (status, body, response) = send(&app, fund().body(json!({ "amount": 5 }))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        )
    );
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(app.store().programme_balance(&account).balance, 100_000);
}

#[tokio::test]
async fn an_admin_reads_what_is_left_of_a_budget_and_what_a_rule_without_one_paid_out() {
    let app = app(survey(40, None, None));
    let read = || admin_event("get-rule-budget.json");
    let (status, body, _) = send(&app, read()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "account": "rule:survey-q4", "funded": null, "remaining": null, "paid_out": 0 })
    );
    let (status, _, _) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body, _) = send(&app, read()).await;
    assert_eq!(
        (&body["funded"], &body["paid_out"]),
        (&json!(null), &json!(40))
    );

    let (status, _, _) = send(&app, admin_event("fund-rule-budget.json")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body, _) = send(&app, read()).await;
    assert_eq!(
        (&body["funded"], &body["remaining"], &body["paid_out"]),
        (&json!(100_000), &json!(99_960), &json!(40))
    );

    for (event, status, code) in [
        (
            read().path_param("ruleId", "no-such-rule"),
            StatusCode::NOT_FOUND,
            "rule_not_found",
        ),
        (
            read().path_param("ruleId", "Not A Slug!"),
            StatusCode::BAD_REQUEST,
            "invalid_rule_id",
        ),
        (
            admin_event("get-challenge-budget.json"),
            StatusCode::NOT_FOUND,
            "challenge_not_found",
        ),
        (read().role("rep"), StatusCode::FORBIDDEN, "forbidden"),
    ] {
        let (got, body, response) = send(&app, event).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert_eq!(content_type(&response), "application/problem+json");
    }
}

#[tokio::test]
async fn an_action_its_rules_budget_cannot_cover_is_422_budget_exhausted() {
    let app = app(survey(40, None, None));
    // One point per shard: no shard covers 40.
    let amount = PROGRAMME_SHARDS as u64;
    let (status, body, _) = send(
        &app,
        admin_event("fund-rule-budget.json").body(json!({ "amount": amount })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, response) = send(&app, sample()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("budget_exhausted"))
    );
    assert_eq!(content_type(&response), "application/problem+json");
    assert!(app.store().entries(&participant()).is_empty());
}

#[tokio::test]
async fn bad_admin_input_is_4xx_problem_json_with_a_stable_code_and_writes_nothing() {
    let app = memory_app();
    let cases = [
        (
            admin_event("put-rule.json").body(json!({ "action": "survey", "points": 0,
                "valid_from": "2026-01-01T00:00:00Z" })),
            StatusCode::BAD_REQUEST,
            "invalid_rule",
        ),
        (
            admin_event("put-tiers.json").body(json!({ "tiers": [
                { "name": "silver", "threshold": 10, "multiplier_percent": 120 }] })),
            StatusCode::BAD_REQUEST,
            "invalid_tiers",
        ),
        (
            admin_event("put-challenge.json").path_param("challengeId", "Not A Slug"),
            StatusCode::BAD_REQUEST,
            "invalid_challenge_id",
        ),
        (
            admin_event("put-challenge.json").body(json!({ "title": "t", "supplier_id": "acme",
                "target_units": 0, "bonus_points": 5, "starts_on": "2026-12-01",
                "ends_on": "2026-12-31" })),
            StatusCode::BAD_REQUEST,
            "invalid_challenge",
        ),
        (
            admin_event("put-rule.json").text_body("{ not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            admin_event("fund-rule-budget.json").body(json!({ "amount": 0 })),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
        ),
        (
            admin_event("fund-rule-budget.json").header("idempotency-key", "fund-unknown-rule"),
            StatusCode::NOT_FOUND,
            "rule_not_found",
        ),
        (
            admin_event("fund-challenge-budget.json"),
            StatusCode::NOT_FOUND,
            "challenge_not_found",
        ),
    ];
    for (event, expected, code) in cases {
        let (status, body, response) = send(&app, event).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (expected, Some(code)),
            "{body}"
        );
        assert_eq!(
            content_type(&response),
            "application/problem+json",
            "{code}"
        );
    }
    assert!(app.store().inspect(|w| w.programme.rules.is_empty()));
    assert_eq!(
        app.store().inspect(|w| w.programme.tiers.clone()),
        Tiers::default()
    );
    assert!(app.admin().challenges.inspect(|w| w.challenges.is_empty()));
    assert_eq!(app.store().programme_points(), 0, "no budget funded");
    // A refused top-up is remembered under its key: the retry gets the same answer.
    let (status, body, response) = send(&app, admin_event("fund-challenge-budget.json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("challenge_not_found"))
    );
    assert!(replayed(&response));
}

#[tokio::test]
async fn a_challenge_an_admin_puts_is_listed_with_no_progress() {
    let app = memory_app();
    let (status, body, _) = send(&app, admin_event("put-challenge.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "acme-winter");
    let (status, body, _) = send(&app, admin_event("list-my-challenges.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["challenges"],
        json!([{
            "challenge_id": "acme-winter", "title": "Buy 100 Acme units in December",
            "supplier_id": "acme", "target_units": 100, "units": 0, "completed": false,
            "bonus_points": 500, "starts_on": "2026-12-01", "ends_on": "2026-12-31"
        }])
    );
    // Only participants have progress.
    let (status, body, _) = send(&app, admin_event("list-my-challenges.json").role("admin")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
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

#[tokio::test]
async fn a_blocked_or_unregistered_participant_is_forbidden_and_earns_nothing() {
    let app = app(survey(40, Some(3), Some(2)));
    app.store().set_active(&participant(), false);
    let (status, body, response) = send(&app, sample()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(body["code"], "participant_not_active");
    assert!(app.store().entries(&participant()).is_empty());
    assert_eq!(app.store().used(&participant(), "survey-q4", "EVER"), 0);

    let (status, body, _) = send(&app, keyed("stranger-key-01").sub("p-nobody")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "participant_not_active");
    let nobody = ParticipantId::parse("p-nobody").unwrap();
    assert!(app.store().entries(&nobody).is_empty());
}

// --- Time zones ------------------------------------------------------------------------

/// The sample participant's token says region `north`; the sample events put the programme
/// in Asia/Omsk (UTC+6) and north in America/Bogota (UTC−5).
async fn with_zones_from_the_sample_events(app: &App) {
    for name in ["put-programme-zone.json", "put-region-zone.json"] {
        let (status, body, _) = send(app, admin_event(name)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Moves the app's clock forward to `at`.
fn set_clock(app: &App, at: &str) {
    let at: DateTime<Utc> = at.parse().unwrap();
    let now = loyalty_domain::ports::Clock::now(app.clock());
    app.clock().advance(at - now);
}

#[tokio::test]
async fn time_zones_an_admin_sets_are_listed_with_the_programme_zone() {
    let app = memory_app();
    let (status, body, _) = send(&app, admin_event("list-regions.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "programme_time_zone": "UTC", "regions": [] }),
        "UTC until set"
    );
    let (status, body, _) = send(&app, admin_event("put-programme-zone.json")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "time_zone": "Asia/Omsk" }))
    );
    let (status, body, _) = send(&app, admin_event("put-region-zone.json")).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "region_id": "north", "time_zone": "America/Bogota" })
        )
    );
    let (_, body, _) = send(&app, admin_event("list-regions.json")).await;
    assert_eq!(
        body,
        json!({ "programme_time_zone": "Asia/Omsk",
                "regions": [{ "region_id": "north", "time_zone": "America/Bogota" }] })
    );
}

#[tokio::test]
async fn a_monthly_limit_turns_at_midnight_in_the_participants_region_zone() {
    let app = app(survey(40, None, Some(1)));
    with_zones_from_the_sample_events(&app).await;
    // 23:30 on 30 November in Bogota, already 1 December in UTC and in Omsk.
    set_clock(&app, "2026-12-01T04:30:00Z");
    let (status, body, _) = send(&app, keyed("zone-key-00001")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 23:50 local: November's one is used.
    set_clock(&app, "2026-12-01T04:50:00Z");
    let (status, body, _) = send(&app, keyed("zone-key-00002")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("period_limit_reached"))
    );
    // 00:30 on 1 December local, the same UTC date: December's.
    set_clock(&app, "2026-12-01T05:30:00Z");
    let (status, body, _) = send(&app, keyed("zone-key-00003")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.store().balance(&participant()).unwrap().available, 80);
    // A participant whose profile names no region counts in the programme zone (Omsk).
    let omsk = ParticipantId::parse("p-omsk").unwrap();
    app.store().register(&omsk, ProfileFacts::default());
    let (status, body, _) = send(
        &app,
        keyed("zone-key-00004")
            .sub("p-omsk")
            .without_claim("region"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let months = |p: &ParticipantId| {
        app.store().inspect(|w| {
            w.counters
                .keys()
                .filter(|(who, _, _)| who == p)
                .map(|(_, _, key)| key.clone())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(months(&participant()), ["M2026-11", "M2026-12"]);
    assert_eq!(months(&omsk), ["M2026-12"]);
}

#[tokio::test]
async fn a_rule_valid_from_a_local_date_opens_at_midnight_in_the_participants_region_zone() {
    let app = memory_app();
    with_zones_from_the_sample_events(&app).await;
    let (status, body, _) = send(
        &app,
        admin_event("put-rule.json").body(json!({ "action": "survey", "points": 40,
            "per_participant": 5, "valid_from": "2026-12-01" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["valid_from"], "2026-12-01T00:00:00", "stored as local");
    // 1 December in UTC, still 30 November in Bogota.
    set_clock(&app, "2026-12-01T04:30:00Z");
    let (status, body, _) = send(&app, keyed("local-key-00001")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("rule_not_active"))
    );
    set_clock(&app, "2026-12-01T05:00:00Z");
    let (status, body, _) = send(&app, keyed("local-key-00002")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_bad_time_zone_or_region_is_400_problem_json_and_writes_nothing() {
    let app = memory_app();
    let cases = [
        (
            admin_event("put-programme-zone.json").body(json!({ "time_zone": "UTC+6" })),
            "invalid_time_zone",
        ),
        (
            admin_event("put-region-zone.json").body(json!({ "time_zone": "Asia/Almaty " })),
            "invalid_time_zone",
        ),
        (
            admin_event("put-region-zone.json").path_param("regionId", "no#region"),
            "invalid_region",
        ),
        (
            admin_event("put-region-zone.json").body(json!({ "zone": "Asia/Omsk" })),
            "invalid_body",
        ),
    ];
    for (event, code) in cases {
        let (status, body, response) = send(&app, event).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
        assert_eq!(content_type(&response), "application/problem+json");
    }
    assert_eq!(
        app.store().inspect(|w| w.programme.zones.clone()),
        loyalty_domain::zone::Zones::default()
    );
}

#[tokio::test]
async fn a_token_without_region_or_outlet_still_earns_once_checked_against_the_profile() {
    let app = app(survey(40, Some(3), None));
    // The first report assumes "no region, no outlet" and is refused with the profile's;
    // the retry in the profile's region commits, and the function remembers the facts.
    let bare = |key: &str| keyed(key).without_outlet().without_claim("region");
    for key in ["bare-key-0001", "bare-key-0002"] {
        let (status, body, _) = send(&app, bare(key)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(app.store().entries(&participant()).len(), 2);
    assert_eq!(app.store().used(&participant(), "survey-q4", "EVER"), 2);
}

/// The action store, counting transactions (round trips in DynamoDB).
struct Counting {
    inner: Arc<MemoryActions>,
    transactions: std::sync::atomic::AtomicUsize,
}

impl loyalty_domain::action::ActionStore for Counting {
    async fn programme(&self) -> Result<loyalty_domain::action::Programme, InfraError> {
        self.inner.programme().await
    }
    async fn try_accrue(
        &self,
        a: &loyalty_domain::action::ActionAttempt,
    ) -> Result<Result<(), loyalty_domain::action::ActionRefusal>, InfraError> {
        self.transactions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.try_accrue(a).await
    }
    async fn remember(
        &self,
        key: &loyalty_domain::action::KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> Result<Result<(), loyalty_domain::action::StoredAnswer>, InfraError> {
        self.inner.remember(key, status, body, now).await
    }
}

#[tokio::test]
async fn a_bare_token_costs_one_more_transaction_once_then_each_action_is_one_transaction() {
    let base = memory_app();
    base.store().put_rule(survey(40, Some(10), None));
    let ledger = base.store().clone();
    let admin = accrual::Admin {
        settings: ledger.clone(),
        sell_in: MemorySellIn::on(ledger.clone()),
        challenges: MemoryChallenges::with_ledger(ledger.clone()),
        answers: MemoryAnswers::new(),
    };
    let app = accrual::App::with_store(
        Counting {
            inner: ledger,
            transactions: Default::default(),
        },
        admin,
        ActionSettings::default(),
        FixedClock::at(event_time()),
    );
    let mut per_action = Vec::new();
    for key in ["count-key-0001", "count-key-0002", "count-key-0003"] {
        let before = app
            .store()
            .transactions
            .load(std::sync::atomic::Ordering::SeqCst);
        let event = keyed(key).without_outlet().without_claim("region");
        let response = app.handle(event.request()).await.expect("never errs");
        assert_eq!(response.status(), StatusCode::CREATED);
        per_action.push(
            app.store()
                .transactions
                .load(std::sync::atomic::Ordering::SeqCst)
                - before,
        );
    }
    // The first assumes "no region, no outlet" and learns the profile's from the refusal.
    assert_eq!(per_action, [2, 1, 1]);
}
