//! Earning beyond pack codes.
//!
//! - `POST /actions` (participant, `Idempotency-Key`): a target action earns by its rule, the
//!   tier multiplier applied; limits are conditional counters in the ledger transaction.
//! - `GET /me/challenges` (participant): progress in every challenge.
//! - `POST /admin/sell-in` (admin, `Idempotency-Key`, `text/csv` or JSON lines): validated
//!   as a whole first, so a bad line writes nothing; then each line is credited exactly once
//!   (its entry id is the line's identity) and feeds challenge progress.
//! - `GET /admin/rules`, `PUT /admin/rules/{ruleId}`, `GET|PUT /admin/tiers`,
//!   `PUT /admin/challenges/{challengeId}` (admin).
//! - `POST /admin/rules/{ruleId}/budget`, `POST /admin/challenges/{challengeId}/budget`
//!   (admin, `Idempotency-Key`): give a rule's accruals or a challenge's bonuses a budget, or
//!   top it up; credits it cannot cover are refused with `budget_exhausted`.

use std::collections::HashMap;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::challenge::{Challenge, ChallengeRequest, ProgressSource};
use loyalty_domain::earning::{
    check_action, entry_ids, parse_sell_in_csv, parse_sell_in_json_lines, price_lines,
    with_multiplier, AccrualError, Rule, RuleId, RuleRequest, SellInError, Slug, Tier, Tiers,
};
use loyalty_domain::ids::ParticipantId;
use loyalty_domain::ledger::{Entry, EntryKind, ProgrammeAccount};
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_domain::Points;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::idempotency::{Answer, Idempotency, Keyed};
use loyalty_platform::stores::challenges::{ChallengeStore, ChallengeTables};
use loyalty_platform::stores::earning::{EarningStore, EarningTables, Written};
use loyalty_platform::stores::ledger::DynamoLedger;
use serde::Deserialize;
use serde_json::json;

