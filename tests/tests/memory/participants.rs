//! The participants function on the memory participant store, a fixed clock and seeded ids:
//! the handler's answers to the sample events in `events/participants/`, and what each
//! request wrote. No emulator.

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::auth::OutletRole;
use loyalty_domain::fraud::{FraudPolicy, Guesser};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{
    Invitation, InvitationCode, InvitationKind, ParticipantStore, Source,
};
use loyalty_domain::passcode::PasscodeKey;
use loyalty_domain::phone::{CountryCode, PhoneNumber};
use loyalty_domain::ports::{FixedClock, IdSource};
use loyalty_platform::memory::{MemoryParticipants, MemorySms, SeededIds};
use loyalty_tests::{body_json, ApiEvent};
use serde_json::{json, Value};

/// The registrant, rep and invitation code of the sample events.
pub(crate) const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
const SAMPLE_REP: &str = "rep-north-1";
const SAMPLE_CODE: &str = "K7QM4XPA";
pub(crate) const SAMPLE_PHONE: &str = "+447700900123";
const SEED: u64 = 1;

pub(crate) type App = participants::App<MemoryParticipants, FixedClock, MemorySms>;

/// The passcode key of the handler tests.
pub(crate) const PASSCODE_KEY: &str = "the handler tests' key of at least 32 characters";

/// The sample events' time: 22 Nov 2026, 10:00 UTC.
pub(crate) fn event_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

pub(crate) fn app() -> App {
    participants::App::with_store(
        MemoryParticipants::new(),
        CountryCode::parse("44").unwrap(),
        FixedClock::at(event_time()),
        SeededIds::new(SEED),
        MemorySms::new(),
        PasscodeKey::parse(PASSCODE_KEY).unwrap(),
    )
}

/// The outlet ids the app draws, in order.
fn drawn_outlets(n: usize) -> Vec<String> {
    let ids = SeededIds::new(SEED);
    (0..n).map(|_| ids.new_id("o")).collect()
}

pub(crate) fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).unwrap()
}

fn oid(raw: &str) -> OutletId {
    OutletId::parse(raw).unwrap()
}

pub(crate) fn phone(raw: &str) -> PhoneNumber {
    PhoneNumber::parse(raw, &CountryCode::parse("44").unwrap()).unwrap()
}

/// The invitation the sample registration names, as the sample rep would have issued it.
pub(crate) async fn seed_sample_invitation(app: &App, kind: InvitationKind) {
    let invitation = Invitation {
        code: InvitationCode::parse(SAMPLE_CODE).unwrap(),
        kind,
        region: RegionId::parse("north").unwrap(),
        zone: pid(SAMPLE_REP),
        created_by: pid(SAMPLE_REP),
        created_at: event_time(),
        expires_at: event_time() + Duration::days(14),
        used_by: None,
    };
    assert!(app.store().put_invitation(&invitation).await.unwrap());
}

pub(crate) async fn send(app: &App, event: ApiEvent) -> (StatusCode, Value) {
    let response = app
        .handle(event.request())
        .await
        .expect("handler never errs");
    (response.status(), body_json(&response))
}

