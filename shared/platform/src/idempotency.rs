//! `Idempotency-Key` for POST routes that change balances, reusable by any HTTP function.
//!
//! - No key: 400 `idempotency_key_missing`; a malformed one: 400 `idempotency_key_invalid`.
//! - The first answer is stored under (caller, key) for 24 hours, with a fingerprint of the
//!   route, the path and the exact body bytes. The same key with the same fingerprint replays that
//!   answer (with `Idempotent-Replayed: true`); with another fingerprint it is 422
//!   `idempotency_key_reused`.
//! - A successful change writes its answer with [`Idempotency::record_item`] in the SAME
//!   `TransactWriteItems` as the change, so there is never a change without its answer nor an
//!   answer without its change. Business refusals, which write nothing else, are stored with
//!   [`remember`]. Infrastructure failures (5xx) are not stored: retrying them is the point
//!   of the key.
//! - [`once`] and [`remember`] work over the [`AnswerStore`] port ([`Idempotency`] here,
//!   `crate::memory::MemoryAnswers` in handler tests). Two requests racing with one key may
//!   both find no answer, but only one record write succeeds; the loser answers what the
//!   winner stored.
//! - A route whose change is one transaction can skip the read: [`Idempotency::keyed`] parses
//!   the key and fingerprint, the transaction carries the record ([`record_put`]), and a
//!   refused record returns the stored answer as its `ALL_OLD` ([`StoredRecord::from_item`],
//!   replayed with [`replay`]). `POST /actions` does this: one round trip in the steady state.
//! - A record past its `ttl` is treated exactly as a record DynamoDB's (lazy) TTL deletion
//!   has removed: the key is unknown again. Where the key itself named the change (an
//!   action's entry id comes from it), that change still exists, so the write loses and
//!   [`remember`] finds no answer to give: that is 422 `idempotency_key_expired`,
//!   the same whether the record is still there or not. Elsewhere the request is new.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use loyalty_domain::action::StoredAnswer;
use loyalty_domain::ids::IdempotencyKey;
use loyalty_domain::{Classified, InfraError, Kind};
use sha2::{Digest, Sha256};

use crate::dynamo::{classify, key as key_item, n, s, Item, ItemExt};
use crate::http::{self, Problem};
use crate::tx::Tx;

pub const HEADER: &str = "idempotency-key";
const TTL_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this route changes balances: send an Idempotency-Key header")]
    Missing,
    #[error("Idempotency-Key must be 8 to 128 printable ASCII characters")]
    Invalid,
    #[error("this Idempotency-Key was used with a different request")]
    Reused,
    #[error("this Idempotency-Key was used more than 24 hours ago; send a new key")]
    Expired,
}

impl Classified for IdempotencyError {
    fn kind(&self) -> Kind {
        match self {
            IdempotencyError::Missing | IdempotencyError::Invalid => Kind::BadInput,
            IdempotencyError::Reused | IdempotencyError::Expired => Kind::Unprocessable,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            IdempotencyError::Missing => "idempotency_key_missing",
            IdempotencyError::Invalid => "idempotency_key_invalid",
            IdempotencyError::Reused => "idempotency_key_reused",
            IdempotencyError::Expired => "idempotency_key_expired",
        }
    }
}

/// A request that carries a key nobody has answered yet.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: IdempotencyKey,
    /// Whose key: keys are only unique per caller.
    scope: String,
    fingerprint: String,
}

impl Keyed {
    /// Whose key it is (the caller's subject).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Route, path and body, hashed.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A stored record as read back (from a read, or from a refused write's `ALL_OLD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
    pub ttl: i64,
}

impl StoredRecord {
    pub fn from_item(item: &Item) -> Result<Self, InfraError> {
        Ok(Self {
            fingerprint: item.string("fingerprint")?.to_string(),
            status: item.number("status")? as u16,
            body: item.string("body")?.to_string(),
            content_type: item.opt_string("content_type").map(str::to_string),
            ttl: item.signed("ttl")?,
        })
    }
}

/// The replay of a stored answer: its status, body and media type, marked as a replay.
pub fn replay(
    status: u16,
    body: String,
    content_type: Option<&str>,
) -> Result<Response<Body>, Problem> {
    let status = StatusCode::from_u16(status).map_err(|e| {
        Problem::from_error(InfraError::permanent(
            "decode idempotency record",
            e.to_string(),
        ))
    })?;
    Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            content_type.unwrap_or(http::json_content_type(status)),
        )
        .header("idempotent-replayed", "true")
        .body(Body::Text(body))
        .map_err(|e| {
            Problem::from_error(InfraError::permanent(
                "decode idempotency record",
                e.to_string(),
            ))
        })
}

