//! The metrics each behaviour emits, on the memory adapters and a recording metrics sink:
//! what the dashboard and the alarms in `template.yaml` count.

use lambda_http::http::StatusCode;
use loyalty_platform::memory::RecordedMetrics;
use loyalty_platform::metrics::{Dim, Point};
use loyalty_tests::ApiEvent;
use serde_json::json;

use crate::{accrual, batch_worker, code_claim, partner_webhooks, wallet};

const CLAIMS: (Dim, &str) = (Dim::Route, "POST /claims");

/// No dimension value holds a participant id, a phone number or a code (the types allow
/// only strings compiled into the binary; this checks the ones a request chose).
fn assert_nothing_personal(recorded: &RecordedMetrics, personal: &[&str]) {
    for Point { dimensions, .. } in recorded.points() {
        for (dim, value) in dimensions {
            for p in personal {
                assert!(!value.contains(p), "{dim:?}={value} holds {p}");
            }
        }
    }
}

#[tokio::test]
async fn an_accepted_claim_counts_once_with_its_route_latency_and_a_foreign_region_is_a_review_flag(
) {
    let recorded = RecordedMetrics::default();
    let (app, codes) = code_claim::app(2);
    let app = app.with_metrics(recorded.metrics());
    let (status, body, _) = code_claim::send(&app, code_claim::typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(recorded.sum("ClaimsAccepted", &[]), 1);
    assert_eq!(recorded.sum("ReviewFlags", &[]), 0);
    assert_eq!(
        recorded.sum("Requests", &[CLAIMS, (Dim::Outcome, "2xx")]),
        1
    );
    let latency = recorded
        .points()
        .into_iter()
        .filter(|p| p.metric.name == "Latency");
    assert_eq!(
        latency.map(|p| p.dimensions).collect::<Vec<_>>(),
        [vec![CLAIMS]]
    );

    // Claimed by a participant whose profile is in another region than the batch's:
    // credited, and held for review.
    app.store().register(
        &loyalty_domain::ids::ParticipantId::parse("p-south").unwrap(),
        loyalty_domain::participant::ProfileFacts {
            region: loyalty_domain::ids::RegionId::parse("south").ok(),
            outlet: None,
        },
    );
    let foreign = code_claim::typed(&codes[1].display())
        .sub("p-south")
        .without_outlet()
        .region("south");
    let (status, body, _) = code_claim::send(&app, foreign).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("pending_review"))
    );
    assert_eq!(recorded.sum("ClaimsAccepted", &[]), 2);
    assert_eq!(recorded.sum("ReviewFlags", &[]), 1);

    // The same claim again is its first answer: a replay, not a second acceptance.
    code_claim::send(&app, code_claim::typed(&codes[0].display())).await;
    assert_eq!(recorded.sum("ClaimsAccepted", &[]), 2);
    assert_eq!(recorded.sum("IdempotentReplays", &[CLAIMS]), 1);
    assert_nothing_personal(&recorded, &["p-7f3a9c", "o-5d2e8b", &codes[0].display()]);
}

