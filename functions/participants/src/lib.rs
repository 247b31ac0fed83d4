//! Invitations, passcodes, registration, profiles, outlets and member import
//! (ParticipantsFunction).
//!
//! Every route establishes the caller first (401), then the role (403), then reads the
//! request (400), so that no one learns anything about a route they may not use.

use chrono::{DateTime, Utc};
use lambda_http::http::{header::CONTENT_TYPE, StatusCode};
use lambda_http::{Body, Request, Response};
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::fraud::FraudPolicy;
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::participant::{
    self as participant, Invitation, InvitationKind, InvitationRequest, Membership, Outlet,
    ParticipantError, ParticipantStore, ProfileChanges, Reason, RegistrationForm, Standing,
};
use loyalty_domain::passcode::{
    self, Passcode, PasscodeError, PasscodeKey, PasscodePolicy, Passcodes, SmsSender,
};
use loyalty_domain::phone::{CountryCode, PhoneNumber};
use loyalty_domain::ports::{Clock, IdSource, RandomIds, SystemClock};
use loyalty_domain::Classified;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, caller, json, json_body, path_param, query_param, Problem};
use loyalty_platform::metrics::{self, Metrics, Point, Routes};
use loyalty_platform::stores::participants::DynamoParticipantStore;
use loyalty_platform::stores::sms::SnsSms;
use serde::{Deserialize, Serialize};

const DEFAULT_PAGE_SIZE: u32 = 50;
const ADOPTION_NOTE: &str =
    "Refresh your token: the new one carries participant_id, the imported member you now are, with its outlet_id, outlet_role and region claims.";
const TOKEN_REFRESH_NOTE: &str =
    "Refresh your token: the new one carries the outlet_id, outlet_role and region claims of this registration.";

/// The function: the participant store `S` (which also keeps passcodes and phone proofs), the
/// clock `C`, the SMS sender `M`, an id source (outlets, invitations, passcodes), the passcode
/// key, the default country code and the metrics sink, nothing else. Lambda runs it over DynamoDB, SNS, the wall
/// clock and random ids ([`App::new`]); handler tests give it
/// [`loyalty_platform::memory::MemoryParticipants`], a `FixedClock`,
/// [`loyalty_platform::memory::MemorySms`] and [`loyalty_platform::memory::SeededIds`]
/// ([`App::with_store`]). No handler reads the wall clock or draws an id itself.
pub struct App<S = DynamoParticipantStore, C = Box<dyn Clock>, M = SnsSms> {
    store: S,
    /// The limits on wrong invitation codes: those of pack-code claims.
    guessing: FraudPolicy,
    country: CountryCode,
    clock: C,
    ids: Box<dyn IdSource>,
    metrics: Metrics,
    sms: M,
    passcode_key: PasscodeKey,
    passcodes: PasscodePolicy,
}

/// The routes (the `Route` dimension of their metrics).
pub const ROUTES: Routes = Routes(&[
    ("POST /invitations", None),
    ("POST /passcodes", Some(&metrics::IDENTITY_REFUSALS)),
    ("POST /passcodes/verify", Some(&metrics::IDENTITY_REFUSALS)),
    ("POST /registrations", Some(&metrics::IDENTITY_REFUSALS)),
    (
        "POST /registrations/imported",
        Some(&metrics::IDENTITY_REFUSALS),
    ),
    ("GET /me", None),
    ("PATCH /me", None),
    ("PUT /me/phone", Some(&metrics::IDENTITY_REFUSALS)),
    ("GET /outlets/{outletId}/members", None),
    ("GET /zone/outlets", None),
    ("GET /admin/members/by-phone/{phone}", None),
    ("POST /admin/members/import", None),
    ("POST /admin/participants/{participantId}/block", None),
    ("POST /admin/participants/{participantId}/unblock", None),
]);

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(
            Self::with_ports(aws, env, Box::new(SystemClock), Box::new(RandomIds))?
                .with_metrics(Metrics::emf("participants")),
        )
    }

    /// The DynamoDB app with the caller's clock and ids (integration tests, the local runner).
    pub fn with_ports(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
        ids: Box<dyn IdSource>,
    ) -> Result<Self, ConfigError> {
        let table = env.required("PARTICIPANTS_TABLE")?;
        let store = DynamoParticipantStore::new(loyalty_platform::aws::dynamodb(aws), table);
        Ok(App {
            store,
            guessing: FraudPolicy::default(),
            country: country(env)?,
            clock,
            ids,
            metrics: Metrics::discard(),
            sms: SnsSms::new(loyalty_platform::aws::sns(aws)),
            passcode_key: passcode_key(env)?,
            passcodes: PasscodePolicy::default(),
        })
    }
}

