//! DynamoDB round trips per action accrual and per partner webhook event, counted by the same
//! interceptor as the claims, through the functions' own handlers.

use chrono::{Duration, Utc};
use loyalty_domain::cashback::{sign, Secret, SIGNATURE_HEADER};
use loyalty_domain::ports::SystemClock;
use loyalty_local::provision::Resources;
use serde_json::{json, Value};

use crate::counter::{counted_dynamodb, Counter, Tally};
use crate::stack::{register, BoxError};

/// The local demo partner's public local secret (see infra/local/src/webhooks.rs); the sample
/// events are for partner `demo-market`.
const PARTNER_SECRET: &str = "demo-market-local-secret";

pub struct PerEvent {
    pub scenario: &'static str,
    pub requests: Tally,
    pub events: u64,
}

fn event(path: &str) -> Result<Value, BoxError> {
    let file = loyalty_local::template::repo_root()
        .join("events")
        .join(path);
    Ok(serde_json::from_str(&std::fs::read_to_string(file)?)?)
}

fn request(mut event: Value, body: &Value, headers: &[(&str, String)]) -> lambda_http::Request {
    event["body"] = Value::String(body.to_string());
    for (name, value) in headers {
        event["headers"][*name] = Value::String(value.clone());
    }
    loyalty_local::apigw::into_request(&event).expect("sample events are API Gateway v2")
}

fn expect_status(
    what: &str,
    response: &lambda_http::Response<lambda_http::Body>,
    ok: u16,
) -> Result<(), BoxError> {
    let status = response.status().as_u16();
    if status == ok {
        Ok(())
    } else {
        Err(format!("{what} answered {status}: {:?}", response.body()).into())
    }
}

/// One `POST /actions` as `participant`, which must answer 201 (a replay answers 201 too).
async fn report(
    app: &accrual::App,
    sample: &Value,
    participant: &str,
    key: String,
    body: Value,
) -> Result<(), BoxError> {
    let req = request(
        as_participant(sample.clone(), participant),
        &body,
        &[("idempotency-key", key)],
    );
    let response = app.handle(req).await?;
    expect_status("POST /actions", &response, 201)
}

fn as_participant(mut event: Value, participant: &str) -> Value {
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] =
        Value::String(participant.into());
    event
}

/// Round trips per reported action, with two tiers configured (so every write carries the
/// balance-version condition the tier was computed from):
/// - the first action on a fresh function (rules and tiers not cached yet);
/// - `events` more actions of the same participant, each with its own Idempotency-Key: the
///   steady state;
/// - a replay of one key;
/// - a participant with a balance on a fresh function whose programme cache is warm but that
///   has not seen them (tier basis cache cold).
pub async fn actions(
    aws: &aws_config::SdkConfig,
    resources: &Resources,
    events: u64,
) -> Result<Vec<PerEvent>, BoxError> {
    let env = resources.env_for("AccrualFunction")?;
    // Registered where the sample token says (north, its outlet): only registered
    // participants earn.
    register(
        aws,
        resources,
        ["p-bench-1", "p-bench-2"].map(String::from),
        "north",
        Some("o-5d2e8b"),
    )
    .await?;
    let counter = Counter::default();
    let app =
        accrual::App::with_dynamodb(counted_dynamodb(aws, &counter), &env, Box::new(SystemClock))?;

    let now = Utc::now();
    let rule = json!({
        "action": "survey", "points": 40, "per_participant": events + 10,
        "per_period": { "max": events + 10, "period": "month" },
        "valid_from": (now - Duration::days(1)).to_rfc3339(),
        "valid_until": (now + Duration::days(30)).to_rfc3339(),
    });
    let put = app
        .handle(request(event("accrual/put-rule.json")?, &rule, &[]))
        .await?;
    expect_status("PUT /admin/rules", &put, 200)?;
    let tiers = json!({ "tiers": [
        { "name": "bronze", "threshold": 0, "multiplier_percent": 100 },
        { "name": "silver", "threshold": 1000000, "multiplier_percent": 150 }
    ]});
    let put = app
        .handle(request(event("accrual/put-tiers.json")?, &tiers, &[]))
        .await?;
    expect_status("PUT /admin/tiers", &put, 200)?;

    let sample = event("accrual/report-action.json")?;
    let body = |i: u64| json!({ "rule_id": "survey-q4", "reference": format!("bench-{i}") });

    let before = counter.snapshot();
    report(
        &app,
        &sample,
        "p-bench-1",
        "bench-action-first".into(),
        body(0),
    )
    .await?;
    let first = counter.snapshot().since(&before);

    let before = counter.snapshot();
    for i in 0..events {
        report(
            &app,
            &sample,
            "p-bench-1",
            format!("bench-action-{i:08}"),
            body(i + 1),
        )
        .await?;
    }
    let per_action = counter.snapshot().since(&before);

    let before = counter.snapshot();
    report(
        &app,
        &sample,
        "p-bench-1",
        "bench-action-00000000".into(),
        body(1),
    )
    .await?;
    let replay = counter.snapshot().since(&before);

    // A fresh function: warm its programme cache with another participant, then p-bench-1.
    let fresh_counter = Counter::default();
    let fresh = accrual::App::with_dynamodb(
        counted_dynamodb(aws, &fresh_counter),
        &env,
        Box::new(SystemClock),
    )?;
    report(
        &fresh,
        &sample,
        "p-bench-2",
        "bench-warm-0001".into(),
        body(0),
    )
    .await?;
    let before = fresh_counter.snapshot();
    report(
        &fresh,
        &sample,
        "p-bench-1",
        "bench-cold-basis-1".into(),
        body(0),
    )
    .await?;
    let cold_basis = fresh_counter.snapshot().since(&before);

    Ok(vec![
        PerEvent {
            scenario: "first action on a fresh function (rules and tiers not cached)",
            requests: first,
            events: 1,
        },
        PerEvent {
            scenario: "steady state: reported action (new Idempotency-Key)",
            requests: per_action,
            events,
        },
        PerEvent {
            scenario: "replayed action (same key and body)",
            requests: replay,
            events: 1,
        },
        PerEvent {
            scenario:
                "known participant on a function that has not seen them (tier basis cache cold)",
            requests: cold_basis,
            events: 1,
        },
    ])
}

