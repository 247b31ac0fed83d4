//! Earning beyond pack codes.
//!
//! - `POST /actions` (`Idempotency-Key`): a target action earns by its rule, the tier
//!   multiplier applied, reported by whom the rule says: the participant for themselves
//!   (self-reported rules), an admin for a named participant with evidence (reviewer rules)
//!   or a service token with the `actions:report` scope (service rules);
//!   [`loyalty_domain::action::report_action`] over the [`ActionStore`] port decides, and the steady state is ONE DynamoDB round trip: rules and
//!   tiers come from [`ProgrammeCache`] (at most `PROGRAMME_CACHE_SECS` stale), the tier basis
//!   and the participant's profile facts (region, outlet) from per-participant caches
//!   (checked by the balance version and the profile check inside the write), and the key's
//!   record and the limit counters are conditions of the same write, whose refusal returns
//!   the stored answer or the counter.
//! - `GET /me/challenges` (participant): progress in every challenge
//!   ([`loyalty_domain::challenge::progress_of`] over the [`ChallengeStore`] port).
//! - `POST /admin/sell-in` (admin, `Idempotency-Key`, `text/csv` or JSON lines): validated
//!   as a whole first, so a bad line writes nothing, nor does a line imported before with
//!   other content (409 `line_changed`); then each line is credited exactly once (its entry
//!   id and its marker are the line's identity: invoice, outlet, SKU, date;
//!   [`loyalty_domain::sellin::import`] over [`SellInStore`]) and feeds challenge progress
//!   ([`loyalty_domain::challenge::record_progress`]).
//! - `GET /admin/rules`, `PUT /admin/rules/{ruleId}`, `GET|PUT /admin/tiers` (admin, over the
//!   [`EarningSettings`] port), `PUT /admin/challenges/{challengeId}` (admin, over
//!   [`ChallengeStore`]).
//! - `POST /admin/rules/{ruleId}/budget`, `POST /admin/challenges/{challengeId}/budget`
//!   (admin, `Idempotency-Key`): give a rule's accruals or a challenge's bonuses a budget, or
//!   top it up; credits it cannot cover are refused with `budget_exhausted`. Answers under
//!   Idempotency-Keys go through the [`AnswerStore`] port ([`idempotency::once`]).
//!   `GET` on the same paths (admin) reads what is funded, remaining and paid out.
//! - `PUT /admin/programme`, `PUT /admin/regions/{regionId}`, `GET /admin/regions` (admin,
//!   over the [`ZoneSettings`] port): the programme's and each region's IANA time zone, which
//!   limits per day/week/month, local validity bounds and the monthly cashback cap are
//!   counted in (seen by `POST /actions` with the rules, within `PROGRAMME_CACHE_SECS`).

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use loyalty_domain::action::{
    report_action, ActionError, ActionReport, ActionStore, KeyedRequest, Programme, Reported,
    TierBasis,
};
use loyalty_domain::auth::{AuthError, Caller, Role, REPORT_ACTIONS_SCOPE};
use loyalty_domain::challenge::{
    progress_of, record_progress, Challenge, ChallengeRequest, ChallengeStore,
};
use loyalty_domain::earning::{
    parse_sell_in_csv, parse_sell_in_json_lines, price_lines, AccrualError, Reporter, Rule, RuleId,
    RuleRequest, SellInError, Slug, Tier, Tiers,
};
use loyalty_domain::ids::{OutletId, ParticipantId, RegionId};
use loyalty_domain::ledger::{Budgets, ProgrammeAccount};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_domain::sellin::{self, ImportOutcome, SellInCredit, SellInStore};
use loyalty_domain::settings::EarningSettings;
use loyalty_domain::zone::{Zone, ZoneSettings};
use loyalty_domain::{Classified, InfraError, Points};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::idempotency::{
    self, Answer, AnswerStore, Idempotency, IdempotencyError, Keyed,
};
use loyalty_platform::metrics::{self, Dim, Metrics, Point, Routes};
use loyalty_platform::stores::actions::DynamoActions;
use loyalty_platform::stores::challenges::{log_out_of_budget, ChallengeTables, DynamoChallenges};
use loyalty_platform::stores::earning::{EarningStore, EarningTables};
use loyalty_platform::warm::ParticipantCache;
use serde::Deserialize;
use serde_json::json;

