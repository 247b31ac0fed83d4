//! Earning beyond pack codes against the emulator: action limits and windows, the welcome
//! bonus under races, Idempotency-Key, sell-in imports, tiers and challenges.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::challenge::{progress_of, record_progress, ProgressSource};
use loyalty_domain::earning::{entry_ids, parse_sell_in_csv, SellInLine, Slug};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::{Entry, EntryKind};
use loyalty_domain::ports::{Clock, FixedClock};
use loyalty_domain::Points;
use loyalty_platform::stores::challenges::{ChallengeTables, DynamoChallenges};
use loyalty_platform::stores::earning::{EarningStore, EarningTables, SellInCredit};
use loyalty_platform::stores::ledger::DynamoLedger;
use loyalty_tests::{body_json, ApiEvent, TestStack};
use serde_json::{json, Value};

use crate::ledger_check::assert_ledger_consistent;

const FUNCTIONS: &[&str] = &["AccrualFunction", "WalletFunction"];
const CSV_HEADER: &str = "invoice,date,outlet_id,participant_id,supplier_id,sku,quantity\n";

struct SharedClock(Arc<FixedClock>);

impl Clock for SharedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }
}

struct Fixture {
    stack: TestStack,
    app: accrual::App,
    clock: Arc<FixedClock>,
}

/// A Monday morning, so a weekly period has the whole week ahead.
fn monday() -> DateTime<Utc> {
    "2026-11-16T09:00:00Z".parse().unwrap()
}

async fn fixture() -> Fixture {
    fixture_at(monday()).await
}

async fn fixture_at(now: DateTime<Utc>) -> Fixture {
    let stack = TestStack::for_functions(FUNCTIONS).await;
    // The participants the tests report actions for: only registered ones earn.
    crate::claims::register(&stack, ["p-1", "p-2"]).await;
    let clock = Arc::new(FixedClock::at(now));
    let app = accrual::App::with_clock(
        &stack.aws,
        &stack.env_for("AccrualFunction"),
        Box::new(SharedClock(clock.clone())),
    )
    .expect("accrual app");
    Fixture { stack, app, clock }
}

async fn call(app: &accrual::App, event: ApiEvent) -> (StatusCode, Value) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response))
}

async fn put_rule(f: &Fixture, id: &str, rule: Value) {
    let (status, body) = call(
        &f.app,
        ApiEvent::load("accrual/put-rule.json")
            .path_param("ruleId", id)
            .body(rule),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn action(participant: &str, rule: &str, key: &str) -> ApiEvent {
    ApiEvent::load("accrual/report-action.json")
        .sub(participant)
        .body(json!({ "rule_id": rule }))
        .header("idempotency-key", key)
}

fn sell_in(csv: &str, key: &str) -> ApiEvent {
    ApiEvent::load("accrual/import-sell-in.json")
        .text_body(csv)
        .header("idempotency-key", key)
}

async fn available(stack: &TestStack, participant: &str) -> u64 {
    DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable"))
        .balance(&pid(participant))
        .await
        .unwrap()
        .available
}

fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).unwrap()
}