/// The secret key of the passcode hashes (`PASSCODE_HMAC_KEY`, the stack's NoEcho parameter
/// `PasscodeHmacKey`): at least 32 characters.
pub fn passcode_key(env: &Env) -> Result<PasscodeKey, ConfigError> {
    PasscodeKey::parse(&env.required("PASSCODE_HMAC_KEY")?).map_err(|reason| ConfigError::Invalid {
        key: "PASSCODE_HMAC_KEY".into(),
        reason,
    })
}

/// The country whose numbers may be typed without a prefix (`DEFAULT_COUNTRY_CODE`).
pub fn country(env: &Env) -> Result<CountryCode, ConfigError> {
    CountryCode::parse(&env.required("DEFAULT_COUNTRY_CODE")?).map_err(|e| ConfigError::Invalid {
        key: "DEFAULT_COUNTRY_CODE".into(),
        reason: e.to_string(),
    })
}

impl<S: ParticipantStore + Passcodes, C: Clock, M: SmsSender> App<S, C, M> {
    /// Any participant store, clock, id source and SMS sender: the memory adapters, a fixed
    /// clock and seeded ids in handler tests.
    pub fn with_store(
        store: S,
        country: CountryCode,
        clock: C,
        ids: impl IdSource + 'static,
        sms: M,
        passcode_key: PasscodeKey,
    ) -> Self {
        Self {
            store,
            guessing: FraudPolicy::default(),
            country,
            clock,
            ids: Box::new(ids),
            sms,
            passcode_key,
            passcodes: PasscodePolicy::default(),
            metrics: Metrics::discard(),
        }
    }

