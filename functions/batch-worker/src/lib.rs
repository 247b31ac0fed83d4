//! The batch worker (BatchWorkerFunction): one SQS job per chunk of a batch.
//!
//! For a job `{batch, chunk}` it regenerates the chunk's codes from the batch seed, stores
//! them, exports them to S3, and only then writes the chunk's done-marker; when every chunk
//! has one, the batch flips to `ready`. See `loyalty_platform::stores::codes` for why each
//! step is safe to repeat.
//!
//! Exports, per chunk:
//! - `batches/<batch>/chunk-<n>.csv`: code (grouped), qr_payload, sku, product_type,
//!   points, valid_until. This is what a variable-data printing press takes.
//! - `batches/<batch>/qr/chunk-<n>/sheet-<k>.svg`: print-ready sheets of 100 QR codes
//!   (10 × 10, each labelled with its grouped code), in CSV order: sheet k holds rows
//!   100k+1 to 100k+100. One object per code would mean a million objects for a full
//!   batch, a million PUTs, and a million files for the printer to handle; sheets make it
//!   100 objects per chunk. Presses that render QR codes themselves need only the CSV.

use std::fmt::Write;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::{StreamExt, TryStreamExt};
use lambda_runtime::LambdaEvent;
use loyalty_domain::batch::{
    Batch, BatchProgress, ChunkExports, ChunkJob, ChunkMarker, CodeWriter, ExportStore, WriteStats,
};
use loyalty_domain::code::Code;
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_domain::InfraError;
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::metrics::{self, Dim, Metrics, Point};
use loyalty_platform::stores::codes::CodesStore;
use loyalty_platform::stores::exports::S3Exports;
use qrcode::QrCode;

/// QR sheets uploaded at a time.
const UPLOADS_IN_FLIGHT: usize = 8;
/// Codes per QR sheet, laid out in rows of [`SHEET_COLUMNS`].
pub const SHEET_CODES: usize = 100;
const SHEET_COLUMNS: usize = 10;

/// The function: the batch records and codes `S`, the exports bucket `E` and the clock
/// `C`. Lambda runs it over DynamoDB, S3 and the wall clock ([`App::new`]); handler tests
/// give it [`loyalty_platform::memory::MemoryBatches`], `MemoryExports` and a `FixedClock`
/// ([`App::with_ports`]). Codes derive from the batch seed, so there is no id source.
pub struct App<S = CodesStore, E = S3Exports, C = Box<dyn Clock>> {
    worker: ChunkWorker<S, E, C>,
    metrics: Metrics,
}

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with_clock(aws, env, Box::new(SystemClock))?
            .with_metrics(Metrics::emf("batch-worker")))
    }

    /// Tests pass their own clock: chunk markers and the batch's ready time are dated by it.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Box<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let worker = ChunkWorker::new(
            loyalty_platform::aws::dynamodb(aws),
            loyalty_platform::aws::s3(aws, env),
            WorkerConfig {
                codes_table: env.required("CODES_TABLE")?,
                exports_bucket: env.required("EXPORTS_BUCKET")?,
                programme_base_url: env.required("PROGRAMME_BASE_URL")?,
            },
            clock,
        );
        Ok(Self {
            worker,
            metrics: Metrics::discard(),
        })
    }
}

