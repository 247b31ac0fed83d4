//! SMS passcodes through the participants function on the memory store and SMS sender:
//! `events/participants/request-passcode.json`, `verify-passcode.json` and the registration
//! that needs a proven phone. No emulator.

use chrono::Duration;
use lambda_http::http::StatusCode;
use loyalty_domain::participant::InvitationKind;
use loyalty_domain::passcode::PasscodeKey;
use loyalty_tests::{body_json, ApiEvent};
use serde_json::json;

use crate::participants::{
    app, event_time, invite, phone, pid, seed_sample_invitation, send, App, PASSCODE_KEY,
    SAMPLE_PARTICIPANT, SAMPLE_PHONE,
};

fn request_for(subject: &str, raw_phone: &str) -> ApiEvent {
    ApiEvent::load("participants/request-passcode.json")
        .sub(subject)
        .body(json!({ "phone": raw_phone }))
}

fn verify_as(subject: &str, raw_phone: &str, code: &str) -> ApiEvent {
    ApiEvent::load("participants/verify-passcode.json")
        .sub(subject)
        .body(json!({ "phone": raw_phone, "code": code }))
}

/// The sample registration by a token without a verified phone: only a passcode proves it.
fn register_without_verified_phone() -> ApiEvent {
    ApiEvent::load("participants/register.json")
        .without_claim("phone_number")
        .without_claim("phone_number_verified")
}

fn last_code(app: &App, e164: &str) -> String {
    app.sms()
        .last_code_to(&phone(e164))
        .expect("a passcode was sent")
}

/// A code that is not `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn the_sample_request_is_202_and_texts_six_digits_stored_only_as_a_keyed_hash() {
    let app = app();
    let (status, body) = send(&app, ApiEvent::load("participants/request-passcode.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({ "sent": true, "expires_in_secs": 300 }));
    let sent = app.sms().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, SAMPLE_PHONE);
    let code = last_code(&app, SAMPLE_PHONE);
    assert!(sent[0].1.contains("5 minutes"), "{}", sent[0].1);

    let stored = app.store().stored_passcode(&phone(SAMPLE_PHONE)).unwrap();
    assert!(!stored.digest.contains(&code));
    let key = PasscodeKey::parse(PASSCODE_KEY).unwrap();
    let code = loyalty_domain::passcode::Passcode::parse(&code).unwrap();
    assert_eq!(
        stored.digest,
        key.digest(&phone(SAMPLE_PHONE), &code, &stored.challenge)
    );
    assert_eq!(
        stored.expires_at,
        (event_time() + Duration::minutes(5)).timestamp()
    );
}

#[tokio::test]
async fn a_request_answers_alike_for_a_registered_and_an_unknown_phone() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let (status, _) = send(&app, ApiEvent::load("participants/register.json")).await;
    assert_eq!(status, StatusCode::CREATED);
    let known = send(&app, request_for("p-asker", SAMPLE_PHONE)).await;
    let unknown = send(&app, request_for("p-asker", "+447700900999")).await;
    assert_eq!(known, unknown);
    assert_eq!(known.0, StatusCode::ACCEPTED);
    assert_eq!(app.sms().sent().len(), 2);
}