/// Scenario names the report looks for: the steady state of a created and a delivered order.
pub const CREATED_STEADY: &str = "order created (pending cashback), warm function: steady state";
pub const DELIVERED_STEADY: &str =
    "order delivered (eligible for release), warm function: steady state";

/// Round trips per partner webhook event: the first created order on a cold function, then
/// `events` more (the steady state); the first delivery, then `events` more; one replayed
/// event; one cancellation.
pub async fn webhooks(
    aws: &aws_config::SdkConfig,
    resources: &Resources,
    events: u64,
) -> Result<Vec<PerEvent>, BoxError> {
    let env = resources.env_for("PartnerWebhooksFunction")?;
    // The orders' participants: only registered participants earn cashback.
    register(
        aws,
        resources,
        (0..8).map(|i| format!("p-bench-{i}")),
        "almaty",
        None,
    )
    .await?;
    let counter = Counter::default();
    let app = partner_webhooks::App::with_dynamodb(
        counted_dynamodb(aws, &counter),
        &env,
        Box::new(SystemClock),
    )?;
    // A partner written by another instance (the admin route of this one would warm its
    // cache): the first event reads the settings as a cold function does.
    let other = partner_webhooks::App::with_dynamodb(
        loyalty_platform::aws::dynamodb(aws),
        &env,
        Box::new(SystemClock),
    )?;

    let partner = json!({ "name": "Demo Market", "default_rate_bp": 300, "category_rates_bp": { "beverages": 500 }, "active": true });
    let put = other
        .handle(request(
            event("partner-webhooks/put-partner.json")?,
            &partner,
            &[],
        ))
        .await?;
    expect_status("PUT /admin/partners", &put, 200)?;

    let sample = event("partner-webhooks/order-created.json")?;
    let secret = Secret::new(PARTNER_SECRET.as_bytes().to_vec());
    let signed = |body: &Value| {
        let text = body.to_string();
        let header = sign(&secret, Utc::now().timestamp(), text.as_bytes());
        request(sample.clone(), body, &[(SIGNATURE_HEADER, header)])
    };
    let created = |i: u64| {
        json!({
            "event_id": format!("bench-created-{i}"), "order_id": format!("BENCH-{i}"),
            "occurred_at": Utc::now().to_rfc3339(), "type": "created",
            // Eight participants: 20 orders of 625 points stay under each one's monthly cap.
            "participant_id": format!("p-bench-{}", i % 8), "region": "almaty", "channel": "app",
            "category": "beverages", "amount_minor": 1_250_000,
            "lines": [{ "supplier_id": "cola-co", "units": 24 }]
        })
    };
    let change = |kind: &str, i: u64| {
        json!({ "event_id": format!("bench-{kind}-{i}"), "order_id": format!("BENCH-{i}"),
                "occurred_at": Utc::now().to_rfc3339(), "type": kind })
    };
    let mut scenarios = Vec::new();
    let measure = |scenario: &'static str, bodies: Vec<Value>| {
        let app = &app;
        let counter = &counter;
        let signed = &signed;
        async move {
            let before = counter.snapshot();
            let n = bodies.len() as u64;
            for body in bodies {
                let response = app.handle(signed(&body)).await?;
                expect_status(scenario, &response, 200)?;
            }
            Ok::<_, BoxError>(PerEvent {
                scenario,
                requests: counter.snapshot().since(&before),
                events: n,
            })
        }
    };
    scenarios.push(
        measure(
            "order created, cold function (partner rates, regional minimum and time zones read, then cached)",
            vec![created(0)],
        )
        .await?,
    );
    scenarios.push(measure(CREATED_STEADY, (1..=events).map(created).collect()).await?);
    scenarios.push(
        measure(
            "order delivered, cold function (whether any challenge exists read, then cached)",
            vec![change("delivered", 0)],
        )
        .await?,
    );
    scenarios.push(
        measure(
            DELIVERED_STEADY,
            (1..=events).map(|i| change("delivered", i)).collect(),
        )
        .await?,
    );
    scenarios.push(measure("replayed event", vec![created(0)]).await?);
    scenarios.push(
        measure(
            "order cancelled before release (the order is read: its credit decides the writes)",
            vec![change("cancelled", 1)],
        )
        .await?,
    );
    Ok(scenarios)
}
