//! Partner webhooks and cashback against the emulator: signatures, replays, the order life
//! cycle through the ledger, the monthly cap under concurrent webhooks, clawbacks.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::cashback::{sign, OrderId, OrderStatus, PartnerId, Secret, SIGNATURE_HEADER};
use loyalty_domain::challenge::{Challenge, ChallengeStore};
use loyalty_domain::earning::Slug;
use loyalty_domain::ids::{EntryId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Entry, EntryKind};
use loyalty_domain::outbox::{Envelope, OutboxEvent};
use loyalty_domain::ports::{Clock, FixedClock};
use loyalty_domain::zone::{Zone, ZoneSettings};
use loyalty_domain::Points;
use loyalty_local::webhooks::{DEMO_PARTNER, DEMO_SECRET};
use loyalty_platform::dynamo::{key, ItemExt};
use loyalty_platform::stores::cashback::{
    CashbackTables, DynamoCashback, ReleaseOutcome, OUTSTANDING_CLAWBACKS,
};
use loyalty_platform::stores::challenges::{ChallengeTables, DynamoChallenges};
use loyalty_platform::stores::ledger::{append_items, DynamoLedger};
use loyalty_tests::{body_json, ApiEvent, TestStack};
use serde_json::{json, Value};

use crate::ledger_check::assert_ledger_consistent;

const FUNCTION: &str = "PartnerWebhooksFunction";
/// 12 500.00 at the demo partner's 5% beverages rate: 625 points.
const AMOUNT: u64 = 1_250_000;
const POINTS: u64 = 625;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

struct Fixture {
    stack: TestStack,
    app: partner_webhooks::App,
    clock: Arc<FixedClock>,
}

/// The fixture's clock, shared with its App so the test can move it.
struct SharedClock(Arc<FixedClock>);

impl Clock for SharedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

impl Fixture {
    /// A stack where the demo partner pays 3% by default and 5% on beverages.
    async fn new() -> Fixture {
        let stack = TestStack::for_function(FUNCTION).await;
        let clock = Arc::new(FixedClock::at(now()));
        let app = partner_webhooks::App::with_clock(
            &stack.aws,
            &stack.env_for(FUNCTION),
            Box::new(SharedClock(clock.clone())),
        )
        .unwrap();
        let f = Fixture { stack, app, clock };
        // The participants most tests' orders name: only registered ones earn cashback.
        for p in ["p-1", "p-7f3a9c"] {
            f.register(p).await;
        }
        let (status, body) = f
            .call(ApiEvent::load("partner-webhooks/put-partner.json"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        f
    }

    async fn register(&self, id: &str) {
        loyalty_tests::contract::claims::register_profile(
            &self.stack,
            &participant(id),
            &Default::default(),
        )
        .await;
    }

    async fn call(&self, event: ApiEvent) -> (StatusCode, Value) {
        let response = self.app.handle(event.request()).await.unwrap();
        (response.status(), body_json(&response))
    }

    fn store(&self) -> DynamoCashback {
        DynamoCashback::new(
            self.stack.dynamodb(),
            CashbackTables {
                programme: self.stack.table_name("ProgrammeTable").into(),
                activity: self.stack.table_name("ActivityTable").into(),
                ledger: self.stack.table_name("LedgerTable").into(),
                outbox: self.stack.table_name("OutboxTable").into(),
                participants: self.stack.table_name("ParticipantsTable").into(),
            },
            Default::default(),
        )
    }

    fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(self.stack.dynamodb(), self.stack.table_name("LedgerTable"))
    }

    /// Each event a second after the previous one, so ledger entries have distinct times
    /// and replay in the order they were appended.
    /// The challenge store on the fixture's tables, as the function's own.
    fn challenges(&self) -> DynamoChallenges {
        DynamoChallenges::new(
            self.stack.dynamodb(),
            ChallengeTables {
                programme: self.stack.table_name("ProgrammeTable").into(),
                activity: self.stack.table_name("ActivityTable").into(),
                ledger: self.stack.table_name("LedgerTable").into(),
                outbox: self.stack.table_name("OutboxTable").into(),
                participants: self.stack.table_name("ParticipantsTable").into(),
            },
        )
    }

    fn tick(&self) -> DateTime<Utc> {
        self.clock.advance(Duration::seconds(1));
        self.clock.now()
    }

    async fn webhook(&self, body: &Value) -> (StatusCode, Value) {
        let at = self.tick();
        self.call(signed(body, DEMO_SECRET, at.timestamp())).await
    }

    async fn set_minimum(&self, region: &str, amount_minor: u64) {
        let event = ApiEvent::load("partner-webhooks/put-region-minimum-order.json")
            .path_param("regionId", region)
            .body(json!({ "amount_minor": amount_minor }));
        assert_eq!(self.call(event).await.0, StatusCode::OK);
    }

    /// Items in every table the function writes.
    async fn item_count(&self) -> usize {
        let mut total = 0;
        for table in [
            "ProgrammeTable",
            "ActivityTable",
            "LedgerTable",
            "OutboxTable",
        ] {
            let out = self
                .stack
                .dynamodb()
                .scan()
                .table_name(self.stack.table_name(table))
                .send()
                .await
                .unwrap();
            total += out.items().len();
        }
        total
    }

    /// The typed event stored under `event_id`, parsed as its consumers will parse it.
    async fn outbox_event(&self, event_id: &str) -> Option<Envelope> {
        let item = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("OutboxTable"))
            .set_key(Some(key(format!("OUTBOX#{event_id}"), "OUTBOX")))
            .send()
            .await
            .unwrap()
            .item?;
        let payload = item["payload"].as_s().unwrap();
        Some(Envelope::from_json(payload).expect("an outbox payload is a typed event"))
    }
}