    /// The SMS sender, for tests to read what was sent.
    pub fn sms(&self) -> &M {
        &self.sms
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Other limits on wrong invitation codes (tests of the lock).
    pub fn with_guessing(mut self, policy: FraudPolicy) -> Self {
        self.guessing = policy;
        self
    }

    /// The store, for tests to inspect what a request wrote.
    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, lambda_http::Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /invitations" => self.create_invitation(req).await,
            "POST /passcodes" => self.request_passcode(req).await,
            "POST /passcodes/verify" => self.verify_passcode(req).await,
            "POST /registrations" => self.register(req).await,
            "POST /registrations/imported" => self.adopt_imported(req).await,
            "GET /me" => self.get_profile(req).await,
            "PATCH /me" => self.update_profile(req).await,
            "PUT /me/phone" => self.change_phone(req).await,
            "GET /outlets/{outletId}/members" => self.list_outlet_members(req).await,
            "GET /zone/outlets" => self.list_zone_outlets(req).await,
            "GET /admin/members/by-phone/{phone}" => self.find_member_by_phone(req).await,
            "POST /admin/members/import" => self.import_members(req).await,
            "POST /admin/participants/{participantId}/block" => {
                self.change_standing(req, Standing::Blocked).await
            }
            "POST /admin/participants/{participantId}/unblock" => {
                self.change_standing(req, Standing::Active).await
            }
            _ => Err(Problem::route_not_found()),
        }
    }

    async fn create_invitation(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Rep, Role::Admin])?;
        let body: InvitationBody = json_body(req)?;
        let request = InvitationRequest {
            kind: InvitationKind::parse(&body.kind, body.outlet_id.as_deref()).map_err(problem)?,
            region: body.region.as_deref().map(parse_region).transpose()?,
            zone: body.zone.as_deref().map(parse_zone).transpose()?,
        };
        let invitation =
            participant::invite(&self.store, &caller, request, &*self.ids, self.clock.now())
                .await
                .map_err(problem)?;
        // Never the code, not even in part: it is a password until used.
        tracing::info!(by = %caller.subject, kind = invitation.kind.as_str(), "invitation created");
        Ok(json(
            StatusCode::CREATED,
            &InvitationView::from(&invitation),
        ))
    }

    async fn request_passcode(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: PhoneBody = json_body(req)?;
        let phone = PhoneNumber::parse(&body.phone, &self.country).map_err(Problem::from_error)?;
        let answer = passcode::request(
            &self.store,
            &self.sms,
            &self.passcode_key,
            &self.passcodes,
            &caller,
            &phone,
            &*self.ids,
            self.clock.now(),
        )
        .await
        .map_err(|e| {
            tracing::info!(participant = %caller.subject, %phone, outcome = e.code(), "passcode refused");
            Problem::from_error(e)
        })?;
        tracing::info!(participant = %caller.subject, %phone, "passcode sent");
        self.metrics
            .emit(&[Point::new(&metrics::PASSCODES_SENT, 1, &[])]);
        // 202: the SMS is on its way, and nothing here says whether the phone is known.
        Ok(json(StatusCode::ACCEPTED, &answer))
    }

    async fn verify_passcode(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: PasscodeVerifyBody = json_body(req)?;
        let phone = PhoneNumber::parse(&body.phone, &self.country).map_err(Problem::from_error)?;
        let code = Passcode::parse(&body.code).map_err(Problem::from_error)?;
        let proof = passcode::verify(
            &self.store,
            &self.passcode_key,
            &self.passcodes,
            &caller,
            &phone,
            &code,
            self.clock.now(),
        )
        .await
        .map_err(|e: PasscodeError| {
            tracing::info!(participant = %caller.subject, %phone, outcome = e.code(), "passcode refused");
            Problem::from_error(e)
        })?;
        tracing::info!(participant = %caller.subject, %phone, "phone proven");
        let view = ProvenView {
            phone: phone.as_e164().to_string(),
            proven_until: DateTime::from_timestamp(proof.expires_at, 0).unwrap_or_default(),
        };
        Ok(json(StatusCode::OK, &view))
    }

    async fn register(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: RegistrationBody = json_body(req)?;
        let form = RegistrationForm::parse(
            &body.invitation_code,
            &body.phone,
            &body.name,
            body.email.as_deref(),
            body.outlet_name.as_deref(),
            &self.country,
        )
        .map_err(problem)?;
        let outlet_id =
            OutletId::parse(&self.ids.new_id("o")).expect("random ids are valid outlet ids");
        let phone = form.phone.clone();
        let profile = participant::register(
            &self.store,
            &self.guessing,
            &caller,
            http::source_ip(req),
            form,
            outlet_id,
            self.clock.now(),
        )
        .await
        .map_err(|e| {
            tracing::info!(participant = %caller.subject, %phone, outcome = e.code(), "registration refused");
            problem(e)
        })?;
        tracing::info!(participant = %profile.id, %phone, "registered");
        let view = RegisteredView {
            profile: ProfileView::from(&profile),
            token_refresh_required: true,
            note: TOKEN_REFRESH_NOTE,
        };
        Ok(json(StatusCode::CREATED, &view))
    }

    async fn adopt_imported(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: PhoneBody = json_body(req)?;
        let phone = PhoneNumber::parse(&body.phone, &self.country).map_err(Problem::from_error)?;
        let profile = participant::adopt_imported(&self.store, &caller, phone, self.clock.now())
            .await
            .map_err(|e| {
                tracing::info!(subject = %caller.subject, outcome = e.code(), "adoption refused");
                problem(e)
            })?;
        tracing::info!(subject = %caller.subject, participant = %profile.id, "imported member adopted");
        let view = RegisteredView {
            profile: ProfileView::from(&profile),
            token_refresh_required: true,
            note: ADOPTION_NOTE,
        };
        Ok(json(StatusCode::OK, &view))
    }

    async fn get_profile(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let profile = participant::my_profile(&self.store, &caller)
            .await
            .map_err(problem)?;
        Ok(json(StatusCode::OK, &ProfileView::from(&profile)))
    }

    async fn update_profile(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: ProfileBody = json_body(req)?;
        if body.phone.is_some() {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "phone_not_editable",
                "The phone number is your identity: prove the new one, then change it with PUT /me/phone.",
            ));
        }
        let changes =
            ProfileChanges::parse(body.name.as_deref(), body.email.as_deref()).map_err(problem)?;
        let profile = participant::update_profile(&self.store, &caller, changes, self.clock.now())
            .await
            .map_err(problem)?;
        Ok(json(StatusCode::OK, &ProfileView::from(&profile)))
    }

    async fn change_phone(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant])?;
        let body: PhoneBody = json_body(req)?;
        let phone = PhoneNumber::parse(&body.phone, &self.country).map_err(Problem::from_error)?;
        let profile = participant::change_phone(&self.store, &caller, phone, self.clock.now())
            .await
            .map_err(|e| {
                tracing::info!(participant = %caller.subject, outcome = e.code(), "phone change refused");
                problem(e)
            })?;
        tracing::info!(participant = %profile.id, phone = %profile.phone, "phone changed");
        Ok(json(StatusCode::OK, &ProfileView::from(&profile)))
    }

    async fn list_outlet_members(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Participant, Role::Rep, Role::Admin])?;
        let outlet = OutletId::parse(path_param(req, "outletId")?)
            .map_err(|_| problem(ParticipantError::OutletNotFound))?;
        let members = participant::outlet_members(&self.store, &caller, &outlet)
            .await
            .map_err(problem)?;
        let view = MembersView {
            outlet_id: outlet.to_string(),
            members: members.iter().map(MemberView::from).collect(),
        };
        Ok(json(StatusCode::OK, &view))
    }

    async fn list_zone_outlets(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Rep])?;
        let limit = match query_param(req, "limit") {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_limit",
                        "limit must be a whole number from 1 to 100.",
                    )
                })?,
        };
        let page =
            participant::zone_outlets(&self.store, &caller, query_param(req, "cursor"), limit)
                .await
                .map_err(problem)?;
        let view = OutletsView {
            outlets: page.items.iter().map(OutletView::from).collect(),
            next_cursor: page.next_cursor,
        };
        Ok(json(StatusCode::OK, &view))
    }

    async fn find_member_by_phone(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Admin])?;
        let raw = percent_decode(path_param(req, "phone")?);
        let phone = PhoneNumber::parse(&raw, &self.country).map_err(Problem::from_error)?;
        let profile = participant::find_by_phone(&self.store, &caller, &phone)
            .await
            .map_err(problem)?;
        Ok(json(StatusCode::OK, &ProfileView::from(&profile)))
    }

    async fn change_standing(
        &self,
        req: &Request,
        standing: Standing,
    ) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Admin])?;
        let id = ParticipantId::parse(path_param(req, "participantId")?)
            .map_err(|_| problem(ParticipantError::ParticipantNotFound))?;
        let body: StandingBody = json_body(req)?;
        let reason = Reason::parse(&body.reason).map_err(problem)?;
        let profile = participant::change_standing(
            &self.store,
            &caller,
            &id,
            standing,
            reason,
            self.clock.now(),
        )
        .await
        .map_err(problem)?;
        // The reason is free text an admin typed: it stays out of the logs.
        tracing::info!(by = %caller.subject, participant = %id, standing = standing.as_str(), "standing changed");
        Ok(json(StatusCode::OK, &ProfileView::from(&profile)))
    }

    async fn import_members(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = authorised(req, &[Role::Admin])?;
        let content_type = http::header(req, CONTENT_TYPE.as_str()).unwrap_or("text/csv");
        if !content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/csv")
        {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the member list as text/csv.",
            ));
        }
        let rows =
            participant::parse_import(http::text_body(req)?, &self.country).map_err(problem)?;
        let summary = participant::import_members(&self.store, &caller, rows, self.clock.now())
            .await
            .map_err(problem)?;
        tracing::info!(by = %caller.subject, created = summary.created, unchanged = summary.unchanged, "members imported");
        Ok(json(StatusCode::OK, &summary))
    }
}

