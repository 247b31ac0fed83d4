//! The fraud review queue: claims whose points a rule sent to pending.
//!
//! The rules are the domain's (`loyalty_domain::review`: `prepare`, `decide`, the
//! `ReviewStore` port); this module reads requests, keeps the `Idempotency-Key` promise
//! through a [`Desk`], and renders answers.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use loyalty_domain::action::{KeyedRequest, StoredAnswer};
use loyalty_domain::ids::EntryId;
use loyalty_domain::ports::Clock;
use loyalty_domain::review::{
    self, Committed, Decided, Decision, Page, PendingReview, ReviewError, ReviewId, ReviewStore,
};
use loyalty_domain::InfraError;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::idempotency::{self, Answer, Idempotency, IdempotencyError, Keyed};
use loyalty_platform::memory::MemoryReviews;
use loyalty_platform::stores::ledger::{DecisionWrite, DynamoLedger};
use serde::Deserialize;

use crate::admin;

const MAX_PAGE: usize = 100;

/// The review port plus the answers under Idempotency-Keys, written together with a
/// decision so that a retry after a lost response gets the first answer.
pub trait Desk: ReviewStore {
    /// The live answer under `key`, if any.
    fn answered(
        &self,
        key: &Keyed,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<StoredAnswer>, InfraError>> + Send;

    /// Commits `decided` and, if it commits, `answer` under `key`, in one write;
    /// `Ok(Err(Some(stored)))` when a live answer holds the key already, `Ok(Err(None))`
    /// when the answer that held it expired since (the key was used up long ago).
    fn commit_answered(
        &self,
        decided: &Decided,
        key: &Keyed,
        answer: &Answer,
    ) -> impl Future<Output = Result<Result<Committed, Option<StoredAnswer>>, InfraError>> + Send;

    /// Stores a refusal's answer; `Ok(Err(..))` as for [`Desk::commit_answered`].
    fn remember(
        &self,
        key: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Result<(), Option<StoredAnswer>>, InfraError>> + Send;
}

/// The review queue in the ledger table, answers in the activity table.
pub struct DynamoDesk {
    ledger: DynamoLedger,
    idempotency: Idempotency,
}

impl DynamoDesk {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        let dynamodb = loyalty_platform::aws::dynamodb(aws);
        let ledger = DynamoLedger::new(dynamodb.clone(), env.required("LEDGER_TABLE")?)
            .with_outbox(env.required("OUTBOX_TABLE")?)
            .with_participants(env.required("PARTICIPANTS_TABLE")?);
        let idempotency = Idempotency::new(dynamodb, env.required("ACTIVITY_TABLE")?);
        Ok(Self {
            ledger,
            idempotency,
        })
    }
}

impl ReviewStore for DynamoDesk {
    async fn entry_under_review(
        &self,
        id: &ReviewId,
    ) -> Result<Option<loyalty_domain::ledger::Entry>, InfraError> {
        self.ledger.entry_under_review(id).await
    }
    async fn pending(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<PendingReview>, ReviewError> {
        self.ledger.pending(cursor, limit).await
    }
    async fn commit(&self, decided: &Decided) -> Result<Committed, InfraError> {
        self.ledger.commit(decided).await
    }
}

impl Desk for DynamoDesk {
    async fn answered(
        &self,
        key: &Keyed,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        self.idempotency.answered(key, now).await
    }

    async fn commit_answered(
        &self,
        decided: &Decided,
        key: &Keyed,
        answer: &Answer,
    ) -> Result<Result<Committed, Option<StoredAnswer>>, InfraError> {
        let record = self.idempotency.record_item(key, answer, decided.at)?;
        match self.ledger.commit_decision(decided, Some(record)).await? {
            DecisionWrite::Done => Ok(Ok(Committed::Ok)),
            DecisionWrite::AlreadyDecided => Ok(Ok(Committed::AlreadyDecided)),
            DecisionWrite::BudgetRefused => Ok(Ok(Committed::BudgetRefused)),
            DecisionWrite::ParticipantNotActive => Ok(Ok(Committed::ParticipantNotActive)),
            DecisionWrite::KeyTaken => Ok(Err(self.idempotency.answered(key, decided.at).await?)),
        }
    }