impl<S: BatchProgress + CodeWriter, E: ExportStore, C: Clock> App<S, E, C> {
    /// Any store, exports bucket and clock; `programme_base_url` is what QR codes link to.
    pub fn with_ports(store: S, exports: E, programme_base_url: &str, clock: C) -> Self {
        Self {
            worker: ChunkWorker::with_ports(store, exports, programme_base_url, clock),
            metrics: Metrics::discard(),
        }
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn worker(&self) -> &ChunkWorker<S, E, C> {
        &self.worker
    }

    /// Failed jobs go back to the queue through `batchItemFailures` (and to the DLQ after
    /// five receives); jobs that can never succeed, malformed ones included, are logged and
    /// dropped: handing them back would only move them to the DLQ five receives later.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let mut response = SqsBatchResponse::default();
        // Job results, counted over the invocation and emitted once.
        let mut results = JobResults::default();
        for record in event.payload.records {
            let message_id = record.message_id.unwrap_or_default();
            let job = match serde_json::from_str::<ChunkJob>(
                record.body.as_deref().unwrap_or_default(),
            ) {
                Ok(job) => job,
                Err(e) => {
                    tracing::error!(message_id, error = %e, "dropping a malformed batch job");
                    results.dropped += 1;
                    continue;
                }
            };
            match self.worker.process(&job).await {
                Ok(outcome) => {
                    match outcome {
                        ChunkOutcome::Done { .. } => results.done += 1,
                        ChunkOutcome::AlreadyDone { .. } => results.already_done += 1,
                    }
                    tracing::info!(
                        message_id,
                        batch = job.batch,
                        chunk = job.chunk,
                        ?outcome,
                        "chunk processed"
                    )
                }
                Err(ChunkError::Poison(reason)) => {
                    results.dropped += 1;
                    tracing::error!(
                        message_id,
                        batch = job.batch,
                        chunk = job.chunk,
                        reason,
                        "dropping a batch job that can never succeed"
                    )
                }
                Err(ChunkError::Infra(e)) => {
                    tracing::error!(message_id, batch = job.batch, chunk = job.chunk, error = %e, "chunk failed; it will be retried");
                    results.retried += 1;
                    response.add_failure(message_id);
                }
            }
        }
        self.metrics.emit(&results.points());
        Ok(response)
    }
}

#[derive(Default)]
struct JobResults {
    done: u64,
    already_done: u64,
    retried: u64,
    dropped: u64,
}