/// The function: the action port `S`, the clock `C`, the admin ports `A`, the settings and
/// the warm caches. Lambda runs it over DynamoDB and the wall clock ([`App::new`]); handler
/// tests give it memory adapters and a `FixedClock` ([`App::with_store`]), and every route
/// answers the same on both.
pub struct App<S = DynamoActions, C = Box<dyn Clock>, A = DynamoAdmin> {
    actions: S,
    settings: ActionSettings,
    programme: ProgrammeCache,
    balances: ParticipantCache<TierBasis>,
    /// The region and outlet the action transaction last verified per participant; before
    /// the first, a participant's own token stands in as a hint.
    profiles: ParticipantCache<ProfileFacts>,
    admin: A,
    clock: C,
    metrics: Metrics,
}

/// The routes (none counts its refusals apart: actions count their limits in `action`).
pub const ROUTES: Routes = Routes(&[
    ("POST /actions", None),
    ("GET /me/challenges", None),
    ("POST /admin/sell-in", None),
    ("GET /admin/rules", None),
    ("PUT /admin/rules/{ruleId}", None),
    ("GET /admin/tiers", None),
    ("PUT /admin/tiers", None),
    ("PUT /admin/challenges/{challengeId}", None),
    ("POST /admin/rules/{ruleId}/budget", None),
    ("POST /admin/challenges/{challengeId}/budget", None),
    ("GET /admin/rules/{ruleId}/budget", None),
    ("GET /admin/challenges/{challengeId}/budget", None),
    ("PUT /admin/programme", None),
    ("GET /admin/regions", None),
    ("PUT /admin/regions/{regionId}", None),
]);

/// The ports of the routes beside `POST /actions`: admin settings (rules, tiers, budgets),
/// sell-in, challenges, and the answers stored under Idempotency-Keys.
pub trait AdminPorts: Send + Sync {
    type Settings: EarningSettings + ZoneSettings;
    type SellIn: SellInStore;
    type Challenges: ChallengeStore;
    type Answers: AnswerStore;
    fn settings(&self) -> &Self::Settings;
    fn sell_in(&self) -> &Self::SellIn;
    fn challenges(&self) -> &Self::Challenges;
    fn answers(&self) -> &Self::Answers;
}

/// One adapter per admin port.
pub struct Admin<E, L, G, I> {
    pub settings: E,
    pub sell_in: L,
    pub challenges: G,
    pub answers: I,
}

impl<E, L, G, I> AdminPorts for Admin<E, L, G, I>
where
    E: EarningSettings + ZoneSettings,
    L: SellInStore,
    G: ChallengeStore,
    I: AnswerStore,
{
    type Settings = E;
    type SellIn = L;
    type Challenges = G;
    type Answers = I;
    fn settings(&self) -> &E {
        &self.settings
    }
    fn sell_in(&self) -> &L {
        &self.sell_in
    }
    fn challenges(&self) -> &G {
        &self.challenges
    }
    fn answers(&self) -> &I {
        &self.answers
    }
}

/// The admin ports over DynamoDB: [`EarningStore`] is both the settings and the sell-in
/// adapter.
pub type DynamoAdmin = Admin<EarningStore, EarningStore, DynamoChallenges, Idempotency>;

/// Settings of `POST /actions`.
#[derive(Debug, Clone)]
pub struct ActionSettings {
    /// How long rules and tiers read once are used before they are read again.
    pub programme_staleness: Duration,
}

impl Default for ActionSettings {
    fn default() -> Self {
        Self {
            programme_staleness: Duration::seconds(30),
        }
    }
}

/// The settings from the function's environment (defaults where unset).
pub fn settings(env: &Env) -> Result<ActionSettings, ConfigError> {
    let secs: i64 = env.parse_or(
        "PROGRAMME_CACHE_SECS",
        ActionSettings::default().programme_staleness.num_seconds(),
    )?;
    Ok(ActionSettings {
        programme_staleness: Duration::seconds(secs.max(0)),
    })
}

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(
            Self::with_clock(aws, env, Box::new(SystemClock))?
                .with_metrics(Metrics::emf("accrual")),
        )
    }

    /// Tests pass their own clock (validity windows, periods, tiers).
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Self::with_dynamodb(loyalty_platform::aws::dynamodb(aws), env, clock)
    }

    /// Benchmarks pass a client of their own, e.g. with a request-counting interceptor.
    pub fn with_dynamodb(
        dynamodb: aws_sdk_dynamodb::Client,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let programme = env.required("PROGRAMME_TABLE")?;
        let activity = env.required("ACTIVITY_TABLE")?;
        let ledger = env.required("LEDGER_TABLE")?;
        let outbox = env.required("OUTBOX_TABLE")?;
        let participants = env.required("PARTICIPANTS_TABLE")?;
        let tables = EarningTables {
            programme: programme.clone(),
            activity: activity.clone(),
            ledger: ledger.clone(),
            outbox: outbox.clone(),
            participants: participants.clone(),
        };
        let earning = EarningStore::new(dynamodb.clone(), tables.clone());
        let admin = Admin {
            settings: earning.clone(),
            sell_in: earning,
            challenges: DynamoChallenges::new(
                dynamodb.clone(),
                ChallengeTables {
                    programme,
                    activity: activity.clone(),
                    ledger,
                    outbox,
                    participants,
                },
            ),
            answers: Idempotency::new(dynamodb.clone(), activity),
        };
        Ok(App::with_store(
            DynamoActions::new(dynamodb, tables),
            admin,
            settings(env)?,
            clock,
        ))
    }
}

