//! The demo programme `loyalty-local up` starts with, created through the API routes with
//! minted tokens (never by writing raw items), so that it is always valid data.
//!
//! A rep in region `north` invites an outlet owner, who registers and so creates an outlet;
//! the rep then invites a seller into that outlet, and the participant the sample events name
//! (`p-7f3a9c`) as an individual. An admin orders a batch of pack codes, which
//! the batch worker generates through the local queue, so a few codes can be claimed at once,
//! and sets the cashback rates of the demo marketplace, so a signed sample order earns at once,
//! and the time zones: the programme in Asia/Almaty, region north in it too, region `west`
//! in Asia/Aqtobe (both UTC+5 since 2024), so `GET /admin/regions` has something to show.
//! Running it again finds what exists.

use serde_json::{json, Value};

use crate::jwt::{DevKey, TokenRequest};
use crate::server::{dispatch, RawRequest, ServerState};

pub const ADMIN: &str = "admin-demo";
pub const REP: &str = "rep-demo";
pub const OWNER: &str = "P-owner-demo";
pub const SELLER: &str = "P-seller-demo";
/// The participant of the sample events in `events/`.
pub const SAMPLE_PARTICIPANT: &str = "p-7f3a9c";
pub const REGION: &str = "north";
/// Where the demo counts its days, weeks and months (PUT, so seeding again changes nothing).
const ZONES: [(&str, &str); 3] = [
    ("/admin/programme", "Asia/Almaty"),
    ("/admin/regions/north", "Asia/Almaty"),
    ("/admin/regions/west", "Asia/Aqtobe"),
];

pub struct Demo {
    /// (label, bearer token), in the order to print them.
    pub tokens: Vec<(String, String)>,
    pub outlet_id: String,
    /// A few printed codes of the demo batch, ready to claim.
    pub codes: Vec<String>,
}

impl Demo {
    /// Shell lines that set `ADMIN_TOKEN`, `REP_TOKEN`, `OWNER_TOKEN` and `SELLER_TOKEN`.
    pub fn export_lines(&self) -> Vec<String> {
        self.tokens
            .iter()
            .map(|(label, token)| format!("export {}_TOKEN={token}", label.to_uppercase()))
            .collect()
    }

    /// Example calls using the variables of [`Demo::export_lines`].
    pub fn curl_lines(&self, base: &str) -> Vec<String> {
        vec![
            format!("curl -s {base}/me -H \"Authorization: Bearer $SELLER_TOKEN\""),
            format!("curl -s {base}/me/balance -H \"Authorization: Bearer $SELLER_TOKEN\""),
            format!("curl -s {base}/outlets/{}/members -H \"Authorization: Bearer $OWNER_TOKEN\"", self.outlet_id),
            format!("curl -s {base}/zone/outlets -H \"Authorization: Bearer $REP_TOKEN\""),
            format!(
                "curl -s -X POST {base}/admin/batches -H \"Authorization: Bearer $ADMIN_TOKEN\" -H 'content-type: application/json' \\\n    -d '{{\"sku\": \"COLA-05\", \"product_type\": \"Cola 0.5 l PET\", \"pack_size\": \"0.5 l\", \"points_per_pack\": 10, \"region\": \"{REGION}\", \"valid_until\": \"2030-12-31\", \"count\": 100}}'"
            ),
            format!("curl -s {base}/admin/batches/1 -H \"Authorization: Bearer $ADMIN_TOKEN\""),
            format!("curl -s {base}/admin/regions -H \"Authorization: Bearer $ADMIN_TOKEN\""),
        ]
        .into_iter()
        .chain(self.codes.iter().take(1).map(|code| {
            format!(
                "curl -s -X POST {base}/claims -H \"Authorization: Bearer $SELLER_TOKEN\" -H 'content-type: application/json' -d '{{\"code\": \"{code}\"}}'"
            )
        }))
        .chain([format!("curl -s {base}/me/ledger -H \"Authorization: Bearer $SELLER_TOKEN\"")])
        .collect()
    }
}

fn mint(
    key: &DevKey,
    role: &str,
    sub: &str,
    outlet: Option<(&str, &str)>,
    region: Option<&str>,
) -> String {
    sign(
        key,
        TokenRequest {
            role: role.into(),
            sub: sub.into(),
            outlet: outlet.map(|(id, r)| (id.to_string(), r.to_string())),
            region: region.map(String::from),
            scope: None,
            phone: None,
            participant_id: None,
            ttl_hours: 12,
        },
    )
}

fn sign(key: &DevKey, request: TokenRequest) -> String {
    key.sign(&request.claims(chrono::Utc::now().timestamp()))
}

