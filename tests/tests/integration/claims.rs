//! Claiming pack codes against the emulator: exactly-once, retries, fraud rules, reviews.

use chrono::{Duration, Utc};
use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::batch::Batch;
use loyalty_domain::code::Code;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::entry_ids;
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::ports::FixedClock;
use loyalty_platform::config::Env;
use loyalty_platform::stores::codes::CodesStore;
use loyalty_tests::contract::claims::{issue_ready_batch, register_profile};
use loyalty_tests::{body_json, ApiEvent, TestStack};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::ledger_check::assert_ledger_consistent;

const FUNCTIONS: &[&str] = &["CodeClaimFunction", "WalletFunction", "CodesAdminFunction"];

pub(crate) struct Fixture {
    pub stack: TestStack,
    pub codes: Vec<Code>,
    pub batch: Batch,
}

/// A fresh stack with one batch of `count` issued codes worth `points` each, for `region`.
pub(crate) async fn fixture(count: u32, points: u64, region: &str) -> Fixture {
    let stack = TestStack::for_functions(FUNCTIONS).await;
    let store = CodesStore::new(stack.dynamodb(), stack.table_name("CodesTable"));
    let (batch, codes) = issue_ready_batch(&store, points, region, count, "admin-test").await;
    Fixture {
        stack,
        codes,
        batch,
    }
}

/// Registers the participants (a profile each, active, in the north where the tests'
/// tokens say they are, at no outlet): only they may claim.
pub(crate) async fn register(
    stack: &TestStack,
    participants: impl IntoIterator<Item = impl AsRef<str>>,
) {
    register_at(stack, participants, None).await
}

/// Registers the participants in the north, selling at `outlet`: the claim judges them by
/// their profile's outlet, whatever their tokens say.
pub(crate) async fn register_at(
    stack: &TestStack,
    participants: impl IntoIterator<Item = impl AsRef<str>>,
    outlet: Option<&str>,
) {
    let facts = ProfileFacts {
        region: RegionId::parse("north").ok(),
        outlet: outlet.map(|o| OutletId::parse(o).expect("outlet id")),
    };
    for p in participants {
        register_profile(stack, &pid(p.as_ref()), &facts).await;
    }
}

fn claim_app(stack: &TestStack, env: Env) -> code_claim::App {
    code_claim::App::new(&stack.aws, &env).expect("claim app")
}

fn claim_event(participant: &str, outlet: Option<&str>, code: &str) -> ApiEvent {
    let event = ApiEvent::load("code-claim/claim.json")
        .sub(participant)
        .region("north")
        .body(json!({ "code": code }));
    match outlet {
        Some(o) => event.outlet(o, "seller"),
        None => event.without_outlet(),
    }
}

pub(crate) async fn claim(
    app: &code_claim::App,
    participant: &str,
    outlet: Option<&str>,
    code: &str,
) -> (StatusCode, Value) {
    let response = app
        .handle(claim_event(participant, outlet, code).request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response))
}

fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).unwrap()
}