/// The sample rep invites; returns the code.
pub(crate) async fn invite(app: &App, body: Value) -> String {
    let (status, answer) = send(
        app,
        ApiEvent::load("participants/create-invitation.json").body(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["code"].as_str().unwrap().to_string()
}

/// The sample registration as `subject` with `code` and `phone`, signed in with that phone
/// verified by the identity provider (as Cognito's ID token says it).
fn register_as(subject: &str, code: &str, raw_phone: &str) -> ApiEvent {
    ApiEvent::load("participants/register.json")
        .sub(subject)
        .claim("phone_number", phone(raw_phone).as_e164())
        .claim("phone_number_verified", "true")
        .body(json!({
            "invitation_code": code,
            "phone": raw_phone,
            "name": format!("Member {subject}"),
            "outlet_name": format!("Shop of {subject}"),
        }))
}

fn zone_listing() -> ApiEvent {
    ApiEvent::load("participants/list-zone-outlets.json")
}

fn import(csv: &str) -> ApiEvent {
    ApiEvent::load("participants/import-members.json").text_body(csv)
}

#[tokio::test]
async fn the_sample_invitation_is_stored_for_the_reps_zone_for_fourteen_days() {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("participants/create-invitation.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (
            body["kind"].as_str(),
            body["zone"].as_str(),
            body["region"].as_str()
        ),
        (Some("new_outlet"), Some(SAMPLE_REP), Some("north"))
    );
    assert_eq!(body["expires_at"], json!(event_time() + Duration::days(14)));
    let code = InvitationCode::parse(body["code"].as_str().unwrap()).unwrap();
    let drawn = SeededIds::new(SEED).new_id("invitation");
    assert_eq!(
        code,
        InvitationCode::from_id(&drawn),
        "the code comes from the seeded ids"
    );
    let stored = app.store().stored_invitation(&code).expect("stored");
    assert_eq!(stored.invitation.kind, InvitationKind::NewOutlet);
    assert_eq!(stored.invitation.created_by.as_str(), SAMPLE_REP);
    assert_eq!(stored.invitation.created_at, event_time());
    assert_eq!((stored.invitation.used_by, stored.used_at), (None, None));
    let regions = app.store().inspect(|w| w.regions.clone());
    assert_eq!(
        regions.get(&RegionId::parse("north").unwrap()),
        Some(&event_time())
    );
}

#[tokio::test]
async fn the_sample_registration_creates_the_owner_of_a_new_outlet_and_uses_the_invitation() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let outlet = &drawn_outlets(1)[0];
    let profile = &body["profile"];
    assert_eq!(profile["id"], SAMPLE_PARTICIPANT);
    assert_eq!(profile["phone"], SAMPLE_PHONE);
    assert_eq!(profile["email"], "ann@cornershop.example");
    assert_eq!(profile["outlet_id"], outlet.as_str());
    assert_eq!(profile["outlet_role"], "owner");
    assert_eq!(profile["zone"], SAMPLE_REP);
    assert_eq!(profile["created_at"], json!(event_time()));
    assert_eq!(body["token_refresh_required"], true);

    let store = app.store();
    assert_eq!(
        store.phone_owner(&phone(SAMPLE_PHONE)),
        Some(pid(SAMPLE_PARTICIPANT))
    );
    let stored = store.stored_profile(&pid(SAMPLE_PARTICIPANT)).unwrap();
    assert_eq!(stored.source, Source::Registration);
    let written = store
        .inspect(|w| w.outlets.get(&oid(outlet)).cloned())
        .unwrap();
    assert_eq!(written.name.as_str(), "Corner Shop");
    assert_eq!(written.owner.as_str(), SAMPLE_PARTICIPANT);
    assert_eq!(written.zone.as_str(), SAMPLE_REP);
    let members = store.memberships(&oid(outlet));
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].role, OutletRole::Owner);
    let invitation = store
        .stored_invitation(&InvitationCode::parse(SAMPLE_CODE).unwrap())
        .unwrap();
    assert_eq!(invitation.invitation.used_by, Some(pid(SAMPLE_PARTICIPANT)));
    assert_eq!(invitation.used_at, Some(event_time()));
}