/// A sample webhook event carrying `body`, signed with `secret` at `timestamp`.
fn signed(body: &Value, secret: &str, timestamp: i64) -> ApiEvent {
    let text = body.to_string();
    let header = sign(
        &Secret::new(secret.as_bytes().to_vec()),
        timestamp,
        text.as_bytes(),
    );
    ApiEvent::load("partner-webhooks/order-created.json")
        .text_body(&text)
        .header(SIGNATURE_HEADER, &header)
}

/// "Buy 40 Cola Co units" between two local dates, for a bonus of 300.
async fn put_cola_challenge(
    challenges: &DynamoChallenges,
    id: &str,
    starts_on: &str,
    ends_on: &str,
) {
    let challenge = Challenge::parse(
        Slug::parse(id).unwrap(),
        serde_json::from_value(json!({
            "title": "Buy 40 Cola Co units", "supplier_id": "cola-co", "target_units": 40,
            "bonus_points": 300, "starts_on": starts_on, "ends_on": ends_on
        }))
        .unwrap(),
    )
    .unwrap();
    challenges.put_challenge(&challenge, now()).await.unwrap();
}

fn created(event: &str, order: &str, participant: &str, amount_minor: u64) -> Value {
    json!({
        "event_id": event, "order_id": order, "occurred_at": "2026-11-22T09:58:00Z",
        "type": "created", "participant_id": participant, "region": "almaty",
        "channel": "app", "category": "beverages", "amount_minor": amount_minor,
        "lines": [{ "supplier_id": "cola-co", "units": 24 }]
    })
}

fn change(event: &str, order: &str, kind: &str) -> Value {
    json!({ "event_id": event, "order_id": order, "occurred_at": "2026-11-22T09:59:00Z", "type": kind })
}

fn participant(id: &str) -> ParticipantId {
    ParticipantId::parse(id).unwrap()
}

fn ids(order: &str) -> (PartnerId, OrderId) {
    (
        PartnerId::parse(DEMO_PARTNER).unwrap(),
        OrderId::parse(order).unwrap(),
    )
}