/// The key of the record of `key` in `scope`.
pub fn record_key_of(scope: &str, key: &str) -> Item {
    key_item(format!("IDEMPOTENCY#{scope}#{key}"), "IDEMPOTENCY")
}

/// The conditional put of an answer's record: refused while a live record holds the key.
pub fn record_put(
    table: &str,
    scope: &str,
    idempotency_key: &str,
    fingerprint: &str,
    status: u16,
    body: String,
    now: DateTime<Utc>,
) -> PutBuilder {
    let content_type =
        http::json_content_type(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    let mut item = record_key_of(scope, idempotency_key);
    item.extend(HashMap::from([
        ("fingerprint".to_string(), s(fingerprint)),
        ("status".to_string(), n(status)),
        ("body".to_string(), s(body)),
        ("content_type".to_string(), s(content_type)),
        ("ttl".to_string(), n(now.timestamp() + TTL_SECS)),
    ]));
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk) OR #ttl <= :now")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":now", n(now.timestamp()))
}

/// An answer as it will be stored and replayed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn new(status: StatusCode, body: serde_json::Value) -> Self {
        Self { status, body }
    }

    pub fn into_response(self) -> Response<Body> {
        http::json(self.status, &self.body)
    }

    /// A business refusal, stored so that a retry gets the same refusal. Infrastructure
    /// problems are never stored, nor an expired key's refusal: storing it would give the
    /// key a new record.
    pub fn from_problem(p: &Problem) -> Option<Self> {
        if p.status.is_server_error() || p.code == IdempotencyError::Expired.code() {
            return None;
        }
        let response = p.clone().into_response();
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).ok()?,
            _ => return None,
        };
        Some(Self {
            status: p.status,
            body,
        })
    }
}

#[derive(Clone)]
pub struct Idempotency {
    client: Client,
    table: String,
}

fn record_key(k: &Keyed) -> Item {
    record_key_of(&k.scope, k.key.as_str())
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    }
}

impl Idempotency {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The key and fingerprint of a request, without reading anything: for writes that
    /// carry the record as a condition and learn of an earlier answer from its refusal.
    pub fn keyed(req: &Request, scope: &str) -> Result<Keyed, Problem> {
        let raw = http::header(req, HEADER)
            .ok_or_else(|| Problem::from_error(IdempotencyError::Missing))?;
        let key = IdempotencyKey::parse(raw)
            .map_err(|_| Problem::from_error(IdempotencyError::Invalid))?;
        let mut hash = Sha256::new();
        hash.update(http::route_key(req).as_bytes());
        hash.update([0u8]);
        // The path too: one key on two different resources is two different requests.
        hash.update(req.uri().path().as_bytes());
        hash.update([0u8]);
        hash.update(body_bytes(req));
        let fingerprint: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Keyed {
            key,
            scope: scope.to_string(),
            fingerprint,
        })
    }

    fn put(&self, k: &Keyed, answer: &Answer, now: DateTime<Utc>) -> PutBuilder {
        record_put(
            &self.table,
            &k.scope,
            k.key.as_str(),
            &k.fingerprint,
            answer.status.as_u16(),
            answer.body.to_string(),
            now,
        )
    }

    /// The record of `answer`, to append to the same transaction as the change it reports.
    /// Its condition fails, refused as [`KeyTaken`], when another request with the same key
    /// got there first.
    pub fn record_item(
        &self,
        k: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Tx<KeyTaken>, InfraError> {
        let mut tx = Tx::new();
        tx.put(self.put(k, answer, now), KeyTaken)?;
        Ok(tx)
    }

    /// The live answer under `k`, whatever its fingerprint (the caller compares).
    pub async fn answered(
        &self,
        k: &Keyed,
        now: DateTime<Utc>,
    ) -> Result<Option<loyalty_domain::action::StoredAnswer>, InfraError> {
        self.answered_at(record_key(k), now).await
    }

    /// [`Self::answered`] for a key a domain port carries.
    pub async fn answered_request(
        &self,
        k: &loyalty_domain::action::KeyedRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<loyalty_domain::action::StoredAnswer>, InfraError> {
        self.answered_at(record_key_of(&k.scope, k.key.as_str()), now)
            .await
    }

    /// The conditional put of the record of an answer to `k`, for a port's transaction.
    pub fn record_of(
        &self,
        k: &loyalty_domain::action::KeyedRequest,
        status: u16,
        body: String,
        now: DateTime<Utc>,
    ) -> PutBuilder {
        record_put(
            &self.table,
            &k.scope,
            k.key.as_str(),
            &k.fingerprint,
            status,
            body,
            now,
        )
    }

    async fn answered_at(
        &self,
        record: Item,
        now: DateTime<Utc>,
    ) -> Result<Option<loyalty_domain::action::StoredAnswer>, InfraError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(record))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("read idempotency record", e))?
            .item
            .unwrap_or_default();
        if item.is_empty() {
            return Ok(None);
        }
        let r = StoredRecord::from_item(&item)?;
        Ok((r.ttl > now.timestamp()).then_some(StoredAnswer {
            fingerprint: r.fingerprint,
            status: r.status,
            body: r.body,
            content_type: r.content_type,
        }))
    }

    /// [`Self::remember`] for callers that answer themselves: `Ok(Err(Some(stored)))` when a
    /// live answer holds the key, `Ok(Err(None))` when the one that refused us expired since.
    pub async fn remember_answer(
        &self,
        k: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        let put = self.put(k, answer, now);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(put.get_item().clone())
            .condition_expression("attribute_not_exists(pk) OR #ttl <= :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    Ok(Err(self.answered(k, now).await?))
                }
                _ => Err(classify("store idempotency record", e)),
            },
        }
    }
}

