//! `POST /claims` on the memory claim store and a fixed clock: the handler's answers to the
//! sample events in `events/code-claim/`, and what each request wrote. No emulator.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use std::sync::atomic::{AtomicUsize, Ordering};

use loyalty_domain::claim::{
    BatchInfo, ClaimAttempt, ClaimPolicy, ClaimStore, FailedAttempt, FailureCounts, Refusal,
};
use loyalty_domain::code::Code;
use loyalty_domain::fraud::{AttemptOutcome, Subject};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{entry_ids, EntryKind};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::ports::FixedClock;
use loyalty_domain::zone::{Zone, Zones};
use loyalty_domain::{InfraError, Points};
use loyalty_platform::memory::claims::CodeStatus;
use loyalty_platform::memory::MemoryClaims;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

/// The participant, outlet and region of the sample events.
const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_OUTLET: &str = "o-5d2e8b";

type App = code_claim::App<MemoryClaims, FixedClock>;

/// The sample events' time: 22 Nov 2026, 10:00 UTC.
fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn valid_until() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

/// An app on a fresh memory store holding one batch of `count` codes worth 40 points,
/// shipped to the sample events' region.
pub(crate) fn app(count: u32) -> (App, Vec<Code>) {
    app_with(count, ClaimPolicy::default())
}

/// `count` codes of the sample batch, issued in `store`.
fn issued(store: &MemoryClaims, count: u32) -> Vec<Code> {
    let batch = BatchInfo {
        number: 17,
        sku: "COLA-05".into(),
        product_type: "Cola 0.5 l".into(),
        points: Points(40),
        region: RegionId::parse("north").unwrap(),
        valid_until: valid_until(),
    };
    let codes = Code::chunk(&[17; 32], batch.number, 0, count);
    store.add_batch(batch.clone());
    store.issue(&batch, &codes);
    codes
}

fn app_with(count: u32, policy: ClaimPolicy) -> (App, Vec<Code>) {
    let store = MemoryClaims::new();
    let codes = issued(&store, count);
    // Registered where the sample token says: north, selling at the sample outlet.
    let sample = ProfileFacts {
        region: RegionId::parse("north").ok(),
        outlet: OutletId::parse(SAMPLE_OUTLET).ok(),
    };
    for participant in [SAMPLE_PARTICIPANT, "p-thief"] {
        store.register(&ParticipantId::parse(participant).unwrap(), sample.clone());
    }
    let app = code_claim::App::with_store(store, policy, FixedClock::at(event_time()));
    (app, codes)
}

/// `events/code-claim/claim.json` with `code` as the typed code.
pub(crate) fn typed(code: &str) -> ApiEvent {
    ApiEvent::load("code-claim/claim.json").body(json!({ "code": code }))
}

pub(crate) async fn send<S: ClaimStore>(
    app: &code_claim::App<S, FixedClock>,
    event: ApiEvent,
) -> (StatusCode, Value, Response<Body>) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response), response)
}

fn content_type(response: &Response<Body>) -> &str {
    response.headers()["content-type"].to_str().unwrap()
}

fn sample_participant() -> ParticipantId {
    ParticipantId::parse(SAMPLE_PARTICIPANT).unwrap()
}

#[tokio::test]
async fn the_sample_claim_credits_the_code_once_with_entry_balance_totals_and_outbox_record() {
    let (app, codes) = app(1);
    let (status, body, _) = send(&app, typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["points"], 40);
    assert_eq!(body["product"]["batch"], 17);
    assert_eq!(body["product"]["sku"], "COLA-05");
    assert_eq!(body["balance"]["available"], 40);
    assert_eq!(body["claimed_at"], event_time().to_rfc3339());

    let store = app.store();
    let entries = store.entries(&sample_participant());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, EntryKind::CodeClaim);
    assert_eq!(entries[0].id.as_str(), body["entry_id"]);
    assert_eq!(entries[0].created_at, event_time());
    let balance = store.balance(&sample_participant()).unwrap();
    assert_eq!((balance.available, balance.version), (40, 1));
    let outlet = OutletId::parse(SAMPLE_OUTLET).unwrap();
    assert_eq!(store.outlet_totals(&outlet).unwrap().available, 40);
    let outbox = store.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].payload["type"], "code_accepted");
    assert_eq!(outbox[0].payload["participant_id"], SAMPLE_PARTICIPANT);
}

