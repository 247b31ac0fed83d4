//! `POST /admin/batches` orders a batch of codes; `GET /admin/batches/{batchId}` follows it.
//!
//! Ordering writes the batch item and enqueues one job per chunk; the batch worker does the
//! rest. Jobs are idempotent (a done chunk is skipped), so sending one twice is harmless.

use std::sync::Arc;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use loyalty_domain::batch::{
    Batch, BatchRequest, BatchSeed, BatchSpec, BatchStatus, ChunkJob, CHUNK_SIZE,
};
use loyalty_domain::ports::Clock;
use loyalty_domain::InfraError;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{json, json_body, path_param, Problem, ResultExt};
use loyalty_platform::stores::codes::{ChunkMarker, CodesStore};
use rand::RngCore;
use serde::Serialize;

/// SendMessageBatch's limit.
const SEND_BATCH: usize = 10;
/// Rounds of re-sending the entries SQS reported as failed.
const SEND_ATTEMPTS: usize = 3;

pub(crate) struct Batches {
    store: CodesStore,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    exports_bucket: String,
    chunk_size: u32,
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
    qr_prefix: String,
}

impl From<ChunkMarker> for ExportView {
    fn from(m: ChunkMarker) -> Self {
        Self {
            chunk: m.chunk,
            codes: m.codes,
            csv_key: m.exports.csv_key,
            qr_prefix: m.exports.qr_prefix,
        }
    }
}

impl Batches {
    pub(crate) fn new(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            store: CodesStore::new(
                loyalty_platform::aws::dynamodb(aws),
                env.required("CODES_TABLE")?,
            ),
            sqs: loyalty_platform::aws::sqs(aws),
            queue_url: env.required("BATCH_JOBS_QUEUE_URL")?,
            exports_bucket: env.required("EXPORTS_BUCKET")?,
            chunk_size: chunk_size(env)?,
            clock,
        })
    }

    pub(crate) async fn create(&self, req: &Request) -> Result<Response<Body>, Problem> {
        let caller = crate::admin(req)?;
        let body: BatchRequest = json_body(req)?;
        let now = self.clock.now();
        let spec = BatchSpec::parse(&body, now.date_naive()).problem()?;
        let number = self
            .store
            .allocate_batch_number()
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
            plan: spec.plan(self.chunk_size),
            spec,
            seed: BatchSeed(seed),
            status: BatchStatus::Generating,
            created_at: now,
        };
        self.store
            .create_batch(&batch, caller.subject.as_str())
            .await
            .problem()?;
        self.enqueue(&batch).await.problem()?;
        tracing::info!(batch = number, count = batch.spec.count, chunks = batch.plan.chunks(), by = %caller.subject, "batch ordered");

        let mut response = json(
            StatusCode::ACCEPTED,
            &Accepted {
                batch: number,
                status: batch.status.as_str(),
                count: batch.spec.count,
                chunks: batch.plan.chunks(),
            },
        );
        let location = HeaderValue::from_str(&format!("/admin/batches/{number}"))
            .expect("digits are a valid header");
        response.headers_mut().insert(header::LOCATION, location);
        Ok(response)
    }

    /// One job per chunk, ten per request; entries SQS refuses are sent again.
    async fn enqueue(&self, batch: &Batch) -> Result<(), InfraError> {
        let jobs: Vec<u32> = (0..batch.plan.chunks()).collect();
        for group in jobs.chunks(SEND_BATCH) {
            let mut pending: Vec<u32> = group.to_vec();
            for _ in 0..SEND_ATTEMPTS {
                let entries = pending
                    .iter()
                    .map(|&chunk| {
                        let body = serde_json::to_string(&ChunkJob {
                            batch: batch.number,
                            chunk,
                        })
                        .expect("job serialises");
                        SendMessageBatchRequestEntry::builder()
                            .id(chunk.to_string())
                            .message_body(body)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| InfraError::permanent("enqueue chunks", e.to_string()))?;
                let out = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| loyalty_platform::aws::classify_sqs("enqueue chunks", e))?;
                pending = out
                    .failed
                    .iter()
                    .filter_map(|f| f.id.parse().ok())
                    .collect();
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(InfraError::retryable(
                    "enqueue chunks",
                    format!("SQS refused chunks {pending:?}"),
                ));
            }
        }
        Ok(())
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
            .store
            .get_batch(number)
            .await
            .problem()?
            .ok_or_else(not_found)?;
        let markers = self.store.chunk_markers(number).await.problem()?;
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
                chunks_done: markers.len(),
                created_at: batch.created_at.to_rfc3339(),
                exports_bucket: self.exports_bucket.clone(),
                exports: markers.into_iter().map(ExportView::from).collect(),
            },
        ))
    }
}

/// `CODES_PER_CHUNK` (optional, 1 to 100,000) tunes how much work one job is.
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