fn authorised(req: &Request, roles: &[Role]) -> Result<Caller, Problem> {
    let caller = caller(req)?;
    caller.require(roles).map_err(Problem::from_error)?;
    Ok(caller)
}

/// Renders a domain error; a refused import lists its bad lines as `errors`.
fn problem(error: ParticipantError) -> Problem {
    let errors = match &error {
        ParticipantError::ImportInvalid { errors } => Some(serde_json::json!({ "errors": errors })),
        _ => None,
    };
    let problem = Problem::from_error(error);
    match errors {
        Some(errors) => problem.with_extensions(errors),
        None => problem,
    }
}

fn parse_region(raw: &str) -> Result<RegionId, Problem> {
    RegionId::parse(raw).map_err(|e| Problem::bad_request("invalid_region", e.to_string()))
}

fn parse_zone(raw: &str) -> Result<ParticipantId, Problem> {
    ParticipantId::parse(raw).map_err(|e| Problem::bad_request("invalid_zone", e.to_string()))
}

/// Path parameters may arrive still percent-encoded (`%2B44...`); `+` itself is literal in a path.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------- bodies and views

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvitationBody {
    kind: String,
    outlet_id: Option<String>,
    /// Admins only: reps always invite into their own region and zone.
    region: Option<String>,
    zone: Option<String>,
}

