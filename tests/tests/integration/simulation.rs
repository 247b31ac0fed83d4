//! A seeded simulation against the emulator: random claims, replays, stolen and unknown codes,
//! and review decisions, with the ledger invariant checked after every step.

use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::ids::ParticipantId;
use loyalty_tests::{body_json, ApiEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::claims::{claim, fixture, register_at};
use crate::ledger_check::assert_ledger_consistent;

const SEED: u64 = 20261122;
const STEPS: usize = 60;
const PARTICIPANTS: [&str; 4] = ["sim-a", "sim-b", "sim-c", "sim-d"];

#[tokio::test]
async fn a_seeded_simulation_keeps_every_balance_equal_to_its_entries_after_every_step() {
    let mut rng = StdRng::seed_from_u64(SEED);
    // A low hourly limit sends some claims to review, so decisions have something to decide.
    let f = fixture(STEPS as u32, 7, "north").await;
    // Registered at the outlets their tokens name below.
    let (first, rest): (Vec<&str>, Vec<&str>) = PARTICIPANTS.iter().partition(|p| **p < "sim-c");
    register_at(&f.stack, first, Some("o-sim-1")).await;
    register_at(&f.stack, rest, Some("o-sim-2")).await;
    let claims = code_claim::App::new(
        &f.stack.aws,
        &f.stack
            .env_for("CodeClaimFunction")
            .with("FRAUD_MAX_CLAIMS_PER_HOUR", "6"),
    )
    .unwrap();
    let admin =
        codes_admin::App::new(&f.stack.aws, &f.stack.env_for("CodesAdminFunction")).unwrap();
    let everyone: Vec<ParticipantId> = PARTICIPANTS
        .iter()
        .map(|p| ParticipantId::parse(p).unwrap())
        .collect();
    let mut next_code = 0;
    let mut claimed: Vec<(usize, &str)> = Vec::new();

    for step in 0..STEPS {
        let who = PARTICIPANTS[rng.random_range(0..PARTICIPANTS.len())];
        let outlet = if who < "sim-c" {
            Some("o-sim-1")
        } else {
            Some("o-sim-2")
        };
        match rng.random_range(0..10) {
            0..=4 if next_code < f.codes.len() => {
                // Sometimes two devices send the same claim at once.
                let shown = f.codes[next_code].display();
                let copies = rng.random_range(1..=2);
                let results =
                    join_all((0..copies).map(|_| claim(&claims, who, outlet, &shown))).await;
                if results.iter().all(|(s, _)| *s == StatusCode::OK) {
                    claimed.push((next_code, who));
                    next_code += 1;
                } else {
                    // Whoever failed too often is locked out; the code stays unclaimed.
                    assert!(
                        results
                            .iter()
                            .all(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS),
                        "step {step}: {results:?}"
                    );
                }
            }
            5 | 6 if !claimed.is_empty() => {
                let (i, owner) = claimed[rng.random_range(0..claimed.len())];
                let (status, _) = claim(&claims, who, outlet, &f.codes[i].display()).await;
                let expected = if owner == who {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                };
                // A lockout may come first once someone has failed often enough.
                assert!(
                    status == expected || status == StatusCode::TOO_MANY_REQUESTS,
                    "step {step}: {status}"
                );
            }
            7 | 8 => {
                let list = body_json(
                    &admin
                        .handle(ApiEvent::load("codes-admin/list-reviews.json").request())
                        .await
                        .unwrap(),
                );
                if let Some(review) = list["reviews"].as_array().and_then(|r| r.first()) {
                    let decision = if rng.random_bool(0.5) {
                        "approve"
                    } else {
                        "reject"
                    };
                    let event = ApiEvent::load("codes-admin/decide-review.json")
                        .path_param("reviewId", review["review_id"].as_str().unwrap())
                        .header("idempotency-key", &format!("sim-decision-{step:04}"))
                        .body(json!({ "decision": decision }));
                    assert_eq!(
                        admin.handle(event.request()).await.unwrap().status(),
                        StatusCode::OK,
                        "step {step}"
                    );
                }
            }
            _ => {
                let never_issued =
                    loyalty_domain::code::Code::chunk(&[step as u8; 32], f.batch.number, 9, 1)[0];
                let (status, _) = claim(&claims, who, outlet, &never_issued.display()).await;
                assert!(
                    status == StatusCode::NOT_FOUND || status == StatusCode::TOO_MANY_REQUESTS,
                    "step {step}"
                );
            }
        }
        assert_ledger_consistent(&f.stack, &everyone).await;
    }
}
