//! `POST /claims`: a participant claims a pack code, typed or scanned.
//!
//! A malformed code or a bad check character is refused here, before any I/O. A valid one
//! is claimed with one `TransactWriteItems` in the steady state: batch metadata comes from
//! the warm cache, and the claimant's balance version and profile facts (region, outlet)
//! from per-participant caches that the transaction's conditions check.

use std::sync::Mutex;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use loyalty_domain::claim::{
    claim, BatchInfo, ClaimAttempt, ClaimPolicy, ClaimReceipt, ClaimStatus, ClaimStore, Claimant,
    FailedAttempt, FailureCounts, Refusal,
};
use loyalty_domain::code::Code;
use loyalty_domain::fraud::{FraudPolicy, Subject};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::Balance;
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_domain::zone::Zones;
use loyalty_domain::InfraError;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::metrics::{self, Dim, Metrics, Point, Routes};
use loyalty_platform::stores::claims::{ClaimTables, DynamoClaims};
use loyalty_platform::warm::ParticipantCache;
use serde::{Deserialize, Serialize};

/// The function: the claim port `S`, the clock `C`, the settings and the metrics sink, nothing else. Lambda
/// runs it over DynamoDB and the wall clock ([`App::new`]); handler tests give it
/// [`loyalty_platform::memory::MemoryClaims`] and a `FixedClock` ([`App::with_store`]). No handler reads the wall clock: time comes from `C`. Claims draw
/// no random ids (entry and outbox ids derive from the code), so there is no id source.
pub struct App<S = DynamoClaims, C = Box<dyn Clock>> {
    claims: S,
    policy: ClaimPolicy,
    balances: ParticipantCache<Balance>,
    /// The region and outlet the claim transaction last verified per participant; before
    /// the first claim, the token's claims stand in as a hint.
    profiles: ParticipantCache<ProfileFacts>,
    clock: C,
    metrics: Metrics,
}

/// The routes, and what their refusals count as.
pub const ROUTES: Routes = Routes(&[("POST /claims", Some(&metrics::CLAIMS_REFUSED))]);

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with_clock(aws, env, Box::new(SystemClock))?
            .with_metrics(Metrics::emf("code-claim")))
    }

    /// Tests and simulations pass their own clock.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Self::with_dynamodb(loyalty_platform::aws::dynamodb(aws), env, clock)
    }

    /// Benchmarks pass a client of their own: with a request-counting interceptor, or one
    /// that answers from memory to time the handler without I/O.
    pub fn with_dynamodb(
        dynamodb: aws_sdk_dynamodb::Client,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let tables = ClaimTables {
            codes: env.required("CODES_TABLE")?,
            ledger: env.required("LEDGER_TABLE")?,
            fraud: env.required("FRAUD_TABLE")?,
            outbox: env.required("OUTBOX_TABLE")?,
            participants: env.required("PARTICIPANTS_TABLE")?,
            programme: env.required("PROGRAMME_TABLE")?,
        };
        Ok(App::with_store(
            DynamoClaims::new(dynamodb, tables),
            policy(env)?,
            clock,
        ))
    }
}

/// The claim settings from the function's environment (defaults where unset).
pub fn policy(env: &Env) -> Result<ClaimPolicy, ConfigError> {
    let defaults = FraudPolicy::default();
    let fraud = FraudPolicy {
        max_failures_per_participant: env.parse_or(
            "FRAUD_MAX_FAILURES_PER_PARTICIPANT",
            defaults.max_failures_per_participant,
        )?,
        max_failures_per_outlet: env.parse_or(
            "FRAUD_MAX_FAILURES_PER_OUTLET",
            defaults.max_failures_per_outlet,
        )?,
        failure_window_secs: env
            .parse_or("FRAUD_FAILURE_WINDOW_SECS", defaults.failure_window_secs)?,
        lock_secs: env.parse_or("FRAUD_LOCK_SECS", defaults.lock_secs)?,
        max_claims_per_hour: env
            .parse_or("FRAUD_MAX_CLAIMS_PER_HOUR", defaults.max_claims_per_hour)?,
        flag_foreign_region: env
            .parse_or("FRAUD_FLAG_FOREIGN_REGION", defaults.flag_foreign_region)?,
    };
    Ok(ClaimPolicy {
        fraud,
        credit_validity_days: env.parse_or(
            "POINTS_VALIDITY_DAYS",
            ClaimPolicy::default().credit_validity_days,
        )?,
        ..ClaimPolicy::default()
    })
}

impl<S: ClaimStore, C: Clock> App<S, C> {
    /// Any claim store and clock: the memory adapter and a fixed clock in handler tests.
    pub fn with_store(claims: S, policy: ClaimPolicy, clock: C) -> Self {
        Self {
            claims,
            policy,
            balances: ParticipantCache::default(),
            profiles: ParticipantCache::default(),
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
        &self.claims
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /claims" => self.claim(req).await,
            _ => Err(Problem::route_not_found()),
        }
    }