impl<S: ActionStore, C: Clock, A: AdminPorts> App<S, C, A> {
    /// Any stores and clock: the memory adapters and a fixed clock in handler tests.
    pub fn with_store(actions: S, admin: A, settings: ActionSettings, clock: C) -> Self {
        Self {
            actions,
            settings,
            programme: ProgrammeCache::default(),
            balances: ParticipantCache::default(),
            profiles: ParticipantCache::default(),
            admin,
            clock,
            metrics: Metrics::discard(),
        }
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The admin ports, for tests to inspect what a request wrote.
    pub fn admin(&self) -> &A {
        &self.admin
    }

    /// The store, for tests to inspect what a request wrote.
    pub fn store(&self) -> &S {
        &self.actions
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Forgets the cached rules and tiers (after this function changed them).
    pub fn forget_programme(&self) {
        self.programme.clear();
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /actions" => self.report_action(req).await,
            "GET /me/challenges" => self.my_challenges(req).await,
            "POST /admin/sell-in" => self.import_sell_in(req).await,
            "GET /admin/rules" => self.list_rules(req).await,
            "PUT /admin/rules/{ruleId}" => self.put_rule(req).await,
            "GET /admin/tiers" => self.get_tiers(req).await,
            "PUT /admin/programme" => self.put_programme_zone(req).await,
            "GET /admin/regions" => self.list_regions(req).await,
            "PUT /admin/regions/{regionId}" => self.put_region_zone(req).await,
            "PUT /admin/tiers" => self.put_tiers(req).await,
            "PUT /admin/challenges/{challengeId}" => self.put_challenge(req).await,
            "POST /admin/rules/{ruleId}/budget" => self.fund_budget(req, "ruleId").await,
            "POST /admin/challenges/{challengeId}/budget" => {
                self.fund_budget(req, "challengeId").await
            }
            "GET /admin/rules/{ruleId}/budget" => self.get_budget(req, "ruleId").await,
            "GET /admin/challenges/{challengeId}/budget" => {
                self.get_budget(req, "challengeId").await
            }
            _ => Err(Problem::route_not_found()),
        }
    }

    fn require_admin(req: &Request) -> Result<Caller, Problem> {
        let caller = http::caller(req)?;
        caller.require(&[Role::Admin]).problem()?;
        Ok(caller)
    }

    /// Runs `work` once per Idempotency-Key: a replay answers what the first request did,
    /// and a business refusal is remembered like a success.
    async fn once<F, Fut>(
        &self,
        req: &Request,
        caller: &Caller,
        work: F,
    ) -> Result<Response<Body>, Problem>
    where
        F: FnOnce(Keyed) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Body>, Problem>>,
    {
        idempotency::once(
            self.admin.answers(),
            req,
            caller.subject.as_str(),
            self.clock.now(),
            work,
        )
        .await
    }

    async fn report_action(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        // Refused before the key is read, so a wrong caller leaves nothing under it.
        let reporter = match caller.role {
            Role::Participant => Reporter::Participant,
            Role::Admin => Reporter::Reviewer,
            Role::Service if caller.has_scope(REPORT_ACTIONS_SCOPE) => Reporter::Service,
            Role::Service => {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("this service's token lacks the {REPORT_ACTIONS_SCOPE} scope"),
                ))
            }
            Role::Rep => return Err(Problem::from_error(AuthError::WrongRole("rep"))),
        };
        // Keys are unique per caller, whoever the action is reported for.
        let keyed: Keyed = Idempotency::keyed(req, caller.subject.as_str())?;
        let key = KeyedRequest {
            scope: keyed.scope().to_string(),
            key: keyed.key.clone(),
            fingerprint: keyed.fingerprint().to_string(),
        };
        let now = self.clock.now();
        match self.action(req, &caller, reporter, &key, now).await {
            Ok(response) => Ok(response),
            // A business refusal is remembered like a success, so a retry gets it again.
            Err(problem) => match Answer::from_problem(&problem) {
                None => Err(problem),
                Some(answer) => match self
                    .actions
                    .remember(&key, answer.status.as_u16(), answer.body.to_string(), now)
                    .await
                    .problem()?
                {
                    Ok(()) => Ok(answer.into_response()),
                    Err(stored) if stored.fingerprint != key.fingerprint => {
                        Err(Problem::from_error(IdempotencyError::Reused))
                    }
                    Err(stored) => idempotency::replay(
                        stored.status,
                        stored.body,
                        stored.content_type.as_deref(),
                    ),
                },
            },
        }
    }

    /// Who earns, and on which outlet, from the caller and the body: a participant reports
    /// for themselves, a reviewer (with evidence) or a service for a participant it names.
    /// The rule's reporter is checked by the use case.
    fn reported_for(
        caller: &Caller,
        reporter: Reporter,
        body: &ActionBody,
    ) -> Result<(ParticipantId, Option<OutletId>), Problem> {
        let named = || -> Result<ParticipantId, Problem> {
            let raw = body.participant_id.as_deref().ok_or_else(|| {
                Problem::bad_request(
                    "missing_participant_id",
                    "participant_id names who earns when a reviewer or a service reports.",
                )
            })?;
            ParticipantId::parse(raw)
                .map_err(|e| Problem::bad_request("invalid_participant_id", e.to_string()))
        };
        match reporter {
            Reporter::Participant => {
                if body
                    .participant_id
                    .as_deref()
                    .is_some_and(|p| p != caller.subject.as_str())
                {
                    return Err(Problem::from_error(AuthError::NotYours));
                }
                let outlet = caller.outlet.as_ref().map(|(o, _)| o.clone());
                Ok((caller.subject.clone(), outlet))
            }
            Reporter::Reviewer => {
                if body.evidence.as_deref().is_none_or(|e| e.trim().is_empty()) {
                    return Err(Problem::bad_request(
                        "missing_evidence",
                        "A reviewer reports an action with the evidence they saw.",
                    ));
                }
                // The participant's outlet would cost a read: a reviewed credit carries none.
                Ok((named()?, None))
            }
            Reporter::Service => Ok((named()?, None)),
        }
    }

    async fn action(
        &self,
        req: &Request,
        caller: &Caller,
        reporter: Reporter,
        key: &KeyedRequest,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, Problem> {
        let body: ActionBody = http::json_body(req)?;
        let rule_id = RuleId::parse(&body.rule_id)
            .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?;
        let (participant, outlet) = Self::reported_for(caller, reporter, &body)?;
        let reference = body.reference.unwrap_or_default();
        let evidence = body.evidence.unwrap_or_default();
        for (text, code, name) in [
            (&reference, "invalid_reference", "reference"),
            (&evidence, "invalid_evidence", "evidence"),
        ] {
            if text.chars().count() > 120 {
                return Err(Problem::bad_request(
                    code,
                    format!("{name} must be at most 120 characters."),
                ));
            }
        }
        // The entry's history line says what was done and what it was judged on.
        let reference = match (reference.is_empty(), evidence.is_empty()) {
            (_, true) => reference,
            (true, false) => format!("evidence: {evidence}"),
            (false, false) => format!("{reference}; evidence: {evidence}"),
        };
        let programme = self.programme(&rule_id, now).await.problem()?;
        let hint = match reporter {
            Reporter::Participant => ProfileFacts {
                region: caller.region.clone(),
                outlet: caller.outlet.as_ref().map(|(o, _)| o.clone()),
            },
            Reporter::Reviewer | Reporter::Service => ProfileFacts::default(),
        };
        let report = ActionReport {
            participant: participant.clone(),
            reporter,
            outlet,
            profile: self.profiles.get(&participant).unwrap_or(hint),
            rule: rule_id,
            reference,
            key: key.clone(),
        };
        let known = self.balances.get(&participant);
        let reported = report_action(&self.actions, &programme, &report, known, now).await;
        self.metrics.emit(&action_points(&reported));
        match reported {
            Ok(Reported::Credited {
                receipt,
                basis,
                profile,
            }) => {
                self.profiles.put(participant.clone(), profile);
                match basis {
                    Some(b) => self.balances.put(participant, b),
                    None => self.balances.forget(&participant),
                }
                tracing::info!(
                    rule = %receipt.rule_id,
                    entry = %receipt.entry_id,
                    points = receipt.points.get(),
                    "action accrued"
                );
                Ok(http::json(StatusCode::CREATED, &receipt.body()))
            }
            Ok(Reported::Replay(stored)) => {
                idempotency::replay(stored.status, stored.body, stored.content_type.as_deref())
            }
            Err(ActionError::KeyReused) => Err(Problem::from_error(IdempotencyError::Reused)),
            Err(ActionError::KeyExpired) => Err(Problem::from_error(IdempotencyError::Expired)),
            Err(e) => Err(Problem::from_error(e)),
        }
    }

    /// Rules and tiers from the warm cache; read again when older than the staleness bound,
    /// or when the rule asked for is not in it (a rule created since is seen at once).
    async fn programme(&self, rule: &RuleId, now: DateTime<Utc>) -> Result<Programme, InfraError> {
        if let Some(p) = self
            .programme
            .fresh(now, self.settings.programme_staleness)
            .filter(|p| p.rule(rule).is_some())
        {
            return Ok(p);
        }
        let p = self.actions.programme().await?;
        self.programme.put(p.clone(), now);
        Ok(p)
    }

    async fn my_challenges(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?;
        let progress = progress_of(self.admin.challenges(), participant)
            .await
            .problem()?;
        let challenges: Vec<_> = progress
            .iter()
            .map(|(c, p)| {
                json!({
                    "challenge_id": c.id.as_str(),
                    "title": c.title,
                    "supplier_id": c.supplier.as_str(),
                    "target_units": c.target_units,
                    "units": p.units,
                    "completed": p.completed,
                    "bonus_points": c.bonus.get(),
                    "starts_on": c.starts_on.to_string(),
                    "ends_on": c.ends_on.to_string(),
                })
            })
            .collect();
        Ok(http::json(
            StatusCode::OK,
            &json!({ "challenges": challenges }),
        ))
    }

    async fn import_sell_in(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = Self::require_admin(req)?;
        self.once(req, &caller, |keyed| async move {
            let text = http::text_body(req)?;
            let content_type = http::header(req, "content-type").unwrap_or("");
            let lines = if content_type.starts_with("text/csv") {
                parse_sell_in_csv(text)
            } else {
                parse_sell_in_json_lines(text)
            };
            let rules = self.admin.settings().rules().await.problem()?;
            let priced = lines
                .and_then(|lines| price_lines(lines, &rules))
                .map_err(sell_in_problem)?;
            // The rules are the domain's (loyalty_domain::sellin::import): a line imported
            // before with other content refuses the whole import before any write, like an
            // invalid line; else each line is credited exactly once.
            let now = self.clock.now();
            let lines = match sellin::import(self.admin.sell_in(), priced, now)
                .await
                .problem()?
            {
                ImportOutcome::Changed(lines) => {
                    return Err(sell_in_problem(SellInError::Changed(lines)))
                }
                ImportOutcome::Imported(lines) => lines,
            };
            let (credited, repeated, points) = ImportOutcome::counts(&lines);
            // Lines of participants who are not registered and active wrote nothing; the
            // answer lists them, and importing them again after an unblock credits them.
            let not_credited = ImportOutcome::not_active(&lines);
            let mut completed = Vec::new();
            let mut raced = Vec::new();
            for line in &lines {
                // Also after a repeated line: an interrupted import may have credited the
                // line without counting it yet; the source marker makes this a no-op
                // otherwise. A line changed by a concurrent import since the check, or of a
                // participant who is not active (in `not_credited`), wrote nothing and
                // counts for nothing.
                let Some(source) = line.progress(now) else {
                    if line.credit == SellInCredit::Changed {
                        raced.push(line.line.line.changed());
                    }
                    continue;
                };
                let participant = source.participant.clone();
                let recorded = record_progress(self.admin.challenges(), &source)
                    .await
                    .problem()?;
                // A participant blocked since the line was credited counts for nothing now.
                log_out_of_budget(&recorded.out_of_budget);
                completed.extend(recorded.completed().map(|id| {
                    json!({ "challenge_id": id.as_str(), "participant_id": participant.as_str() })
                }));
            }
            tracing::info!(
                lines = lines.len(),
                credited,
                repeated,
                not_active = not_credited.len(),
                points,
                "sell-in imported"
            );
            if !raced.is_empty() {
                // Only a concurrent import can get here; the other lines are written (each
                // exactly once), and the answer says so next to the changed lines.
                let errors = json!(raced);
                return Err(
                    Problem::from_error(SellInError::Changed(raced)).with_extensions(json!({
                        "errors": errors,
                        "credited": credited,
                        "already_imported": repeated,
                        "points": points,
                        "not_credited": not_credited,
                    })),
                );
            }
            let answer = Answer::new(
                StatusCode::OK,
                json!({
                    "lines": lines.len(),
                    "credited": credited,
                    "already_imported": repeated,
                    "points": points,
                    "not_credited": not_credited,
                    "challenges_completed": completed,
                }),
            );
            // Many transactions wrote the lines; each is exactly-once by its entry id, so the
            // answer is stored after them, and a retry before it completes the import.
            idempotency::remember(self.admin.answers(), &keyed, answer, now).await
        })
        .await
    }

    async fn list_rules(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let rules = self.admin.settings().rules().await.problem()?;
        Ok(http::json(StatusCode::OK, &json!({ "rules": rules })))
    }

    async fn put_rule(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let id = RuleId::parse(http::path_param(req, "ruleId")?)
            .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?;
        let body: RuleRequest = http::json_body(req)?;
        let rule = Rule::parse(id, body).problem()?;
        self.admin
            .settings()
            .put_rule(&rule, self.clock.now())
            .await
            .problem()?;
        self.forget_programme();
        Ok(http::json(StatusCode::OK, &rule))
    }

    async fn get_tiers(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let tiers = self.admin.settings().tiers().await.problem()?;
        Ok(http::json(StatusCode::OK, &json!({ "tiers": tiers })))
    }

    async fn put_tiers(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let body: TiersBody = http::json_body(req)?;
        let tiers = Tiers::parse(body.tiers).problem()?;
        self.admin
            .settings()
            .put_tiers(&tiers, self.clock.now())
            .await
            .problem()?;
        self.forget_programme();
        Ok(http::json(StatusCode::OK, &json!({ "tiers": tiers })))
    }

    /// The zone a `{"time_zone": ...}` body names.
    fn zone_of(req: &Request) -> Result<Zone, Problem> {
        let body: ZoneBody = http::json_body(req)?;
        Zone::parse(&body.time_zone).problem()
    }

    async fn put_programme_zone(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let zone = Self::zone_of(req)?;
        self.admin
            .settings()
            .put_programme_zone(zone, self.clock.now())
            .await
            .problem()?;
        self.forget_programme();
        Ok(http::json(StatusCode::OK, &json!({ "time_zone": zone })))
    }

    async fn list_regions(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let zones = self.admin.settings().zones().await.problem()?;
        let regions: Vec<_> = zones
            .regions
            .iter()
            .map(|(region, zone)| json!({ "region_id": region, "time_zone": zone }))
            .collect();
        Ok(http::json(
            StatusCode::OK,
            &json!({ "programme_time_zone": zones.programme, "regions": regions }),
        ))
    }

    async fn put_region_zone(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let region = RegionId::parse(http::path_param(req, "regionId")?)
            .map_err(|e| Problem::bad_request("invalid_region", e.to_string()))?;
        let zone = Self::zone_of(req)?;
        self.admin
            .settings()
            .put_region_zone(&region, zone, self.clock.now())
            .await
            .problem()?;
        self.forget_programme();
        Ok(http::json(
            StatusCode::OK,
            &json!({ "region_id": region, "time_zone": zone }),
        ))
    }

    async fn put_challenge(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let id = Slug::parse(http::path_param(req, "challengeId")?)
            .map_err(|e| Problem::bad_request("invalid_challenge_id", e.to_string()))?;
        let body: ChallengeRequest = http::json_body(req)?;
        let challenge = Challenge::parse(id, body).problem()?;
        self.admin
            .challenges()
            .put_challenge(&challenge, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(StatusCode::OK, &challenge))
    }
}