#[tokio::test]
async fn a_join_outlet_invitation_registers_a_seller_of_the_existing_outlet() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    let outlet = drawn_outlets(1)[0].clone();
    let code = invite(&app, json!({ "kind": "join_outlet", "outlet_id": outlet })).await;
    let (status, body) = send(&app, register_as("p-seller", &code, "07700 900124")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["profile"]["outlet_id"], outlet.as_str());
    assert_eq!(body["profile"]["outlet_role"], "seller");

    let store = app.store();
    let outlets = store.inspect(|w| w.outlets.len());
    assert_eq!(outlets, 1, "joining creates no outlet");
    let roles: Vec<(String, OutletRole)> = store
        .memberships(&oid(&outlet))
        .into_iter()
        .map(|m| (m.participant.to_string(), m.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            (SAMPLE_PARTICIPANT.to_string(), OutletRole::Owner),
            ("p-seller".to_string(), OutletRole::Seller)
        ]
    );

    // The owner lists them with the sample event.
    let listing = ApiEvent::load("participants/list-outlet-members.json")
        .path_param("outletId", &outlet)
        .outlet(&outlet, "owner");
    let (status, listed) = send(&app, listing).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["members"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_second_registration_with_the_same_phone_is_409_phone_taken_and_writes_nothing() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    let code = invite(&app, json!({ "kind": "new_outlet" })).await;
    let (status, body) = send(&app, register_as("p-other", &code, "+44 7700 900123")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("phone_taken")),
        "{body}"
    );
    let store = app.store();
    assert_eq!(store.stored_profile(&pid("p-other")), None);
    assert_eq!(store.inspect(|w| w.outlets.len()), 1);
    let unused = store
        .stored_invitation(&InvitationCode::parse(&code).unwrap())
        .unwrap();
    assert_eq!(
        unused.invitation.used_by, None,
        "the invitation stays usable"
    );
    assert_eq!(
        store.phone_owner(&phone(SAMPLE_PHONE)),
        Some(pid(SAMPLE_PARTICIPANT))
    );
}

#[tokio::test]
async fn a_used_invitation_is_409_invitation_used_and_an_unknown_one_404() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::Individual).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, body) = send(&app, register_as("p-other", SAMPLE_CODE, "07700 900999")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("invitation_used")),
        "{body}"
    );
    assert_eq!(app.store().stored_profile(&pid("p-other")), None);
    assert_eq!(app.store().phone_owner(&phone("07700 900999")), None);

    let (status, body) = send(&app, register_as("p-other", "ZZZZ2222", "07700 900999")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("invitation_not_found"))
    );
    // And an expired one.
    let code = invite(&app, json!({ "kind": "individual" })).await;
    app.clock().advance(Duration::days(14));
    let (status, body) = send(&app, register_as("p-late", &code, "07700 900998")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invitation_expired"))
    );
}

#[tokio::test]
async fn the_sample_profile_update_renames_the_owner_and_their_membership() {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("participants/update-profile.json")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_registered")),
        "before registering"
    );

    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    app.clock().advance(Duration::hours(2));
    let (status, body) = send(&app, ApiEvent::load("participants/update-profile.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Ann Lee-Smith");
    assert_eq!(body["email"], "ann.lee@cornershop.example");
    assert_eq!(body["updated_at"], json!(event_time() + Duration::hours(2)));
    assert_eq!(body["created_at"], json!(event_time()));

    let store = app.store();
    let profile = store.stored_profile(&pid(SAMPLE_PARTICIPANT)).unwrap();
    assert_eq!(profile.name.as_str(), "Ann Lee-Smith");
    assert_eq!(profile.phone.as_e164(), SAMPLE_PHONE, "the phone is kept");
    let members = store.memberships(&oid(&drawn_outlets(1)[0]));
    assert_eq!(members[0].name.as_str(), "Ann Lee-Smith");

    let (status, me) = send(&app, ApiEvent::load("participants/get-profile.json")).await;
    assert_eq!(
        (status, me["name"].as_str()),
        (StatusCode::OK, Some("Ann Lee-Smith"))
    );
}

