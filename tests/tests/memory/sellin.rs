//! Sell-in imports, fed from the sample event `events/accrual/import-sell-in.json`: through
//! the use case [`sellin::import`] on [`MemorySellIn`] (its CSV body parsed and priced as the
//! function does), and through the route (`POST /admin/sell-in`: Idempotency-Key, challenge
//! progress and bonuses) on the accrual function built on memory adapters
//! ([`crate::accrual::memory_app`]). No emulator.

use chrono::{DateTime, TimeZone, Utc};
use loyalty_domain::earning::{
    parse_sell_in_csv, price_lines, Rule, RuleId, Sku, Tier, Tiers, Trigger,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::sellin::{self, ImportOutcome, SellInCredit};
use loyalty_domain::Points;
use loyalty_platform::memory::MemorySellIn;

fn body() -> String {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/accrual/import-sell-in.json"
    ))
    .expect("sample event");
    let event: serde_json::Value = serde_json::from_str(&raw).expect("event json");
    event["body"].as_str().expect("a text body").to_string()
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn rules() -> Vec<Rule> {
    let rule = |id: &str, sku: &str, points| Rule {
        id: RuleId::parse(id).unwrap(),
        trigger: Trigger::SellIn(Sku::parse(sku).unwrap()),
        points: Points(points),
        per_participant: None,
        per_period: None,
        valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().into(),
        valid_until: None,
        over_budget: loyalty_domain::earning::OverBudget::Refuse,
        reported_by: loyalty_domain::earning::Reporter::Reviewer,
    };
    vec![rule("cola-05", "COLA-05", 2), rule("cola-1", "COLA-1", 5)]
}

async fn import(store: &MemorySellIn, csv: &str) -> ImportOutcome {
    let priced = price_lines(parse_sell_in_csv(csv).expect("valid lines"), &rules())
        .expect("every line priced");
    sellin::import(store, priced, at())
        .await
        .expect("no infra error")
}

fn pid() -> ParticipantId {
    ParticipantId::parse("p-7f3a9c").unwrap()
}

/// A store where the sample's participant is registered and active.
fn store() -> MemorySellIn {
    let store = MemorySellIn::new();
    store.ledger().register(&pid(), Default::default());
    store
}

#[tokio::test]
async fn the_sample_import_credits_each_line_once_at_the_participants_tier() {
    let store = store();
    store.ledger().put_tiers(
        Tiers::parse(vec![
            Tier {
                name: "base".into(),
                threshold: 0,
                multiplier_percent: 100,
            },
            Tier {
                name: "gold".into(),
                threshold: 1_000,
                multiplier_percent: 150,
            },
        ])
        .unwrap(),
    );
    store.ledger().credit_elsewhere(&pid(), 1_000, at());
    let ImportOutcome::Imported(lines) = import(&store, &body()).await else {
        panic!("the sample is imported");
    };
    // 24 × 2 and 6 × 5 points, at gold (×1.5).
    assert_eq!(ImportOutcome::counts(&lines), (2, 0, 72 + 45));
    assert_eq!(store.entries(&pid()).len(), 2);
    assert_eq!(store.balance(&pid()).unwrap().available, 1_000 + 117);
    assert!(lines.iter().all(|l| l.progress(at()).is_some()));

    // The same file again (a retry whose answer was lost): nothing credited twice.
    let ImportOutcome::Imported(again) = import(&store, &body()).await else {
        panic!("the same file is imported again");
    };
    assert_eq!(ImportOutcome::counts(&again), (0, 2, 0));
    assert!(again
        .iter()
        .all(|l| l.credit == SellInCredit::AlreadyImported));
    assert_eq!(store.balance(&pid()).unwrap().available, 1_117);
}

