//! Balances and history: `GET /me/balance`, `GET /me/ledger`, `GET /outlets/{outletId}/totals`.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use loyalty_domain::auth::{AuthError, Role};
use loyalty_domain::earning::earned_trailing_12_months;
use loyalty_domain::ids::OutletId;
use loyalty_domain::ledger::{Balance, Entry, LedgerReader};
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::metrics::{Metrics, Routes};
use loyalty_platform::stores::ledger::DynamoLedger;
use serde::Serialize;

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

/// The function: the ledger's read port `L` and the clock `C`. Lambda runs it over
/// DynamoDB and the wall clock ([`App::new`]); handler tests give it
/// [`loyalty_platform::memory::MemoryLedger`] and a `FixedClock` ([`App::with_ledger`]).
/// The wallet writes nothing and creates nothing, so there is no id source.
pub struct App<L = DynamoLedger, C = Box<dyn Clock>> {
    ledger: L,
    clock: C,
    metrics: Metrics,
}

/// The routes (the `Route` dimension of their metrics).
pub const ROUTES: Routes = Routes(&[
    ("GET /me/balance", None),
    ("GET /me/ledger", None),
    ("GET /outlets/{outletId}/totals", None),
]);

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with_clock(aws, env, Box::new(SystemClock))?.with_metrics(Metrics::emf("wallet")))
    }

    /// Tests pass their own clock: the tier window ends at its `now`.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let mut ledger = DynamoLedger::new(
            loyalty_platform::aws::dynamodb(aws),
            env.required("LEDGER_TABLE")?,
        );
        // Without a programme table the balance shows no tier.
        if let Some(table) = env.optional("PROGRAMME_TABLE") {
            ledger = ledger.with_programme(table);
        }
        Ok(App::with_ledger(ledger, clock))
    }
}

impl<L: LedgerReader, C: Clock> App<L, C> {
    /// Any ledger reader and clock: the memory ledger and a fixed clock in handler tests.
    pub fn with_ledger(ledger: L, clock: C) -> Self {
        Self {
            ledger,
            clock,
            metrics: Metrics::discard(),
        }
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The ledger, for tests to seed and inspect.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "GET /me/balance" => self.balance(req).await,
            "GET /me/ledger" => self.history(req).await,
            "GET /outlets/{outletId}/totals" => self.outlet_totals(req).await,
            _ => Err(Problem::route_not_found()),
        }
    }

    async fn balance(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?;
        let account = self.ledger.account(participant).await.problem()?;
        let tier = match self.ledger.tiers().await.problem()? {
            None => None,
            Some(tiers) => {
                let earned = earned_trailing_12_months(&account.earned_by_month, self.clock.now());
                let tier = tiers.tier_for(earned);
                Some(TierView {
                    name: tier.name.clone(),
                    multiplier_percent: tier.multiplier_percent,
                    earned_last_12_months: earned,
                })
            }
        };
        let outlet = caller.outlet.as_ref().map(|(o, _)| o.as_str());
        Ok(http::json(
            StatusCode::OK,
            &BalanceView {
                participant_id: participant.as_str(),
                outlet_id: outlet,
                balance: account.balance,
                tier,
            },
        ))
    }

    async fn history(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?;
        let limit = match http::query_param(req, "limit") {
            None => DEFAULT_PAGE,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_limit",
                        format!("limit must be a whole number from 1 to {MAX_PAGE}."),
                    )
                })?,
        };
        let page = self
            .ledger
            .history(participant, http::query_param(req, "cursor"), limit)
            .await
            .problem()?;
        let entries: Vec<EntryView> = page.items.iter().map(EntryView::from).collect();
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "entries": entries, "next_cursor": page.next_cursor }),
        ))
    }

    async fn outlet_totals(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        caller
            .require(&[Role::Participant, Role::Admin])
            .problem()?;
        let outlet = OutletId::parse(http::path_param(req, "outletId")?)
            .map_err(|e| Problem::bad_request("invalid_outlet_id", e.to_string()))?;
        // Owners see their own outlet; sellers and other outlets' people see nothing.
        if caller.role == Role::Participant && !caller.is_owner_of(&outlet) {
            return Err(Problem::from_error(AuthError::NotYours));
        }
        let totals = self.ledger.outlet_totals(&outlet).await.problem()?;
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "outlet_id": outlet.as_str(), "totals": totals }),
        ))
    }
}

#[derive(Serialize)]
struct BalanceView<'a> {
    participant_id: &'a str,
    outlet_id: Option<&'a str>,
    #[serde(flatten)]
    balance: Balance,
    tier: Option<TierView>,
}

/// The tier now, from points earned over the trailing 12 months; settlement recalculates
/// nothing, since it is derived at read time.
#[derive(Serialize)]
struct TierView {
    name: String,
    multiplier_percent: u32,
    earned_last_12_months: u64,
}

#[derive(Serialize)]
struct EntryView<'a> {
    entry_id: &'a str,
    kind: &'static str,
    amount: u64,
    /// The signed change to spendable points, so a client can render +50 / −30.
    available_change: i64,
    pending_change: i64,
    source: &'a str,
    created_at: String,
    expires_on: Option<String>,
}

impl<'a> From<&'a Entry> for EntryView<'a> {
    fn from(e: &'a Entry) -> Self {
        let d = e.delta();
        Self {
            entry_id: e.id.as_str(),
            kind: e.kind.as_str(),
            amount: e.amount.get(),
            available_change: d.available,
            pending_change: d.pending,
            source: &e.source,
            created_at: e.created_at.to_rfc3339(),
            expires_on: e.expires_on.map(|d| d.to_string()),
        }
    }
}