pub struct App {
    earning: EarningStore,
    challenges: ChallengeStore,
    ledger: DynamoLedger,
    idempotency: Idempotency,
    clock: Box<dyn Clock>,
}

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Self::with_clock(aws, env, Box::new(SystemClock))
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
        Ok(Self {
            earning: EarningStore::new(
                dynamodb.clone(),
                EarningTables {
                    programme: programme.clone(),
                    activity: activity.clone(),
                    ledger: ledger.clone(),
                    outbox: outbox.clone(),
                },
            ),
            ledger: DynamoLedger::new(dynamodb.clone(), ledger.clone()),
            challenges: ChallengeStore::new(
                dynamodb.clone(),
                ChallengeTables {
                    programme,
                    activity: activity.clone(),
                    ledger,
                    outbox,
                },
            ),
            idempotency: Idempotency::new(dynamodb, activity),
            clock,
        })
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, Error> {
        Ok(http::respond(self.route(&req).await))
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /actions" => self.report_action(req).await,
            "GET /me/challenges" => self.my_challenges(req).await,
            "POST /admin/sell-in" => self.import_sell_in(req).await,
            "GET /admin/rules" => self.list_rules(req).await,
            "PUT /admin/rules/{ruleId}" => self.put_rule(req).await,
            "GET /admin/tiers" => self.get_tiers(req).await,
            "PUT /admin/tiers" => self.put_tiers(req).await,
            "PUT /admin/challenges/{challengeId}" => self.put_challenge(req).await,
            "POST /admin/rules/{ruleId}/budget" => self.fund_budget(req, "ruleId").await,
            "POST /admin/challenges/{challengeId}/budget" => {
                self.fund_budget(req, "challengeId").await
            }
            _ => Err(Problem::route_not_found()),
        }
    }

    fn admin(req: &Request) -> Result<Caller, Problem> {
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
        self.idempotency
            .once(req, caller.subject.as_str(), self.clock.now(), work)
            .await
    }

    async fn report_action(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?.clone();
        let outlet = caller.outlet.as_ref().map(|(o, _)| o.clone());
        self.once(req, &caller, |keyed| async move {
            let body: ActionBody = http::json_body(req)?;
            let rule_id = RuleId::parse(&body.rule_id)
                .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?;
            let reference = body.reference.unwrap_or_default();
            if reference.chars().count() > 120 {
                return Err(Problem::bad_request(
                    "invalid_reference",
                    "reference must be at most 120 characters.",
                ));
            }
            let now = self.clock.now();
            let rule = self
                .earning
                .rule(&rule_id)
                .await
                .problem()?
                .ok_or_else(|| Problem::from_error(AccrualError::UnknownRule(rule_id.clone())))?;
            let action = check_action(&rule, now).problem()?;
            let tiers = self.earning.tiers().await.problem()?;
            let tier = self
                .earning
                .tier_of(&tiers, &participant, now)
                .await
                .problem()?;
            let entry = Entry {
                id: entry_ids::action(&participant, keyed.key.as_str()),
                participant: participant.clone(),
                outlet,
                kind: EntryKind::Accrual,
                amount: with_multiplier(rule.points, &tier),
                source: if reference.is_empty() {
                    format!("rule {}", rule.id)
                } else {
                    format!("rule {}: {reference}", rule.id)
                },
                created_at: now,
                expires_on: None,
            };
            let answer = Answer::new(
                StatusCode::CREATED,
                json!({
                    "entry_id": entry.id.as_str(),
                    "rule_id": rule.id.as_str(),
                    "action": action,
                    "points": entry.amount.get(),
                    "base_points": rule.points.get(),
                    "tier": tier.name,
                    "multiplier_percent": tier.multiplier_percent,
                }),
            );
            let record = self
                .idempotency
                .record_item(&keyed, &answer, now)
                .problem()?;
            match self
                .earning
                .accrue_action(&rule, &entry, Some(record))
                .await
                .problem()?
            {
                Written::Appended => {
                    tracing::info!(
                        rule = %rule.id,
                        entry = %entry.id,
                        points = entry.amount.get(),
                        "action accrued"
                    );
                    Ok(answer.into_response())
                }
                Written::KeyTaken => self.idempotency.settle(&keyed, now).await,
            }
        })
        .await
    }

    async fn my_challenges(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = http::caller(req)?;
        let participant = caller.participant().problem()?;
        let progress = self.challenges.progress_of(participant).await.problem()?;
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
        let caller = Self::admin(req)?;
        self.once(req, &caller, |keyed| async move {
            let text = http::text_body(req)?;
            let content_type = http::header(req, "content-type").unwrap_or("");
            let lines = if content_type.starts_with("text/csv") {
                parse_sell_in_csv(text)
            } else {
                parse_sell_in_json_lines(text)
            };
            let rules = self.earning.rules().await.problem()?;
            let priced = lines
                .and_then(|lines| price_lines(lines, &rules))
                .map_err(sell_in_problem)?;
            let now = self.clock.now();
            let tiers = self.earning.tiers().await.problem()?;
            let mut tier_cache: HashMap<ParticipantId, Tier> = HashMap::new();
            let (mut credited, mut repeated, mut points) = (0u64, 0u64, 0u64);
            let mut completed = Vec::new();
            for p in &priced {
                let participant = &p.line.participant;
                let tier = match tier_cache.get(participant) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self
                            .earning
                            .tier_of(&tiers, participant, now)
                            .await
                            .problem()?;
                        tier_cache.insert(participant.clone(), t.clone());
                        t
                    }
                };
                let entry = Entry {
                    id: entry_ids::sell_in(&p.line),
                    participant: participant.clone(),
                    outlet: Some(p.line.outlet.clone()),
                    kind: EntryKind::Accrual,
                    amount: with_multiplier(p.points, &tier),
                    source: format!(
                        "sell-in {} {} x{}",
                        p.line.invoice,
                        p.line.sku.as_str(),
                        p.line.quantity
                    ),
                    created_at: now,
                    expires_on: None,
                };
                if self
                    .earning
                    .credit_sell_in(&entry, &p.rule)
                    .await
                    .problem()?
                {
                    credited += 1;
                    points += entry.amount.get();
                } else {
                    repeated += 1;
                }
                // Also after a repeated line: an interrupted import may have credited the
                // line without counting it yet; the source marker makes this a no-op otherwise.
                let outcomes = self
                    .challenges
                    .record_progress(&ProgressSource {
                        participant: participant.clone(),
                        supplier: p.line.supplier.clone(),
                        units: p.line.quantity as u64,
                        date: p.line.date,
                        reference: entry.id.as_str().to_string(),
                        at: now,
                    })
                    .await
                    .problem()?;
                completed.extend(outcomes.into_iter().filter(|o| o.bonus.is_some()).map(|o| {
                    json!({ "challenge_id": o.challenge.as_str(), "participant_id": participant.as_str() })
                }));
            }
            tracing::info!(lines = priced.len(), credited, repeated, points, "sell-in imported");
            let answer = Answer::new(
                StatusCode::OK,
                json!({
                    "lines": priced.len(),
                    "credited": credited,
                    "already_imported": repeated,
                    "points": points,
                    "challenges_completed": completed,
                }),
            );
            // Many transactions wrote the lines; each is exactly-once by its entry id, so the
            // answer is stored after them, and a retry before it completes the import.
            self.idempotency.remember(&keyed, answer, now).await
        })
        .await
    }

    async fn list_rules(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::admin(req)?;
        let rules = self.earning.rules().await.problem()?;
        Ok(http::json(StatusCode::OK, &json!({ "rules": rules })))
    }

    async fn put_rule(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::admin(req)?;
        let id = RuleId::parse(http::path_param(req, "ruleId")?)
            .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?;
        let body: RuleRequest = http::json_body(req)?;
        let rule = Rule::parse(id, body).problem()?;
        self.earning
            .put_rule(&rule, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(StatusCode::OK, &rule))
    }

    async fn get_tiers(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::admin(req)?;
        let tiers = self.earning.tiers().await.problem()?;
        Ok(http::json(StatusCode::OK, &json!({ "tiers": tiers })))
    }

    async fn put_tiers(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::admin(req)?;
        let body: TiersBody = http::json_body(req)?;
        let tiers = Tiers::parse(body.tiers).problem()?;
        self.earning
            .put_tiers(&tiers, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(StatusCode::OK, &json!({ "tiers": tiers })))
    }

    async fn put_challenge(&self, req: &Request) -> Result<Response<Body>, Problem> {
        Self::admin(req)?;
        let id = Slug::parse(http::path_param(req, "challengeId")?)
            .map_err(|e| Problem::bad_request("invalid_challenge_id", e.to_string()))?;
        let body: ChallengeRequest = http::json_body(req)?;
        let challenge = Challenge::parse(id, body).problem()?;
        self.challenges
            .put_challenge(&challenge, self.clock.now())
            .await
            .problem()?;
        Ok(http::json(StatusCode::OK, &challenge))
    }
}