#[tokio::test]
async fn the_sample_with_a_changed_quantity_is_refused_whole_and_names_the_line() {
    let store = store();
    import(&store, &body()).await;
    let before = store.balance(&pid());
    let changed = body().replace("COLA-1,6", "COLA-1,7")
        + "INV-2026-0043,2026-11-21,o-5d2e8b,p-7f3a9c,acme,COLA-1,1\n";
    match import(&store, &changed).await {
        ImportOutcome::Changed(errors) => {
            assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3])
        }
        other => panic!("a changed line refuses the import: {other:?}"),
    }
    assert_eq!(store.balance(&pid()), before);
    assert_eq!(store.entries(&pid()).len(), 2);
}

// --- The route on memory adapters ------------------------------------------------------

mod route {
    use lambda_http::http::StatusCode;
    use loyalty_domain::earning::Slug;
    use loyalty_domain::ledger::{Entry, ProgrammeAccount, PROGRAMME_SHARDS};
    use loyalty_tests::ApiEvent;
    use serde_json::json;

    use crate::accrual::{content_type, memory_app, participant, replayed, send, App};

    fn event(name: &str) -> ApiEvent {
        ApiEvent::load(&format!("accrual/{name}"))
    }

    /// The sample's SKUs priced: COLA-05 from the sample rule event, COLA-1 made from it.
    async fn with_rules() -> App {
        let app = memory_app();
        for put in [
            event("put-sell-in-rule.json"),
            event("put-sell-in-rule.json")
                .path_param("ruleId", "cola-1")
                .body(json!({ "sku": "COLA-1", "points": 5,
                    "valid_from": "2026-01-01T00:00:00Z" })),
        ] {
            let (status, body, _) = send(&app, put).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        app
    }

    /// A November Acme challenge: the sample's 30 units complete a target of 30.
    async fn november_challenge(app: &App, target: u64) {
        let (status, body, _) = send(
            app,
            event("put-challenge.json")
                .path_param("challengeId", "acme-nov")
                .body(
                    json!({ "title": "Buy Acme in November", "supplier_id": "acme",
                    "target_units": target, "bonus_points": 500,
                    "starts_on": "2026-11-01", "ends_on": "2026-11-30" }),
                ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The participant's entries from sell-in lines (the ledger holds bonuses too).
    fn sell_in_entries(app: &App) -> usize {
        app.store()
            .entries(&participant())
            .iter()
            .filter(|e| ProgrammeAccount::of(e) == ProgrammeAccount::SellIn)
            .count()
    }

    /// The participant's challenge bonuses.
    fn bonuses(app: &App) -> Vec<Entry> {
        app.store()
            .entries(&participant())
            .into_iter()
            .filter(|e| matches!(ProgrammeAccount::of(e), ProgrammeAccount::Challenge(_)))
            .collect()
    }

    #[tokio::test]
    async fn the_sample_import_credits_once_and_a_replay_answers_the_first_answer() {
        let app = with_rules().await;
        let (status, first, response) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert!(!replayed(&response));
        assert_eq!(
            first,
            json!({ "lines": 2, "credited": 2, "already_imported": 0, "points": 48 + 30,
                "not_credited": [], "challenges_completed": [] })
        );
        let (status, again, response) = send(&app, event("import-sell-in.json")).await;
        assert_eq!((status, &again), (StatusCode::OK, &first));
        assert!(replayed(&response));
        // The same file under a new key: every line was credited before.
        let (status, body, _) = send(
            &app,
            event("import-sell-in.json").header("idempotency-key", "import-inv-2026-0042-b"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["credited"], &body["already_imported"]),
            (&json!(0), &json!(2))
        );
        assert_eq!(sell_in_entries(&app), 2);
        assert_eq!(app.store().balance(&participant()).unwrap().available, 78);
    }

    #[tokio::test]
    async fn a_changed_line_is_409_line_changed_remembered_under_its_key_and_writes_nothing() {
        let app = with_rules().await;
        let (status, _, _) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK);
        let sample: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../events/accrual/import-sell-in.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let changed = sample["body"]
            .as_str()
            .unwrap()
            .replace("COLA-1,6", "COLA-1,7");
        let import = || {
            event("import-sell-in.json")
                .header("idempotency-key", "import-inv-2026-0042-changed")
                .text_body(&changed)
        };
        let (status, body, response) = send(&app, import()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::CONFLICT, Some("line_changed"))
        );
        assert_eq!(content_type(&response), "application/problem+json");
        assert_eq!(body["errors"][0]["line"], 3, "{body}");
        let (status, again, response) = send(&app, import()).await;
        assert_eq!((status, &again), (StatusCode::CONFLICT, &body));
        assert!(replayed(&response));
        assert_eq!(sell_in_entries(&app), 2);
        assert_eq!(app.store().balance(&participant()).unwrap().available, 78);
    }

    #[tokio::test]
    async fn bad_sell_in_input_is_4xx_problem_json_with_a_stable_code_and_writes_nothing() {
        let app = with_rules().await;
        let header = "invoice,date,outlet_id,participant_id,supplier_id,sku,quantity\n";
        let cases = [
            (
                format!("{header}INV-1,2026-11-20,o-5d2e8b,p-7f3a9c,acme,COLA-05,0\n"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_lines",
            ),
            (
                format!("{header}INV-1,2026-11-20,o-5d2e8b,p-7f3a9c,acme,NO-RULE,3\n"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_lines",
            ),
            (header.to_string(), StatusCode::BAD_REQUEST, "empty_import"),
        ];
        for (i, (csv, expected, code)) in cases.iter().enumerate() {
            let (status, body, response) = send(
                &app,
                event("import-sell-in.json")
                    .header("idempotency-key", &format!("bad-import-{i:04}"))
                    .text_body(csv),
            )
            .await;
            assert_eq!(
                (status, body["code"].as_str()),
                (*expected, Some(*code)),
                "{body}"
            );
            assert_eq!(content_type(&response), "application/problem+json");
        }
        let (status, body, _) = send(&app, event("import-sell-in.json").role("participant")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden"))
        );
        assert_eq!(sell_in_entries(&app), 0);
    }

    #[tokio::test]
    async fn an_import_completes_a_challenge_once_and_shows_its_progress() {
        let app = with_rules().await;
        november_challenge(&app, 30).await;
        let (status, body, _) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["challenges_completed"],
            json!([{ "challenge_id": "acme-nov", "participant_id": "p-7f3a9c" }])
        );
        let (status, body, _) = send(&app, event("list-my-challenges.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (
                &body["challenges"][0]["units"],
                &body["challenges"][0]["completed"]
            ),
            (&json!(30), &json!(true))
        );
        // The bonus landed once in the ledger beside the lines, announced, paid by the
        // challenge's account.
        let bonus = bonuses(&app);
        assert_eq!(bonus.len(), 1);
        assert_eq!(bonus[0].source, "challenge acme-nov");
        assert_eq!(
            app.store().balance(&participant()).unwrap().available,
            78 + 500
        );
        let events: Vec<_> = app
            .store()
            .outbox()
            .iter()
            .map(|e| e.payload["type"].clone())
            .collect();
        assert_eq!(
            events,
            vec![
                json!("challenge_completed"),
                json!("points_credited"),
                json!("points_credited")
            ]
        );
        // The same file under a new key counts nothing again.
        let (_, body, _) = send(
            &app,
            event("import-sell-in.json").header("idempotency-key", "import-inv-2026-0042-b"),
        )
        .await;
        assert_eq!(body["challenges_completed"], json!([]));
        assert_eq!(bonuses(&app).len(), 1);
        assert_eq!(app.store().entries(&participant()).len(), 3);
    }

    #[tokio::test]
    async fn a_blocked_participants_lines_are_reported_not_credited_and_count_for_no_challenge() {
        let app = with_rules().await;
        november_challenge(&app, 30).await;
        app.store().set_active(&participant(), false);
        let (status, body, _) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (
                &body["credited"],
                &body["points"],
                &body["challenges_completed"]
            ),
            (&json!(0), &json!(0), &json!([]))
        );
        let reported: Vec<_> = body["not_credited"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| (e["line"].clone(), e["field"].clone()))
            .collect();
        assert_eq!(
            reported,
            vec![
                (json!(2), json!("participant_id")),
                (json!(3), json!("participant_id"))
            ]
        );
        assert_eq!(sell_in_entries(&app), 0);
        assert!(bonuses(&app).is_empty());
        assert!(app.store().outbox().is_empty());
        // Unblocked, the same file under a new key credits both lines and pays the bonus.
        app.store().set_active(&participant(), true);
        let (status, body, _) = send(
            &app,
            event("import-sell-in.json").header("idempotency-key", "import-inv-2026-0042-b"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (&body["credited"], &body["not_credited"]),
            (&json!(2), &json!([]))
        );
        assert_eq!(bonuses(&app).len(), 1);
    }

    #[tokio::test]
    async fn a_challenge_out_of_budget_counts_nothing_until_an_admin_tops_it_up() {
        let app = with_rules().await;
        november_challenge(&app, 30).await;
        let fund = |amount: u64, key: &str| {
            event("fund-challenge-budget.json")
                .path_param("challengeId", "acme-nov")
                .header("idempotency-key", key)
                .body(json!({ "amount": amount }))
        };
        let (status, body, _) = send(&app, fund(PROGRAMME_SHARDS as u64, "fund-nov-0001")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body, _) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["challenges_completed"], json!([]));
        assert_eq!(body["credited"], 2, "the lines still earn");
        let (_, body, _) = send(&app, event("list-my-challenges.json")).await;
        // Each line is a source: the 24 units count, the 6 that would complete it wait.
        assert_eq!(
            (
                &body["challenges"][0]["units"],
                &body["challenges"][0]["completed"]
            ),
            (&json!(24), &json!(false)),
            "{body}"
        );
        assert!(bonuses(&app).is_empty());

        let (status, body, _) =
            send(&app, fund(500 * PROGRAMME_SHARDS as u64, "fund-nov-0002")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, body, _) = send(
            &app,
            event("import-sell-in.json").header("idempotency-key", "import-inv-2026-0042-b"),
        )
        .await;
        assert_eq!(
            body["challenges_completed"],
            json!([{ "challenge_id": "acme-nov", "participant_id": "p-7f3a9c" }])
        );
        let account = ProgrammeAccount::Challenge(Slug::parse("acme-nov").unwrap());
        assert_eq!(
            app.store().programme_balance(&account).balance,
            501 * PROGRAMME_SHARDS as i64 - 500
        );
    }

    #[tokio::test]
    async fn tiers_put_by_an_admin_scale_an_import_and_actions_and_lines_share_one_balance() {
        let app = with_rules().await;
        let (status, body, _) = send(&app, event("put-tiers.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // A survey worth gold's threshold: the action alone lifts the participant to gold.
        let (status, body, _) = send(
            &app,
            event("put-rule.json").body(json!({ "action": "survey", "points": 10_000,
                "reported_by": "participant", "per_participant": 1,
                "valid_from": "2026-10-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z" })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body, _) = send(&app, event("report-action.json")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["points"], 10_000, "bronze: ×1");

        let (status, body, _) = send(&app, event("import-sell-in.json")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // 24 × 2 and 6 × 5 points, at gold (×1.5).
        assert_eq!(body["points"], 72 + 45, "{body}");
        assert_eq!(sell_in_entries(&app), 2);
        assert_eq!(app.store().entries(&participant()).len(), 3);
        assert_eq!(
            app.store().balance(&participant()).unwrap().available,
            10_000 + 117
        );
        // Both sides of every credit in one ledger: members and programme sum to zero.
        assert_eq!(app.store().member_points(), 10_117);
        assert_eq!(app.store().programme_points(), -10_117);
    }
}