#[tokio::test]
async fn unknown_partners_bad_signatures_and_stale_timestamps_get_401_and_write_nothing() {
    let f = Fixture::new().await;
    let before = f.item_count().await;
    let body = created("e-1", "o-1", "p-1", AMOUNT);
    let t = now().timestamp();
    let tampered = {
        let good = signed(&body, DEMO_SECRET, t);
        good.text_body(&created("e-1", "o-1", "p-1", AMOUNT * 10).to_string())
    };
    let cases = [
        (
            "an unknown partner",
            signed(&body, DEMO_SECRET, t).path_param("partnerId", "other-shop"),
            "unknown_partner",
        ),
        (
            "a partner id that cannot exist",
            signed(&body, DEMO_SECRET, t).path_param("partnerId", "a.b"),
            "unknown_partner",
        ),
        (
            "another secret",
            signed(&body, "not-the-secret", t),
            "invalid_signature",
        ),
        (
            "a body changed after signing",
            tampered,
            "invalid_signature",
        ),
        (
            "no signature",
            ApiEvent::load("partner-webhooks/order-created.json").text_body(&body.to_string()),
            "invalid_signature",
        ),
        (
            "a timestamp six minutes old",
            signed(&body, DEMO_SECRET, t - 360),
            "stale_signature",
        ),
        (
            "a timestamp six minutes ahead",
            signed(&body, DEMO_SECRET, t + 360),
            "stale_signature",
        ),
    ];
    for (case, event, code) in cases {
        let (status, problem) = f.call(event).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some(code)),
            "{case}: {problem}"
        );
    }
    assert_eq!(
        f.item_count().await,
        before,
        "a refused webhook wrote something"
    );
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn a_created_order_credits_pending_cashback_once_and_a_replay_answers_the_first_result() {
    let f = Fixture::new().await;
    let body = created("e-1", "o-1", "p-1", AMOUNT);
    let (status, first) = f.webhook(&body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (first["status"].as_str(), first["points"].as_u64()),
        (Some("pending"), Some(POINTS))
    );
    let items = f.item_count().await;
    let (status, replay) = f.webhook(&body).await;
    assert_eq!((status, &replay), (StatusCode::OK, &first));
    assert_eq!(f.item_count().await, items, "a replay wrote something");

    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!((balance.pending, balance.available), (POINTS, 0));
    let pending = f
        .outbox_event("cashback_pending-cashback:demo-market:o-1:pending")
        .await
        .expect("the credit wrote its outbox event");
    assert!(matches!(
        pending.event,
        OutboxEvent::CashbackPending { points, .. } if points.get() == POINTS
    ));
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

/// A partner naming someone who never registered, or whom an admin blocked, hears why the
/// order earns nothing; the order is recorded, nothing is credited, and a replay answers
/// the same.
#[tokio::test]
async fn an_order_of_an_unknown_or_blocked_participant_is_answered_and_recorded_without_cashback() {
    let f = Fixture::new().await;
    loyalty_tests::contract::claims::set_profile_status(&f.stack, &participant("p-1"), "blocked")
        .await;
    for (event, order, who) in [("e-1", "o-1", "p-stranger"), ("e-2", "o-2", "p-1")] {
        let body = created(event, order, who, AMOUNT);
        let (status, answer) = f.webhook(&body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            (
                answer["status"].as_str(),
                answer["points"].as_u64(),
                answer["reason"].as_str()
            ),
            (Some("no_cashback"), Some(0), Some("participant_not_active")),
        );
        let items = f.item_count().await;
        assert_eq!(f.webhook(&body).await, (StatusCode::OK, answer));
        assert_eq!(f.item_count().await, items, "a replay wrote something");
        let (partner, id) = ids(order);
        let stored = f.store().order(&partner, &id).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.cashback),
            (OrderStatus::NoCashback, Points(0))
        );
        let balance = f.ledger().balance(&participant(who)).await.unwrap();
        assert_eq!((balance.pending, balance.available), (0, 0));
    }
    assert_ledger_consistent(&f.stack, &[participant("p-1"), participant("p-stranger")]).await;
}

#[tokio::test]
async fn the_sample_events_re_signed_now_are_accepted_in_order() {
    let f = Fixture::new().await;
    for name in ["order-created", "order-delivered", "order-returned"] {
        let sample = ApiEvent::load(&format!("partner-webhooks/{name}.json"));
        let body: Value = serde_json::from_str(sample.0["body"].as_str().unwrap()).unwrap();
        let (status, result) = f.webhook(&body).await;
        assert_eq!(status, StatusCode::OK, "{name}: {result}");
    }
    let (partner, order) = ids("DM-100042");
    let order = f.store().order(&partner, &order).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Reversed);
    assert_ledger_consistent(&f.stack, &[participant("p-7f3a9c")]).await;
}