impl JobResults {
    fn points(&self) -> Vec<Point> {
        [
            ("done", self.done),
            ("already_done", self.already_done),
            ("retried", self.retried),
            ("dropped", self.dropped),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(result, n)| Point::new(&metrics::BATCH_JOBS, n, &[(Dim::Result, result)]))
        .collect()
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub codes_table: String,
    pub exports_bucket: String,
    pub programme_base_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    Done {
        codes: u32,
        writes: WriteStats,
        batch_ready: bool,
    },
    /// The chunk's marker already existed: nothing was written.
    AlreadyDone { batch_ready: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The job names no batch or no chunk of it: retrying cannot help.
    #[error("{0}")]
    Poison(&'static str),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Generates, stores and exports chunks.
pub struct ChunkWorker<S = CodesStore, E = S3Exports, C = Box<dyn Clock>> {
    store: S,
    exports: E,
    programme_base_url: String,
    clock: C,
}

impl ChunkWorker {
    /// Built from clients rather than an `SdkConfig` so that a benchmark can hand it
    /// clients with request-counting interceptors.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        config: WorkerConfig,
        clock: Box<dyn Clock>,
    ) -> Self {
        Self::with_ports(
            CodesStore::new(dynamodb, config.codes_table),
            S3Exports::new(s3, config.exports_bucket),
            &config.programme_base_url,
            clock,
        )
    }
}

impl<S: BatchProgress + CodeWriter, E: ExportStore, C: Clock> ChunkWorker<S, E, C> {
    pub fn with_ports(store: S, exports: E, programme_base_url: &str, clock: C) -> Self {
        Self {
            store,
            exports,
            programme_base_url: programme_base_url.to_string(),
            clock,
        }
    }

    /// The store, for tests to inspect what a job wrote.
    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn exports(&self) -> &E {
        &self.exports
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub async fn process(&self, job: &ChunkJob) -> Result<ChunkOutcome, ChunkError> {
        let batch = BatchProgress::batch(&self.store, job.batch)
            .await?
            .ok_or(ChunkError::Poison("no such batch"))?;
        let len = batch
            .plan
            .chunk_len(job.chunk)
            .ok_or(ChunkError::Poison("no such chunk in this batch"))?;
        if self.store.chunk_done(batch.number, job.chunk).await? {
            let batch_ready = self
                .store
                .mark_ready_if_complete(&batch, self.clock.now())
                .await?;
            return Ok(ChunkOutcome::AlreadyDone { batch_ready });
        }
        let started = Instant::now();
        let codes = Code::chunk(&batch.seed.0, batch.number, job.chunk, len);
        let writes = self.store.put_codes(&batch, &codes).await?;
        let exports = self.export(&batch, job.chunk, &codes).await?;
        let marker = ChunkMarker {
            chunk: job.chunk,
            codes: len,
            exports,
            done_at: self.clock.now(),
        };
        self.store.mark_chunk_done(batch.number, &marker).await?;
        let batch_ready = self
            .store
            .mark_ready_if_complete(&batch, self.clock.now())
            .await?;
        tracing::info!(
            batch = batch.number,
            chunk = job.chunk,
            codes = len,
            ms = started.elapsed().as_millis() as u64,
            "chunk stored and exported"
        );
        Ok(ChunkOutcome::Done {
            codes: len,
            writes,
            batch_ready,
        })
    }

    async fn export(
        &self,
        batch: &Batch,
        chunk: u32,
        codes: &[Code],
    ) -> Result<ChunkExports, InfraError> {
        let exports = ChunkExports {
            csv_key: format!("batches/{}/chunk-{chunk}.csv", batch.number),
            qr_prefix: format!("batches/{}/qr/chunk-{chunk}/", batch.number),
        };
        let base_url = &self.programme_base_url;
        let csv = chunk_csv(batch, codes, base_url)?;
        self.exports
            .put(&exports.csv_key, csv, "text/csv; charset=utf-8")
            .await?;
        futures::stream::iter(codes.chunks(SHEET_CODES).enumerate())
            .map(|(k, sheet)| {
                let key = format!("{}sheet-{k:03}.svg", exports.qr_prefix);
                let svg = qr_sheet(sheet, base_url);
                async move {
                    self.exports
                        .put(&key, svg.into_bytes(), "image/svg+xml")
                        .await
                }
            })
            .buffer_unordered(UPLOADS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        Ok(exports)
    }
}

/// The printer's file for one chunk.
pub fn chunk_csv(batch: &Batch, codes: &[Code], base_url: &str) -> Result<Vec<u8>, InfraError> {
    let spec = &batch.spec;
    let mut out = csv::Writer::from_writer(Vec::with_capacity(codes.len() * 96));
    let csv_err = |e: csv::Error| InfraError::permanent("write CSV", e.to_string());
    out.write_record([
        "code",
        "qr_payload",
        "sku",
        "product_type",
        "points",
        "valid_until",
    ])
    .map_err(csv_err)?;
    let points = spec.points_per_pack.to_string();
    let valid_until = spec.valid_until.to_string();
    for code in codes {
        out.write_record([
            &code.display(),
            &code.qr_payload(base_url),
            &spec.sku,
            &spec.product_type,
            &points,
            &valid_until,
        ])
        .map_err(csv_err)?;
    }
    out.into_inner()
        .map_err(|e| InfraError::permanent("write CSV", e.to_string()))
}

/// One sheet: a QR code per code, each with the standard four-module quiet zone and the
/// grouped code printed under it (in monospace at 3 units, 19 characters fit the 40-unit
/// cell), 10 to a row. One unit is half a millimetre.
pub fn qr_sheet(codes: &[Code], base_url: &str) -> String {
    const CELL_W: usize = 40;
    const CELL_H: usize = 46;
    const QR_SIZE: f64 = 36.0;
    let rows = codes.len().div_ceil(SHEET_COLUMNS);
    let (w, h) = (SHEET_COLUMNS * CELL_W, rows * CELL_H);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{}mm" height="{}mm" viewBox="0 0 {w} {h}" shape-rendering="crispEdges"><rect width="{w}" height="{h}" fill="#fff"/>"##,
        w / 2,
        h / 2
    );
    for (i, code) in codes.iter().enumerate() {
        let qr = QrCode::new(code.qr_payload(base_url).as_bytes())
            .expect("a code link is far below QR capacity");
        let modules = qr.width();
        let scale = QR_SIZE / (modules + 8) as f64;
        let (x, y) = ((i % SHEET_COLUMNS) * CELL_W, (i / SHEET_COLUMNS) * CELL_H);
        // One rectangle per horizontal run of dark modules keeps a sheet of 100 codes small.
        let mut path = String::new();
        for (row, colors) in qr.to_colors().chunks(modules).enumerate() {
            let mut col = 0;
            while col < modules {
                let run = colors[col..]
                    .iter()
                    .take_while(|c| **c == qrcode::Color::Dark)
                    .count();
                if run > 0 {
                    let _ = write!(path, "M{},{}h{run}v1h-{run}z", col + 4, row + 4);
                }
                col += run.max(1);
            }
        }
        let _ = write!(
            svg,
            r#"<g transform="translate({},{})"><path transform="scale({scale:.4})" d="{path}"/><text x="18" y="40" font-family="monospace" font-size="3" text-anchor="middle">{}</text></g>"#,
            x + 2,
            y + 2,
            code.display()
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;
    use chrono::NaiveDate;
    use loyalty_domain::batch::{BatchSeed, BatchSpec, BatchStatus, PackSize};
    use loyalty_domain::ids::RegionId;
    use loyalty_domain::Points;

    /// An app whose AWS endpoint refuses every connection, with retries off.
    async fn unreachable_app() -> App {
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "unit",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let env = Env::from_pairs([
            ("CODES_TABLE", "codes"),
            ("EXPORTS_BUCKET", "exports"),
            ("PROGRAMME_BASE_URL", "https://club.example.com"),
        ]);
        App::new(&aws, &env).unwrap()
    }

    fn event(file: &str) -> LambdaEvent<SqsEvent> {
        let path = format!(
            "{}/../../events/batch-worker/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let payload = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        LambdaEvent::new(payload, lambda_runtime::Context::default())
    }

    #[tokio::test]
    async fn a_malformed_job_is_dropped_rather_than_retried() {
        let response = unreachable_app()
            .await
            .handle(event("job-malformed.json"))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn a_job_that_fails_on_infrastructure_is_handed_back_for_retry() {
        let response = unreachable_app()
            .await
            .handle(event("job.json"))
            .await
            .unwrap();
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["059f36b4-87a3-44ab-83d2-661975830a7d"]);
    }

    #[test]
    fn the_printer_csv_has_one_row_per_code_with_grouped_code_and_link() {
        let batch = Batch {
            number: 12,
            spec: BatchSpec {
                sku: "COLA-05".into(),
                product_type: "Cola, 0.5 l".into(),
                pack_size: PackSize::Millilitres(500),
                points_per_pack: Points(10),
                region: RegionId::parse("north").unwrap(),
                valid_until: NaiveDate::from_ymd_opt(2030, 12, 31).unwrap(),
                count: 3,
            },
            seed: BatchSeed([1; 32]),
            plan: loyalty_domain::batch::ChunkPlan {
                count: 3,
                chunk_size: 10,
            },
            status: BatchStatus::Generating,
            created_at: "2026-11-01T09:00:00Z".parse().unwrap(),
        };
        let codes = Code::chunk(&batch.seed.0, 12, 0, 3);
        let csv =
            String::from_utf8(chunk_csv(&batch, &codes, "https://club.example.com/").unwrap())
                .unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "code,qr_payload,sku,product_type,points,valid_until"
        );
        assert_eq!(lines.len(), 4);
        let c = codes[1];
        assert_eq!(
            lines[2],
            format!(
                "{},https://club.example.com/c/{},COLA-05,\"Cola, 0.5 l\",10,2030-12-31",
                c.display(),
                c.canonical()
            )
        );
    }

    #[test]
    fn a_qr_sheet_labels_each_code_in_csv_order_and_draws_its_modules() {
        let codes = Code::chunk(&[2; 32], 3, 0, 23);
        let svg = qr_sheet(&codes, "https://club.example.com");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let labels: Vec<&str> = svg.split("middle\">").skip(1).map(|t| &t[..19]).collect();
        assert_eq!(
            labels,
            codes.iter().map(|c| c.display()).collect::<Vec<_>>()
        );
        // Three rows of cells: 23 codes at 10 a row.
        assert!(svg.contains(r#"viewBox="0 0 400 138""#));
        let qr = QrCode::new(codes[0].qr_payload("https://club.example.com").as_bytes()).unwrap();
        let dark = qr
            .to_colors()
            .iter()
            .filter(|c| **c == qrcode::Color::Dark)
            .count();
        let first_path = svg
            .split(" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        // The first code's path covers exactly its dark modules, in runs.
        let covered: usize = first_path
            .split('h')
            .skip(1)
            .step_by(2)
            .map(|run| run.split('v').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(covered, dark);
    }
}