impl<S: ActionStore, C: Clock, A: AdminPorts> App<S, C, A> {
    /// The programme account of the rule or challenge that the path parameter `param`
    /// names; 400 for a malformed id, before anything is read.
    fn budget_account(req: &Request, param: &str) -> Result<ProgrammeAccount, Problem> {
        let raw = http::path_param(req, param)?;
        Ok(if param == "ruleId" {
            ProgrammeAccount::Rule(
                RuleId::parse(raw)
                    .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?,
            )
        } else {
            ProgrammeAccount::Challenge(
                Slug::parse(raw)
                    .map_err(|e| Problem::bad_request("invalid_challenge_id", e.to_string()))?,
            )
        })
    }

    /// 404 unless the rule or challenge of `account` exists.
    async fn require_known(&self, account: &ProgrammeAccount) -> Result<(), Problem> {
        let known = match account {
            ProgrammeAccount::Rule(id) => self.admin.settings().rule(id).await.problem()?.is_some(),
            ProgrammeAccount::Challenge(id) => self
                .admin
                .challenges()
                .challenges()
                .await
                .problem()?
                .iter()
                .any(|c| &c.id == id),
            _ => false,
        };
        match account {
            _ if known => Ok(()),
            ProgrammeAccount::Rule(id) => Err(Problem::from_error(
                loyalty_domain::earning::AccrualError::UnknownRule(id.clone()),
            )),
            ProgrammeAccount::Challenge(id) => Err(Problem::from_error(
                loyalty_domain::challenge::ProgressError::NotFound(id.clone()),
            )),
            _ => Err(Problem::route_not_found()),
        }
    }