#[tokio::test]
async fn the_sample_qr_claim_claims_by_link() {
    let (app, codes) = app(1);
    let event = ApiEvent::load("code-claim/claim-qr.json")
        .body(json!({ "code": codes[0].qr_payload("https://club.example.com") }));
    let (status, body, _) = send(&app, event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["points"], 40);
    assert_eq!(app.store().entries(&sample_participant()).len(), 1);
}

#[tokio::test]
async fn a_replay_answers_the_first_receipt_and_writes_no_second_credit() {
    let (app, codes) = app(1);
    let (_, first, _) = send(&app, typed(&codes[0].display())).await;
    // Later, from another device, typed sloppily.
    app.clock().advance(Duration::minutes(5));
    let (status, again, _) = send(&app, typed(&codes[0].canonical().to_lowercase())).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "a replay answers exactly the first receipt");

    let store = app.store();
    assert_eq!(store.entries(&sample_participant()).len(), 1);
    assert_eq!(store.balance(&sample_participant()).unwrap().version, 1);
    assert_eq!(store.outbox().len(), 1);
    let outcomes: Vec<_> = store.audit().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::Accepted, AttemptOutcome::Replayed]
    );
}

#[tokio::test]
async fn a_code_claimed_by_someone_else_is_a_conflict_and_counts_as_a_failure() {
    let (app, codes) = app(1);
    send(&app, typed(&codes[0].display())).await;
    let (status, body, response) = send(&app, typed(&codes[0].display()).sub("p-thief")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(body["code"], "code_already_claimed");

    let store = app.store();
    let thief = ParticipantId::parse("p-thief").unwrap();
    assert!(store.entries(&thief).is_empty());
    assert_eq!(store.balance(&thief), None);
    assert_eq!(store.outbox().len(), 1);
    let window = ClaimPolicy::default().fraud.failure_window(event_time());
    assert_eq!(
        store.failures(&Subject::Participant(thief), window.start),
        1
    );
}

#[tokio::test]
async fn the_sample_code_as_shipped_fails_its_check_and_is_refused_before_any_io() {
    let (app, _) = app(1);
    // The sample events carry a placeholder code whose check character is wrong.
    let (status, body, response) = send(&app, ApiEvent::load("code-claim/claim.json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(body["code"], "code_check_failed");

    let (status, body, _) = send(&app, typed("not a code")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "code_malformed");
    let (status, body, _) = send(&app, typed("https://evil.example.com/x/ABCD")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "code_link_unrecognised");

    // Nothing was read or written: not even an audit record.
    assert!(app.store().audit().is_empty());
}

#[tokio::test]
async fn unknown_and_expired_codes_are_refused_and_locks_answer_with_retry_after() {
    let (app, codes) = app(2);
    // A well-formed code of the batch that was never issued.
    let never = Code::chunk(&[9; 32], 17, 3, 1)[0];
    let (status, body, _) = send(&app, typed(&never.display())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "code_unknown");

    // Five failures in a window lock the participant, even for a valid code.
    for _ in 0..4 {
        send(&app, typed(&never.display())).await;
    }
    let (status, body, response) = send(&app, typed(&codes[1].display())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "claims_locked");
    assert_eq!(response.headers()["retry-after"], "3600");

    // Past the batch's date, by the app's clock (never the wall clock); the lock is over.
    app.clock().advance(Duration::days(40));
    let (status, body, _) = send(&app, typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "code_expired");
    assert!(app.store().entries(&sample_participant()).is_empty());
}

#[tokio::test]
async fn a_credit_expires_on_a_date_of_the_claimants_region_zone_across_a_month_end() {
    let (app, codes) = app(2);
    let north = RegionId::parse("north").unwrap();
    let in_north = |zone: &str| Zones {
        programme: Zone::UTC,
        regions: [(north.clone(), Zone::parse(zone).unwrap())].into(),
    };
    let validity = Duration::days(ClaimPolicy::default().credit_validity_days);
    let expires_on = |app: &App, code: &Code| {
        let id = entry_ids::code_claim(code.canonical());
        let entries = app.store().entries(&sample_participant());
        entries
            .iter()
            .find(|e| e.id == id)
            .expect("credited")
            .expires_on
    };

    // 19:00 UTC on 30 November is 01:00 on 1 December in Omsk (UTC+6).
    app.store().set_zones(in_north("Asia/Omsk"));
    app.clock()
        .advance(Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0).unwrap() - event_time());
    let (status, body, _) = send(&app, typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let local_day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    assert_eq!(expires_on(&app, &codes[0]), Some(local_day + validity));

    // 03:00 UTC on 1 December is 22:00 on 30 November in Bogotá (UTC−5).
    app.store().set_zones(in_north("America/Bogota"));
    app.clock().advance(Duration::hours(8));
    let (status, body, _) = send(&app, typed(&codes[1].display())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let local_day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    assert_eq!(expires_on(&app, &codes[1]), Some(local_day + validity));
}

#[tokio::test]
async fn a_blocked_or_unregistered_participant_is_forbidden_and_nothing_is_written() {
    let (app, codes) = app(1);
    app.store().set_active(&sample_participant(), false);
    let (status, body, response) = send(&app, typed(&codes[0].display())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(content_type(&response), "application/problem+json");
    assert_eq!(body["code"], "participant_not_active");

    let (status, body, _) = send(&app, typed(&codes[0].display()).sub("p-nobody")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "participant_not_active");

    let store = app.store();
    assert!(store.entries(&sample_participant()).is_empty());
    assert!(store.outbox().is_empty());
    assert!(store.audit().is_empty());
    assert_eq!(
        store.code(&codes[0]).map(|c| c.status),
        Some(CodeStatus::Issued)
    );
}

/// A participant registered in the south, selling at the outlet `o-south`.
fn southerner(app: &App) -> (ParticipantId, OutletId) {
    let participant = ParticipantId::parse("p-southerner").unwrap();
    let outlet = OutletId::parse("o-south").unwrap();
    app.store().register(
        &participant,
        ProfileFacts {
            region: RegionId::parse("south").ok(),
            outlet: Some(outlet.clone()),
        },
    );
    (participant, outlet)
}

#[tokio::test]
async fn a_token_without_region_or_outlet_is_judged_by_the_profile_and_flagged_for_a_foreign_code()
{
    let (app, codes) = app(2);
    let (participant, outlet) = southerner(&app);
    let bare = |code: &Code| {
        typed(&code.display())
            .sub(participant.as_str())
            .without_outlet()
            .without_claim("region")
    };

    // The codes were shipped north; the profile says south: held for review, and the
    // points count at the profile's outlet.
    for code in &codes {
        let (status, body, _) = send(&app, bare(code)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "pending_review");
    }
    let store = app.store();
    let kinds: Vec<_> = store.entries(&participant).iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EntryKind::CodeClaimUnderReview; 2]);
    assert!(store
        .entries(&participant)
        .iter()
        .all(|e| e.outlet.as_ref() == Some(&outlet)));
    assert_eq!(store.outlet_totals(&outlet).unwrap().pending, 80);
}

#[tokio::test]
async fn a_token_naming_another_region_and_outlet_than_the_profile_is_judged_by_the_profile() {
    let (app, codes) = app(2);
    let (participant, outlet) = southerner(&app);
    // The token says north and the sample outlet, as a northerner's would.
    let (status, body, _) = send(&app, typed(&codes[0].display()).sub(participant.as_str())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "pending_review");
    let store = app.store();
    assert_eq!(store.outlet_totals(&outlet).unwrap().pending, 40);
    assert_eq!(
        store.outlet_totals(&OutletId::parse(SAMPLE_OUTLET).unwrap()),
        None,
        "nothing counts at the outlet the token named"
    );

    // And a northerner whose token says south is not flagged for a northern code.
    let (status, body, _) = send(&app, typed(&codes[1].display()).region("south")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "accepted");
}

#[tokio::test]
async fn failures_of_a_token_without_an_outlet_count_against_the_profiles_outlet_and_lock_it() {
    let mut policy = ClaimPolicy::default();
    policy.fraud.max_failures_per_participant = 100;
    policy.fraud.max_failures_per_outlet = 4;
    let (app, codes) = app_with(1, policy.clone());
    let (participant, outlet) = southerner(&app);
    let bare = |code: &str| {
        typed(code)
            .sub(participant.as_str())
            .without_outlet()
            .without_claim("region")
    };
    // Unknown batches (refused before any transaction) and codes never issued in a known
    // batch (refused by the transaction), two of each.
    let unknown_batch = Code::chunk(&[3; 32], 99, 0, 2);
    let never_issued = Code::chunk(&[9; 32], 17, 5, 2);
    for code in unknown_batch.iter().chain(&never_issued) {
        let (status, body, _) = send(&app, bare(&code.display())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    let window = policy.fraud.failure_window(event_time());
    let store = app.store();
    assert_eq!(
        store.failures(&Subject::Outlet(outlet.clone()), window.start),
        4
    );
    assert!(store
        .locked_until(&Subject::Outlet(outlet.clone()))
        .is_some());
    assert!(store
        .audit()
        .iter()
        .all(|a| a.outlet.as_ref() == Some(&outlet)));

    // The outlet's lock holds the participant's next claim, token or no token.
    let (status, body, _) = send(&app, bare(&codes[0].display())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "claims_locked");
}

/// The claim store, counting the calls that are round trips in DynamoDB.
#[derive(Default)]
struct Counting {
    inner: MemoryClaims,
    transactions: AtomicUsize,
    profile_reads: AtomicUsize,
}

impl ClaimStore for Counting {
    async fn zones(&self) -> Result<Zones, InfraError> {
        self.inner.zones().await
    }
    async fn profile(&self, p: &ParticipantId) -> Result<Option<ProfileFacts>, InfraError> {
        self.profile_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.profile(p).await
    }
    async fn batch(&self, number: u32) -> Result<Option<BatchInfo>, InfraError> {
        self.inner.batch(number).await
    }
    async fn try_claim(&self, a: &ClaimAttempt) -> Result<Result<(), Refusal>, InfraError> {
        self.transactions.fetch_add(1, Ordering::SeqCst);
        self.inner.try_claim(a).await
    }
    async fn record_failure(&self, f: &FailedAttempt) -> Result<FailureCounts, InfraError> {
        self.inner.record_failure(f).await
    }
    async fn record_attempt(&self, f: &FailedAttempt) -> Result<(), InfraError> {
        self.inner.record_attempt(f).await
    }
    async fn lock(&self, subject: &Subject, until: i64) -> Result<(), InfraError> {
        self.inner.lock(subject, until).await
    }
}

#[tokio::test]
async fn a_bare_token_costs_one_more_transaction_once_then_each_claim_is_one_transaction() {
    let store = Counting::default();
    let codes = issued(&store.inner, 3);
    store.inner.register(
        &sample_participant(),
        ProfileFacts {
            region: RegionId::parse("north").ok(),
            outlet: OutletId::parse(SAMPLE_OUTLET).ok(),
        },
    );
    let app =
        code_claim::App::with_store(store, ClaimPolicy::default(), FixedClock::at(event_time()));
    let bare = |code: &Code| {
        typed(&code.display())
            .without_outlet()
            .without_claim("region")
    };
    let mut per_claim = Vec::new();
    for code in &codes {
        let before = app.store().transactions.load(Ordering::SeqCst);
        let (status, body, _) = send(&app, bare(code)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        per_claim.push(app.store().transactions.load(Ordering::SeqCst) - before);
    }
    // The first assumes "no region, no outlet" and learns the profile's from the refusal.
    assert_eq!(per_claim, [2, 1, 1]);
    assert_eq!(app.store().profile_reads.load(Ordering::SeqCst), 0);
}
