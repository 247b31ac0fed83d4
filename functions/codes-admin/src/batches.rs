//! `POST /admin/batches` orders a batch of codes; `GET /admin/batches/{batchId}` follows it.
//!
//! Ordering writes the batch record and enqueues one job per chunk; the batch worker does
//! the rest. Jobs are idempotent (a done chunk is skipped), so sending one twice is
//! harmless. An order may carry an `Idempotency-Key`: its answer is written with the batch,
//! and a retry answers it again (re-sending the jobs of a batch still generating, in case
//! the first request failed after its write). Without a key, every order is a new batch.

use std::sync::Arc;

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use loyalty_domain::action::{KeyedRequest, StoredAnswer};
use loyalty_domain::batch::{
    Batch, BatchRecords, BatchRequest, BatchSeed, BatchSpec, BatchStatus, ChunkJob, ChunkMarker,
    ExportLinks, JobQueue, KeyedAnswer, CHUNK_SIZE,
};
use loyalty_domain::ports::Clock;
use loyalty_domain::InfraError;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{json, json_body, path_param, Problem, ResultExt};
use loyalty_platform::idempotency::{self, Idempotency, IdempotencyError, Keyed};
use loyalty_platform::stores::batch_jobs::SqsJobQueue;
use loyalty_platform::stores::codes::CodesStore;
use loyalty_platform::stores::exports::S3Exports;
use rand::RngCore;
use serde::Serialize;

/// How long an export's download link works.
const LINK_VALIDITY_MINUTES: i64 = 15;

/// What the batch routes need besides their ports.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Codes per chunk job (`CODES_PER_CHUNK`).
    pub chunk_size: u32,
    /// Shown with the exports, for tools that read the bucket directly.
    pub exports_bucket: String,
}

impl BatchSettings {
    /// `CODES_PER_CHUNK` (optional, 1 to 100,000) tunes how much work one job is.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            chunk_size: chunk_size(env)?,
            exports_bucket: env.required("EXPORTS_BUCKET")?,
        })
    }
}

/// The batch routes' ports over DynamoDB, SQS and S3.
pub(crate) fn dynamo_ports(
    aws: &aws_config::SdkConfig,
    env: &Env,
) -> Result<(CodesStore, SqsJobQueue, S3Exports), ConfigError> {
    let records = CodesStore::new(
        loyalty_platform::aws::dynamodb(aws),
        env.required("CODES_TABLE")?,
    )
    .with_answers(env.required("ACTIVITY_TABLE")?)
    .with_zones(env.required("PROGRAMME_TABLE")?);
    let jobs = SqsJobQueue::new(
        loyalty_platform::aws::sqs(aws),
        env.required("BATCH_JOBS_QUEUE_URL")?,
    );
    let links = S3Exports::new(
        loyalty_platform::aws::s3(aws, env),
        env.required("EXPORTS_BUCKET")?,
    );
    Ok((records, jobs, links))
}

pub(crate) struct Batches<B, Q, X> {
    records: B,
    jobs: Q,
    links: X,
    settings: BatchSettings,
    clock: Arc<dyn Clock>,
}

#[derive(Serialize)]
struct Accepted {
    batch: u32,
    status: &'static str,
    count: u32,
    chunks: u32,
}

#[derive(Serialize)]
struct BatchView {
    batch: u32,
    status: &'static str,
    sku: String,
    product_type: String,
    pack_size: String,
    points_per_pack: u64,
    region: String,
    valid_until: String,
    count: u32,
    chunks: u32,
    chunks_done: usize,
    created_at: String,
    exports_bucket: String,
    exports: Vec<ExportView>,
}

#[derive(Serialize)]
struct ExportView {
    chunk: u32,
    codes: u32,
    csv_key: String,
    /// A signed link to download the CSV, valid until `csv_url_expires_at`.
    csv_url: String,
    csv_url_expires_at: String,
    qr_prefix: String,
}