/// Where answers under Idempotency-Keys are kept: the port of [`once`] and [`remember`].
/// [`Idempotency`] keeps them in the activity table; `crate::memory::MemoryAnswers` in a map.
pub trait AnswerStore: Send + Sync {
    /// The live answer under `k`, whatever its fingerprint (the caller compares).
    fn answered(
        &self,
        k: &Keyed,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<StoredAnswer>, InfraError>> + Send;

    /// Stores `answer` under `k` unless a live answer holds it: `Ok(Err(Some(stored)))`
    /// then, `Ok(Err(None))` when the one that refused us expired since.
    fn remember_answer(
        &self,
        k: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Result<(), Option<StoredAnswer>>, InfraError>> + Send;
}

impl AnswerStore for Idempotency {
    async fn answered(
        &self,
        k: &Keyed,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        Idempotency::answered(self, k, now).await
    }

    async fn remember_answer(
        &self,
        k: &Keyed,
        answer: &Answer,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        Idempotency::remember_answer(self, k, answer, now).await
    }
}

/// The replay of a stored answer to `k`: 422 `idempotency_key_reused` when it answered
/// another request.
fn replay_to(k: &Keyed, stored: StoredAnswer) -> Result<Response<Body>, Problem> {
    if stored.fingerprint != k.fingerprint {
        return Err(Problem::from_error(IdempotencyError::Reused));
    }
    replay(stored.status, stored.body, stored.content_type.as_deref())
}

/// Runs `work` once per Idempotency-Key of `scope` (the caller): a replay answers what the
/// first request did, and a business refusal is remembered like a success. `work` gets the
/// key to store its answer with [`remember`] (or [`Idempotency::record_item`] in its own
/// transaction).
pub async fn once<A, F, Fut>(
    answers: &A,
    req: &Request,
    scope: &str,
    now: DateTime<Utc>,
    work: F,
) -> Result<Response<Body>, Problem>
where
    A: AnswerStore,
    F: FnOnce(Keyed) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Problem>>,
{
    let keyed = Idempotency::keyed(req, scope)?;
    if let Some(stored) = answers
        .answered(&keyed, now)
        .await
        .map_err(Problem::from_error)?
    {
        return replay_to(&keyed, stored);
    }
    match work(keyed.clone()).await {
        Ok(response) => Ok(response),
        Err(problem) => match Answer::from_problem(&problem) {
            Some(answer) => remember(answers, &keyed, answer, now).await,
            None => Err(problem),
        },
    }
}

/// Stores `answer` (nothing else was written with it, or what was is exactly-once by
/// itself) and answers it, or answers what a concurrent request with the same key stored
/// first. None left (the record expired) means the key was used up more than 24 hours ago:
/// 422 `idempotency_key_expired`, never a retry that could not succeed.
pub async fn remember<A: AnswerStore>(
    answers: &A,
    k: &Keyed,
    answer: Answer,
    now: DateTime<Utc>,
) -> Result<Response<Body>, Problem> {
    match answers
        .remember_answer(k, &answer, now)
        .await
        .map_err(Problem::from_error)?
    {
        Ok(()) => Ok(answer.into_response()),
        Err(Some(stored)) => replay_to(k, stored),
        Err(None) => Err(Problem::from_error(IdempotencyError::Expired)),
    }
}

/// The refusal of an idempotency record appended to a transaction: another request with
/// the same key stored its answer first ([`Idempotency::answered`] reads what it stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTaken;
