//! The fraud review queue: claims whose points a rule sent to pending.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

use loyalty_domain::ports::Clock;
use loyalty_domain::review::{self, Decision, ReviewError, ReviewId, ReviewStore};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::idempotency::{Answer, Idempotency};
use loyalty_platform::stores::ledger::{DecisionWrite, DynamoLedger};
use serde::Deserialize;

use crate::admin;

const MAX_PAGE: usize = 100;

pub struct Reviews {
    ledger: DynamoLedger,
    idempotency: Idempotency,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: Decision,
}

impl Reviews {
    pub fn new(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let dynamodb = loyalty_platform::aws::dynamodb(aws);
        let ledger = DynamoLedger::new(dynamodb.clone(), env.required("LEDGER_TABLE")?)
            .with_outbox(env.required("OUTBOX_TABLE")?);
        let idempotency = Idempotency::new(dynamodb, env.required("ACTIVITY_TABLE")?);
        Ok(Self {
            ledger,
            idempotency,
            clock,
        })
    }

    pub async fn list(&self, req: &Request) -> Result<Response<Body>, Problem> {
        admin(req)?;
        let limit = match http::query_param(req, "limit") {
            None => 50,
            Some(raw) => raw
                .parse()
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
            .pending(http::query_param(req, "cursor"), limit)
            .await
            .problem()?;
        let reviews: Vec<_> = page
            .items
            .iter()
            .map(|r| {
                serde_json::json!({
                    "review_id": r.id.to_string(),
                    "participant_id": r.entry.participant.as_str(),
                    "outlet_id": r.entry.outlet.as_ref().map(|o| o.as_str()),
                    "points": r.entry.amount.get(),
                    "source": r.entry.source,
                    "reasons": r.reasons,
                    "claimed_at": r.entry.created_at.to_rfc3339(),
                })
            })
            .collect();
        Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "reviews": reviews, "next_cursor": page.next_cursor }),
        ))
    }

    /// Needs an `Idempotency-Key`: a decision changes a balance, and a retry after a lost
    /// response must get the first answer, not `review_already_decided`.
    pub async fn decide(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let reviewer = admin(req)?;
        let id = ReviewId::parse(http::path_param(req, "reviewId")?).problem()?;
        let body: DecisionBody = http::json_body(req)?;
        let now = self.clock.now();
        let reviewer = reviewer.subject.as_str();
        self.idempotency
            .once(req, reviewer, now, |keyed| async move {
                let decided = review::prepare(&self.ledger, &id, body.decision, reviewer, now)
                    .await
                    .problem()?;
                let answer = Answer::new(
                    StatusCode::OK,
                    serde_json::json!({
                        "review_id": id.to_string(),
                        "decision": body.decision.as_str(),
                        "entry_id": decided.entry.id.as_str(),
                        "points": decided.entry.amount.get(),
                    }),
                );
                let record = self
                    .idempotency
                    .record_item(&keyed, &answer, now)
                    .problem()?;
                let written = self
                    .ledger
                    .commit_decision(&decided, Some(record))
                    .await
                    .problem()?;
                match written {
                    DecisionWrite::Done => Ok(answer.into_response()),
                    DecisionWrite::AlreadyDecided => Err(ReviewError::AlreadyDecided).problem(),
                    DecisionWrite::KeyTaken => self.idempotency.settle(&keyed, now).await,
                }
            })
            .await
    }
}