    async fn remember(
        &self,
        key: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        self.idempotency.remember_answer(key, answer, now).await
    }
}

fn keyed_request(key: &Keyed) -> KeyedRequest {
    KeyedRequest {
        scope: key.scope().to_string(),
        key: key.key.clone(),
        fingerprint: key.fingerprint().to_string(),
    }
}

impl Desk for MemoryReviews {
    async fn answered(
        &self,
        key: &Keyed,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        Ok(MemoryReviews::answered(self, &keyed_request(key), now))
    }

    async fn commit_answered(
        &self,
        decided: &Decided,
        key: &Keyed,
        answer: &Answer,
    ) -> Result<Result<Committed, Option<StoredAnswer>>, InfraError> {
        Ok(MemoryReviews::commit_answered(
            self,
            decided,
            &keyed_request(key),
            answer.status.as_u16(),
            answer.body.to_string(),
        )?
        .map_err(Some))
    }

    async fn remember(
        &self,
        key: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        Ok(MemoryReviews::remember(
            self,
            &keyed_request(key),
            answer.status.as_u16(),
            answer.body.to_string(),
            now,
        )
        .map_err(Some))
    }
}

pub struct Reviews<D = DynamoDesk> {
    desk: D,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: Decision,
}

/// The first answer under a key: a replay, or `idempotency_key_reused` for another request,
/// or `idempotency_key_expired` when the record that refused us is gone.
fn replay_of(key: &Keyed, stored: Option<StoredAnswer>) -> Result<Response<Body>, Problem> {
    let Some(stored) = stored else {
        return Err(Problem::from_error(IdempotencyError::Expired));
    };
    if stored.fingerprint != key.fingerprint() {
        return Err(Problem::from_error(IdempotencyError::Reused));
    }
    idempotency::replay(stored.status, stored.body, stored.content_type.as_deref())
}

impl<D: Desk> Reviews<D> {
    pub fn with_desk(desk: D, clock: Arc<dyn Clock>) -> Self {
        Self { desk, clock }
    }

    pub fn desk(&self) -> &D {
        &self.desk
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
            .desk
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
        let keyed = Idempotency::keyed(req, reviewer)?;
        if let Some(stored) = self.desk.answered(&keyed, now).await.problem()? {
            return replay_of(&keyed, Some(stored));
        }
        match self
            .decision(&keyed, &id, body.decision, reviewer, now)
            .await
        {
            Ok(response) => Ok(response),
            // A business refusal is remembered like a success, so a retry gets it again.
            Err(problem) => match Answer::from_problem(&problem) {
                None => Err(problem),
                Some(answer) => match self.desk.remember(&keyed, &answer, now).await.problem()? {
                    Ok(()) => Ok(answer.into_response()),
                    Err(stored) => replay_of(&keyed, stored),
                },
            },
        }
    }

    async fn decision(
        &self,
        keyed: &Keyed,
        id: &ReviewId,
        decision: Decision,
        reviewer: &str,
        now: DateTime<Utc>,
    ) -> Result<Response<Body>, Problem> {
        let decided = review::prepare(&self.desk, id, decision, reviewer, now)
            .await
            .problem()?;
        let answer = Answer::new(StatusCode::OK, decided_body(&decided.id, &decided));
        match self
            .desk
            .commit_answered(&decided, keyed, &answer)
            .await
            .problem()?
        {
            Ok(Committed::Ok) => Ok(answer.into_response()),
            Ok(Committed::AlreadyDecided) => Err(Problem::from_error(ReviewError::AlreadyDecided)),
            // Remembered under the key like any refusal: the credit stays held.
            Ok(Committed::BudgetRefused) => Err(Problem::from_error(ReviewError::BudgetExhausted)),
            // Remembered likewise: the entry stays held until an unblock or a rejection.
            Ok(Committed::ParticipantNotActive) => {
                Err(Problem::from_error(ReviewError::ParticipantNotActive))
            }
            Err(stored) => replay_of(keyed, stored),
        }
    }
}

fn decided_body(id: &ReviewId, decided: &Decided) -> serde_json::Value {
    let entry: &EntryId = &decided.entry.id;
    serde_json::json!({
        "review_id": id.to_string(),
        "decision": decided.decision.as_str(),
        "entry_id": entry.as_str(),
        "points": decided.entry.amount.get(),
    })
}