/// The body of `POST /passcodes` and of `PUT /me/phone`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhoneBody {
    phone: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasscodeVerifyBody {
    phone: String,
    code: String,
}

/// A proven phone: register with it, or change to it, before `proven_until`.
#[derive(Serialize)]
struct ProvenView {
    phone: String,
    proven_until: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationBody {
    invitation_code: String,
    phone: String,
    name: String,
    email: Option<String>,
    outlet_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StandingBody {
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    name: Option<String>,
    /// An empty string removes the address.
    email: Option<String>,
    phone: Option<serde::de::IgnoredAny>,
}

#[derive(Serialize)]
struct InvitationView {
    code: String,
    kind: &'static str,
    outlet_id: Option<String>,
    region: String,
    zone: String,
    expires_at: DateTime<Utc>,
}

impl From<&Invitation> for InvitationView {
    fn from(i: &Invitation) -> Self {
        Self {
            code: i.code.as_str().to_string(),
            kind: i.kind.as_str(),
            outlet_id: match &i.kind {
                InvitationKind::JoinOutlet(o) => Some(o.to_string()),
                _ => None,
            },
            region: i.region.to_string(),
            zone: i.zone.to_string(),
            expires_at: i.expires_at,
        }
    }
}

#[derive(Serialize)]
struct ProfileView {
    id: String,
    phone: String,
    name: String,
    email: Option<String>,
    region: String,
    zone: Option<String>,
    outlet_id: Option<String>,
    outlet_role: Option<&'static str>,
    source: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// `active` or `blocked`: only an active participant earns and spends.
    status: &'static str,
    /// The last block or unblock: why, by whom, when.
    status_reason: Option<String>,
    status_changed_by: Option<String>,
    status_changed_at: Option<DateTime<Utc>>,
}

impl From<&participant::Profile> for ProfileView {
    fn from(p: &participant::Profile) -> Self {
        Self {
            id: p.id.to_string(),
            phone: p.phone.as_e164().to_string(),
            name: p.name.as_str().to_string(),
            email: p.email.as_ref().map(|e| e.as_str().to_string()),
            region: p.region.to_string(),
            zone: p.zone.as_ref().map(ToString::to_string),
            outlet_id: p.outlet.as_ref().map(|(o, _)| o.to_string()),
            outlet_role: p.outlet.as_ref().map(|(_, r)| r.as_str()),
            source: p.source.as_str(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            status: if p.is_active() {
                Standing::Active.as_str()
            } else {
                Standing::Blocked.as_str()
            },
            status_reason: p.standing.as_ref().map(|c| c.reason.as_str().to_string()),
            status_changed_by: p.standing.as_ref().map(|c| c.by.to_string()),
            status_changed_at: p.standing.as_ref().map(|c| c.at),
        }
    }
}

#[derive(Serialize)]
struct RegisteredView {
    profile: ProfileView,
    token_refresh_required: bool,
    note: &'static str,
}

#[derive(Serialize)]
struct MemberView {
    participant_id: String,
    name: String,
    role: &'static str,
    joined_at: DateTime<Utc>,
}

impl From<&Membership> for MemberView {
    fn from(m: &Membership) -> Self {
        Self {
            participant_id: m.participant.to_string(),
            name: m.name.as_str().to_string(),
            role: m.role.as_str(),
            joined_at: m.joined_at,
        }
    }
}

#[derive(Serialize)]
struct MembersView {
    outlet_id: String,
    members: Vec<MemberView>,
}

#[derive(Serialize)]
struct OutletView {
    id: String,
    name: String,
    region: String,
    owner_id: String,
    created_at: DateTime<Utc>,
}

impl From<&Outlet> for OutletView {
    fn from(o: &Outlet) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.as_str().to_string(),
            region: o.region.to_string(),
            owner_id: o.owner.to_string(),
            created_at: o.created_at,
        }
    }
}

#[derive(Serialize)]
struct OutletsView {
    outlets: Vec<OutletView>,
    next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const EVENTS: [(&str, &str); 14] = [
        (
            "adopt-imported-member",
            include_str!("../../../events/participants/adopt-imported-member.json"),
        ),
        (
            "change-phone",
            include_str!("../../../events/participants/change-phone.json"),
        ),
        (
            "request-passcode",
            include_str!("../../../events/participants/request-passcode.json"),
        ),
        (
            "verify-passcode",
            include_str!("../../../events/participants/verify-passcode.json"),
        ),
        (
            "create-invitation",
            include_str!("../../../events/participants/create-invitation.json"),
        ),
        (
            "register",
            include_str!("../../../events/participants/register.json"),
        ),
        (
            "get-profile",
            include_str!("../../../events/participants/get-profile.json"),
        ),
        (
            "update-profile",
            include_str!("../../../events/participants/update-profile.json"),
        ),
        (
            "list-outlet-members",
            include_str!("../../../events/participants/list-outlet-members.json"),
        ),
        (
            "list-zone-outlets",
            include_str!("../../../events/participants/list-zone-outlets.json"),
        ),
        (
            "find-member-by-phone",
            include_str!("../../../events/participants/find-member-by-phone.json"),
        ),
        (
            "import-members",
            include_str!("../../../events/participants/import-members.json"),
        ),
        (
            "block-participant",
            include_str!("../../../events/participants/block-participant.json"),
        ),
        (
            "unblock-participant",
            include_str!("../../../events/participants/unblock-participant.json"),
        ),
    ];