#[tokio::test]
async fn a_valid_code_credits_its_points_and_answers_with_the_product_and_new_balance() {
    let f = fixture(3, 40, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));

    let (status, body) = claim(&app, "p-1", Some("o-1"), &f.codes[0].display()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["points"], 40);
    assert_eq!(body["product"]["sku"], "COLA-05");
    assert_eq!(body["product"]["batch"], f.batch.number);
    assert_eq!(body["balance"]["available"], 40);

    // A QR payload and a sloppily typed code both work.
    let qr = f.codes[1].qr_payload("https://club.example.com");
    let (status, body) = claim(&app, "p-1", Some("o-1"), &qr).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typed = f.codes[2].canonical().to_lowercase();
    let (status, body) = claim(&app, "p-1", Some("o-1"), &typed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["balance"]["available"], 120);

    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn claiming_a_code_twice_credits_points_once_and_returns_the_first_answer() {
    let f = fixture(2, 25, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let code = f.codes[0].display();

    let (first_status, first) = claim(&app, "p-1", Some("o-1"), &code).await;
    // Another claim in between moves the balance; the retry must still answer as the first time.
    claim(&app, "p-1", Some("o-1"), &f.codes[1].display()).await;
    let (again_status, again) = claim(&app, "p-1", Some("o-1"), &code).await;

    assert_eq!(first_status, StatusCode::OK);
    assert_eq!(again_status, StatusCode::OK);
    assert_eq!(first, again);
    let wallet = wallet::App::new(&f.stack.aws, &f.stack.env_for("WalletFunction")).unwrap();
    let balance = body_json(
        &wallet
            .handle(
                ApiEvent::load("wallet/get-balance.json")
                    .sub("p-1")
                    .request(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(balance["available"], 50);
    assert_eq!(balance["version"], 2);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn a_code_claimed_by_someone_else_is_a_conflict() {
    let f = fixture(1, 10, "north").await;
    register(&f.stack, ["p-1", "p-2"]).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let code = f.codes[0].display();
    claim(&app, "p-1", None, &code).await;

    let (status, body) = claim(&app, "p-2", None, &code).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "code_already_claimed");
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

/// 64 participants race for each code; exactly one wins each. The emulator serialises
/// DynamoDB, so the test command races over 20 codes and `./dev stress` over 200
/// (`CLAIM_STORM_CODES`).
#[tokio::test]
async fn sixty_four_concurrent_claims_of_one_code_credit_exactly_one_participant() {
    const RACERS: usize = 64;
    let codes: usize = std::env::var("CLAIM_STORM_CODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let f = fixture(codes as u32, 5, "north").await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let mut winners = Vec::new();
    for (i, code) in f.codes.iter().enumerate() {
        let shown = code.display();
        let racers: Vec<String> = (0..RACERS).map(|r| format!("p-{i}-{r}")).collect();
        register(&f.stack, &racers).await;
        let results = join_all(racers.iter().map(|p| claim(&app, p, None, &shown))).await;
        let ok: Vec<_> = results
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == StatusCode::OK)
            .collect();
        let conflicts = results
            .iter()
            .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "code_already_claimed")
            .count();
        assert_eq!(ok.len(), 1, "code #{i}: {} winners", ok.len());
        assert_eq!(
            conflicts,
            RACERS - 1,
            "code #{i}: the losers must all get 409"
        );
        winners.push(pid(&racers[ok[0].0]));
    }
    // Exactly one ledger entry per code, each in its winner's account.
    let ledger = loyalty_platform::stores::ledger::DynamoLedger::new(
        f.stack.dynamodb(),
        f.stack.table_name("LedgerTable"),
    );
    for w in &winners {
        assert_eq!(ledger.all_entries(w).await.unwrap().len(), 1);
    }
    let losers: Vec<_> = (0..3)
        .map(|r| pid(&format!("p-0-{r}")))
        .filter(|p| !winners.contains(p))
        .collect();
    for l in &losers {
        assert!(ledger.all_entries(l).await.unwrap().is_empty());
    }
    assert_ledger_consistent(&f.stack, &winners).await;
}

#[tokio::test]
async fn a_mistyped_code_is_rejected_without_touching_the_database() {
    // Pointed at tables that do not exist: any database call would fail with a 500.
    let stack = TestStack::for_function("CodeClaimFunction").await;
    let env = stack
        .env_for("CodeClaimFunction")
        .with("CODES_TABLE", "no-such-table")
        .with("LEDGER_TABLE", "no-such-table")
        .with("FRAUD_TABLE", "no-such-table");
    let app = claim_app(&stack, env);
    let code = Code::chunk(&[7; 32], 1, 0, 1)[0].canonical().to_string();
    let mut typo = code.clone().into_bytes();
    typo.swap(3, 4);
    let typo = String::from_utf8(typo).unwrap();
    assert_ne!(typo, code);

    let (status, body) = claim(&app, "p-1", None, &typo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "code_check_failed");
    let (status, body) = claim(&app, "p-1", None, "ABC").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "code_malformed");
}

#[tokio::test]
async fn an_unknown_code_is_not_found_and_an_expired_code_has_its_own_error() {
    let f = fixture(1, 10, "north").await;
    register(&f.stack, ["p-1", "p-2"]).await;
    let env = f.stack.env_for("CodeClaimFunction");
    let app = claim_app(&f.stack, env.clone());
    // A well-formed code of this batch that was never issued.
    let never_issued = Code::chunk(&[9; 32], f.batch.number, 5, 1)[0];
    let (status, body) = claim(&app, "p-1", None, &never_issued.display()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "code_unknown");
    // A code of a batch that does not exist.
    let no_batch = Code::chunk(&[9; 32], f.batch.number + 1, 0, 1)[0];
    let (status, body) = claim(&app, "p-1", None, &no_batch.display()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "code_unknown");

    let later = code_claim::App::with_clock(
        &f.stack.aws,
        &env,
        Box::new(FixedClock::at(Utc::now() + Duration::days(31))),
    )
    .unwrap();
    let (status, body) = claim(&later, "p-2", None, &f.codes[0].display()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "code_expired");
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

#[tokio::test]
async fn repeated_failed_attempts_lock_claiming_with_retry_after_even_for_a_valid_code() {
    let f = fixture(2, 10, "north").await;
    register(&f.stack, ["p-owner", "p-guesser", "p-other"]).await;
    let app = claim_app(
        &f.stack,
        f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_FAILURES_PER_PARTICIPANT", "3"),
    );
    claim(&app, "p-owner", None, &f.codes[0].display()).await;
    for _ in 0..3 {
        let (status, _) = claim(&app, "p-guesser", None, &f.codes[0].display()).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }

    let response = app
        .handle(claim_event("p-guesser", None, &f.codes[1].display()).request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry_after > 0 && retry_after <= 3600,
        "Retry-After {retry_after}"
    );
    assert_eq!(body_json(&response)["code"], "claims_locked");
    // Someone else is not locked.
    let (status, _) = claim(&app, "p-other", None, &f.codes[1].display()).await;
    assert_eq!(status, StatusCode::OK);
    assert_ledger_consistent(
        &f.stack,
        &[pid("p-owner"), pid("p-guesser"), pid("p-other")],
    )
    .await;
}

#[tokio::test]
async fn failures_of_all_sellers_of_an_outlet_lock_the_outlet() {
    let f = fixture(2, 10, "north").await;
    register(&f.stack, ["p-owner"]).await;
    register_at(&f.stack, ["s-1", "s-2", "s-3", "s-4"], Some("o-shady")).await;
    let app = claim_app(
        &f.stack,
        f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_FAILURES_PER_OUTLET", "3"),
    );
    claim(&app, "p-owner", None, &f.codes[0].display()).await;
    for seller in ["s-1", "s-2", "s-3"] {
        let (status, _) = claim(&app, seller, Some("o-shady"), &f.codes[0].display()).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    let (status, body) = claim(&app, "s-4", Some("o-shady"), &f.codes[1].display()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_ledger_consistent(&f.stack, &[pid("p-owner"), pid("s-4")]).await;
}

/// Tokens without region or outlet claims once skipped the foreign-region flag and the
/// outlet counters (issue 8): the profile decides both now.
#[tokio::test]
async fn a_token_without_region_or_outlet_is_flagged_for_a_foreign_code_and_its_failures_lock_its_outlet(
) {
    let f = fixture(2, 10, "south").await;
    // A northerner selling at o-bare, whose token says neither.
    register_at(&f.stack, ["p-bare"], Some("o-bare")).await;
    let app = claim_app(
        &f.stack,
        f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_FAILURES_PER_PARTICIPANT", "100")
            .with("FRAUD_MAX_FAILURES_PER_OUTLET", "2"),
    );
    let bare = |code: &str| {
        ApiEvent::load("code-claim/claim.json")
            .sub("p-bare")
            .without_outlet()
            .without_claim("region")
            .body(json!({ "code": code }))
    };
    let send = |event: ApiEvent| {
        let app = &app;
        async move {
            let response = app
                .handle(event.request())
                .await
                .expect("handler never errs");
            (response.status(), body_json(&response))
        }
    };

    let (status, body) = send(bare(&f.codes[0].display())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"], "pending_review",
        "a southern code, a northern profile"
    );

    // One code of a batch that does not exist, one never issued in this batch.
    let no_batch = Code::chunk(&[1; 32], f.batch.number + 1000, 0, 1)[0];
    let never_issued = Code::chunk(&f.batch.seed.0, f.batch.number, 50, 1)[0];
    for code in [no_batch, never_issued] {
        let (status, body) = send(bare(&code.display())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // Both counted against the profile's outlet, which is now locked.
    let (status, body) = send(bare(&f.codes[1].display())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "claims_locked");
    assert_ledger_consistent(&f.stack, &[pid("p-bare")]).await;
}

#[tokio::test]
async fn claims_beyond_the_hourly_limit_go_to_review_and_an_admin_decides() {
    let f = fixture(4, 10, "north").await;
    register_at(&f.stack, ["p-fast"], Some("o-1")).await;
    let app = claim_app(
        &f.stack,
        f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_CLAIMS_PER_HOUR", "2"),
    );
    let mut statuses = Vec::new();
    for code in &f.codes {
        let (status, body) = claim(&app, "p-fast", Some("o-1"), &code.display()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        statuses.push(body["status"].as_str().unwrap().to_string());
    }
    assert_eq!(
        statuses,
        ["accepted", "accepted", "pending_review", "pending_review"]
    );

    let admin =
        codes_admin::App::new(&f.stack.aws, &f.stack.env_for("CodesAdminFunction")).unwrap();
    let list = body_json(
        &admin
            .handle(ApiEvent::load("codes-admin/list-reviews.json").request())
            .await
            .unwrap(),
    );
    let reviews = list["reviews"].as_array().unwrap();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["reasons"], json!(["velocity"]));

    let decide = |id: &str, decision: &str, key: &str| {
        ApiEvent::load("codes-admin/decide-review.json")
            .path_param("reviewId", id)
            .header("idempotency-key", key)
            .body(json!({ "decision": decision }))
            .request()
    };
    let first = reviews[0]["review_id"].as_str().unwrap();
    let second = reviews[1]["review_id"].as_str().unwrap();
    let approve = admin
        .handle(decide(first, "approve", "decision-0001"))
        .await
        .unwrap();
    assert_eq!(approve.status(), StatusCode::OK);
    // The same request again (a retry after a lost response) gets the first answer.
    let retried = admin
        .handle(decide(first, "approve", "decision-0001"))
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(body_json(&retried), body_json(&approve));
    // The same key on another review is another request: refused, nothing written.
    let reused = admin
        .handle(decide(second, "approve", "decision-0001"))
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(&reused)["code"], "idempotency_key_reused");
    let without_key = ApiEvent::load("codes-admin/decide-review.json")
        .path_param("reviewId", second)
        .body(json!({ "decision": "reject" }));
    let mut without_key = without_key.0;
    without_key["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    let missing = admin
        .handle(ApiEvent::from_json(without_key).request())
        .await
        .unwrap();
    assert_eq!(body_json(&missing)["code"], "idempotency_key_missing");

    let reject = admin
        .handle(decide(second, "reject", "decision-0002"))
        .await
        .unwrap();
    assert_eq!(reject.status(), StatusCode::OK);
    let twice = admin
        .handle(decide(second, "approve", "decision-0003"))
        .await
        .unwrap();
    assert_eq!(twice.status(), StatusCode::CONFLICT);
    assert_eq!(body_json(&twice)["code"], "review_already_decided");

    let wallet = wallet::App::new(&f.stack.aws, &f.stack.env_for("WalletFunction")).unwrap();
    let balance = body_json(
        &wallet
            .handle(
                ApiEvent::load("wallet/get-balance.json")
                    .sub("p-fast")
                    .request(),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        (balance["available"].as_u64(), balance["pending"].as_u64()),
        (Some(30), Some(0))
    );
    let empty = body_json(
        &admin
            .handle(ApiEvent::load("codes-admin/list-reviews.json").request())
            .await
            .unwrap(),
    );
    assert_eq!(empty["reviews"], json!([]));
    assert_ledger_consistent(&f.stack, &[pid("p-fast")]).await;
}

#[tokio::test]
async fn a_code_from_a_batch_shipped_to_another_region_goes_to_review() {
    let f = fixture(1, 10, "south").await;
    register(&f.stack, ["p-north"]).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let (status, body) = claim(&app, "p-north", None, &f.codes[0].display()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "pending_review");
    assert_eq!(
        (
            body["balance"]["available"].as_u64(),
            body["balance"]["pending"].as_u64()
        ),
        (Some(0), Some(10))
    );
    assert_ledger_consistent(&f.stack, &[pid("p-north")]).await;
}

#[tokio::test]
async fn a_balance_moved_elsewhere_costs_a_retry_not_a_wrong_answer() {
    let f = fixture(3, 10, "north").await;
    register(&f.stack, ["p-1"]).await;
    let env = f.stack.env_for("CodeClaimFunction");
    // Two warm functions, each with its own cache of the participant's balance.
    let a = claim_app(&f.stack, env.clone());
    let b = claim_app(&f.stack, env);
    claim(&a, "p-1", None, &f.codes[0].display()).await;
    claim(&b, "p-1", None, &f.codes[1].display()).await;
    let (status, body) = claim(&a, "p-1", None, &f.codes[2].display()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["balance"]["available"], 30);
    assert_eq!(body["balance"]["version"], 3);
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn concurrent_claims_of_different_codes_by_one_participant_all_count() {
    let f = fixture(4, 10, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let shown: Vec<String> = f.codes.iter().map(|c| c.display()).collect();
    let results = join_all(shown.iter().map(|c| claim(&app, "p-1", Some("o-1"), c))).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::OK),
        "{results:?}"
    );
    let max_available = results
        .iter()
        .map(|(_, b)| b["balance"]["available"].as_u64().unwrap())
        .max();
    assert_eq!(max_available, Some(40));
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

#[tokio::test]
async fn every_attempt_is_audited_without_storing_the_whole_code() {
    let f = fixture(1, 10, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    register_at(&f.stack, ["p-2"], Some("o-2")).await;
    let app = claim_app(&f.stack, f.stack.env_for("CodeClaimFunction"));
    let code = f.codes[0].display();
    claim(&app, "p-1", Some("o-1"), &code).await;
    claim(&app, "p-1", Some("o-1"), &code).await;
    claim(&app, "p-2", Some("o-2"), &code).await;

    let dynamo = f.stack.dynamodb();
    let mut outcomes = Vec::new();
    for p in ["p-1", "p-2"] {
        let out = dynamo
            .query()
            .table_name(f.stack.table_name("FraudTable"))
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("ATTEMPTS#{p}")),
            )
            .send()
            .await
            .unwrap();
        for item in out.items() {
            let text = format!("{item:?}");
            assert!(
                !text.contains(f.codes[0].canonical()),
                "audit record holds the whole code: {text}"
            );
            outcomes.push(item["outcome"].as_s().unwrap().clone());
        }
    }
    outcomes.sort();
    assert_eq!(outcomes, ["accepted", "already_claimed", "replayed"]);
    assert_ledger_consistent(&f.stack, &[pid("p-1"), pid("p-2")]).await;
}

#[tokio::test]
async fn history_lists_entries_newest_first_with_a_cursor() {
    let f = fixture(3, 10, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    register(&f.stack, ["p-2"]).await;
    // The entries get different timestamps from a clock the test moves, not from sleeping.
    let clock = Arc::new(FixedClock::at(Utc::now()));
    let app = code_claim::App::with_clock(
        &f.stack.aws,
        &f.stack.env_for("CodeClaimFunction"),
        Box::new(clock.clone()),
    )
    .expect("claim app");
    for c in &f.codes {
        claim(&app, "p-1", Some("o-1"), &c.display()).await;
        clock.advance(Duration::seconds(1));
    }
    let wallet = wallet::App::new(&f.stack.aws, &f.stack.env_for("WalletFunction")).unwrap();
    let page = |cursor: Option<&str>| {
        let mut e = ApiEvent::load("wallet/get-ledger.json")
            .sub("p-1")
            .query("limit", "2");
        if let Some(c) = cursor {
            e = e.query("cursor", c);
        }
        e.request()
    };
    let first = body_json(&wallet.handle(page(None)).await.unwrap());
    let ids: Vec<_> = first["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry_id"].as_str().unwrap().to_string())
        .collect();
    let id = |c: &Code| entry_ids::code_claim(c.canonical()).to_string();
    assert_eq!(ids, [id(&f.codes[2]), id(&f.codes[1])]);
    let second = body_json(
        &wallet
            .handle(page(first["next_cursor"].as_str()))
            .await
            .unwrap(),
    );
    assert_eq!(second["entries"][0]["entry_id"], id(&f.codes[0]));

    // Someone else's cursor is refused, not followed.
    let forged = ApiEvent::load("wallet/get-ledger.json")
        .sub("p-2")
        .query("cursor", first["next_cursor"].as_str().unwrap())
        .request();
    let forged = wallet.handle(forged).await.unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&forged)["code"], "invalid_cursor");

    // The owner sees the outlet's totals; a seller of it does not.
    let totals = ApiEvent::load("wallet/get-outlet-totals.json")
        .path_param("outletId", "o-1")
        .outlet("o-1", "owner")
        .request();
    let totals = body_json(&wallet.handle(totals).await.unwrap());
    assert_eq!(totals["totals"]["lifetime_earned"], 30);
    let as_seller = ApiEvent::load("wallet/get-outlet-totals.json")
        .path_param("outletId", "o-1")
        .outlet("o-1", "seller")
        .request();
    assert_eq!(
        wallet.handle(as_seller).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_ledger_consistent(&f.stack, &[pid("p-1")]).await;
}

/// A cursor as the API hands them out, with any attributes.
fn cursor_of(attributes: &[(&str, &str)]) -> String {
    let item = attributes
        .iter()
        .map(|(k, v)| (k.to_string(), loyalty_platform::dynamo::s(*v)))
        .collect();
    loyalty_platform::dynamo::encode_cursor(&item)
}

async fn assert_invalid_cursor<F, Fut>(call: F, cursor: &str)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>>,
{
    let response = call(cursor.to_string()).await;
    let body = body_json(&response);
    assert_eq!(
        (response.status(), body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
        "cursor {cursor:?}: {body}"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_garbage_foreign_or_ill_fitting_cursor_on_history_or_the_review_queue_is_400_invalid_cursor(
) {
    let f = fixture(3, 10, "north").await;
    register_at(&f.stack, ["p-1"], Some("o-1")).await;
    let app = claim_app(
        &f.stack,
        f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_CLAIMS_PER_HOUR", "1"),
    );
    for code in &f.codes {
        let (status, body) = claim(&app, "p-1", Some("o-1"), &code.display()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let wallet = wallet::App::new(&f.stack.aws, &f.stack.env_for("WalletFunction")).unwrap();
    let admin =
        codes_admin::App::new(&f.stack.aws, &f.stack.env_for("CodesAdminFunction")).unwrap();
    let history = |who: &'static str| {
        let wallet = &wallet;
        move |cursor: String| async move {
            let event = ApiEvent::load("wallet/get-ledger.json")
                .sub(who)
                .query("limit", "1")
                .query("cursor", &cursor);
            wallet.handle(event.request()).await.unwrap()
        }
    };
    let admin = &admin;
    let reviews = |cursor: String| async move {
        let event = ApiEvent::load("codes-admin/list-reviews.json")
            .query("limit", "1")
            .query("cursor", &cursor);
        admin.handle(event.request()).await.unwrap()
    };
    let next_cursor = |page: Value| {
        page["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_string()
    };
    let first = ApiEvent::load("wallet/get-ledger.json")
        .sub("p-1")
        .query("limit", "1");
    let history_cursor = next_cursor(body_json(&wallet.handle(first.request()).await.unwrap()));
    let first = ApiEvent::load("codes-admin/list-reviews.json").query("limit", "1");
    let review_cursor = next_cursor(body_json(&admin.handle(first.request()).await.unwrap()));
    // The cursors handed out work.
    assert_eq!(
        history("p-1")(history_cursor.clone()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        reviews(review_cursor.clone()).await.status(),
        StatusCode::OK
    );

    let account = "ACCOUNT#p-1";
    let garbage = [
        "not a cursor!".to_string(),
        String::new(),
        "AAAA".to_string(),
        "eyJwayI6".to_string(),
    ];
    for bad in garbage.iter().chain([
        // Someone else's, or another listing's.
        &review_cursor,
        // Decodes, names the partition, but does not fit the index.
        &cursor_of(&[("pk", account)]),
        &cursor_of(&[("pk", account), ("sk", "ENTRY#x")]),
        &cursor_of(&[("pk", account), ("sk", ""), ("lsi1sk", "")]),
        &cursor_of(&[
            ("pk", account),
            ("sk", "ENTRY#x"),
            ("lsi1sk", "2026"),
            ("gsi1pk", "x"),
        ]),
        &cursor_of(&[("pk", account), ("sk", "ENTRY#x"), ("other", "2026")]),
    ]) {
        assert_invalid_cursor(history("p-1"), bad).await;
    }
    assert_invalid_cursor(history("p-2"), &history_cursor).await;

    let queue = "REVIEW#PENDING";
    for bad in garbage.iter().chain([
        &history_cursor,
        &cursor_of(&[("pk", queue)]),
        &cursor_of(&[("pk", queue), ("sk", "ENTRY#x")]),
        &cursor_of(&[("pk", queue), ("sk", "ENTRY#x"), ("gsi1sk", "")]),
        &cursor_of(&[("pk", queue), ("sk", "ENTRY#x"), ("lsi1sk", "2026")]),
        &cursor_of(&[
            ("pk", queue),
            ("sk", "ENTRY#x"),
            ("gsi1sk", "2026"),
            ("gsi1pk", queue),
        ]),
    ]) {
        assert_invalid_cursor(reviews, bad).await;
    }
}

#[tokio::test]
async fn a_refused_review_decision_and_its_replay_are_problem_json() {
    let stack = TestStack::for_function("CodesAdminFunction").await;
    let admin = codes_admin::App::new(&stack.aws, &stack.env_for("CodesAdminFunction")).unwrap();
    let decide = || ApiEvent::load("codes-admin/decide-review.json").request();
    let first = admin.handle(decide()).await.unwrap();
    let replay = admin.handle(decide()).await.unwrap();
    for (response, replayed) in [(&first, None), (&replay, Some("true"))] {
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(response)["code"], "review_not_found");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            response
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            replayed
        );
    }
}
