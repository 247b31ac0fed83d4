//! Participants and outlets against moto: invitations, registration, profiles, outlets,
//! lookup by phone and member import, through `participants::App::handle` with the sample events.

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use lambda_http::http::StatusCode;
use loyalty_domain::phone::{CountryCode, PhoneNumber};
use loyalty_tests::{body_json, ApiEvent, TestStack};
use participants::App;
use serde_json::{json, Value};

const FUNCTION: &str = "ParticipantsFunction";

pub struct Fixture {
    pub stack: TestStack,
    pub app: App,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let stack = TestStack::for_function(FUNCTION).await;
        let app = App::new(&stack.aws, &stack.env_for(FUNCTION))
            .expect("template configuration is valid");
        Fixture { stack, app }
    }

    pub async fn call(&self, event: ApiEvent) -> (StatusCode, Value) {
        let response = self
            .app
            .handle(event.request())
            .await
            .expect("the handler answers");
        (response.status(), body_json(&response))
    }

    /// A rep (or admin) creates an invitation; returns its code.
    pub async fn invite(&self, inviter: ApiEvent, body: Value) -> String {
        let (status, answer) = self.call(inviter.body(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["code"].as_str().expect("a code").to_string()
    }

    pub async fn register(
        &self,
        subject: &str,
        code: &str,
        phone: &str,
        outlet_name: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut body =
            json!({ "invitation_code": code, "phone": phone, "name": format!("Member {subject}") });
        if let Some(name) = outlet_name {
            body["outlet_name"] = name.into();
        }
        let verified = PhoneNumber::parse(phone, &CountryCode::parse("44").expect("country"))
            .expect("a valid phone");
        let event = newcomer(subject)
            .claim("phone_number", verified.as_e164())
            .claim("phone_number_verified", "true");
        self.call(event.body(body)).await
    }

    /// A registered owner of a new outlet in `rep`'s zone; returns the outlet id.
    pub async fn outlet_with_owner(&self, rep_id: &str, owner: &str, phone: &str) -> String {
        let code = self
            .invite(rep(rep_id), json!({ "kind": "new_outlet" }))
            .await;
        let (status, answer) = self
            .register(owner, &code, phone, Some("Corner Shop"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["profile"]["outlet_id"]
            .as_str()
            .expect("an outlet")
            .to_string()
    }
}

pub fn rep(subject: &str) -> ApiEvent {
    ApiEvent::load("participants/create-invitation.json")
        .sub(subject)
        .role("rep")
        .region("north")
}

pub fn newcomer(subject: &str) -> ApiEvent {
    ApiEvent::load("participants/register.json")
        .sub(subject)
        .role("participant")
}

fn admin(event: &str) -> ApiEvent {
    ApiEvent::load(event)
        .sub("admin-1")
        .role("admin")
        .without_outlet()
}

fn by_phone(phone: &str) -> ApiEvent {
    admin("participants/find-member-by-phone.json").path_param("phone", phone)
}

fn import(csv: &str) -> ApiEvent {
    admin("participants/import-members.json").text_body(csv)
}

fn members_of(outlet: &str) -> ApiEvent {
    ApiEvent::load("participants/list-outlet-members.json").path_param("outletId", outlet)
}

fn codes_of(errors: &Value) -> Vec<(u64, String)> {
    errors
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rep_grows_an_outlet_from_invitation_to_owner_and_seller_and_an_admin_finds_them_by_phone(
) {
    let f = Fixture::new().await;

    let code = f
        .invite(rep("rep-n1"), json!({ "kind": "new_outlet" }))
        .await;
    let (status, owner) = f
        .register("p-owner", &code, "07700 900101", Some("Corner Shop"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    assert_eq!(owner["profile"]["outlet_role"], "owner");
    assert_eq!(owner["profile"]["phone"], "+447700900101");
    assert_eq!(owner["profile"]["region"], "north");
    assert_eq!(owner["token_refresh_required"], true);
    let outlet = owner["profile"]["outlet_id"].as_str().unwrap().to_string();

    let code = f
        .invite(
            rep("rep-n1"),
            json!({ "kind": "join_outlet", "outlet_id": outlet }),
        )
        .await;
    let (status, seller) = f.register("p-seller", &code, "+44 7700 900102", None).await;
    assert_eq!(status, StatusCode::CREATED, "{seller}");
    assert_eq!(seller["profile"]["outlet_id"], outlet.as_str());
    assert_eq!(seller["profile"]["outlet_role"], "seller");

    let owner_token = |e: ApiEvent| {
        e.sub("p-owner")
            .role("participant")
            .outlet(&outlet, "owner")
    };
    let (status, listed) = f.call(owner_token(members_of(&outlet))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut roles: Vec<(String, String)> = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["participant_id"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        vec![
            ("p-owner".into(), "owner".into()),
            ("p-seller".into(), "seller".into())
        ]
    );

    let (status, zone) = f
        .call(
            ApiEvent::load("participants/list-zone-outlets.json")
                .sub("rep-n1")
                .role("rep"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{zone}");
    let ids: Vec<&str> = zone["outlets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![outlet.as_str()]);
    assert_eq!(zone["outlets"][0]["owner_id"], "p-owner");

    let (status, found) = f.call(by_phone("07700900102")).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["id"], "p-seller");

    let (status, me) = f
        .call(owner_token(ApiEvent::load("participants/get-profile.json")))
        .await;
    assert_eq!(
        (status, me["id"].as_str()),
        (StatusCode::OK, Some("p-owner"))
    );

    let rename = ApiEvent::load("participants/update-profile.json")
        .sub("p-seller")
        .role("participant")
        .outlet(&outlet, "seller");
    let (status, updated) = f
        .call(rename.body(json!({ "name": "Bo Seller", "email": "" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["email"].as_str()),
        (Some("Bo Seller"), None)
    );
    let (_, listed) = f.call(owner_token(members_of(&outlet))).await;
    assert!(
        listed["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "Bo Seller"),
        "{listed}"
    );
}

#[tokio::test]
async fn sixteen_concurrent_registrations_with_one_phone_create_exactly_one_account() {
    let f = Fixture::new().await;
    let mut codes = Vec::new();
    for _ in 0..16 {
        codes.push(
            f.invite(rep("rep-n1"), json!({ "kind": "individual" }))
                .await,
        );
    }
    let attempts = codes.iter().enumerate().map(|(i, code)| {
        let f = &f;
        async move {
            (
                format!("p-racer-{i}"),
                f.register(&format!("p-racer-{i}"), code, "07700 900555", None)
                    .await,
            )
        }
    });
    let results = join_all(attempts).await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, (s, _))| *s == StatusCode::CREATED)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, (status, body)) in results
        .iter()
        .filter(|(_, (s, _))| *s != StatusCode::CREATED)
    {
        assert_eq!(
            (*status, body["code"].as_str()),
            (StatusCode::CONFLICT, Some("phone_taken")),
            "{body}"
        );
    }
    let (_, found) = f.call(by_phone("+447700900555")).await;
    assert_eq!(found["id"].as_str(), Some(winners[0].as_str()));
}

#[tokio::test]
async fn an_invitation_registers_one_person_and_a_person_registers_once() {
    let f = Fixture::new().await;
    let code = f
        .invite(rep("rep-n1"), json!({ "kind": "individual" }))
        .await;
    assert_eq!(
        f.register("p-first", &code, "07700 900201", None).await.0,
        StatusCode::CREATED
    );

    let (status, again) = f.register("p-second", &code, "07700 900202", None).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("invitation_used"))
    );
    let (status, _) = f.call(by_phone("07700900202")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused registration writes nothing"
    );

    let other = f
        .invite(rep("rep-n1"), json!({ "kind": "individual" }))
        .await;
    let (status, twice) = f.register("p-first", &other, "07700 900203", None).await;
    assert_eq!(
        (status, twice["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_registered"))
    );
    let (status, unused) = f.register("p-third", &other, "07700 900204", None).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a refused registration leaves the invitation unused: {unused}"
    );
}

#[tokio::test]
async fn unknown_and_expired_invitations_are_refused() {
    let f = Fixture::new().await;
    let (status, body) = f.register("p-1", "ZZZZ2222", "07700 900301", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("invitation_not_found"))
    );

    let code = f
        .invite(rep("rep-n1"), json!({ "kind": "individual" }))
        .await;
    f.stack
        .dynamodb()
        .update_item()
        .table_name(f.stack.table_name("ParticipantsTable"))
        .key("pk", AttributeValue::S(format!("INVITE#{code}")))
        .key("sk", AttributeValue::S("INVITE".into()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(
            ":past",
            AttributeValue::S("2020-01-01T00:00:00+00:00".into()),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = f.register("p-1", &code, "07700 900301", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invitation_expired"))
    );
}

#[tokio::test]
async fn a_rep_pages_through_the_outlets_of_their_zone_only() {
    let f = Fixture::new().await;
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(
            f.outlet_with_owner("rep-n1", &format!("p-own-{i}"), &format!("07700 90040{i}"))
                .await,
        );
    }
    f.outlet_with_owner("rep-n2", "p-elsewhere", "07700 900499")
        .await;

    let list = || {
        ApiEvent::load("participants/list-zone-outlets.json")
            .sub("rep-n1")
            .role("rep")
            .query("limit", "2")
    };
    let (status, first) = f.call(list()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, second) = f.call(list().query("cursor", &cursor)).await;
    let mut seen: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| {
            page["outlets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    mine.sort();
    assert_eq!(seen, mine);

    let other_rep = ApiEvent::load("participants/list-zone-outlets.json")
        .sub("rep-n2")
        .role("rep")
        .query("cursor", &cursor);
    let (status, body) = f.call(other_rep).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
}

#[tokio::test]
async fn a_garbage_foreign_or_ill_fitting_zone_cursor_is_400_invalid_cursor() {
    let f = Fixture::new().await;
    f.outlet_with_owner("rep-n1", "p-own-1", "07700 900401")
        .await;
    let cursor = |attrs: &[(&str, &str)]| {
        loyalty_platform::dynamo::encode_cursor(
            &attrs
                .iter()
                .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
                .collect(),
        )
    };
    let zone = "ZONE#rep-n1";
    for bad in [
        "not a cursor!".to_string(),
        "AAAA".to_string(),
        cursor(&[("pk", "ACCOUNT#rep-n1"), ("sk", "ENTRY#x"), ("lsi1sk", "t")]),
        cursor(&[("pk", "ZONE#rep-n2"), ("sk", "OUTLET#o-1")]),
        cursor(&[("pk", zone)]),
        cursor(&[("pk", zone), ("sk", "")]),
        cursor(&[("pk", zone), ("sk", "PROFILE#p-own-1")]),
        cursor(&[("pk", zone), ("sk", "OUTLET#o-1"), ("gsi1sk", "OUTLET#o-1")]),
    ] {
        let event = ApiEvent::load("participants/list-zone-outlets.json")
            .sub("rep-n1")
            .role("rep")
            .query("cursor", &bad);
        let response = f.app.handle(event.request()).await.unwrap();
        let body = body_json(&response);
        assert_eq!(
            (response.status(), body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_cursor")),
            "cursor {bad:?}: {body}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn importing_the_same_member_file_twice_creates_nothing_new() {
    let f = Fixture::new().await;
    let outlet = f
        .outlet_with_owner("rep-n1", "p-owner", "07700 900600")
        .await;
    let csv = format!(
        "phone,name,email,outlet_id,outlet_role,region\n\
         +44 7700 900601,Ann,ann@example.com,,,north\n\
         07700 900602,\"Diaz, Cy\",,{outlet},seller,north\n\
         0044 7700 900603,Bo,,,,south\n"
    );
    let (status, first) = f.call(import(&csv)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first, json!({ "created": 3, "unchanged": 0 }));
    let (status, second) = f.call(import(&csv)).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second, json!({ "created": 0, "unchanged": 3 }));

    let (_, found) = f.call(by_phone("07700900602")).await;
    assert_eq!(
        (found["source"].as_str(), found["outlet_role"].as_str()),
        (Some("import"), Some("seller"))
    );
    assert!(found["id"].as_str().unwrap().starts_with("m-"));
    let owner = members_of(&outlet)
        .sub("p-owner")
        .role("participant")
        .outlet(&outlet, "owner");
    let (_, listed) = f.call(owner).await;
    assert_eq!(
        listed["members"].as_array().unwrap().len(),
        2,
        "owner and the imported seller: {listed}"
    );
}

#[tokio::test]
async fn an_import_with_one_bad_line_reports_its_number_and_writes_nothing() {
    let f = Fixture::new().await;
    let csv =
        "phone,name,region\n07700 900701,Ann,north\n07700 9OO702,Bo,north\n07700 900703,Cy,north\n";
    let (status, body) = f.call(import(csv)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("import_invalid"))
    );
    assert_eq!(
        codes_of(&body["errors"]),
        vec![(3, "phone_invalid".to_string())]
    );
    for phone in ["07700900701", "07700900703"] {
        assert_eq!(
            f.call(by_phone(phone)).await.0,
            StatusCode::NOT_FOUND,
            "{phone} was written"
        );
    }
}

#[tokio::test]
async fn an_import_naming_a_phone_of_a_registered_participant_or_an_unknown_outlet_is_refused_whole(
) {
    let f = Fixture::new().await;
    let code = f
        .invite(rep("rep-n1"), json!({ "kind": "individual" }))
        .await;
    assert_eq!(
        f.register("p-self", &code, "07700 900801", None).await.0,
        StatusCode::CREATED
    );
    let csv = "phone,name,region,outlet_id,outlet_role\n\
               07700 900800,Ann,north,,\n\
               07700 900801,Self,north,,\n\
               07700 900802,Bo,north,o-nowhere,seller\n";
    let (status, body) = f.call(import(csv)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        codes_of(&body["errors"]),
        vec![
            (3, "phone_taken".to_string()),
            (4, "outlet_not_found".to_string())
        ]
    );
    assert_eq!(
        f.call(by_phone("07700900800")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, still) = f.call(by_phone("07700900801")).await;
    assert_eq!(still["id"], "p-self");
}

#[tokio::test]
async fn an_import_larger_than_one_transaction_is_written_whole_and_re_imported_as_unchanged() {
    let f = Fixture::new().await;
    let outlet = f
        .outlet_with_owner("rep-n1", "p-owner", "07700 901000")
        .await;
    let mut csv = String::from("phone,name,region,outlet_id,outlet_role\n");
    for i in 1..=120 {
        let (id, role) = if i % 2 == 0 {
            (outlet.as_str(), "seller")
        } else {
            ("", "")
        };
        csv.push_str(&format!(
            "07700 90{:04},Member {i},north,{id},{role}\n",
            1000 + i
        ));
    }
    let (status, first) = f.call(import(&csv)).await;
    assert_eq!(
        (status, first),
        (StatusCode::OK, json!({ "created": 120, "unchanged": 0 }))
    );
    let (_, second) = f.call(import(&csv)).await;
    assert_eq!(second, json!({ "created": 0, "unchanged": 120 }));
    let (status, last) = f.call(by_phone("07700901120")).await;
    assert_eq!(
        (status, last["name"].as_str()),
        (StatusCode::OK, Some("Member 120"))
    );
    let owner = members_of(&outlet)
        .sub("p-owner")
        .role("participant")
        .outlet(&outlet, "owner");
    let (_, listed) = f.call(owner).await;
    assert_eq!(
        listed["members"].as_array().unwrap().len(),
        61,
        "the owner and 60 imported sellers"
    );
}

/// The last passcode the emulator was asked to text to `e164` (its `/moto-api/data.json`).
async fn texted_code(e164: &str) -> String {
    let reply = loyalty_local::client::send(
        "GET",
        &format!("{}/moto-api/data.json", loyalty_tests::endpoint()),
        &[],
        String::new(),
    )
    .await
    .expect("the emulator answers");
    let data: Value = serde_json::from_str(&reply.body).expect("JSON");
    loyalty_local::client::last_sms_code(&data, e164).expect("an SMS with a passcode")
}

#[tokio::test]
async fn a_passcode_texted_through_sns_proves_the_phone_for_one_registration() {
    let f = Fixture::new().await;
    // A phone no other test texts: the emulator's SMS list is shared by every test.
    let (raw, e164) = ("07700 901777", "+447700901777");
    let code = f
        .invite(rep("rep-otp"), json!({ "kind": "individual" }))
        .await;
    let body = json!({ "invitation_code": code, "phone": raw, "name": "Otto" });
    let (status, answer) = f.call(newcomer("p-otp").body(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "phone_not_proven");

    let ask = ApiEvent::load("participants/request-passcode.json")
        .sub("p-otp")
        .body(json!({ "phone": raw }));
    let (status, answer) = f.call(ask).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let texted = texted_code(e164).await;
    let verify = |code: &str| {
        ApiEvent::load("participants/verify-passcode.json")
            .sub("p-otp")
            .body(json!({ "phone": e164, "code": code }))
    };
    let (status, answer) = f.call(verify(&texted)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["phone"], e164);

    let (status, answer) = f.call(newcomer("p-otp").body(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let proof = f
        .stack
        .dynamodb()
        .get_item()
        .table_name(f.stack.table_name("ParticipantsTable"))
        .key("pk", AttributeValue::S("PROOF#p-otp".into()))
        .key("sk", AttributeValue::S(format!("PHONE#{e164}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(proof.item.is_none(), "the proof is used up");
    let (status, answer) = f.call(verify(&texted)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}