    fn event(name: &str) -> Value {
        let (_, text) = EVENTS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("known sample event");
        serde_json::from_str(text).expect("sample events are JSON")
    }

    /// An app whose store points at a closed port: these tests must be decided before any I/O.
    fn app() -> App {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let env = Env::default()
            .with("PARTICIPANTS_TABLE", "participants")
            .with("DEFAULT_COUNTRY_CODE", "44")
            .with(
                "PASSCODE_HMAC_KEY",
                "a unit-test key of at least 32 characters",
            );
        App::new(&aws, &env).expect("valid configuration")
    }

    async fn call(event: Value) -> (StatusCode, Value) {
        let req =
            lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event");
        let res = app()
            .handle(req)
            .await
            .expect("handlers answer every request");
        let body = match res.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        (res.status(), body)
    }

    fn with_claims(mut event: Value, claims: Value) -> Value {
        event["requestContext"]["authorizer"]["jwt"]["claims"] = claims;
        event
    }

    #[tokio::test]
    async fn every_sample_event_without_a_verified_token_is_refused_with_401() {
        for (name, _) in EVENTS {
            let mut e = event(name);
            e["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
            let (status, body) = call(e).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
            assert_eq!(body["code"], "unauthenticated", "{name}");
        }
    }

    #[tokio::test]
    async fn a_token_without_a_known_role_is_refused_with_401() {
        let (status, _) = call(with_claims(
            event("get-profile"),
            json!({"sub": "p-1", "role": "superuser"}),
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn every_sample_event_with_a_role_the_route_does_not_serve_is_refused_with_403() {
        let participant = json!({"sub": "p-1", "role": "participant"});
        let rep = json!({"sub": "rep-1", "role": "rep", "region": "north"});
        let admin = json!({"sub": "admin-1", "role": "admin"});
        let cases = [
            ("adopt-imported-member", rep.clone()),
            ("adopt-imported-member", admin.clone()),
            ("change-phone", rep.clone()),
            ("change-phone", admin.clone()),
            ("request-passcode", rep.clone()),
            ("request-passcode", admin.clone()),
            ("verify-passcode", rep.clone()),
            ("verify-passcode", admin.clone()),
            ("create-invitation", participant.clone()),
            ("register", rep.clone()),
            ("register", admin.clone()),
            ("get-profile", rep.clone()),
            ("update-profile", admin.clone()),
            ("list-zone-outlets", participant.clone()),
            ("list-zone-outlets", admin.clone()),
            ("find-member-by-phone", participant.clone()),
            ("find-member-by-phone", rep.clone()),
            ("import-members", rep.clone()),
            ("import-members", participant.clone()),
            ("block-participant", rep.clone()),
            ("block-participant", participant.clone()),
            ("unblock-participant", rep),
            ("unblock-participant", participant),
        ];
        for (name, claims) in cases {
            let (status, body) = call(with_claims(event(name), claims.clone())).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} as {claims}");
            assert_eq!(body["code"], "forbidden", "{name} as {claims}");
        }
    }

    #[tokio::test]
    async fn a_registration_with_an_unusable_phone_is_400_phone_invalid() {
        let mut e = event("register");
        e["body"] = json!({"invitation_code": "K7QM4XPA", "phone": "12-34", "name": "Ann"})
            .to_string()
            .into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "phone_invalid");
        assert_eq!(
            body["type"],
            "https://loyalty-engine.dev/errors/phone_invalid"
        );
    }

    #[tokio::test]
    async fn a_registration_body_with_unknown_fields_is_400() {
        let mut e = event("register");
        e["body"] = json!({"invitation_code": "K7QM4XPA", "phone": "07700900123", "name": "Ann", "role": "admin"})
            .to_string()
            .into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_body");
    }

    #[tokio::test]
    async fn an_invitation_of_an_unknown_kind_is_400() {
        let mut e = event("create-invitation");
        e["body"] = json!({"kind": "vip"}).to_string().into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invitation_kind_invalid");
    }

    #[tokio::test]
    async fn changing_the_phone_through_the_profile_is_refused() {
        let mut e = event("update-profile");
        e["body"] = json!({"phone": "+447700900999"}).to_string().into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "phone_not_editable");
    }

    #[tokio::test]
    async fn an_import_with_bad_lines_is_422_listing_each_line_and_touches_nothing() {
        let mut e = event("import-members");
        e["body"] =
            "phone,name,region\n07700900201,Bo,north\nnot-a-phone,Cy,north\n07700900203,,north\n"
                .into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "import_invalid");
        let lines: Vec<(u64, &str)> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
            .collect();
        assert_eq!(lines, vec![(3, "phone_invalid"), (4, "name_invalid")]);
    }

