//! Partner marketplaces report orders here; participants earn cashback on them.
//!
//! - `POST /webhooks/partners/{partnerId}`: no JWT. The partner signs the raw body (see
//!   `loyalty_domain::cashback` for the `X-Loyalty-Signature` format). An unknown partner, a
//!   bad signature or a timestamp more than five minutes off is a 401 before anything is read
//!   or written. The event id makes the route idempotent (it needs no `Idempotency-Key`): a
//!   replay answers 200 with the first result and writes nothing.
//! - `PUT /admin/partners/{partnerId}`: a partner's name, rates (basis points) and status.
//! - `PUT /admin/regions/{regionId}/minimum-order`: a region's minimum order (minor units).
//! - `POST /admin/partners/{partnerId}/budget` (admin, `Idempotency-Key`; `GET` reads it): give the partner's
//!   cashback fund a budget, or top it up. Pending cashback the fund cannot cover is recorded
//!   as no cashback with the reason `budget_exhausted`. The key names the top-up, so a
//!   retry funds nothing twice; every answer states the fund as it is now.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use loyalty_domain::auth::Role;
use loyalty_domain::cashback::{
    self, verify, CashbackError, CashbackPolicy, CashbackSettings, CashbackStore, MinimumOrder,
    OrderEvent, PartnerId, PartnerSecrets, PartnerTerms, SIGNATURE_HEADER,
};
use loyalty_domain::ids::RegionId;
use loyalty_domain::ledger::{Budgets, ProgrammeAccount};
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_domain::{Classified, Points};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::metrics::{self, Dim, Metrics, Point, Routes};
use loyalty_platform::stores::cashback::{
    CashbackTables, DynamoCashback, DEFAULT_SETTINGS_TTL_SECS,
};
use loyalty_platform::stores::partner_secrets::PartnerSecretsSource;
use serde::{Deserialize, Serialize};

/// The function, generic over its store and clock: `App::new` (for `main.rs`), `with_clock`
/// and `with_dynamodb` build the DynamoDB app; `with_store` takes any store (the memory
/// adapter in handler tests). The store is every port the routes use: orders
/// ([`CashbackStore`]), partners and minimums ([`CashbackSettings`]) and partners' funds
/// ([`Budgets`]), so every route answers the same on both.
pub struct App<S = DynamoCashback, C = Box<dyn Clock>> {
    store: S,
    policy: CashbackPolicy,
    secrets: PartnerSecretsSource,
    clock: C,
    metrics: Metrics,
}

/// The routes; a webhook's 4xx answers count as rejections by problem code.
pub const ROUTES: Routes = Routes(&[
    (
        "POST /webhooks/partners/{partnerId}",
        Some(&metrics::WEBHOOK_REJECTIONS),
    ),
    ("PUT /admin/partners/{partnerId}", None),
    ("PUT /admin/regions/{regionId}/minimum-order", None),
    ("POST /admin/partners/{partnerId}/budget", None),
    ("GET /admin/partners/{partnerId}/budget", None),
]);

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with_clock(aws, env, Box::new(SystemClock))?
            .with_metrics(Metrics::emf("partner-webhooks")))
    }

    /// Tests pass their own clock.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Self::with_dynamodb(loyalty_platform::aws::dynamodb(aws), env, clock)
    }

    /// Benchmarks pass a client with a request-counting interceptor.
    pub fn with_dynamodb(
        dynamodb: aws_sdk_dynamodb::Client,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let tables = CashbackTables {
            programme: env.required("PROGRAMME_TABLE")?,
            activity: env.required("ACTIVITY_TABLE")?,
            ledger: env.required("LEDGER_TABLE")?,
            outbox: env.required("OUTBOX_TABLE")?,
            participants: env.required("PARTICIPANTS_TABLE")?,
        };
        let policy = policy(env)?;
        let ttl: i64 = env.parse_or("CASHBACK_SETTINGS_CACHE_SECS", DEFAULT_SETTINGS_TTL_SECS)?;
        if ttl < 0 {
            return Err(ConfigError::Invalid {
                key: "CASHBACK_SETTINGS_CACHE_SECS".into(),
                reason: "must be 0 or more".into(),
            });
        }
        let store = DynamoCashback::new(dynamodb, tables, policy)
            .with_settings_ttl(chrono::Duration::seconds(ttl));
        Ok(App::with_store(
            store,
            policy,
            PartnerSecretsSource::from_env(env)?,
            clock,
        ))
    }
}

