//! `partner-webhooks` on the memory cashback store and a fixed clock: the handler's answers
//! to the sample events in `events/partner-webhooks/` (signed with the demo secret at the
//! sample time, 22 Nov 2026 10:00 UTC), and what each request wrote. No emulator.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lambda_http::http::StatusCode;
use loyalty_domain::cashback::{
    self, sign, CashbackPolicy, OrderId, OrderStatus, PartnerId, Secret, SIGNATURE_HEADER,
};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::{EntryKind, ProgrammeAccount};
use loyalty_domain::ports::{Clock, FixedClock};
use loyalty_domain::Points;
use loyalty_local::webhooks::{DEMO_PARTNER, DEMO_SECRET};
use loyalty_platform::config::Env;
use loyalty_platform::memory::MemoryCashback;
use loyalty_platform::stores::partner_secrets::PartnerSecretsSource;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

type App = partner_webhooks::App<MemoryCashback, FixedClock>;

const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_ORDER: &str = "DM-100042";
/// 12 500.00 at the sample partner's 5% beverages rate.
const POINTS: u64 = 625;

fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn app() -> App {
    let env = Env::from_pairs([(
        "PARTNER_SECRETS",
        json!({ DEMO_PARTNER: DEMO_SECRET }).to_string(),
    )]);
    let store = MemoryCashback::new().with_challenges();
    // The sample orders' participant is registered: only registered participants earn.
    store.register(&participant(), Default::default());
    partner_webhooks::App::with_store(
        store,
        CashbackPolicy::default(),
        PartnerSecretsSource::from_env(&env).unwrap(),
        FixedClock::at(event_time()),
    )
}

pub(crate) async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value) {
    let response = app.handle(event.request()).await.expect("never errs");
    (response.status(), body_json(&response))
}

/// An app whose demo partner is configured from the sample admin event.
pub(crate) async fn configured() -> App {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("partner-webhooks/put-partner.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app
}

pub(crate) fn sample(name: &str) -> ApiEvent {
    ApiEvent::load(&format!("partner-webhooks/{name}.json"))
}

fn participant() -> ParticipantId {
    ParticipantId::parse(SAMPLE_PARTICIPANT).unwrap()
}

fn ids() -> (PartnerId, OrderId) {
    (
        PartnerId::parse(DEMO_PARTNER).unwrap(),
        OrderId::parse(SAMPLE_ORDER).unwrap(),
    )
}

fn status_of(app: &App) -> Option<OrderStatus> {
    let (partner, order) = ids();
    app.store()
        .stored_order(&partner, &order)
        .map(|o| o.order.status)
}

/// `body` signed with `secret` at the app's clock.
fn signed(app: &App, body: &Value, secret: &str) -> ApiEvent {
    let text = body.to_string();
    let header = sign(
        &Secret::new(secret.as_bytes().to_vec()),
        app.clock().now().timestamp(),
        text.as_bytes(),
    );
    sample("order-created")
        .text_body(&text)
        .header(SIGNATURE_HEADER, &header)
}

#[tokio::test]
async fn the_sample_order_life_credits_queues_counts_and_reverses_and_a_replay_writes_nothing() {
    let app = configured().await;
    let (status, created) = send(&app, sample("order-created")).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        (created["status"].as_str(), created["points"].as_u64()),
        (Some("pending"), Some(POINTS))
    );
    assert_eq!(app.store().balance(&participant()).pending, POINTS);
    assert_eq!(
        app.store().used_this_month(&participant(), "2026-11"),
        POINTS as i64
    );
    let world = app.store().inspect();
    assert_eq!(world.outbox.len(), 1, "the pending credit is announced");

    // A replay answers the first result and writes nothing.
    let (status, replay) = send(&app, sample("order-created")).await;
    assert_eq!((status, &replay), (StatusCode::OK, &created));
    let after = app.store().inspect();
    assert_eq!(
        (
            after.entry_ids.len(),
            after.events.len(),
            after.outbox.len()
        ),
        (
            world.entry_ids.len(),
            world.events.len(),
            world.outbox.len()
        )
    );

    let (status, delivered) = send(&app, sample("order-delivered")).await;
    assert_eq!(status, StatusCode::OK, "{delivered}");
    assert_eq!(delivered["status"], "eligible");
    let (partner, order) = ids();
    let stored = app.store().stored_order(&partner, &order).unwrap();
    assert_eq!(stored.queue.as_deref(), Some("RELEASE#2026-11"));
    assert_eq!(
        app.store().awaiting_release("2026-11"),
        vec![(partner.clone(), order.clone())]
    );
    assert_eq!(
        app.store()
            .inspect()
            .challenge_counts
            .get(&(partner, order)),
        Some(&1),
        "a delivery counts towards challenges"
    );

    let (status, cancelled) = send(&app, sample("order-cancelled")).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(
        (cancelled["status"].as_str(), cancelled["points"].as_u64()),
        (Some("reversed"), Some(POINTS))
    );
    assert_eq!(app.store().balance(&participant()).pending, 0);
    assert_eq!(app.store().used_this_month(&participant(), "2026-11"), 0);
    assert!(app.store().awaiting_release("2026-11").is_empty());

    let (status, returned) = send(&app, sample("order-returned")).await;
    assert_eq!(status, StatusCode::OK, "{returned}");
    assert_eq!(
        (returned["status"].as_str(), returned["reason"].as_str()),
        (Some("reversed"), Some("no_change"))
    );
    let kinds: Vec<_> = app
        .store()
        .entries(&participant())
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.contains(&EntryKind::CashbackPending) && kinds.contains(&EntryKind::CashbackReversed)
    );
}