#[tokio::test]
async fn a_registration_needs_a_proven_phone_and_uses_the_proof_once() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let (status, body) = send(&app, register_without_verified_phone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "phone_not_proven");
    assert_eq!(app.store().profile_count(), 0);

    send(&app, request_for(SAMPLE_PARTICIPANT, "07700 900123")).await;
    let code = last_code(&app, SAMPLE_PHONE);
    let (status, body) = send(&app, verify_as(SAMPLE_PARTICIPANT, "07700 900123", &code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let until = event_time() + Duration::minutes(15);
    assert_eq!(
        body,
        json!({ "phone": SAMPLE_PHONE, "proven_until": until })
    );
    assert_eq!(
        app.store()
            .proof_until(&pid(SAMPLE_PARTICIPANT), &phone(SAMPLE_PHONE)),
        Some(until.timestamp())
    );

    let (status, body) = send(&app, register_without_verified_phone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["profile"]["phone"], SAMPLE_PHONE);
    assert_eq!(
        app.store()
            .proof_until(&pid(SAMPLE_PARTICIPANT), &phone(SAMPLE_PHONE)),
        None
    );
    // The code was used up with the proof.
    let (status, body) = send(&app, verify_as(SAMPLE_PARTICIPANT, SAMPLE_PHONE, &code)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "passcode_invalid");
}

#[tokio::test]
async fn a_proof_belongs_to_the_subject_that_verified_it() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    send(&app, request_for("p-someone-else", SAMPLE_PHONE)).await;
    let code = last_code(&app, SAMPLE_PHONE);
    let (status, _) = send(&app, verify_as("p-someone-else", SAMPLE_PHONE, &code)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, register_without_verified_phone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "phone_not_proven");
}

#[tokio::test]
async fn an_unverified_or_different_phone_in_the_token_proves_nothing() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    let unverified =
        ApiEvent::load("participants/register.json").claim("phone_number_verified", "false");
    assert_eq!(send(&app, unverified).await.1["code"], "phone_not_proven");
    let other = ApiEvent::load("participants/register.json").claim("phone_number", "+447700900999");
    assert_eq!(send(&app, other).await.1["code"], "phone_not_proven");
    assert_eq!(app.store().profile_count(), 0);
}

#[tokio::test]
async fn wrong_codes_are_422_and_the_sixth_try_fails_even_with_the_right_code() {
    let app = app();
    send(&app, request_for("p-1", SAMPLE_PHONE)).await;
    let code = last_code(&app, SAMPLE_PHONE);
    for _ in 0..5 {
        let (status, body) = send(&app, verify_as("p-1", SAMPLE_PHONE, &other_than(&code))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "passcode_invalid");
    }
    assert_eq!(app.store().passcode_tries(&phone(SAMPLE_PHONE)), Some(5));
    let (status, body) = send(&app, verify_as("p-1", SAMPLE_PHONE, &code)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "passcode_invalid");
    assert_eq!(
        app.store().proof_until(&pid("p-1"), &phone(SAMPLE_PHONE)),
        None
    );
}

#[tokio::test]
async fn a_passcode_five_minutes_old_is_422() {
    let app = app();
    send(&app, request_for("p-1", SAMPLE_PHONE)).await;
    let code = last_code(&app, SAMPLE_PHONE);
    app.clock().advance(Duration::minutes(5));
    let (status, body) = send(&app, verify_as("p-1", SAMPLE_PHONE, &code)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "passcode_invalid");
}

#[tokio::test]
async fn a_fourth_passcode_for_a_phone_within_the_quarter_hour_is_429_with_retry_after() {
    let app = app();
    for asker in ["p-1", "p-2", "p-3"] {
        assert_eq!(
            send(&app, request_for(asker, SAMPLE_PHONE)).await.0,
            StatusCode::ACCEPTED
        );
    }
    app.clock().advance(Duration::minutes(1));
    let response = app
        .handle(request_for("p-4", SAMPLE_PHONE).request())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(&response)["code"], "too_many_attempts");
    // The sample events' time is on a quarter hour: the window ends 14 minutes later.
    assert_eq!(response.headers()["retry-after"], "840");
    assert_eq!(app.sms().sent().len(), 3);
}