    #[tokio::test]
    async fn an_import_that_is_not_csv_is_415() {
        let mut e = event("import-members");
        e["headers"]["content-type"] = "application/json".into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["code"], "unsupported_media_type");
    }

    #[tokio::test]
    async fn a_zone_listing_with_a_silly_limit_or_a_forged_cursor_is_400() {
        let mut e = event("list-zone-outlets");
        e["queryStringParameters"] = json!({"limit": "0"});
        e["rawQueryString"] = "limit=0".into();
        assert_eq!(call(e).await.1["code"], "invalid_limit");
        let mut e = event("list-zone-outlets");
        e["queryStringParameters"] =
            json!({"cursor": "eyJwayI6IlpPTkUjcmVwLTIiLCJzayI6Ik9VVExFVCNvLTEifQ"});
        e["rawQueryString"] = "cursor=eyJwayI6IlpPTkUjcmVwLTIiLCJzayI6Ik9VVExFVCNvLTEifQ".into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_cursor");
    }

    #[tokio::test]
    async fn looking_up_a_malformed_phone_is_400() {
        let mut e = event("find-member-by-phone");
        e["pathParameters"]["phone"] = "call-me".into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "phone_invalid");
    }

    #[tokio::test]
    async fn a_route_this_function_does_not_serve_is_404() {
        let mut e = event("get-profile");
        e["routeKey"] = "GET /nowhere".into();
        e["requestContext"]["routeKey"] = "GET /nowhere".into();
        assert_eq!(call(e).await.1["code"], "route_not_found");
    }

    #[tokio::test]
    async fn a_passcode_of_other_than_six_digits_is_400_passcode_malformed() {
        let mut e = event("verify-passcode");
        e["body"] = json!({"phone": "07700900123", "code": "12345"})
            .to_string()
            .into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "passcode_malformed");
    }

    #[tokio::test]
    async fn a_passcode_for_an_unusable_phone_is_400_phone_invalid() {
        let mut e = event("request-passcode");
        e["body"] = json!({"phone": "call-me"}).to_string().into();
        let (status, body) = call(e).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "phone_invalid");
    }

    #[test]
    fn percent_encoded_phone_numbers_are_decoded_and_plus_stays_literal() {
        assert_eq!(percent_decode("%2B44%207700900123"), "+44 7700900123");
        assert_eq!(percent_decode("+447700900123"), "+447700900123");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn configuration_names_what_is_missing_or_invalid() {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let err = App::new(&aws, &Env::default().with("DEFAULT_COUNTRY_CODE", "44"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("PARTICIPANTS_TABLE"));
        let env = Env::default()
            .with("PARTICIPANTS_TABLE", "t")
            .with(
                "PASSCODE_HMAC_KEY",
                "a unit-test key of at least 32 characters",
            )
            .with("DEFAULT_COUNTRY_CODE", "0044x");
        assert!(App::new(&aws, &env)
            .err()
            .unwrap()
            .to_string()
            .contains("DEFAULT_COUNTRY_CODE"));
        let env = Env::default()
            .with("PARTICIPANTS_TABLE", "t")
            .with("DEFAULT_COUNTRY_CODE", "44")
            .with("PASSCODE_HMAC_KEY", "short");
        assert!(App::new(&aws, &env)
            .err()
            .unwrap()
            .to_string()
            .contains("PASSCODE_HMAC_KEY"));
    }
}