#[tokio::test]
async fn a_delivery_before_its_order_is_created_is_a_409_and_writes_nothing() {
    let app = configured().await;
    let (status, problem) = send(&app, sample("order-delivered")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "unknown_order");
    assert!(app.store().inspect().events.is_empty());
    // Once created, the same delivery applies.
    send(&app, sample("order-created")).await;
    let (status, delivered) = send(&app, sample("order-delivered")).await;
    assert_eq!(
        (status, delivered["status"].as_str()),
        (StatusCode::OK, Some("eligible"))
    );
}

#[tokio::test]
async fn bad_or_stale_signatures_and_unknown_partners_are_401_and_write_nothing() {
    let app = configured().await;
    let before = app.store().inspect();
    let body = json!({
        "event_id": "evt-1", "order_id": "DM-1", "occurred_at": "2026-11-22T09:58:00Z",
        "type": "created", "participant_id": SAMPLE_PARTICIPANT, "region": "almaty",
        "channel": "app", "category": "beverages", "amount_minor": 1_250_000
    });
    let cases = [
        (signed(&app, &body, "not-the-secret"), "invalid_signature"),
        (
            sample("order-created").header(SIGNATURE_HEADER, "t=1795341600,v1=00"),
            "invalid_signature",
        ),
        (
            sample("order-created").path_param("partnerId", "nobody"),
            "unknown_partner",
        ),
    ];
    for (event, code) in cases {
        let (status, problem) = send(&app, event).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some(code))
        );
    }
    app.clock().advance(Duration::seconds(301));
    let (status, problem) = send(&app, sample("order-created")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_signature"))
    );
    let after = app.store().inspect();
    assert_eq!(
        (
            after.events.len(),
            after.orders.len(),
            after.entry_ids.len()
        ),
        (
            before.events.len(),
            before.orders.len(),
            before.entry_ids.len()
        )
    );
}

#[tokio::test]
async fn a_regional_minimum_set_by_the_sample_admin_event_decides_eligibility() {
    let app = configured().await;
    let raise = sample("put-region-minimum-order").body(json!({ "amount_minor": 2_000_000 }));
    let (status, body) = send(&app, raise).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, created) = send(&app, sample("order-created")).await;
    assert_eq!(
        (
            created["status"].as_str(),
            created["reason"].as_str(),
            created["points"].as_u64()
        ),
        (Some("no_cashback"), Some("below_minimum_order"), Some(0))
    );
    assert_eq!(status_of(&app), Some(OrderStatus::NoCashback));
    assert_eq!(app.store().balance(&participant()).pending, 0);
    // Delivered, it still counts towards challenges; then cancelled, it is closed.
    let (_, delivered) = send(&app, sample("order-delivered")).await;
    assert_eq!(delivered["status"], "no_cashback");
    let (_, cancelled) = send(&app, sample("order-cancelled")).await;
    assert_eq!(cancelled["status"], "closed");
}

#[tokio::test]
async fn a_return_after_release_claws_back_what_the_balance_covers_and_records_the_rest() {
    let app = configured().await;
    send(&app, sample("order-created")).await;
    send(&app, sample("order-delivered")).await;
    let (partner, order) = ids();
    let released = cashback::release(app.store(), &partner, &order, event_time())
        .await
        .unwrap();
    assert_eq!(released, cashback::ReleaseOutcome::Released(Points(POINTS)));
    assert!(app.store().awaiting_release("2026-11").is_empty());
    assert!(app.store().spend(
        &participant(),
        EntryId::parse("spent-500").unwrap(),
        Points(500),
        event_time()
    ));
    let (status, returned) = send(&app, sample("order-returned")).await;
    assert_eq!(status, StatusCode::OK, "{returned}");
    assert_eq!(
        (
            returned["status"].as_str(),
            returned["points"].as_u64(),
            returned["outstanding_clawback"].as_u64()
        ),
        (Some("clawed_back"), Some(POINTS - 500), Some(500))
    );
    let balance = app.store().balance(&participant());
    assert_eq!((balance.available, balance.pending), (0, 0));
    let stored = app.store().stored_order(&partner, &order).unwrap();
    assert_eq!(stored.queue.as_deref(), Some("CLAWBACK#OUTSTANDING"));
    assert_eq!(stored.order.outstanding_clawback, Points(500));
    // The month stays counted: it was settled.
    assert_eq!(
        app.store().used_this_month(&participant(), "2026-11"),
        POINTS as i64
    );
}