impl<B: BatchRecords, Q: JobQueue, X: ExportLinks> Batches<B, Q, X> {
    pub(crate) fn with_ports(
        records: B,
        jobs: Q,
        links: X,
        settings: BatchSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            records,
            jobs,
            links,
            settings,
            clock,
        }
    }

    pub(crate) fn records(&self) -> &B {
        &self.records
    }

    pub(crate) fn jobs(&self) -> &Q {
        &self.jobs
    }

    pub(crate) async fn create(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = crate::admin(req)?;
        let keyed = match loyalty_platform::http::header(req, idempotency::HEADER) {
            None => None,
            Some(_) => Some(Idempotency::keyed(req, caller.subject.as_str())?),
        };
        let body: BatchRequest = json_body(req)?;
        let now = self.clock.now();
        if let Some(k) = &keyed {
            if let Some(stored) = self.records.answered(&request_of(k), now).await.problem()? {
                return self.replay(k, stored).await;
            }
        }
        let spec = BatchSpec::parse(&body).problem()?;
        let zones = self.records.zones().await.problem()?;
        let spec = spec.still_valid_at(now, &zones).problem()?;
        let number = self
            .records
            .allocate_number()
            .await
            .problem()?
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::CONFLICT,
                    "batch_numbers_exhausted",
                    "Every batch number that fits in a code is used.",
                )
            })?;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let batch = Batch {
            number,
            plan: spec.plan(self.settings.chunk_size),
            spec,
            seed: BatchSeed(seed),
            status: BatchStatus::Generating,
            created_at: now,
        };
        let accepted = Accepted {
            batch: number,
            status: batch.status.as_str(),
            count: batch.spec.count,
            chunks: batch.plan.chunks(),
        };
        let answer = keyed.as_ref().map(|k| KeyedAnswer {
            key: request_of(k),
            status: StatusCode::ACCEPTED.as_u16(),
            body: serde_json::to_string(&accepted).expect("answer serialises"),
        });
        match self
            .records
            .create(&batch, caller.subject.as_str(), answer.as_ref())
            .await
            .problem()?
        {
            Ok(()) => {}
            // A request with the same key got there first: answer what it answered.
            Err(Some(stored)) => {
                let k = keyed.as_ref().expect("only a keyed order meets a key");
                return self.replay(k, stored).await;
            }
            Err(None) => return Err(Problem::from_error(IdempotencyError::Expired)),
        }
        self.enqueue(&batch, &[]).await.problem()?;
        tracing::info!(batch = number, count = batch.spec.count, chunks = batch.plan.chunks(), by = %caller.subject, "batch ordered");
        let mut response = json(StatusCode::ACCEPTED, &accepted);
        response
            .headers_mut()
            .insert(header::LOCATION, location(number));
        Ok(response)
    }

    /// The first answer to this key. If it ordered a batch that is still generating, its
    /// jobs are sent again (but for chunks already done): the first request may have
    /// failed between writing the batch and sending them.
    async fn replay(&self, k: &Keyed, stored: StoredAnswer) -> Result<Response<Body>, Problem> {
        if stored.fingerprint != k.fingerprint() {
            return Err(Problem::from_error(IdempotencyError::Reused));
        }
        let number = serde_json::from_str::<serde_json::Value>(&stored.body)
            .ok()
            .and_then(|v| v["batch"].as_u64())
            .and_then(|n| u32::try_from(n).ok());
        if let Some(number) = number {
            if let Some(batch) = self.records.batch(number).await.problem()? {
                if batch.status == BatchStatus::Generating {
                    let done = self.records.chunk_markers(number).await.problem()?;
                    self.enqueue(&batch, &done).await.problem()?;
                }
            }
        }
        let mut response =
            idempotency::replay(stored.status, stored.body, stored.content_type.as_deref())?;
        if let Some(number) = number {
            response
                .headers_mut()
                .insert(header::LOCATION, location(number));
        }
        Ok(response)
    }

    /// One job per chunk without a marker in `done`.
    async fn enqueue(&self, batch: &Batch, done: &[ChunkMarker]) -> Result<(), InfraError> {
        let jobs: Vec<ChunkJob> = (0..batch.plan.chunks())
            .filter(|chunk| done.iter().all(|m| m.chunk != *chunk))
            .map(|chunk| ChunkJob {
                batch: batch.number,
                chunk,
            })
            .collect();
        self.jobs.enqueue(&jobs).await
    }

    pub(crate) async fn get(&self, req: &Request) -> Result<Response<Body>, Problem> {
        crate::admin(req)?;
        let raw = path_param(req, "batchId")?;
        let number: u32 = raw.parse().map_err(|_| {
            Problem::bad_request(
                "invalid_batch_id",
                "A batch id is the batch number, e.g. 12.",
            )
        })?;
        let batch = self
            .records
            .batch(number)
            .await
            .problem()?
            .ok_or_else(not_found)?;
        let markers = self.records.chunk_markers(number).await.problem()?;
        let now = self.clock.now();
        let mut exports = Vec::with_capacity(markers.len());
        for m in markers {
            let link = self
                .links
                .link(
                    &m.exports.csv_key,
                    now,
                    chrono::Duration::minutes(LINK_VALIDITY_MINUTES),
                )
                .await
                .problem()?;
            exports.push(ExportView {
                chunk: m.chunk,
                codes: m.codes,
                csv_key: m.exports.csv_key,
                csv_url: link.url,
                csv_url_expires_at: link.expires_at.to_rfc3339(),
                qr_prefix: m.exports.qr_prefix,
            });
        }
        let spec = &batch.spec;
        Ok(json(
            StatusCode::OK,
            &BatchView {
                batch: number,
                status: batch.status.as_str(),
                sku: spec.sku.clone(),
                product_type: spec.product_type.clone(),
                pack_size: spec.pack_size.to_string(),
                points_per_pack: spec.points_per_pack.get(),
                region: spec.region.to_string(),
                valid_until: spec.valid_until.to_string(),
                count: spec.count,
                chunks: batch.plan.chunks(),
                chunks_done: exports.len(),
                created_at: batch.created_at.to_rfc3339(),
                exports_bucket: self.settings.exports_bucket.clone(),
                exports,
            },
        ))
    }
}