    /// Funds the budget of a rule or a challenge (`param` names which) from the issuer, once
    /// per Idempotency-Key, and answers what is left and what was ever funded.
    async fn fund_budget(&self, req: &Request, param: &str) -> Result<Response<Body>, Problem> {
        let caller = Self::require_admin(req)?;
        let account = Self::budget_account(req, param)?;
        let subject = caller.subject.as_str().to_string();
        self.once(req, &caller, |keyed| async move {
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
            self.require_known(&account).await?;
            let settings = self.admin.settings();
            let now = self.clock.now();
            let funding_id = format!("{subject}:{}", keyed.key.as_str());
            settings
                .fund_budget(&account, amount, &funding_id, now)
                .await
                .problem()?;
            let balance = settings.programme_balance(&account).await.problem()?;
            tracing::info!(account = %account, amount = amount.get(), "budget funded");
            let answer = Answer::new(StatusCode::OK, json!(balance.view(&account)));
            idempotency::remember(self.admin.answers(), &keyed, answer, now).await
        })
        .await
    }

    /// What is left of the budget of a rule or a challenge and what was ever funded.
    async fn get_budget(&self, req: &Request, param: &str) -> Result<Response<Body>, Problem> {
        Self::require_admin(req)?;
        let account = Self::budget_account(req, param)?;
        self.require_known(&account).await?;
        let balance = self
            .admin
            .settings()
            .programme_balance(&account)
            .await
            .problem()?;
        Ok(http::json(StatusCode::OK, &json!(balance.view(&account))))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    amount: u64,
}

/// An action credited (and held for review), or stopped by a limit.
fn action_points(reported: &Result<Reported, ActionError>) -> Vec<Point> {
    match reported {
        Ok(Reported::Credited { receipt, .. }) => {
            let mut points = vec![Point::new(&metrics::ACTION_CREDITS, 1, &[])];
            if receipt.held {
                points.push(Point::new(&metrics::REVIEW_FLAGS, 1, &[]));
            }
            points
        }
        Err(
            e @ ActionError::Refused(
                AccrualError::PeriodLimit(_)
                | AccrualError::ParticipantLimit(_)
                | AccrualError::BudgetExhausted(_),
            ),
        ) => vec![Point::new(
            &metrics::LIMIT_HITS,
            1,
            &[(Dim::Reason, e.code())],
        )],
        _ => Vec::new(),
    }
}

fn sell_in_problem(e: SellInError) -> Problem {
    let errors = match &e {
        SellInError::Lines(errors) | SellInError::Changed(errors) => {
            Some(json!({ "errors": errors }))
        }
        _ => None,
    };
    let problem = Problem::from_error(e);
    match errors {
        Some(ext) => problem.with_extensions(ext),
        None => problem,
    }
}

/// Rules and tiers as last read, with when. `PUT /admin/rules` and `PUT /admin/tiers` on this
/// instance clear it; other warm instances see a change within the staleness bound
/// (`PROGRAMME_CACHE_SECS`). A participant's tier is never stale: it is computed from the
/// balance whose version the write checks.
#[derive(Default)]
pub struct ProgrammeCache(Mutex<Option<(Programme, DateTime<Utc>)>>);

impl ProgrammeCache {
    fn fresh(&self, now: DateTime<Utc>, staleness: Duration) -> Option<Programme> {
        let slot = self.0.lock().expect("programme cache");
        match &*slot {
            // A clock that went back is no reason to trust the copy.
            Some((p, at)) if *at <= now && now - *at < staleness => Some(p.clone()),
            _ => None,
        }
    }