// --- Budget top-ups ----------------------------------------------------------------------

fn fund() -> ProgrammeAccount {
    ProgrammeAccount::PartnerFund(PartnerId::parse(DEMO_PARTNER).unwrap())
}

/// The sample top-up of the demo partner's fund by `amount` points under `key`.
pub(crate) fn top_up(amount: u64, key: &str) -> ApiEvent {
    sample("fund-partner-budget")
        .header("idempotency-key", key)
        .body(json!({ "amount": amount }))
}

/// A created order of the sample's amount (625 points) with its own event and order ids.
fn another_order(app: &App, id: &str) -> ApiEvent {
    let body = json!({
        "event_id": format!("evt-{id}"), "order_id": id, "occurred_at": "2026-11-22T09:58:00Z",
        "type": "created", "participant_id": SAMPLE_PARTICIPANT, "region": "almaty",
        "channel": "app", "category": "beverages", "amount_minor": 1_250_000
    });
    signed(app, &body, DEMO_SECRET)
}

pub(crate) async fn send_full(app: &App, event: ApiEvent) -> (StatusCode, Value, String) {
    let response = app.handle(event.request()).await.expect("never errs");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (response.status(), body_json(&response), content_type)
}

#[tokio::test]
async fn the_sample_top_up_funds_the_partner_once_and_its_replay_under_the_key_answers_the_same() {
    let app = configured().await;
    let (status, first, content_type) = send_full(&app, sample("fund-partner-budget")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(content_type, "application/json");
    assert_eq!(
        first,
        json!({ "account": fund().key(), "remaining": 1_600_000, "funded": 1_600_000,
                "paid_out": 0 })
    );
    let (status, again, _) = send_full(&app, sample("fund-partner-budget")).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let balance = app.store().programme_balance(&fund());
    assert_eq!(
        (balance.balance, balance.funded),
        (1_600_000, Some(1_600_000)),
        "the replay funded nothing"
    );
    // Another key is another top-up.
    let (status, body, _) = send_full(&app, top_up(400_000, "fund-demo-market-2027-01")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["remaining"], &body["funded"]),
        (&json!(2_000_000), &json!(2_000_000))
    );
}

#[tokio::test]
async fn an_admin_reads_the_partners_fund_and_an_unknown_partner_is_404() {
    let app = configured().await;
    let (status, body, _) = send_full(&app, sample("get-partner-budget")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "account": fund().key(), "funded": null, "remaining": null, "paid_out": 0 })
    );
    send_full(&app, sample("fund-partner-budget")).await;
    let (_, body, _) = send_full(&app, sample("get-partner-budget")).await;
    assert_eq!(
        (&body["funded"], &body["remaining"]),
        (&json!(1_600_000), &json!(1_600_000))
    );
    let (status, body, content_type) = send_full(
        &app,
        sample("get-partner-budget").path_param("partnerId", "nobody-market"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str(), content_type.as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("partner_not_found"),
            "application/problem+json"
        )
    );
}

#[tokio::test]
async fn top_ups_without_a_key_for_an_unknown_partner_or_of_no_points_are_problems_funding_nothing()
{
    let app = configured().await;
    let cases = [
        (
            sample("fund-partner-budget-without-key"),
            StatusCode::BAD_REQUEST,
            "idempotency_key_missing",
        ),
        (
            sample("fund-partner-budget").path_param("partnerId", "nobody-market"),
            StatusCode::NOT_FOUND,
            "partner_not_found",
        ),
        (
            top_up(0, "fund-demo-market-zero"),
            StatusCode::BAD_REQUEST,
            "invalid_amount",
        ),
    ];
    for (event, expected, code) in cases {
        let (status, problem, content_type) = send_full(&app, event).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (expected, Some(code)),
            "{problem}"
        );
        assert_eq!(content_type, "application/problem+json");
    }
    assert_eq!(app.store().programme_balance(&fund()).funded, None);
    let nobody = ProgrammeAccount::PartnerFund(PartnerId::parse("nobody-market").unwrap());
    assert_eq!(app.store().programme_balance(&nobody).funded, None);
}