impl App {
    /// Funds the budget of a rule or a challenge (`param` names which) from the issuer, once
    /// per Idempotency-Key, and answers what is left and what was ever funded.
    async fn fund_budget(&self, req: &Request, param: &str) -> Result<Response<Body>, Problem> {
        let caller = Self::admin(req)?;
        let raw = http::path_param(req, param)?;
        let account = match param {
            "ruleId" => ProgrammeAccount::Rule(
                RuleId::parse(raw)
                    .map_err(|e| Problem::bad_request("invalid_rule_id", e.to_string()))?,
            ),
            _ => ProgrammeAccount::Challenge(
                Slug::parse(raw)
                    .map_err(|e| Problem::bad_request("invalid_challenge_id", e.to_string()))?,
            ),
        };
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
            let exists = match &account {
                ProgrammeAccount::Rule(id) => self.earning.rule(id).await.problem()?.is_some(),
                ProgrammeAccount::Challenge(id) => self
                    .challenges
                    .challenges()
                    .await
                    .problem()?
                    .iter()
                    .any(|c| &c.id == id),
                _ => false,
            };
            if !exists {
                return Err(match &account {
                    ProgrammeAccount::Rule(id) => {
                        Problem::from_error(AccrualError::UnknownRule(id.clone()))
                    }
                    ProgrammeAccount::Challenge(id) => Problem::from_error(
                        loyalty_domain::challenge::ProgressError::NotFound(id.clone()),
                    ),
                    _ => Problem::route_not_found(),
                });
            }
            let now = self.clock.now();
            let funding_id = format!("{subject}:{}", keyed.key.as_str());
            self.ledger
                .fund_budget(&account, amount, &funding_id, now)
                .await
                .problem()?;
            let balance = self.ledger.programme_balance(&account).await.problem()?;
            tracing::info!(account = %account, amount = amount.get(), "budget funded");
            let answer = Answer::new(
                StatusCode::OK,
                json!({
                    "account": account.key(),
                    "remaining": balance.balance,
                    "funded": balance.funded.unwrap_or(0),
                }),
            );
            self.idempotency.remember(&keyed, answer, now).await
        })
        .await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetBody {
    amount: u64,
}

fn sell_in_problem(e: SellInError) -> Problem {
    let errors = match &e {
        SellInError::Lines(errors) => Some(json!({ "errors": errors })),
        _ => None,
    };
    let problem = Problem::from_error(e);
    match errors {
        Some(ext) => problem.with_extensions(ext),
        None => problem,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    rule_id: String,
    /// What the participant did, for their history: a survey id, an audit reference.
    reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TiersBody {
    tiers: Vec<Tier>,
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