async fn call(
    state: &ServerState,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut headers = vec![
        ("authorization".to_string(), format!("Bearer {token}")),
        ("host".to_string(), "localhost".to_string()),
    ];
    if body.is_some() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    let raw = RawRequest {
        method: method.into(),
        path: path.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        source_ip: "127.0.0.1".into(),
        ..RawRequest::default()
    };
    let (reply, _) = dispatch(state, raw).await;
    let status = reply.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(reply.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn expect(what: &str, (status, body): (u16, Value), ok: &[u16]) -> Result<Value, String> {
    if ok.contains(&status) {
        Ok(body)
    } else {
        Err(format!("demo seed: {what} answered {status}: {body}"))
    }
}

/// Registers `subject` with a fresh invitation unless they are registered already; returns
/// their profile.
async fn participant(
    state: &ServerState,
    key: &DevKey,
    rep: &str,
    invitation: Value,
    subject: &str,
    registration: Value,
) -> Result<Value, String> {
    let bare = mint(key, "participant", subject, None, None);
    let (status, profile) = call(state, "GET", "/me", &bare, None).await?;
    if status == 200 {
        return Ok(profile);
    }
    let invitation = expect(
        "POST /invitations",
        call(state, "POST", "/invitations", rep, Some(invitation)).await?,
        &[201],
    )?;
    let mut registration = registration;
    registration["invitation_code"] = invitation["code"].clone();
    // The demo members sign in as with Cognito's verified phone: no passcode to type.
    let phone = registration["phone"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let verified = sign(
        key,
        TokenRequest {
            role: "participant".into(),
            sub: subject.into(),
            outlet: None,
            region: None,
            scope: None,
            phone: Some((phone, true)),
            participant_id: None,
            ttl_hours: 12,
        },
    );
    let registered = expect(
        "POST /registrations",
        call(
            state,
            "POST",
            "/registrations",
            &verified,
            Some(registration),
        )
        .await?,
        &[201],
    )?;
    Ok(registered["profile"].clone())
}

/// The demo batch: 50 codes for region north, generated by the batch worker through the local
/// queue; returns a few of its printed codes read back from the printer's CSV export.
async fn demo_codes(
    state: &ServerState,
    admin: &str,
    s3: &aws_sdk_s3::Client,
) -> Result<Vec<String>, String> {
    const BATCH: &str = "/admin/batches/1";
    let (status, _) = call(state, "GET", BATCH, admin, None).await?;
    if status == 404 {
        let valid_until = (chrono::Utc::now() + chrono::Duration::days(365)).date_naive();
        let order = json!({
            "sku": "COLA-05", "product_type": "Cola 0.5 l PET", "pack_size": "0.5 l",
            "points_per_pack": 10, "region": REGION, "valid_until": valid_until.to_string(), "count": 50
        });
        expect(
            "POST /admin/batches",
            call(state, "POST", "/admin/batches", admin, Some(order)).await?,
            &[202],
        )?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let batch = loop {
        let batch = expect(
            "GET /admin/batches/1",
            call(state, "GET", BATCH, admin, None).await?,
            &[200],
        )?;
        if batch["status"] == "ready" {
            break batch;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "demo seed: the demo batch was not generated within a minute: {batch}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    let bucket = batch["exports_bucket"].as_str().unwrap_or_default();
    let key = batch["exports"][0]["csv_key"].as_str().unwrap_or_default();
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("demo seed: reading s3://{bucket}/{key}: {e}"))?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .into_bytes();
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').next())
        .take(3)
        .map(String::from)
        .collect())
}

pub async fn demo(
    state: &ServerState,
    key: &DevKey,
    s3: &aws_sdk_s3::Client,
) -> Result<Demo, String> {
    let rep = mint(key, "rep", REP, None, Some(REGION));
    let owner = participant(
        state,
        key,
        &rep,
        json!({ "kind": "new_outlet" }),
        OWNER,
        json!({ "phone": "+447700900001", "name": "Olivia Owner", "outlet_name": "Corner Shop" }),
    )
    .await?;
    let outlet_id = owner["outlet_id"]
        .as_str()
        .ok_or_else(|| format!("demo seed: the owner's profile has no outlet: {owner}"))?
        .to_string();
    let seller = participant(
        state,
        key,
        &rep,
        json!({ "kind": "join_outlet", "outlet_id": outlet_id }),
        SELLER,
        json!({ "phone": "+447700900002", "name": "Sam Seller" }),
    )
    .await?;
    // The participant the sample events name, so that a signed sample order earns cashback
    // at once: only a registered participant earns.
    participant(
        state,
        key,
        &rep,
        json!({ "kind": "individual" }),
        SAMPLE_PARTICIPANT,
        json!({ "phone": "+447700900003", "name": "Pat Sample" }),
    )
    .await?;
    let region = |p: &Value| p["region"].as_str().map(String::from);
    let owner_region = region(&owner);
    let seller_region = region(&seller);
    let admin = mint(key, "admin", ADMIN, None, None);
    let codes = demo_codes(state, &admin, s3).await?;
    // The demo marketplace's cashback rates, so a signed sample order earns at once.
    let partner = json!({
        "name": "Demo Market", "default_rate_bp": 300,
        "category_rates_bp": { "beverages": 500 }, "active": true
    });
    expect(
        "PUT /admin/partners/demo-market",
        call(
            state,
            "PUT",
            "/admin/partners/demo-market",
            &admin,
            Some(partner),
        )
        .await?,
        &[200],
    )?;
    for (path, zone) in ZONES {
        expect(
            &format!("PUT {path}"),
            call(
                state,
                "PUT",
                path,
                &admin,
                Some(json!({ "time_zone": zone })),
            )
            .await?,
            &[200],
        )?;
    }
    Ok(Demo {
        tokens: vec![
            ("admin".into(), admin),
            ("rep".into(), rep.clone()),
            (
                "owner".into(),
                mint(
                    key,
                    "participant",
                    OWNER,
                    Some((&outlet_id, "owner")),
                    owner_region.as_deref(),
                ),
            ),
            (
                "seller".into(),
                mint(
                    key,
                    "participant",
                    SELLER,
                    Some((&outlet_id, "seller")),
                    seller_region.as_deref(),
                ),
            ),
        ],
        outlet_id,
        codes,
    })
}