#[tokio::test]
async fn only_app_orders_at_or_above_their_regions_minimum_earn() {
    let f = Fixture::new().await;
    f.set_minimum("almaty", 1_000_000).await;
    let mut web = created("e-1", "o-web", "p-1", AMOUNT);
    web["channel"] = json!("web");
    let below = created("e-2", "o-below", "p-1", 999_999);
    let at = created("e-3", "o-at", "p-1", 1_000_000);
    let mut elsewhere_below = created("e-4", "o-else-below", "p-1", 399_999);
    elsewhere_below["region"] = json!("astana");
    let mut elsewhere_at = created("e-5", "o-else-at", "p-1", 400_000);
    elsewhere_at["region"] = json!("astana");

    let expect = [
        (web, "no_cashback", 0, Some("not_app_channel")),
        (below, "no_cashback", 0, Some("below_minimum_order")),
        (at, "pending", 500, None),
        (
            elsewhere_below,
            "no_cashback",
            0,
            Some("below_minimum_order"),
        ),
        (elsewhere_at, "pending", 200, None),
    ];
    for (body, status, points, reason) in expect {
        let (code, result) = f.webhook(&body).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            (
                result["status"].as_str(),
                result["points"].as_u64(),
                result["reason"].as_str()
            ),
            (Some(status), Some(points), reason),
            "{body}"
        );
    }
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(balance.pending, 700);
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn a_delivered_order_awaits_release_in_its_month_and_is_released_once() {
    let f = Fixture::new().await;
    f.webhook(&created("e-1", "o-1", "p-1", AMOUNT)).await;
    let (status, delivered) = f.webhook(&change("e-2", "o-1", "delivered")).await;
    assert_eq!(
        (status, delivered["status"].as_str()),
        (StatusCode::OK, Some("eligible"))
    );
    let store = f.store();
    let (partner, order) = ids("o-1");
    assert_eq!(
        store.awaiting_release("2026-11").await.unwrap(),
        vec![(partner.clone(), order.clone())]
    );

    let later = now() + Duration::days(10);
    assert_eq!(
        store.release_order(&partner, &order, later).await.unwrap(),
        ReleaseOutcome::Released(Points(POINTS))
    );
    assert_eq!(
        store.release_order(&partner, &order, later).await.unwrap(),
        ReleaseOutcome::NotEligible(OrderStatus::Released)
    );
    assert!(store.awaiting_release("2026-11").await.unwrap().is_empty());
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(
        (balance.pending, balance.available, balance.lifetime_earned),
        (0, POINTS, POINTS)
    );
    let released = f
        .outbox_event("cashback_released-cashback:demo-market:o-1:released")
        .await
        .expect("the release wrote its outbox event");
    assert_eq!(released.event.kind(), "cashback_released");
    assert_eq!(released.event.participant(), &participant("p-1"));
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn a_change_for_an_order_not_yet_created_is_refused_and_writes_nothing() {
    let f = Fixture::new().await;
    let before = f.item_count().await;
    let (status, problem) = f.webhook(&change("e-2", "o-1", "delivered")).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("unknown_order"))
    );
    assert_eq!(f.item_count().await, before);
    // The partner's retry after the created event goes through.
    f.webhook(&created("e-1", "o-1", "p-1", AMOUNT)).await;
    let (status, delivered) = f.webhook(&change("e-2", "o-1", "delivered")).await;
    assert_eq!(
        (status, delivered["status"].as_str()),
        (StatusCode::OK, Some("eligible"))
    );
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn cancelling_or_returning_before_release_reverses_the_pending_credit_and_frees_the_cap() {
    let f = Fixture::new().await;
    f.webhook(&created("e-1", "o-1", "p-1", AMOUNT)).await;
    f.webhook(&created("e-2", "o-2", "p-1", AMOUNT)).await;
    f.webhook(&change("e-3", "o-2", "delivered")).await;
    assert_eq!(
        f.store()
            .used_this_month(&participant("p-1"), "2026-11")
            .await
            .unwrap(),
        2 * POINTS
    );

    let (_, cancelled) = f.webhook(&change("e-4", "o-1", "cancelled")).await;
    let (_, returned) = f.webhook(&change("e-5", "o-2", "returned")).await;
    for result in [&cancelled, &returned] {
        assert_eq!(
            (result["status"].as_str(), result["points"].as_u64()),
            (Some("reversed"), Some(POINTS)),
            "{result}"
        );
    }
    // Reversed orders leave the release queue, and their release is refused.
    let store = f.store();
    assert!(store.awaiting_release("2026-11").await.unwrap().is_empty());
    let (partner, order) = ids("o-2");
    assert_eq!(
        store.release_order(&partner, &order, now()).await.unwrap(),
        ReleaseOutcome::NotEligible(OrderStatus::Reversed)
    );
    assert_eq!(
        store
            .used_this_month(&participant("p-1"), "2026-11")
            .await
            .unwrap(),
        0
    );
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!((balance.pending, balance.available), (0, 0));
    // A second cancellation of the same order changes nothing.
    let (_, again) = f.webhook(&change("e-6", "o-1", "cancelled")).await;
    assert_eq!(
        (again["status"].as_str(), again["points"].as_u64()),
        (Some("reversed"), Some(0))
    );
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

/// Spends `amount` available points, as the catalogue would.
async fn spend(f: &Fixture, who: &str, amount: u64) {
    let entry = Entry {
        id: EntryId::parse(&format!("redemption-{who}-{amount}")).unwrap(),
        participant: participant(who),
        outlet: None,
        kind: EntryKind::Redemption,
        amount: Points(amount),
        source: "catalogue".into(),
        created_at: f.tick(),
        expires_on: None,
    };
    append_items(f.stack.table_name("LedgerTable"), &entry, None)
        .unwrap()
        .commit(&f.stack.dynamodb(), "spend")
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_return_after_release_claws_back_what_the_balance_covers_and_records_the_rest() {
    let f = Fixture::new().await;
    let store = f.store();
    for order in ["o-1", "o-2"] {
        f.webhook(&created(&format!("{order}-c"), order, "p-1", AMOUNT))
            .await;
        f.webhook(&change(&format!("{order}-d"), order, "delivered"))
            .await;
        let (partner, id) = ids(order);
        store.release_order(&partner, &id, f.tick()).await.unwrap();
    }
    // Covered: 1 250 available, 625 clawed back.
    let (_, covered) = f.webhook(&change("o-1-r", "o-1", "returned")).await;
    assert_eq!(
        (
            covered["status"].as_str(),
            covered["points"].as_u64(),
            covered["outstanding_clawback"].as_u64()
        ),
        (Some("clawed_back"), Some(POINTS), Some(0))
    );
    // Not covered: 125 left after spending 500, so 125 is clawed back and 500 is owed.
    spend(&f, "p-1", 500).await;
    let (_, uncovered) = f.webhook(&change("o-2-r", "o-2", "returned")).await;
    assert_eq!(
        (
            uncovered["status"].as_str(),
            uncovered["points"].as_u64(),
            uncovered["outstanding_clawback"].as_u64()
        ),
        (Some("clawed_back"), Some(125), Some(500))
    );
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(balance.available, 0);
    let (partner, id) = ids("o-2");
    let order = store.order(&partner, &id).await.unwrap().unwrap();
    assert_eq!(
        (order.clawed_back, order.outstanding_clawback),
        (Points(125), Points(500))
    );
    let raw = f
        .stack
        .dynamodb()
        .get_item()
        .table_name(f.stack.table_name("ActivityTable"))
        .set_key(Some(key("ORDER#demo-market#o-2", "ORDER")))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(raw.string("gsi1pk").unwrap(), OUTSTANDING_CLAWBACKS);
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn concurrent_webhooks_for_one_participant_never_exceed_the_monthly_cap() {
    let f = Fixture::new().await;
    let bodies: Vec<Value> = (0..32)
        .map(|i| created(&format!("e-{i}"), &format!("o-{i}"), "p-1", AMOUNT))
        .collect();
    let results = join_all(bodies.iter().map(|b| f.webhook(b))).await;
    let mut credited = 0;
    for (status, result) in &results {
        assert_eq!(*status, StatusCode::OK, "{result}");
        credited += result["points"].as_u64().unwrap();
    }
    // 32 × 625 is far above the cap of 3 000: exactly the cap is credited.
    assert_eq!(credited, 3_000);
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(balance.pending, 3_000);
    assert_eq!(
        f.store()
            .used_this_month(&participant("p-1"), "2026-11")
            .await
            .unwrap(),
        3_000
    );
    let capped = results
        .iter()
        .filter(|(_, r)| r["reason"] == "capped")
        .count();
    assert!(capped <= 1, "at most one order is credited in part");
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn a_delivered_order_counts_its_units_towards_a_challenge_once() {
    let f = Fixture::new().await;
    let challenges = f.challenges();
    put_cola_challenge(&challenges, "cola-40", "2026-11-01", "2026-11-30").await;

    // Each order has 24 units of cola-co: the second delivery completes the challenge.
    for order in ["o-1", "o-2"] {
        f.webhook(&created(&format!("{order}-c"), order, "p-1", AMOUNT))
            .await;
        f.webhook(&change(&format!("{order}-d"), order, "delivered"))
            .await;
        // A replayed delivery counts nothing more.
        f.webhook(&change(&format!("{order}-d"), order, "delivered"))
            .await;
    }
    let progress = loyalty_domain::challenge::progress_of(&challenges, &participant("p-1"))
        .await
        .unwrap();
    assert_eq!(progress.len(), 1);
    assert_eq!((progress[0].1.units, progress[0].1.completed), (48, true));
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!((balance.available, balance.pending), (300, 2 * POINTS));
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn a_delivered_order_counts_for_the_challenge_of_its_day_in_the_orders_region_zone() {
    let f = Fixture::new().await;
    // The orders ship to region almaty; here it counts in Omsk's zone (UTC+6).
    f.stack
        .earning_store()
        .put_region_zone(
            &RegionId::parse("almaty").unwrap(),
            Zone::parse("Asia/Omsk").unwrap(),
            now(),
        )
        .await
        .unwrap();
    let challenges = f.challenges();
    put_cola_challenge(&challenges, "cola-nov", "2026-11-01", "2026-11-30").await;
    put_cola_challenge(&challenges, "cola-dec", "2026-12-01", "2026-12-31").await;

    // Placed at 19:00 UTC on 30 November: 01:00 on 1 December in Omsk.
    let placed = Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0).unwrap();
    f.clock.advance(placed - f.clock.now());
    let mut order = created("o-1-c", "o-1", "p-1", AMOUNT);
    order["occurred_at"] = placed.to_rfc3339().into();
    let (status, body) = f.webhook(&order).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = f.webhook(&change("o-1-d", "o-1", "delivered")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let progress = loyalty_domain::challenge::progress_of(&challenges, &participant("p-1"))
        .await
        .unwrap();
    let units = |id: &str| {
        progress
            .iter()
            .find(|(c, _)| c.id.as_str() == id)
            .map_or(0, |(_, p)| p.units)
    };
    assert_eq!((units("cola-nov"), units("cola-dec")), (0, 24));
}

#[tokio::test]
async fn a_blocked_participants_delivered_order_counts_towards_no_challenge() {
    let f = Fixture::new().await;
    let challenges = f.challenges();
    put_cola_challenge(&challenges, "cola-40", "2026-11-01", "2026-11-30").await;
    loyalty_tests::contract::claims::set_profile_status(&f.stack, &participant("p-1"), "blocked")
        .await;
    // Recorded without cashback, then delivered: its 24 units would count towards the challenge.
    let (status, answer) = f.webhook(&created("o-1-c", "o-1", "p-1", AMOUNT)).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::OK, Some("no_cashback")),
        "{answer}"
    );
    let (status, answer) = f.webhook(&change("o-1-d", "o-1", "delivered")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let progress = loyalty_domain::challenge::progress_of(&challenges, &participant("p-1"))
        .await
        .unwrap();
    assert_eq!(progress[0].1, Default::default());
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!((balance.available, balance.pending), (0, 0));
}

#[tokio::test]
async fn orders_whose_partner_and_order_ids_read_alike_with_dashes_both_count_towards_a_challenge()
{
    // Partners `demo-market` and `demo`: order `x-1` of the first and order `market-x-1` of
    // the second would join, with dashes, into the same text.
    let stack = TestStack::for_function(FUNCTION).await;
    let clock = Arc::new(FixedClock::at(now()));
    let env = stack.env_for(FUNCTION).with(
        "PARTNER_SECRETS",
        json!({ DEMO_PARTNER: DEMO_SECRET, "demo": DEMO_SECRET }).to_string(),
    );
    let app =
        partner_webhooks::App::with_clock(&stack.aws, &env, Box::new(SharedClock(clock.clone())))
            .unwrap();
    let f = Fixture { stack, app, clock };
    // Only a registered participant's orders count towards challenges.
    f.register("p-1").await;
    for partner in [DEMO_PARTNER, "demo"] {
        let (status, body) = f
            .call(
                ApiEvent::load("partner-webhooks/put-partner.json")
                    .path_param("partnerId", partner),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let challenges = f.challenges();
    put_cola_challenge(&challenges, "cola-40", "2026-11-01", "2026-11-30").await;

    for (partner, order) in [(DEMO_PARTNER, "x-1"), ("demo", "market-x-1")] {
        let send = |body: Value| {
            let at = f.tick();
            signed(&body, DEMO_SECRET, at.timestamp()).path_param("partnerId", partner)
        };
        let (status, body) = f
            .call(send(created(
                &format!("{partner}-{order}-c"),
                order,
                "p-1",
                AMOUNT,
            )))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = f
            .call(send(change(
                &format!("{partner}-{order}-d"),
                order,
                "delivered",
            )))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let progress = loyalty_domain::challenge::progress_of(&challenges, &participant("p-1"))
        .await
        .unwrap();
    assert_eq!((progress[0].1.units, progress[0].1.completed), (48, true));
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(balance.available, 300);
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn partner_settings_with_impossible_rates_or_amounts_are_refused_with_400() {
    let f = Fixture::new().await;
    let partner = ApiEvent::load("partner-webhooks/put-partner.json");
    let cases = [
        (
            partner
                .clone()
                .body(json!({ "name": "X", "default_rate_bp": 10_001 })),
            "invalid_rate",
        ),
        (
            partner
                .clone()
                .body(json!({ "name": "", "default_rate_bp": 100 })),
            "invalid_name",
        ),
        (
            partner.clone().body(json!({ "name": "X", "rate": 1 })),
            "invalid_body",
        ),
        (
            ApiEvent::load("partner-webhooks/put-region-minimum-order.json")
                .body(json!({ "amount_minor": -1 })),
            "invalid_body",
        ),
    ];
    for (event, code) in cases {
        let (status, problem) = f.call(event).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn a_signed_event_that_is_not_an_order_event_is_a_400_and_writes_nothing() {
    let f = Fixture::new().await;
    let before = f.item_count().await;
    let mut bad_id = created("e-1", "o#1", "p-1", AMOUNT);
    let cases = [
        json!({ "event_id": "e-1", "order_id": "o-1", "occurred_at": "2026-11-22T09:58:00Z", "type": "shipped" }),
        json!({ "event_id": "e-1", "order_id": "o-1", "type": "delivered" }),
        json!({ "event_id": "e-1", "order_id": "o-1", "occurred_at": "2026-11-22T09:58:00Z", "type": "created" }),
        std::mem::take(&mut bad_id),
    ];
    for body in cases {
        let (status, problem) = f.webhook(&body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_body")),
            "{body}"
        );
    }
    assert_eq!(f.item_count().await, before);
}

#[tokio::test]
async fn a_second_created_event_for_one_order_is_acknowledged_and_credits_nothing_more() {
    let f = Fixture::new().await;
    f.webhook(&created("e-1", "o-1", "p-1", AMOUNT)).await;
    let (status, second) = f.webhook(&created("e-2", "o-1", "p-1", AMOUNT)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (second["points"].as_u64(), second["reason"].as_str()),
        (Some(0), Some("order_already_created"))
    );
    let balance = f.ledger().balance(&participant("p-1")).await.unwrap();
    assert_eq!(balance.pending, POINTS);
    assert_ledger_consistent(&f.stack, &[participant("p-1")]).await;
}

#[tokio::test]
async fn partner_rates_changed_by_another_instance_apply_within_the_cache_period() {
    let f = Fixture::new().await;
    // Another warm function (sharing the clock) raises beverages to 10%.
    let other = partner_webhooks::App::with_clock(
        &f.stack.aws,
        &f.stack.env_for(FUNCTION),
        Box::new(SharedClock(f.clock.clone())),
    )
    .unwrap();
    let raise = ApiEvent::load("partner-webhooks/put-partner.json").body(json!({
        "name": "Demo Market", "default_rate_bp": 300,
        "category_rates_bp": { "beverages": 1_000 }, "active": true
    }));
    assert_eq!(
        other.handle(raise.request()).await.unwrap().status(),
        StatusCode::OK
    );

    // This instance read the rates less than CASHBACK_SETTINGS_CACHE_SECS (60 s) ago.
    let (_, first) = f.webhook(&created("e-1", "o-1", "p-1", AMOUNT)).await;
    assert_eq!(first["points"].as_u64(), Some(POINTS));
    f.clock.advance(Duration::seconds(60));
    let (_, second) = f.webhook(&created("e-2", "o-2", "p-1", AMOUNT)).await;
    assert_eq!(second["points"].as_u64(), Some(2 * POINTS), "{second}");
}

/// A partner's fund with a budget never pays more than it holds: each shard covers one order
/// here, an order its shard cannot cover is recorded as no cashback (`budget_exhausted`), a
/// reversal refunds the fund, and member and programme accounts sum to zero.
#[tokio::test]
async fn a_partner_fund_with_a_budget_never_overspends_and_a_reversal_refunds_it() {
    use loyalty_domain::ledger::{ProgrammeAccount, PROGRAMME_SHARDS};
    let f = Fixture::new().await;
    let budget = POINTS * PROGRAMME_SHARDS as u64;
    let fund = |amount: u64, key: &str| {
        ApiEvent::load("partner-webhooks/fund-partner-budget.json")
            .path_param("partnerId", DEMO_PARTNER)
            .body(json!({ "amount": amount }))
            .header("idempotency-key", key)
    };
    let (status, body) = f.call(fund(budget, "fund-0001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["remaining"].as_i64(), Some(budget as i64));
    let (status, body) = f.call(fund(budget, "fund-0001")).await;
    assert_eq!(
        (status, body["funded"].as_i64()),
        (StatusCode::OK, Some(budget as i64)),
        "a retried top-up funds once"
    );
    let (status, body) = f
        .call(fund(10, "fund-0002").path_param("partnerId", "nobody"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("partner_not_found"))
    );

    let mut people = Vec::new();
    let mut refused = None;
    for i in 0..=PROGRAMME_SHARDS {
        let p = format!("p-{i}");
        f.register(&p).await;
        people.push(participant(&p));
        let (status, r) = f
            .webhook(&created(&format!("e-{i}"), &format!("o-{i}"), &p, AMOUNT))
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        if r["status"] == "no_cashback" {
            refused = Some((i, r));
            break;
        }
        assert_eq!(r["points"].as_u64(), Some(POINTS), "{r}");
    }
    let (last, r) = refused.expect("a shard ran dry");
    assert_eq!(r["reason"].as_str(), Some("budget_exhausted"), "{r}");
    let account = ProgrammeAccount::PartnerFund(PartnerId::parse(DEMO_PARTNER).unwrap());
    let before = f.ledger().programme_balance(&account).await.unwrap();
    assert_eq!(before.balance, (budget - POINTS * last as u64) as i64);

    // Cancelling the first order gives its points back to the fund.
    let (status, r) = f.webhook(&change("e-x", "o-0", "cancelled")).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let after = f.ledger().programme_balance(&account).await.unwrap();
    assert_eq!(after.balance, before.balance + POINTS as i64);
    assert_ledger_consistent(&f.stack, &people).await;
}