/// The cashback settings from the function's environment (defaults where unset).
pub fn policy(env: &Env) -> Result<CashbackPolicy, ConfigError> {
    let defaults = CashbackPolicy::default();
    let minor_units_per_point: u64 = env.parse_or(
        "CASHBACK_MINOR_UNITS_PER_POINT",
        defaults.minor_units_per_point,
    )?;
    if minor_units_per_point == 0 {
        return Err(ConfigError::Invalid {
            key: "CASHBACK_MINOR_UNITS_PER_POINT".into(),
            reason: "must be at least 1".into(),
        });
    }
    let default_minimum = env.parse_or(
        "CASHBACK_DEFAULT_MINIMUM_ORDER_MINOR",
        defaults.default_minimum_order.get(),
    )?;
    Ok(CashbackPolicy {
        minor_units_per_point,
        monthly_cap: Points(
            env.parse_or("CASHBACK_MONTHLY_CAP_POINTS", defaults.monthly_cap.get())?,
        ),
        default_minimum_order: MinimumOrder::parse(default_minimum).map_err(|e| {
            ConfigError::Invalid {
                key: "CASHBACK_DEFAULT_MINIMUM_ORDER_MINOR".into(),
                reason: e.to_string(),
            }
        })?,
    })
}

impl<S: CashbackStore + CashbackSettings + Budgets, C: Clock> App<S, C> {
    /// Any store and clock: the memory adapter and a fixed clock in handler tests.
    pub fn with_store(
        store: S,
        policy: CashbackPolicy,
        secrets: PartnerSecretsSource,
        clock: C,
    ) -> Self {
        Self {
            store,
            policy,
            secrets,
            clock,
            metrics: Metrics::discard(),
        }
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The store, for tests to inspect what a request wrote.
    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /webhooks/partners/{partnerId}" => self.webhook(req).await,
            "PUT /admin/partners/{partnerId}" => self.put_partner(req).await,
            "PUT /admin/regions/{regionId}/minimum-order" => self.put_minimum_order(req).await,
            "POST /admin/partners/{partnerId}/budget" => self.fund_partner(req).await,
            "GET /admin/partners/{partnerId}/budget" => self.get_partner_budget(req).await,
            _ => Err(Problem::route_not_found()),
        }
    }

    async fn webhook(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let now = self.clock.now();
        // An id that cannot be a partner's is an unknown partner, not bad input: the caller
        // is unauthenticated until a signature says otherwise.
        let partner = PartnerId::parse(http::path_param(req, "partnerId")?)
            .map_err(|_| CashbackError::UnknownPartner)
            .problem()?;
        let secret = self
            .secrets
            .secret(&partner)
            .await
            .map_err(CashbackError::from)
            .problem()?
            .ok_or(CashbackError::UnknownPartner)
            .problem()?;
        let body: &[u8] = match req.body() {
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => b"",
        };
        if let Err(refused) = verify(&secret, http::header(req, SIGNATURE_HEADER), body, now) {
            tracing::warn!(partner = %partner, code = refused.code(), "webhook refused");
            return Err(Problem::from_error(refused));
        }
        let event: OrderEvent = http::json_body(req)?;
        let applied = cashback::apply(&self.store, &self.policy, &partner, &event, now)
            .await
            .problem()?;
        let result = &applied.result;
        if !applied.replayed {
            self.metrics.emit(&cashback_points(result));
        }
        tracing::info!(
            partner = %partner,
            event_id = %event.event_id,
            order_id = %event.order_id,
            change = event.change.as_str(),
            status = %result.status,
            points = result.points,
            replayed = applied.replayed,
            "order event applied"
        );
        let mut response = http::json(StatusCode::OK, result);
        if applied.replayed {
            // The first answer again, marked as the Idempotency-Key routes mark theirs (and
            // counted as an `IdempotentReplays`, not a second credit).
            response.headers_mut().insert(
                "idempotent-replayed",
                lambda_http::http::HeaderValue::from_static("true"),
            );
        }
        Ok(response)
    }

    async fn put_partner(&self, req: &Request) -> Result<Response<Body>, Problem> {
        http::caller(req)?.require(&[Role::Admin]).problem()?;
        let partner = PartnerId::parse(http::path_param(req, "partnerId")?).problem()?;
        let terms: PartnerTerms = http::json_body::<PartnerBody>(req)?.into();
        let terms = terms.validate().problem()?;
        self.store
            .put_partner(&partner, &terms, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(
            StatusCode::OK,
            &PartnerView {
                partner_id: partner.as_str(),
                terms: &terms,
            },
        ))
    }

    async fn fund_partner(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        caller.require(&[Role::Admin]).problem()?;
        let partner = PartnerId::parse(http::path_param(req, "partnerId")?).problem()?;
        let key = http::header(req, "idempotency-key")
            .filter(|k| (8..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                Problem::bad_request(
                    "idempotency_key_missing",
                    "A budget top-up needs an Idempotency-Key header of 8 to 128 characters.",
                )
            })?;
        let body: BudgetBody = http::json_body(req)?;
        let amount = Points::parse(body.amount)
            .ok()
            .filter(|p| *p > Points::ZERO)
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid_amount",
                    "amount must be a positive number of points.",
                )
            })?;
        if self.store.partner(&partner).await.problem()?.is_none() {
            return Err(partner_not_found());
        }
        let account = ProgrammeAccount::PartnerFund(partner);
        let funding_id = format!("{}:{key}", caller.subject.as_str());
        self.store
            .fund_budget(&account, amount, &funding_id, self.clock.now())
            .await
            .problem()?;
        let balance = self.store.programme_balance(&account).await.problem()?;
        tracing::info!(account = %account, amount = amount.get(), "budget funded");
        Ok(http::json(StatusCode::OK, &balance.view(&account)))
    }

    /// What is left of the partner's cashback fund, what was funded and paid out.
    async fn get_partner_budget(&self, req: &Request) -> Result<Response<Body>, Problem> {
        http::caller(req)?.require(&[Role::Admin]).problem()?;
        let partner = PartnerId::parse(http::path_param(req, "partnerId")?).problem()?;
        if self.store.partner(&partner).await.problem()?.is_none() {
            return Err(partner_not_found());
        }
        let account = ProgrammeAccount::PartnerFund(partner);
        let balance = self.store.programme_balance(&account).await.problem()?;
        Ok(http::json(StatusCode::OK, &balance.view(&account)))
    }

    async fn put_minimum_order(&self, req: &Request) -> Result<Response<Body>, Problem> {
        http::caller(req)?.require(&[Role::Admin]).problem()?;
        let region = RegionId::parse(http::path_param(req, "regionId")?).map_err(|e| {
            Problem::bad_request("invalid_id", "The region id is not valid.")
                .with_detail(e.to_string())
        })?;
        let body: MinimumBody = http::json_body(req)?;
        let minimum = MinimumOrder::parse(body.amount_minor).problem()?;
        self.store
            .put_minimum_order(&region, minimum, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "region_id": region.as_str(), "amount_minor": minimum.get() }),
        ))
    }
}