#[tokio::test]
async fn an_action_earns_until_its_period_limit_then_next_period_until_the_participant_limit() {
    let f = fixture().await;
    put_rule(
        &f,
        "survey-q4",
        json!({
            "action": "survey", "points": 40, "per_participant": 3,
            "per_period": {"max": 2, "period": "week"},
            "valid_from": "2026-10-01T00:00:00Z"
        }),
    )
    .await;

    for key in ["week1-a-0001", "week1-b-0001"] {
        let (status, body) = call(&f.app, action("p-1", "survey-q4", key)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["points"], 40);
    }
    let (status, body) = call(&f.app, action("p-1", "survey-q4", "week1-c-0001")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "period_limit_reached");
    // Another participant has limits of their own.
    let (status, _) = call(&f.app, action("p-2", "survey-q4", "week1-a-0002")).await;
    assert_eq!(status, StatusCode::CREATED);

    f.clock.advance(Duration::days(7));
    let (status, body) = call(&f.app, action("p-1", "survey-q4", "week2-a-0001")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(&f.app, action("p-1", "survey-q4", "week2-b-0001")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "participant_limit_reached");

    assert_eq!(available(&f.stack, "p-1").await, 120);
    assert_eq!(available(&f.stack, "p-2").await, 40);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

#[tokio::test]
async fn the_welcome_bonus_is_credited_once_when_sixteen_requests_race() {
    let f = fixture().await;
    put_rule(
        &f,
        "welcome",
        json!({ "action": "welcome_bonus", "points": 100, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;

    let answers = join_all((0..16).map(|i| {
        let app = &f.app;
        async move {
            call(
                app,
                action("p-1", "welcome", &format!("welcome-key-{i:04}")),
            )
            .await
        }
    }))
    .await;

    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    assert!(answers.iter().all(|(s, b)| *s == StatusCode::CREATED
        || (*s == StatusCode::CONFLICT && b["code"] == "participant_limit_reached")));
    assert_eq!(available(&f.stack, "p-1").await, 100);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn an_action_earns_only_inside_its_rules_validity_window() {
    let f = fixture().await;
    put_rule(
        &f,
        "quiz-dec",
        json!({
            "action": "quiz_passed", "points": 30, "per_participant": 100,
            "valid_from": "2026-12-01T00:00:00Z", "valid_until": "2026-12-08T00:00:00Z"
        }),
    )
    .await;

    let (status, body) = call(&f.app, action("p-1", "quiz-dec", "quiz-early-01")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "rule_not_active");
    f.clock.advance(Duration::days(16)); // 2026-12-02
    let (status, body) = call(&f.app, action("p-1", "quiz-dec", "quiz-inside-01")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    f.clock.advance(Duration::days(7)); // 2026-12-09
    let (status, body) = call(&f.app, action("p-1", "quiz-dec", "quiz-late-001")).await;
    assert_eq!(body["code"], "rule_not_active", "{status} {body}");
    let (status, body) = call(&f.app, action("p-1", "no-such-rule", "quiz-unknown1")).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("rule_not_found"))
    );

    assert_eq!(available(&f.stack, "p-1").await, 30);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn replaying_an_idempotency_key_returns_the_first_answer_and_credits_once() {
    let f = fixture().await;
    put_rule(
        &f,
        "training",
        json!({ "action": "training_completed", "points": 25, "per_participant": 100, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;

    let first = f
        .app
        .handle(action("p-1", "training", "training-key-1").request())
        .await
        .unwrap();
    let replay = f
        .app
        .handle(action("p-1", "training", "training-key-1").request())
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(body_json(&first), body_json(&replay));
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    // The same key from another participant is their own key.
    let (status, _) = call(&f.app, action("p-2", "training", "training-key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    // A refusal is remembered too: the replay answers the same refusal.
    let (s1, b1) = call(&f.app, action("p-1", "missing-rule", "training-key-2")).await;
    let (s2, b2) = call(&f.app, action("p-1", "missing-rule", "training-key-2")).await;
    assert_eq!((s1, &b1), (s2, &b2));
    assert_eq!(b1["code"], "rule_not_found");

    assert_eq!(available(&f.stack, "p-1").await, 25);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

#[tokio::test]
async fn a_reused_key_with_another_body_is_422_and_a_missing_key_is_400() {
    let f = fixture().await;
    for id in ["survey-a", "survey-b"] {
        put_rule(
            &f,
            id,
            json!({ "action": "survey", "points": 10, "per_participant": 100, "valid_from": "2026-01-01T00:00:00Z" }),
        )
        .await;
    }
    let (status, _) = call(&f.app, action("p-1", "survey-a", "shared-key-01")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&f.app, action("p-1", "survey-b", "shared-key-01")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "idempotency_key_reused");

    let mut no_key = ApiEvent::load("accrual/report-action.json")
        .sub("p-1")
        .body(json!({ "rule_id": "survey-b" }));
    no_key.0["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    let (status, body) = call(&f.app, no_key).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "idempotency_key_missing");
    let (status, body) = call(&f.app, action("p-1", "survey-b", "short")).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("idempotency_key_invalid"))
    );

    assert_eq!(available(&f.stack, "p-1").await, 10);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

fn content_type(response: &lambda_http::Response<lambda_http::Body>) -> &str {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn every_refusal_of_actions_and_sell_in_and_its_replay_is_problem_json() {
    let f = fixture().await;
    cola_rule(&f, 2).await;
    let bad = format!("{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,ten\n");
    let requests = [
        (
            action("p-1", "missing-rule", "refused-key-01"),
            "rule_not_found",
        ),
        (sell_in(&bad, "refused-key-02"), "invalid_lines"),
    ];
    for (request, code) in requests {
        let first = f.app.handle(request.request()).await.unwrap();
        let replay = f.app.handle(request.request()).await.unwrap();
        for (response, replayed) in [(&first, None), (&replay, Some("true"))] {
            assert!(response.status().is_client_error(), "{code}");
            assert_eq!(content_type(response), "application/problem+json", "{code}");
            assert_eq!(body_json(response)["code"], code);
            assert_eq!(
                response
                    .headers()
                    .get("idempotent-replayed")
                    .map(|v| v.to_str().unwrap()),
                replayed
            );
        }
    }
    // The same key on another request, and no key at all.
    let reused = f
        .app
        .handle(action("p-1", "other-rule", "refused-key-01").request())
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(content_type(&reused), "application/problem+json");
    let mut no_key = ApiEvent::load("accrual/import-sell-in.json").text_body(&bad);
    no_key.0["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    let missing = f.app.handle(no_key.request()).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&missing), "application/problem+json");
}

#[tokio::test]
async fn a_key_reused_after_its_record_expired_is_422_idempotency_key_expired_never_503() {
    let f = fixture().await;
    put_rule(
        &f,
        "training",
        json!({ "action": "training_completed", "points": 25, "per_participant": 100, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;
    put_rule(
        &f,
        "survey",
        json!({ "action": "survey", "points": 10, "per_participant": 100, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;
    let (status, _) = call(&f.app, action("p-1", "training", "expiring-key-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    cola_rule(&f, 2).await;
    let lines = format!("{CSV_HEADER}INV-9,2026-11-10,o-1,p-1,acme,COLA-05,5\n");
    let (status, _) = call(&f.app, sell_in(&lines, "expiring-key-3")).await;
    assert_eq!(status, StatusCode::OK);

    // Past the 24 hours; the emulator, like DynamoDB, has not deleted the record yet.
    f.clock.advance(Duration::hours(25));
    for rule in ["training", "survey", "training"] {
        let response = f
            .app
            .handle(action("p-1", rule, "expiring-key-1").request())
            .await
            .unwrap();
        let body = body_json(&response);
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(body["code"], "idempotency_key_expired");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // Where the key does not name the change, an expired key's request is a new request:
    // the import's lines are recognised by their own ids.
    let again = f
        .app
        .handle(sell_in(&lines, "expiring-key-3").request())
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(body_json(&again)["already_imported"], 1);
    // Once TTL has deleted the record the answer is the same.
    f.stack
        .dynamodb()
        .delete_item()
        .table_name(f.stack.table_name("ActivityTable"))
        .set_key(Some(loyalty_platform::dynamo::key(
            "IDEMPOTENCY#p-1#expiring-key-1",
            "IDEMPOTENCY",
        )))
        .send()
        .await
        .unwrap();
    let (status, body) = call(&f.app, action("p-1", "training", "expiring-key-1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "idempotency_key_expired");
    // A new key is a new report.
    let (status, _) = call(&f.app, action("p-1", "training", "expiring-key-2")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(available(&f.stack, "p-1").await, 60);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

async fn cola_rule(f: &Fixture, points: u64) {
    put_rule(
        f,
        "cola-sell-in",
        json!({ "sku": "COLA-05", "points": points, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;
}

#[tokio::test]
async fn a_sell_in_import_with_a_bad_line_writes_nothing_and_names_the_line() {
    let f = fixture().await;
    cola_rule(&f, 2).await;
    let bad = format!(
        "{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10\nINV-1,2026-11-10,o-1,p-1,acme,COLA-05,ten\nINV-2,2026-11-10,o-2,p-2,acme,FANTA-05,1\n"
    );
    let (status, body) = call(&f.app, sell_in(&bad, "import-bad-0001")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid_lines");
    assert_eq!(body["errors"][0]["line"], 3);
    assert_eq!(body["errors"][0]["field"], "quantity");
    assert_eq!(available(&f.stack, "p-1").await, 0);
    let ledger = DynamoLedger::new(f.stack.dynamodb(), f.stack.table_name("LedgerTable"));
    assert!(ledger.all_entries(&pid("p-1")).await.unwrap().is_empty());

    let good = format!(
        "{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10\nINV-2,2026-11-10,o-2,p-2,acme,COLA-05,4\n"
    );
    let (status, body) = call(&f.app, sell_in(&good, "import-good-001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["credited"].clone(), body["points"].clone()),
        (json!(2), json!(28))
    );
    // The same lines under another key are recognised and credit nothing more.
    let (status, body) = call(&f.app, sell_in(&good, "import-good-002")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["already_imported"].clone(), body["points"].clone()),
        (json!(2), json!(0))
    );

    assert_eq!(available(&f.stack, "p-1").await, 20);
    assert_eq!(available(&f.stack, "p-2").await, 8);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

#[tokio::test]
async fn a_re_imported_line_with_other_content_is_409_line_changed_and_the_import_writes_nothing() {
    let f = fixture().await;
    cola_rule(&f, 2).await;
    let first = format!(
        "{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10\nINV-2,2026-11-10,o-2,p-2,acme,COLA-05,4\n"
    );
    let (status, body) = call(&f.app, sell_in(&first, "changed-imp-001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credited"], 2);

    // Line 2 changes its quantity, line 3 its participant; line 4 is new and valid.
    let changed = format!(
        "{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,12\nINV-2,2026-11-10,o-2,p-9,acme,COLA-05,4\nINV-3,2026-11-10,o-3,p-3,acme,COLA-05,5\n"
    );
    let (status, body) = call(&f.app, sell_in(&changed, "changed-imp-002")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "line_changed");
    let lines: Vec<_> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{body}");
    // Refused as a whole before any write: not even the new line is credited.
    assert_eq!(available(&f.stack, "p-1").await, 20);
    assert_eq!(available(&f.stack, "p-2").await, 8);
    assert_eq!(available(&f.stack, "p-9").await, 0);
    assert_eq!(available(&f.stack, "p-3").await, 0);

    // The same content, at other places in another upload, is the same lines.
    let reordered = format!(
        "{CSV_HEADER}INV-2,2026-11-10,o-2,p-2,acme,COLA-05,4\nINV-1,2026-11-10,o-1,p-1,acme,COLA-05,10\n"
    );
    let (status, body) = call(&f.app, sell_in(&reordered, "changed-imp-003")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["already_imported"].clone(), body["points"].clone()),
        (json!(2), json!(0))
    );
    assert_eq!(available(&f.stack, "p-1").await, 20);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2"), pid("p-3"), pid("p-9")]).await;
}

#[tokio::test]
async fn a_sell_in_line_is_never_credited_twice_even_after_its_outbox_record_has_expired() {
    let f = fixture().await;
    cola_rule(&f, 2).await;
    let csv = format!("{CSV_HEADER}INV-7,2026-11-10,o-1,p-1,acme,COLA-05,10\n");
    let (status, body) = call(&f.app, sell_in(&csv, "outbox-ttl-0001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["credited"], 1);

    // The emulator does not expire items: delete every outbox record as its TTL would.
    let dynamo = f.stack.dynamodb();
    let outbox = f.stack.table_name("OutboxTable");
    let records = dynamo.scan().table_name(outbox).send().await.unwrap();
    assert!(!records.items().is_empty());
    for item in records.items() {
        dynamo
            .delete_item()
            .table_name(outbox)
            .key("pk", item["pk"].clone())
            .key("sk", item["sk"].clone())
            .send()
            .await
            .unwrap();
    }

    f.clock.advance(Duration::days(8));
    let (status, body) = call(&f.app, sell_in(&csv, "outbox-ttl-0002")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["already_imported"].clone(), body["credited"].clone()),
        (json!(1), json!(0))
    );
    // Nor to another participant: the entry is the participant's, the line is not.
    let moved = format!("{CSV_HEADER}INV-7,2026-11-10,o-1,p-9,acme,COLA-05,10\n");
    let (status, body) = call(&f.app, sell_in(&moved, "outbox-ttl-0003")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "line_changed");
    assert_eq!(available(&f.stack, "p-1").await, 20);
    assert_eq!(available(&f.stack, "p-9").await, 0);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-9")]).await;
}

#[tokio::test]
async fn a_line_changed_between_the_check_and_the_write_is_refused_by_the_write_itself() {
    let f = fixture().await;
    let store = EarningStore::new(
        f.stack.dynamodb(),
        EarningTables {
            programme: f.stack.table_name("ProgrammeTable").into(),
            activity: f.stack.table_name("ActivityTable").into(),
            ledger: f.stack.table_name("LedgerTable").into(),
            outbox: f.stack.table_name("OutboxTable").into(),
            participants: f.stack.table_name("ParticipantsTable").into(),
        },
    );
    let line = |participant: &str, quantity: u32| {
        let csv =
            format!("{CSV_HEADER}INV-5,2026-11-10,o-1,{participant},acme,COLA-05,{quantity}\n");
        parse_sell_in_csv(&csv).unwrap().remove(0)
    };
    let entry = |l: &SellInLine| Entry {
        id: entry_ids::sell_in(&l.identity()),
        participant: l.participant.clone(),
        outlet: Some(l.outlet.clone()),
        kind: EntryKind::Accrual,
        amount: Points::parse(2 * l.quantity as u64).unwrap(),
        source: "sell-in".into(),
        created_at: monday(),
        expires_on: None,
    };
    let rule = Slug::parse("cola-sell-in").unwrap();
    let credit = |l: SellInLine| {
        let store = &store;
        let rule = &rule;
        async move {
            store
                .credit_sell_in(&entry(&l), rule, &l.fingerprint())
                .await
                .unwrap()
        }
    };

    assert_eq!(credit(line("p-1", 10)).await, SellInCredit::Credited);
    assert_eq!(credit(line("p-1", 10)).await, SellInCredit::AlreadyImported);
    assert_eq!(credit(line("p-1", 11)).await, SellInCredit::Changed);
    assert_eq!(credit(line("p-9", 10)).await, SellInCredit::Changed);
    let ids = [line("p-1", 10), line("p-9", 10)]
        .map(|l| (entry_ids::sell_in(&l.identity()), l.fingerprint()));
    assert_eq!(store.changed_lines(&ids).await.unwrap(), [1]);
    assert_eq!(available(&f.stack, "p-1").await, 20);
    assert_eq!(available(&f.stack, "p-9").await, 0);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-9")]).await;
}

#[tokio::test]
async fn the_tier_multiplier_applies_to_accruals_and_shows_with_the_balance() {
    // The wallet reads the wall clock, so the points are earned now.
    let f = fixture_at(Utc::now()).await;
    cola_rule(&f, 10).await;
    put_rule(
        &f,
        "audit",
        json!({ "action": "outlet_self_audit", "points": 40, "per_participant": 100, "valid_from": "2026-01-01T00:00:00Z" }),
    )
    .await;
    let (status, body) = call(
        &f.app,
        ApiEvent::load("accrual/put-tiers.json").body(json!({ "tiers": [
            { "name": "bronze", "threshold": 0, "multiplier_percent": 100 },
            { "name": "silver", "threshold": 100, "multiplier_percent": 150 }
        ]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = call(&f.app, action("p-1", "audit", "audit-bronze-1")).await;
    assert_eq!(
        (status, body["points"].clone(), body["tier"].clone()),
        (StatusCode::CREATED, json!(40), json!("bronze"))
    );
    let csv = format!("{CSV_HEADER}INV-9,2026-11-10,o-1,p-1,acme,COLA-05,6\n");
    let (status, body) = call(&f.app, sell_in(&csv, "import-tier-001")).await;
    assert_eq!(
        (status, body["points"].clone()),
        (StatusCode::OK, json!(60)),
        "{body}"
    );
    // 100 earned this month: silver, ×1.5.
    let (status, body) = call(&f.app, action("p-1", "audit", "audit-silver-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["points"].clone(), body["tier"].clone()),
        (json!(60), json!("silver"))
    );

    let wallet = wallet::App::with_clock(
        &f.stack.aws,
        &f.stack.env_for("WalletFunction"),
        Box::new(SharedClock(f.clock.clone())),
    )
    .unwrap();
    let balance_now = || async {
        body_json(
            &wallet
                .handle(
                    ApiEvent::load("wallet/get-balance.json")
                        .sub("p-1")
                        .request(),
                )
                .await
                .unwrap(),
        )
    };
    let balance = balance_now().await;
    assert_eq!(balance["available"], 160);
    assert_eq!(balance["tier"]["name"], "silver");
    assert_eq!(balance["tier"]["multiplier_percent"], 150);

    // A year on, those months have left the trailing window: the tier falls back to bronze.
    f.clock.advance(chrono::Duration::days(366));
    let balance = balance_now().await;
    assert_eq!(balance["available"], 160);
    assert_eq!(
        (
            balance["tier"]["name"].clone(),
            balance["tier"]["earned_last_12_months"].clone()
        ),
        (json!("bronze"), json!(0))
    );

    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

fn challenge_store(stack: &TestStack) -> DynamoChallenges {
    DynamoChallenges::new(
        stack.dynamodb(),
        ChallengeTables {
            programme: stack.table_name("ProgrammeTable").to_string(),
            activity: stack.table_name("ActivityTable").to_string(),
            ledger: stack.table_name("LedgerTable").to_string(),
            outbox: stack.table_name("OutboxTable").to_string(),
            participants: stack.table_name("ParticipantsTable").to_string(),
        },
    )
}

async fn acme_challenge(f: &Fixture, target: u64) {
    let (status, body) = call(
        &f.app,
        ApiEvent::load("accrual/put-challenge.json")
            .path_param("challengeId", "acme-nov")
            .body(json!({
                "title": "Buy Acme in November", "supplier_id": "acme", "target_units": target,
                "bonus_points": 500, "starts_on": "2026-11-01", "ends_on": "2026-11-30"
            })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_challenge_completes_once_from_sell_in_and_shows_progress() {
    let f = fixture().await;
    cola_rule(&f, 1).await;
    acme_challenge(&f, 10).await;

    let first = format!("{CSV_HEADER}INV-1,2026-11-10,o-1,p-1,acme,COLA-05,6\nINV-1,2026-12-01,o-1,p-1,acme,COLA-05,50\n");
    let (status, body) = call(&f.app, sell_in(&first, "challenge-imp-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["challenges_completed"], json!([]));
    let second = format!("{CSV_HEADER}INV-2,2026-11-12,o-1,p-1,acme,COLA-05,6\nINV-3,2026-11-13,o-1,p-1,acme,COLA-05,6\n");
    let (status, body) = call(&f.app, sell_in(&second, "challenge-imp-2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["challenges_completed"],
        json!([{ "challenge_id": "acme-nov", "participant_id": "p-1" }])
    );

    let (status, body) = call(
        &f.app,
        ApiEvent::load("accrual/list-my-challenges.json").sub("p-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["challenges"][0];
    assert_eq!(
        (c["units"].clone(), c["completed"].clone()),
        (json!(18), json!(true))
    );

    // Units: 6 + 50 (December, outside the challenge, still earns) + 6 + 6; bonus 500 once.
    assert_eq!(available(&f.stack, "p-1").await, 68 + 500);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn concurrent_sources_complete_a_challenge_exactly_once_and_a_repeated_source_counts_once() {
    let f = fixture().await;
    acme_challenge(&f, 10).await;
    let store = challenge_store(&f.stack);
    let source = |i: usize| ProgressSource {
        participant: pid("p-1"),
        supplier: Slug::parse("acme").unwrap(),
        units: 2,
        date: "2026-11-20".parse().unwrap(),
        reference: format!("order-demo-{i}"),
        at: monday(),
    };

    let outcomes = join_all((0..8).map(|i| {
        let store = &store;
        let s = source(i);
        async move {
            record_progress(store, &s)
                .await
                .expect("progress recorded")
                .outcomes
        }
    }))
    .await;
    let bonuses = outcomes
        .iter()
        .flatten()
        .filter(|o| o.bonus.is_some())
        .count();
    assert_eq!(bonuses, 1);
    let again = record_progress(&store, &source(3)).await.unwrap().outcomes;
    assert!(again[0].already_counted && again[0].bonus.is_none());

    let progress = progress_of(&store, &pid("p-1")).await.unwrap();
    assert_eq!((progress[0].1.units, progress[0].1.completed), (16, true));
    assert_eq!(available(&f.stack, "p-1").await, 500);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

fn fund(kind: &str, id: &str, amount: u64, key: &str) -> ApiEvent {
    let (event, param) = match kind {
        "rule" => ("accrual/fund-rule-budget.json", "ruleId"),
        _ => ("accrual/fund-challenge-budget.json", "challengeId"),
    };
    ApiEvent::load(event)
        .path_param(param, id)
        .body(json!({ "amount": amount }))
        .header("idempotency-key", key)
}

/// A rule with a budget never overspends it: each shard holds an even share, a credit its
/// shard cannot cover is paid from the others while the whole budget covers it, the first
/// one it cannot is refused with `budget_exhausted`, a top-up is idempotent, and member and
/// programme accounts (issuer, budget shards) still sum to zero.
#[tokio::test]
async fn a_rule_with_a_budget_credits_until_the_whole_budget_is_spent_and_never_overspends() {
    use loyalty_domain::ledger::{ProgrammeAccount, PROGRAMME_SHARDS};
    let f = fixture().await;
    put_rule(
        &f,
        "survey-q4",
        json!({ "action": "survey", "points": 100, "per_participant": 100, "valid_from": "2026-10-01T00:00:00Z" }),
    )
    .await;
    let budget = 100 * PROGRAMME_SHARDS as u64;
    let (status, body) = call(&f.app, fund("rule", "survey-q4", budget, "fund-0001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["remaining"].as_i64(), body["funded"].as_i64()),
        (Some(budget as i64), Some(budget as i64))
    );
    // The same key again funds nothing more.
    let (status, _) = call(&f.app, fund("rule", "survey-q4", budget, "fund-0001")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&f.app, fund("rule", "no-such-rule", 10, "fund-0002")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("rule_not_found"))
    );
    let (status, body) = call(&f.app, fund("rule", "survey-q4", 0, "fund-0003")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_amount"))
    );

    // Each shard holds one credit; the budget holds 16, so the 17th action is refused.
    let mut credited = 0;
    let mut refused = None;
    for i in 0..=PROGRAMME_SHARDS {
        let (status, body) = call(&f.app, action("p-1", "survey-q4", &format!("act-{i:04}"))).await;
        match status {
            StatusCode::CREATED => credited += 100,
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("a shard ran dry");
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("budget_exhausted")),
        "{body}"
    );
    assert_eq!(credited, budget, "every point of the budget was paid out");
    assert_eq!(available(&f.stack, "p-1").await, credited);
    let ledger = DynamoLedger::new(f.stack.dynamodb(), f.stack.table_name("LedgerTable"));
    let account = ProgrammeAccount::Rule(Slug::parse("survey-q4").unwrap());
    let b = ledger.programme_balance(&account).await.unwrap();
    assert_eq!(
        (b.balance, b.funded),
        ((budget - credited) as i64, Some(budget as i64))
    );
    let issuer = ledger
        .programme_balance(&ProgrammeAccount::Issuer)
        .await
        .unwrap();
    assert_eq!(issuer.balance, -(budget as i64));
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

/// A challenge whose budget cannot cover its bonus counts nothing from the source that would
/// complete it (nothing is written) and says why in the log; after a top-up the same source
/// counts and the bonus is granted once.
#[tokio::test]
async fn a_challenge_out_of_budget_waits_for_a_top_up_then_grants_its_bonus_once() {
    use loyalty_domain::ledger::PROGRAMME_SHARDS;
    let f = fixture().await;
    acme_challenge(&f, 10).await;
    let (status, body) = call(&f.app, fund("challenge", "acme-nov", 1, "fund-c-0001")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let store = challenge_store(&f.stack);
    let source = ProgressSource {
        participant: pid("p-1"),
        supplier: Slug::parse("acme").unwrap(),
        units: 10,
        date: "2026-11-20".parse().unwrap(),
        reference: "order-demo-1".into(),
        at: monday(),
    };
    let outcomes = record_progress(&store, &source).await.unwrap().outcomes;
    assert!(outcomes.is_empty(), "{outcomes:?}");
    let progress = progress_of(&store, &pid("p-1")).await.unwrap();
    assert!(
        progress.iter().all(|(_, p)| p.units == 0 && !p.completed),
        "{progress:?}"
    );
    assert_eq!(available(&f.stack, "p-1").await, 0);

    let top_up = 500 * PROGRAMME_SHARDS as u64;
    let (status, body) = call(&f.app, fund("challenge", "acme-nov", top_up, "fund-c-0002")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["funded"].as_i64(), Some(top_up as i64 + 1));
    let outcomes = record_progress(&store, &source).await.unwrap().outcomes;
    assert_eq!(outcomes.iter().filter(|o| o.bonus.is_some()).count(), 1);
    let again = record_progress(&store, &source).await.unwrap().outcomes;
    assert!(again[0].already_counted && again[0].bonus.is_none());
    assert_eq!(available(&f.stack, "p-1").await, 500);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

/// A rule that holds over-budget credits: the action is held for review, an approval
/// through the reviewers' route is 422 `budget_exhausted` (remembered under its key, the
/// credit still held) until a top-up, and then pays the credit from the budget, though no
/// single shard holds it.
#[tokio::test]
async fn approving_a_held_credit_through_the_reviewers_route_waits_for_the_budget() {
    use loyalty_domain::ledger::ProgrammeAccount;
    use loyalty_domain::review::ReviewId;
    let stack = TestStack::for_functions(&["AccrualFunction", "CodesAdminFunction"]).await;
    crate::claims::register(&stack, ["p-1"]).await;
    let clock = Arc::new(FixedClock::at(monday()));
    let f = Fixture {
        app: accrual::App::with_clock(
            &stack.aws,
            &stack.env_for("AccrualFunction"),
            Box::new(SharedClock(clock.clone())),
        )
        .expect("accrual app"),
        stack,
        clock,
    };
    let reviewers = codes_admin::App::with_clock(
        &f.stack.aws,
        &f.stack.env_for("CodesAdminFunction"),
        f.clock.clone(),
    )
    .expect("codes-admin app");
    put_rule(
        &f,
        "survey-q4",
        json!({ "action": "survey", "points": 100, "per_participant": 100, "valid_from": "2026-10-01T00:00:00Z",
                "over_budget": "hold" }),
    )
    .await;
    let (status, _) = call(&f.app, fund("rule", "survey-q4", 16, "fund-h-0001")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&f.app, action("p-1", "survey-q4", "act-held-01")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::CREATED, Some("pending_review")),
        "{body}"
    );
    let id = ReviewId::of(&pid("p-1"), &entry_ids::action(&pid("p-1"), "act-held-01"));
    let approve = |key: &str| {
        ApiEvent::load("codes-admin/decide-review.json")
            .path_param("reviewId", &id.to_string())
            .body(json!({ "decision": "approve" }))
            .header("idempotency-key", key)
    };
    let decide = |key: &str| {
        let req = approve(key).request();
        let reviewers = &reviewers;
        async move {
            let response = reviewers.handle(req).await.expect("handler never errs");
            (response.status(), body_json(&response))
        }
    };

    let (status, body) = decide("approve-0001").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("budget_exhausted")),
        "{body}"
    );
    let (again, replay) = decide("approve-0001").await;
    assert_eq!((again, replay), (status, body), "remembered under its key");
    assert_eq!(available(&f.stack, "p-1").await, 0, "still held");

    // 16 + 96 = 112 points, 7 a shard: only gathering pays 100 from one shard.
    let (status, _) = call(&f.app, fund("rule", "survey-q4", 96, "fund-h-0002")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = decide("approve-0002").await;
    assert_eq!(
        (status, body["decision"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{body}"
    );
    assert_eq!(available(&f.stack, "p-1").await, 100);
    let ledger = DynamoLedger::new(f.stack.dynamodb(), f.stack.table_name("LedgerTable"));
    let rule = ProgrammeAccount::Rule(Slug::parse("survey-q4").unwrap());
    assert_eq!(ledger.programme_balance(&rule).await.unwrap().balance, 12);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}