fn request_of(k: &Keyed) -> KeyedRequest {
    KeyedRequest {
        scope: k.scope().to_string(),
        key: k.key.clone(),
        fingerprint: k.fingerprint().to_string(),
    }
}

fn location(number: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("/admin/batches/{number}")).expect("digits are a valid header")
}

fn chunk_size(env: &Env) -> Result<u32, ConfigError> {
    let size = env.parse_or("CODES_PER_CHUNK", CHUNK_SIZE)?;
    if !(1..=100_000).contains(&size) {
        return Err(ConfigError::Invalid {
            key: "CODES_PER_CHUNK".into(),
            reason: "must be from 1 to 100000".into(),
        });
    }
    Ok(size)
}

fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "batch_not_found",
        "No batch has this number.",
    )
}

#[cfg(test)]
mod tests {
    use crate::App;
    use lambda_http::{Body, Request};
    use loyalty_platform::config::Env;

    /// An app whose AWS endpoint refuses every connection: these requests must be answered
    /// before any AWS call.
    async fn offline_app() -> App {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .region(aws_config::Region::new("us-east-1"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let env = Env::from_pairs([
            ("CODES_TABLE", "codes"),
            ("LEDGER_TABLE", "ledger"),
            ("OUTBOX_TABLE", "outbox"),
            ("BATCH_JOBS_QUEUE_URL", "http://127.0.0.1:9/queue/jobs"),
            ("EXPORTS_BUCKET", "exports"),
            ("ACTIVITY_TABLE", "activity"),
            ("PROGRAMME_TABLE", "programme"),
            ("PARTICIPANTS_TABLE", "participants"),
        ]);
        App::new(&aws, &env).unwrap()
    }

    fn event(file: &str) -> Request {
        let path = format!(
            "{}/../../events/codes-admin/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        lambda_http::request::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    async fn problem(req: Request) -> (u16, serde_json::Value) {
        let response = offline_app().await.handle(req).await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        };
        (response.status().as_u16(), body)
    }

    #[tokio::test]
    async fn a_participant_may_not_order_a_batch() {
        let (status, body) = problem(event("create-batch-as-participant.json")).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    }

    #[tokio::test]
    async fn a_request_without_verified_claims_is_unauthenticated() {
        let mut req = event("create-batch.json");
        if let Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) =
            req.extensions_mut().get_mut()
        {
            ctx.authorizer = None;
        }
        let (status, body) = problem(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthenticated"))
        );
    }

    #[tokio::test]
    async fn an_invalid_spec_is_refused_with_the_field_s_code() {
        let (status, body) = problem(event("create-batch-invalid.json")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_pack_size"))
        );
    }

    #[tokio::test]
    async fn a_batch_id_that_is_not_a_number_is_a_bad_request() {
        let mut req = event("get-batch.json");
        let params = std::collections::HashMap::from([("batchId".to_string(), "b-1".to_string())]);
        req = lambda_http::RequestExt::with_path_parameters(req, params);
        let (status, body) = problem(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_batch_id"))
        );
    }

    #[tokio::test]
    async fn an_unknown_field_in_the_order_is_refused() {
        let mut req = event("create-batch.json");
        *req.body_mut() = Body::Text(r#"{"sku":"A","product_type":"B","pack_size":"1 l","points_per_pack":1,"region":"r","valid_until":"2030-01-01","count":1,"colour":"red"}"#.into());
        let (status, body) = problem(req).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_body")));
    }
}