    async fn claim(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?.clone();
        let body: ClaimBody = http::json_body(req)?;
        let code = Code::parse(&body.code).problem()?;
        let assumed = self.profiles.get(&participant).unwrap_or(ProfileFacts {
            region: caller.region,
            outlet: caller.outlet.map(|(outlet, _)| outlet),
        });
        let claimant = Claimant {
            participant: participant.clone(),
            outlet: assumed.outlet,
            region: assumed.region,
        };
        let known = self.balances.get(&participant);
        let store = LockWatch::new(&self.claims);
        let claimed = claim(
            &store,
            &self.policy,
            claimant,
            code,
            known,
            self.clock.now(),
        )
        .await;
        let mut points = store.into_points();
        match &claimed {
            // The claimant's own code again (a retry): the first answer, counted once.
            Ok(c) if c.replayed => points.push(Point::new(
                &metrics::IDEMPOTENT_REPLAYS,
                1,
                &[(Dim::Route, "POST /claims")],
            )),
            Ok(c) => {
                points.push(Point::new(&metrics::CLAIMS_ACCEPTED, 1, &[]));
                if c.receipt.status == ClaimStatus::PendingReview {
                    points.push(Point::new(&metrics::REVIEW_FLAGS, 1, &[]));
                }
            }
            Err(_) => {}
        }
        self.metrics.emit(&points);
        let claimed = claimed.problem()?;
        self.profiles
            .put(participant.clone(), claimed.profile.clone());
        if !claimed.replayed {
            self.balances.put(participant, claimed.receipt.balance);
        }
        tracing::info!(
            code = %loyalty_domain::redact::tail(code.canonical()),
            status = claimed.receipt.status.as_str(),
            replayed = claimed.replayed,
            points = claimed.receipt.points.get(),
            "code claimed"
        );
        Ok(http::json(
            StatusCode::OK,
            &ClaimResponse::from(&claimed.receipt),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimBody {
    /// A typed code, or the text of a scanned QR code (the claim URL).
    code: String,
}

#[derive(Serialize)]
struct ClaimResponse<'a> {
    entry_id: &'a str,
    status: &'static str,
    points: u64,
    product: Product<'a>,
    balance: &'a Balance,
    claimed_at: String,
}

#[derive(Serialize)]
struct Product<'a> {
    batch: u32,
    sku: &'a str,
    product_type: &'a str,
}

impl<'a> From<&'a ClaimReceipt> for ClaimResponse<'a> {
    fn from(r: &'a ClaimReceipt) -> Self {
        Self {
            entry_id: r.entry_id.as_str(),
            status: r.status.as_str(),
            points: r.points.get(),
            product: Product {
                batch: r.batch,
                sku: &r.sku,
                product_type: &r.product_type,
            },
            balance: &r.balance,
            claimed_at: r.claimed_at.to_rfc3339(),
        }
    }
}

/// The claim store, noting each fraud lock the use case places (a [`metrics::FRAUD_LOCKS`]
/// point per subject): the use case decides to lock inside, and says only that it refused.
struct LockWatch<'a, S> {
    inner: &'a S,
    locks: Mutex<Vec<Point>>,
}

impl<'a, S> LockWatch<'a, S> {
    fn new(inner: &'a S) -> Self {
        Self {
            inner,
            locks: Mutex::new(Vec::new()),
        }
    }

    fn into_points(self) -> Vec<Point> {
        self.locks.into_inner().expect("lock watch")
    }
}

impl<S: ClaimStore> ClaimStore for LockWatch<'_, S> {
    async fn zones(&self) -> Result<Zones, InfraError> {
        self.inner.zones().await
    }

    async fn profile(
        &self,
        participant: &ParticipantId,
    ) -> Result<Option<ProfileFacts>, InfraError> {
        self.inner.profile(participant).await
    }

    async fn batch(&self, number: u32) -> Result<Option<BatchInfo>, InfraError> {
        self.inner.batch(number).await
    }

    async fn try_claim(&self, attempt: &ClaimAttempt) -> Result<Result<(), Refusal>, InfraError> {
        self.inner.try_claim(attempt).await
    }

    async fn record_failure(&self, failure: &FailedAttempt) -> Result<FailureCounts, InfraError> {
        self.inner.record_failure(failure).await
    }

    async fn record_attempt(&self, attempt: &FailedAttempt) -> Result<(), InfraError> {
        self.inner.record_attempt(attempt).await
    }

    async fn lock(&self, subject: &Subject, until: i64) -> Result<(), InfraError> {
        self.inner.lock(subject, until).await?;
        let kind = match subject {
            Subject::Participant(_) => "participant",
            Subject::Outlet(_) => "outlet",
        };
        let point = Point::new(&metrics::FRAUD_LOCKS, 1, &[(Dim::Subject, kind)]);
        self.locks.lock().expect("lock watch").push(point);
        Ok(())
    }
}