#[tokio::test]
async fn reps_and_admins_cannot_ask_for_or_verify_passcodes() {
    let app = app();
    for event in [
        ApiEvent::load("participants/request-passcode.json"),
        ApiEvent::load("participants/verify-passcode.json"),
    ] {
        for role in ["rep", "admin"] {
            let (status, body) = send(&app, event.clone().role(role)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        }
    }
    assert!(app.sms().sent().is_empty());
}

#[tokio::test]
async fn a_registered_participant_moves_to_a_proven_phone_and_frees_the_old_one() {
    let app = app();
    seed_sample_invitation(&app, InvitationKind::NewOutlet).await;
    assert_eq!(
        send(&app, ApiEvent::load("participants/register.json"))
            .await
            .0,
        StatusCode::CREATED
    );
    let new = "+447700900321";
    let change = || ApiEvent::load("participants/change-phone.json").sub(SAMPLE_PARTICIPANT);
    let (status, body) = send(&app, change()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "phone_not_proven");

    send(&app, request_for(SAMPLE_PARTICIPANT, new)).await;
    let code = last_code(&app, new);
    assert_eq!(
        send(&app, verify_as(SAMPLE_PARTICIPANT, new, &code))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = send(&app, change()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"], new);
    let store = app.store();
    assert_eq!(
        store.phone_owner(&phone(new)),
        Some(pid(SAMPLE_PARTICIPANT))
    );
    assert_eq!(store.phone_owner(&phone(SAMPLE_PHONE)), None);
    assert_eq!(
        store.proof_until(&pid(SAMPLE_PARTICIPANT), &phone(new)),
        None
    );

    // Moving to a phone someone else holds is 409, even when proven through the token.
    let (status, _) = send(&app, {
        let code = invite(&app, json!({ "kind": "new_outlet" })).await;
        ApiEvent::load("participants/register.json")
            .sub("p-other")
            .claim("phone_number", "+447700900999")
            .body(json!({ "invitation_code": code, "phone": "+447700900999", "name": "Other", "outlet_name": "Other Shop" }))
    })
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = send(
        &app,
        change()
            .claim("phone_number", "+447700900999")
            .claim("phone_number_verified", "true")
            .body(json!({ "phone": "+447700900999" })),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "phone_taken");
}

#[tokio::test]
async fn an_imported_member_proves_the_phone_on_first_sign_in_and_keeps_what_was_imported() {
    let app = app();
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/import-members.json")
            .sub("admin-1")
            .role("admin")
            .without_outlet(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member = loyalty_domain::participant::imported_id(&phone("+447700900201"));
    let adopt = || {
        ApiEvent::load("participants/adopt-imported-member.json")
            .without_claim("phone_number")
            .without_claim("phone_number_verified")
    };
    let (status, body) = send(&app, adopt()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "phone_not_proven");

    send(&app, request_for("p-3c81d0", "+447700900201")).await;
    let code = last_code(&app, "+447700900201");
    assert_eq!(
        send(&app, verify_as("p-3c81d0", "+447700900201", &code))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = send(&app, adopt()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["profile"]["id"], member.as_str());
    assert_eq!(body["profile"]["name"], "Bo Chen");
    assert_eq!(body["profile"]["source"], "import");
    assert_eq!(body["token_refresh_required"], true);

    // The refreshed token names the member: the subject now reads the member's profile.
    let (status, me) = send(
        &app,
        ApiEvent::load("participants/get-profile.json")
            .sub("p-3c81d0")
            .claim("participant_id", member.as_str()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["id"], member.as_str());
    assert_eq!(me["email"], "bo@example.com");

    // The sample event proves the phone through the token; the member is taken by now.
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/adopt-imported-member.json").sub("p-second"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "phone_taken");
    // A proven phone that no member holds.
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/adopt-imported-member.json")
            .sub("p-third")
            .claim("phone_number", "+447700900333")
            .body(json!({ "phone": "+447700900333" })),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "member_not_found");
}

#[tokio::test]
async fn only_a_participant_token_acts_as_its_participant_id() {
    let app = app();
    let (status, body) = send(
        &app,
        ApiEvent::load("participants/create-invitation.json").claim("participant_id", "m-other"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["zone"], "rep-north-1", "a rep stays its subject");
}