    fn put(&self, p: Programme, at: DateTime<Utc>) {
        *self.0.lock().expect("programme cache") = Some((p, at));
    }

    fn clear(&self) {
        *self.0.lock().expect("programme cache") = None;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    rule_id: String,
    /// What the participant did, for their history: a survey id, an audit reference.
    reference: Option<String>,
    /// Who earns, when a reviewer or a service reports; a participant may only name
    /// themselves.
    participant_id: Option<String>,
    /// What a reviewer saw (required of them); recorded on the entry with the reference.
    evidence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TiersBody {
    tiers: Vec<Tier>,
}

/// `PUT /admin/programme` and `PUT /admin/regions/{regionId}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneBody {
    time_zone: String,
}

/// Handler tests from the sample events, on the paths that are decided before any I/O
/// (the client points nowhere, so a request that reached DynamoDB would fail as a 5xx).
#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::StatusCode;
    use serde_json::Value;

    fn app() -> App {
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let env = Env::from_pairs([
            ("PROGRAMME_TABLE", "programme"),
            ("ACTIVITY_TABLE", "activity"),
            ("LEDGER_TABLE", "ledger"),
            ("OUTBOX_TABLE", "outbox"),
            ("PARTICIPANTS_TABLE", "participants"),
        ]);
        App::new(&aws, &env).expect("app")
    }