/// A created order's cashback credited, and the limit that cut or stopped it (never for a
/// replayed event: that is an `IdempotentReplays`).
fn cashback_points(result: &cashback::EventResult) -> Vec<Point> {
    let mut points = Vec::new();
    if result.change == "created" && result.points > 0 {
        points.push(Point::new(&metrics::CASHBACK_CREDITS, 1, &[]));
    }
    let limit = match result.reason.as_deref() {
        Some("monthly_cap_reached") => Some("monthly_cap_reached"),
        Some("capped") => Some("capped"),
        Some("budget_exhausted") => Some("budget_exhausted"),
        _ => None,
    };
    if let Some(reason) = limit {
        points.push(Point::new(
            &metrics::LIMIT_HITS,
            1,
            &[(Dim::Reason, reason)],
        ));
    }
    points
}

fn partner_not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "partner_not_found",
        "No partner with that id: create it with PUT /admin/partners/{partnerId} first.",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    amount: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartnerBody {
    name: String,
    default_rate_bp: u32,
    #[serde(default)]
    category_rates_bp: std::collections::BTreeMap<String, u32>,
    #[serde(default = "active_by_default")]
    active: bool,
}

fn active_by_default() -> bool {
    true
}

impl From<PartnerBody> for PartnerTerms {
    fn from(b: PartnerBody) -> Self {
        PartnerTerms {
            name: b.name.trim().to_string(),
            default_rate_bp: b.default_rate_bp,
            category_rates_bp: b.category_rates_bp,
            active: b.active,
        }
    }
}

#[derive(Serialize)]
struct PartnerView<'a> {
    partner_id: &'a str,
    #[serde(flatten)]
    terms: &'a PartnerTerms,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinimumBody {
    amount_minor: u64,
}