#[tokio::test]
async fn refused_claims_count_by_problem_code_and_the_lock_they_cause_counts_once() {
    let recorded = RecordedMetrics::default();
    let (app, codes) = code_claim::app(1);
    let app = app.with_metrics(recorded.metrics());
    let never = loyalty_domain::code::Code::chunk(&[9; 32], 17, 3, 1)[0];
    // The fifth failure in the window locks the participant (not yet the outlet).
    for _ in 0..5 {
        code_claim::send(&app, code_claim::typed(&never.display())).await;
    }
    let (status, _, _) = code_claim::send(&app, code_claim::typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let refused = |reason| recorded.sum("ClaimsRefused", &[(Dim::Reason, reason)]);
    assert_eq!((refused("code_unknown"), refused("claims_locked")), (5, 1));
    assert_eq!(
        recorded.sum("FraudLocks", &[(Dim::Subject, "participant")]),
        1
    );
    assert_eq!(recorded.sum("FraudLocks", &[(Dim::Subject, "outlet")]), 0);
    assert_eq!(
        recorded.sum("Requests", &[CLAIMS, (Dim::Outcome, "4xx")]),
        6
    );
    assert_eq!(recorded.sum("ClaimsAccepted", &[]), 0);
    // A request's latency, status class and refusal leave in one emit.
    let last = recorded.emits().pop().unwrap();
    let names: Vec<_> = last.iter().map(|p| p.metric.name).collect();
    assert_eq!(names, ["Requests", "Latency", "ClaimsRefused"]);
    assert_nothing_personal(
        &recorded,
        &[
            "p-7f3a9c",
            "o-5d2e8b",
            &never.display(),
            &codes[0].display(),
        ],
    );
}

#[tokio::test]
async fn an_action_credit_counts_once_and_its_replayed_idempotency_key_counts_as_a_replay() {
    let recorded = RecordedMetrics::default();
    let app = accrual::app(accrual::survey(40, None, None)).with_metrics(recorded.metrics());
    for _ in 0..2 {
        let (status, body, _) = accrual::send(&app, accrual::sample()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let actions = (Dim::Route, "POST /actions");
    assert_eq!(recorded.sum("ActionCredits", &[]), 1);
    assert_eq!(recorded.sum("IdempotentReplays", &[actions]), 1);
    assert_eq!(
        recorded.sum("Requests", &[actions, (Dim::Outcome, "2xx")]),
        2
    );
}

#[tokio::test]
async fn a_used_up_limit_counts_as_a_limit_hit_by_its_code_and_not_again_when_replayed() {
    let recorded = RecordedMetrics::default();
    let app = accrual::app(accrual::survey(40, Some(2), Some(1))).with_metrics(recorded.metrics());
    for key in ["month-key-0001", "month-key-0002", "month-key-0002"] {
        accrual::send(&app, accrual::keyed(key)).await;
    }
    app.clock().advance(chrono::Duration::days(10));
    for key in ["month-key-0003", "month-key-0004"] {
        accrual::send(&app, accrual::keyed(key)).await;
    }
    let hits = |reason| recorded.sum("LimitHits", &[(Dim::Reason, reason)]);
    assert_eq!(
        (
            hits("period_limit_reached"),
            hits("participant_limit_reached")
        ),
        (1, 1)
    );
    assert_eq!(recorded.sum("ActionCredits", &[]), 2);
    assert_eq!(
        recorded.sum("IdempotentReplays", &[(Dim::Route, "POST /actions")]),
        1
    );
}

#[tokio::test]
async fn an_action_held_for_want_of_budget_is_a_credit_and_a_review_flag() {
    use loyalty_domain::earning::{OverBudget, Rule, RuleId};
    use loyalty_domain::ledger::ProgrammeAccount;
    use loyalty_domain::Points;
    let recorded = RecordedMetrics::default();
    let app = accrual::app(Rule {
        over_budget: OverBudget::Hold,
        ..accrual::survey(40, None, None)
    })
    .with_metrics(recorded.metrics());
    let account = ProgrammeAccount::Rule(RuleId::parse("survey-q4").unwrap());
    app.store().fund_budget(&account, Points(16), "funding-1");
    let (status, body, _) = accrual::send(&app, accrual::keyed("key-over-budget-1")).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::CREATED, &json!("pending_review"))
    );
    assert_eq!(recorded.sum("ActionCredits", &[]), 1);
    assert_eq!(recorded.sum("ReviewFlags", &[]), 1);
    assert_eq!(
        recorded.sum("LimitHits", &[(Dim::Reason, "budget_exhausted")]),
        0
    );
}

#[tokio::test]
async fn webhook_rejections_count_by_problem_code_and_a_created_order_counts_its_cashback() {
    let recorded = RecordedMetrics::default();
    let app = partner_webhooks::configured()
        .await
        .with_metrics(recorded.metrics());
    let tampered = partner_webhooks::sample("order-created").header(
        loyalty_domain::cashback::SIGNATURE_HEADER,
        "t=1795341600,v1=00",
    );
    let (status, _) = partner_webhooks::send(&app, tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) =
        partner_webhooks::send(&app, partner_webhooks::sample("order-created")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.clock().advance(chrono::Duration::seconds(301));
    partner_webhooks::send(&app, partner_webhooks::sample("order-created")).await;

    let rejected = |reason| recorded.sum("WebhookRejections", &[(Dim::Reason, reason)]);
    assert_eq!(
        (rejected("invalid_signature"), rejected("stale_signature")),
        (1, 1)
    );
    assert_eq!(recorded.sum("CashbackCredits", &[]), 1);
    assert_nothing_personal(&recorded, &["p-7f3a9c", "DM-100042"]);
}

#[tokio::test]
async fn an_order_the_partner_fund_cannot_cover_counts_as_a_budget_limit_hit() {
    let recorded = RecordedMetrics::default();
    let app = partner_webhooks::configured()
        .await
        .with_metrics(recorded.metrics());
    let (status, _, _) =
        partner_webhooks::send_full(&app, partner_webhooks::top_up(600, "fund-demo-small")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, created) =
        partner_webhooks::send(&app, partner_webhooks::sample("order-created")).await;
    assert_eq!(created["reason"], "budget_exhausted");
    assert_eq!(
        recorded.sum("LimitHits", &[(Dim::Reason, "budget_exhausted")]),
        1
    );
    assert_eq!(recorded.sum("CashbackCredits", &[]), 0);
}

#[tokio::test]
async fn a_delivery_s_job_results_are_counted_and_emitted_once() {
    let recorded = RecordedMetrics::default();
    let app = batch_worker::app(&batch_worker::batch(250, 1_000))
        .await
        .with_metrics(recorded.metrics());
    let sample = batch_worker::load("job.json")["Records"][0].clone();
    let malformed = batch_worker::load("job-malformed.json")["Records"][0].clone();
    let mut again = sample.clone();
    again["messageId"] = json!("redelivered");
    assert!(batch_worker::deliver(&app, vec![sample, malformed, again])
        .await
        .is_empty());

    assert_eq!(recorded.emits().len(), 1);
    let jobs = |result| recorded.sum("BatchJobs", &[(Dim::Result, result)]);
    assert_eq!(
        (
            jobs("done"),
            jobs("already_done"),
            jobs("dropped"),
            jobs("retried")
        ),
        (1, 1, 1, 0)
    );
}

#[tokio::test]
async fn every_http_function_counts_requests_by_route_and_an_unknown_route_as_other() {
    let recorded = RecordedMetrics::default();
    let app = wallet::app().with_metrics(recorded.metrics());
    wallet::send(&app, ApiEvent::load("wallet/get-balance.json")).await;
    let mut unknown = ApiEvent::load("wallet/get-balance.json").0;
    unknown["routeKey"] = json!("GET /nowhere");
    unknown["requestContext"]["routeKey"] = json!("GET /nowhere");
    wallet::send(&app, ApiEvent::from_json(unknown)).await;

    let balance = (Dim::Route, "GET /me/balance");
    assert_eq!(
        recorded.sum("Requests", &[balance, (Dim::Outcome, "2xx")]),
        1
    );
    assert_eq!(
        recorded.sum("Requests", &[(Dim::Route, "other"), (Dim::Outcome, "4xx")]),
        1
    );
}

#[tokio::test]
async fn a_texted_passcode_counts_as_sent_and_a_wrong_one_as_an_identity_refusal_by_reason() {
    let recorded = RecordedMetrics::default();
    let app = crate::participants::app().with_metrics(recorded.metrics());
    let request = ApiEvent::load("participants/request-passcode.json");
    let (status, body) = crate::participants::send(&app, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(recorded.sum("PasscodesSent", &[]), 1);

    let sample = crate::participants::phone(crate::participants::SAMPLE_PHONE);
    let code = app
        .sms()
        .last_code_to(&sample)
        .expect("a passcode was sent");
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let verify = ApiEvent::load("participants/verify-passcode.json")
        .body(json!({ "phone": crate::participants::SAMPLE_PHONE, "code": wrong }));
    let (status, body) = crate::participants::send(&app, verify).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        recorded.sum("IdentityRefusals", &[(Dim::Reason, "passcode_invalid")]),
        1
    );
    assert_eq!(
        recorded.sum("PasscodesSent", &[]),
        1,
        "a refusal texts nothing"
    );
    assert_nothing_personal(
        &recorded,
        &[crate::participants::SAMPLE_PHONE, &code, &wrong],
    );
}

#[tokio::test]
async fn a_redelivered_order_event_is_marked_and_counted_as_a_replay_not_a_second_credit() {
    let recorded = RecordedMetrics::default();
    let app = partner_webhooks::configured()
        .await
        .with_metrics(recorded.metrics());
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let request = partner_webhooks::sample("order-created").request();
        let response = app.handle(request).await.expect("never errs");
        assert_eq!(response.status(), StatusCode::OK);
        replayed.push(response.headers().get("idempotent-replayed").cloned());
    }
    assert_eq!(replayed, [None, Some("true".parse().unwrap())]);
    assert_eq!(recorded.sum("CashbackCredits", &[]), 1);
    let route = (Dim::Route, "POST /webhooks/partners/{partnerId}");
    assert_eq!(recorded.sum("IdempotentReplays", &[route]), 1);
}