#[tokio::test]
async fn an_order_over_the_fund_earns_no_cashback_until_a_top_up_pays_the_next_one() {
    let app = configured().await;
    // 600 points: the fund cannot cover the sample order's 625.
    let (status, body, _) = send_full(&app, top_up(600, "fund-demo-market-small")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, created) = send(&app, sample("order-created")).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        (
            created["status"].as_str(),
            created["reason"].as_str(),
            created["points"].as_u64()
        ),
        (Some("no_cashback"), Some("budget_exhausted"), Some(0))
    );
    assert_eq!(status_of(&app), Some(OrderStatus::NoCashback));
    assert_eq!(app.store().balance(&participant()).pending, 0);
    assert_eq!(app.store().programme_balance(&fund()).balance, 600);

    let (status, body, _) = send_full(&app, top_up(1_000, "fund-demo-market-more")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, next) = send(&app, another_order(&app, "DM-100043")).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(
        (next["status"].as_str(), next["points"].as_u64()),
        (Some("pending"), Some(POINTS))
    );
    assert_eq!(app.store().balance(&participant()).pending, POINTS);
    assert_eq!(
        app.store().programme_balance(&fund()).balance,
        1_600 - POINTS as i64
    );
    assert_eq!(
        app.store().member_points() + app.store().programme_points(),
        0
    );
}

#[tokio::test]
async fn the_monthly_cap_counts_the_month_of_the_orders_region_zone() {
    let app = configured().await;
    // The sample orders ship to region almaty, which counts in Asia/Almaty (UTC+5 since
    // 2024); the programme stays in UTC.
    app.store().set_zones(loyalty_domain::zone::Zones {
        programme: loyalty_domain::zone::Zone::UTC,
        regions: [(
            loyalty_domain::ids::RegionId::parse("almaty").unwrap(),
            loyalty_domain::zone::Zone::parse("Asia/Almaty").unwrap(),
        )]
        .into(),
    });
    // 30 November 19:30 UTC is 00:30 on 1 December in Almaty.
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 19, 30, 0).unwrap();
    app.clock().advance(at - app.clock().now());
    let (status, body) = send(&app, another_order(&app, "DM-200001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["points"], POINTS);
    assert_eq!(
        (
            app.store().used_this_month(&participant(), "2026-11"),
            app.store().used_this_month(&participant(), "2026-12")
        ),
        (0, POINTS as i64)
    );
    let partner = PartnerId::parse(DEMO_PARTNER).unwrap();
    let order = OrderId::parse("DM-200001").unwrap();
    let stored = app.store().stored_order(&partner, &order).unwrap();
    assert_eq!(stored.order.month, "2026-12");
}

#[tokio::test]
async fn an_order_of_an_unknown_or_blocked_participant_is_answered_no_cashback_and_credits_nothing()
{
    let app = configured().await;
    app.store().set_active(&participant(), false);
    let (status, answer) = send(&app, sample("order-created")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (
            answer["status"].as_str(),
            answer["points"].as_u64(),
            answer["reason"].as_str()
        ),
        (Some("no_cashback"), Some(0), Some("participant_not_active"))
    );
    assert_eq!(status_of(&app), Some(OrderStatus::NoCashback));
    assert_eq!(app.store().balance(&participant()).pending, 0);
    assert_eq!(app.store().used_this_month(&participant(), "2026-11"), 0);
    assert!(
        app.store().inspect().outbox.is_empty(),
        "nothing credited, nothing announced"
    );

    // Someone who never registered: the same answer for another order.
    let body = json!({
        "event_id": "evt-stranger", "order_id": "DM-STRANGER", "occurred_at": "2026-11-22T09:58:00Z",
        "type": "created", "participant_id": "p-stranger", "region": "almaty",
        "channel": "app", "category": "beverages", "amount_minor": 1_250_000
    });
    let (status, answer) = send(&app, signed(&app, &body, DEMO_SECRET)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reason"], "participant_not_active");
    let stranger = ParticipantId::parse("p-stranger").unwrap();
    assert_eq!(app.store().balance(&stranger).pending, 0);
}

#[tokio::test]
async fn a_blocked_participants_no_cashback_order_delivered_counts_towards_no_challenge() {
    let app = configured().await;
    app.store().set_active(&participant(), false);
    let (status, answer) = send(&app, sample("order-created")).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("no_cashback"))
    );
    let (status, delivered) = send(&app, sample("order-delivered")).await;
    assert_eq!(status, StatusCode::OK, "{delivered}");
    assert!(
        app.store().inspect().challenge_counts.is_empty(),
        "a blocked participant's delivery counts for nothing"
    );
}