    fn event(name: &str, edit: impl FnOnce(&mut Value)) -> Request {
        let path = format!("{}/../../events/accrual/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut json: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        edit(&mut json);
        lambda_http::request::from_str(&json.to_string()).expect("an API Gateway v2 event")
    }

    async fn call(req: Request) -> (StatusCode, Value) {
        let response = app().handle(req).await.unwrap();
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        };
        (response.status(), body)
    }

    #[tokio::test]
    async fn an_action_without_an_idempotency_key_is_400_before_any_read() {
        let req = event("report-action.json", |e| {
            e["headers"]
                .as_object_mut()
                .unwrap()
                .remove("idempotency-key");
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("idempotency_key_missing"))
        );
    }

    #[tokio::test]
    async fn a_sell_in_import_without_an_idempotency_key_is_400() {
        let req = event("import-sell-in.json", |e| {
            e["headers"]
                .as_object_mut()
                .unwrap()
                .remove("idempotency-key");
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("idempotency_key_missing"))
        );
    }

    #[tokio::test]
    async fn a_budget_top_up_without_an_idempotency_key_or_with_a_bad_id_is_400_before_any_read() {
        for name in ["fund-rule-budget.json", "fund-challenge-budget.json"] {
            let req = event(name, |e| {
                e["headers"]
                    .as_object_mut()
                    .unwrap()
                    .remove("idempotency-key");
            });
            let (status, body) = call(req).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("idempotency_key_missing")),
                "{name}"
            );
        }
        let req = event("fund-rule-budget.json", |e| {
            e["pathParameters"]["ruleId"] = "Not A Slug".into();
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_rule_id"))
        );
    }