#[tokio::test]
async fn the_sample_import_creates_members_once_and_refuses_a_registered_phone_whole() {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("participants/import-members.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "created": 2, "unchanged": 0 }));
    let store = app.store();
    let bo = store.phone_owner(&phone("+447700900201")).expect("Bo");
    let profile = store.stored_profile(&bo).unwrap();
    assert_eq!(
        (profile.name.as_str(), profile.source, profile.created_at),
        ("Bo Chen", Source::Import, event_time())
    );
    assert!(bo.as_str().starts_with("m-"));
    let cy = store.stored_profile(&store.phone_owner(&phone("07700900202")).unwrap());
    assert_eq!(cy.unwrap().region.as_str(), "south");

    let (status, again) = send(&app, ApiEvent::load("participants/import-members.json")).await;
    assert_eq!(
        (status, again),
        (StatusCode::OK, json!({ "created": 0, "unchanged": 2 }))
    );
    assert_eq!(store.profile_count(), 2);

    // A phone that a registration holds refuses the whole file.
    seed_sample_invitation(&app, InvitationKind::Individual).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, body) = send(
        &app,
        import("phone,name,region\n07700 900301,Dee,north\n07700 900123,Ann,north\n"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["errors"],
        json!([{ "line": 3, "code": "phone_taken", "message": "this phone number already belongs to an account" }])
    );
    assert_eq!(store.phone_owner(&phone("07700 900301")), None);
    assert_eq!(store.profile_count(), 3);
}

#[tokio::test]
async fn the_sample_zone_listing_pages_the_reps_outlets_with_a_cursor_of_theirs_only() {
    let app = app();
    for i in 0..3 {
        let code = invite(&app, json!({ "kind": "new_outlet" })).await;
        let (status, body) = send(
            &app,
            register_as(&format!("p-own-{i}"), &code, &format!("07700 90040{i}")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // Invitation codes and outlet ids come from one sequence: invite, register, ...
    let ids = SeededIds::new(SEED);
    let mut mine: Vec<String> = (0..6)
        .map(|i| ids.new_id(if i % 2 == 0 { "invitation" } else { "o" }))
        .filter(|id| id.starts_with("o-"))
        .collect();
    mine.sort();

    let (status, first) = send(&app, zone_listing().query("limit", "2")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (status, second) = send(
        &app,
        zone_listing().query("limit", "2").query("cursor", &cursor),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["next_cursor"], Value::Null);
    let seen: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| {
            page["outlets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(seen, mine, "every outlet once, in id order");
    let owner = app
        .store()
        .inspect(|w| w.outlets[&oid(&mine[0])].owner.to_string());
    assert_eq!(first["outlets"][0]["name"], format!("Shop of {owner}"));

    let (status, body) = send(
        &app,
        zone_listing().sub("rep-north-2").query("cursor", &cursor),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
}

#[tokio::test]
async fn sixteen_concurrent_registrations_with_one_phone_create_exactly_one_account() {
    let app = app();
    let mut codes = Vec::new();
    for _ in 0..16 {
        codes.push(invite(&app, json!({ "kind": "individual" })).await);
    }
    let attempts = codes.iter().enumerate().map(|(i, code)| {
        let app = &app;
        async move {
            send(
                app,
                register_as(&format!("p-racer-{i}"), code, "07700 900555"),
            )
            .await
        }
    });
    let results = join_all(attempts).await;
    let created: Vec<usize> = (0..16)
        .filter(|&i| results[i].0 == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(
            (*status, body["code"].as_str()),
            (StatusCode::CONFLICT, Some("phone_taken")),
            "{body}"
        );
    }
    let store = app.store();
    assert_eq!(store.profile_count(), 1);
    assert_eq!(
        store.phone_owner(&phone("07700 900555")),
        Some(pid(&format!("p-racer-{}", created[0])))
    );
    let used = store.inspect(|w| {
        w.invitations
            .values()
            .filter(|i| i.invitation.used_by.is_some())
            .count()
    });
    assert_eq!(used, 1, "the losers' invitations stay usable");
}

/// The sample registration with a code nobody was given.
fn wrong_guess(subject: &str) -> ApiEvent {
    register_as(subject, "WRNG2345", "07700 900999")
}

fn guesses_now(app: &App, guesser: Guesser) -> i64 {
    let start = FraudPolicy::default().failure_window(event_time()).start;
    app.store().guesses(&guesser, start)
}

#[tokio::test]
async fn five_wrong_invitation_codes_lock_the_caller_out_even_with_the_right_code_for_an_hour() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    for i in 0..5 {
        let (status, body) = send(&app, wrong_guess(SAMPLE_PARTICIPANT)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "guess {i}: {body}");
        assert_eq!(body["code"], "invitation_not_found");
    }
    let response = app
        .handle(ApiEvent::load("participants/register.json").request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "3600");
    assert_eq!(body_json(&response)["code"], "too_many_attempts");
    assert!(app.store().inspect(|w| w.profiles.is_empty()));
    assert_eq!(
        app.store()
            .stored_invitation(&InvitationCode::parse(SAMPLE_CODE).unwrap())
            .unwrap()
            .used_at,
        None
    );

    app.clock().advance(Duration::minutes(59));
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    app.clock().advance(Duration::minutes(1));
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn twenty_wrong_codes_from_one_source_lock_out_every_caller_behind_it() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    for i in 0..20 {
        let (status, body) = send(&app, wrong_guess(&format!("p-bot-{i}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "guess {i}: {body}");
    }
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // The same caller from another address is not held back by that one.
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/register.json").source_ip("198.51.100.20"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_right_invitation_code_is_not_counted_as_a_failed_attempt() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let (status, body) = send(&app, wrong_guess(SAMPLE_PARTICIPANT)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        guesses_now(&app, Guesser::Caller(pid(SAMPLE_PARTICIPANT))),
        1
    );
    assert_eq!(guesses_now(&app, Guesser::Source("203.0.113.10".into())), 1);
    // A used code is a wrong one: it stays counted.
    let (status, body) = send(&app, register_as("p-late", SAMPLE_CODE, "07700 900456")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(guesses_now(&app, Guesser::Caller(pid("p-late"))), 1);
}

#[tokio::test]
async fn sixteen_concurrent_wrong_codes_of_one_caller_get_no_more_than_five_answers() {
    let app = app();
    let answers = join_all((0..16).map(|_| send(&app, wrong_guess("p-racer")))).await;
    let answered = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::NOT_FOUND)
        .count();
    let locked = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((answered, locked), (5, 11), "{answers:?}");
    assert_eq!(
        app.store()
            .guess_locked_until(&Guesser::Caller(pid("p-racer"))),
        Some(event_time().timestamp() + 3600)
    );
}

/// The sample participant, registered through the sample events.
async fn registered_app() -> App {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let (status, body) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["profile"]["status"], "active");
    app
}

#[tokio::test]
async fn an_admin_blocks_a_participant_with_a_reason_and_unblocks_them_with_another() {
    let app = registered_app().await;
    let (status, body) = send(&app, ApiEvent::load("participants/block-participant.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["status"].as_str(),
            body["status_reason"].as_str(),
            body["status_changed_by"].as_str()
        ),
        (
            Some("blocked"),
            Some("Shared pack codes on a public forum"),
            Some("admin-1")
        )
    );
    let stored = app
        .store()
        .inspect(|w| w.profiles[&pid(SAMPLE_PARTICIPANT)].clone());
    assert!(!stored.is_active());

    // The participant sees it, and renaming themselves does not lift it.
    let (status, body) = send(&app, ApiEvent::load("participants/update-profile.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "blocked");

    app.clock().advance(Duration::hours(1));
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/unblock-participant.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(
        body["status_reason"],
        "Reviewed with the outlet owner; codes were his own"
    );
    assert_eq!(
        body["status_changed_at"],
        json!(event_time() + Duration::hours(1))
    );
    let (_, body) = send(&app, ApiEvent::load("participants/get-profile.json")).await;
    assert_eq!(body["status"], "active");
}

#[tokio::test]
async fn blocking_someone_without_a_profile_or_without_a_reason_is_refused_and_writes_nothing() {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("participants/block-participant.json")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "participant_not_found");
    assert!(app.store().inspect(|w| w.profiles.is_empty()));

    let app = registered_app().await;
    for reason in [json!(""), json!("   "), json!("x".repeat(501))] {
        let (status, body) = send(
            &app,
            ApiEvent::load("participants/block-participant.json").body(json!({ "reason": reason })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "reason_invalid");
    }
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/block-participant.json").body(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let stored = app
        .store()
        .inspect(|w| w.profiles[&pid(SAMPLE_PARTICIPANT)].clone());
    assert_eq!(stored.standing, None);
}