    #[tokio::test]
    async fn only_admins_import_sell_in_or_change_rules() {
        for name in [
            "import-sell-in.json",
            "put-rule.json",
            "put-tiers.json",
            "put-challenge.json",
        ] {
            let req = event(name, |e| {
                e["requestContext"]["authorizer"]["jwt"]["claims"]["role"] = "participant".into();
            });
            let (status, body) = call(req).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden")),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn an_invalid_rule_is_400_with_its_reason() {
        let req = event("put-rule.json", |e| {
            e["body"] =
                r#"{"action":"survey","points":0,"valid_from":"2026-01-01T00:00:00Z"}"#.into();
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_rule"))
        );
        let req = event("put-rule.json", |e| {
            e["pathParameters"]["ruleId"] = "Not A Slug".into();
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_rule_id"))
        );
    }

    #[tokio::test]
    async fn tiers_that_do_not_start_at_zero_are_400() {
        let req = event("put-tiers.json", |e| {
            e["body"] =
                r#"{"tiers":[{"name":"silver","threshold":10,"multiplier_percent":120}]}"#.into();
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_tiers"))
        );
    }

    #[tokio::test]
    async fn a_challenge_ending_before_it_starts_is_400() {
        let req = event("put-challenge.json", |e| {
            let mut body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
            body["ends_on"] = "2026-11-01".into();
            e["body"] = body.to_string().into();
        });
        let (status, body) = call(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_challenge"))
        );
    }
}
