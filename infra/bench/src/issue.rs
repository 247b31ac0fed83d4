//! Figure 4: issuing a batch through the batch worker's chunk processing, on the emulator.

use std::time::{Duration, Instant};

use batch_worker::{ChunkOutcome, ChunkWorker, WorkerConfig};
use loyalty_domain::batch::{BatchStatus, ChunkJob, CHUNK_SIZE};
use loyalty_domain::ports::SystemClock;
use loyalty_local::provision::Resources;
use loyalty_platform::stores::codes::CodesStore;

use crate::counter::{counted_dynamodb, counted_s3, Counter, Tally};
use crate::stack::{create_batch, BoxError};

pub struct Issue {
    pub codes: u32,
    pub chunks: u32,
    pub elapsed: Duration,
    pub dynamodb: Tally,
    pub s3: Tally,
    pub retried_items: u64,
    pub ready: bool,
}

/// One worker processing every chunk in turn, as if it received the jobs one by one.
pub async fn issue(
    aws: &aws_config::SdkConfig,
    resources: &Resources,
    codes: u32,
) -> Result<Issue, BoxError> {
    let env = resources.env_for("BatchWorkerFunction")?;
    let config = WorkerConfig {
        codes_table: env.required("CODES_TABLE")?,
        exports_bucket: env.required("EXPORTS_BUCKET")?,
        programme_base_url: env.required("PROGRAMME_BASE_URL")?,
    };
    let store = CodesStore::new(
        aws_sdk_dynamodb::Client::new(aws),
        config.codes_table.clone(),
    );
    let batch = create_batch(&store, codes, 10, CHUNK_SIZE, BatchStatus::Generating).await?;
    let dynamodb = Counter::default();
    let s3 = Counter::default();
    let worker = ChunkWorker::new(
        counted_dynamodb(aws, &dynamodb),
        counted_s3(aws, &s3),
        config,
        Box::new(SystemClock),
    );
    let started = Instant::now();
    let mut retried_items = 0;
    let mut ready = false;
    for chunk in 0..batch.plan.chunks() {
        let job = ChunkJob {
            batch: batch.number,
            chunk,
        };
        match worker
            .process(&job)
            .await
            .map_err(|e| format!("chunk {chunk}: {e}"))?
        {
            ChunkOutcome::Done {
                writes,
                batch_ready,
                ..
            } => {
                retried_items += writes.retried_items;
                ready |= batch_ready;
            }
            ChunkOutcome::AlreadyDone { .. } => {
                return Err(format!("chunk {chunk} was already done in a fresh table").into())
            }
        }
    }
    Ok(Issue {
        codes,
        chunks: batch.plan.chunks(),
        elapsed: started.elapsed(),
        dynamodb: dynamodb.snapshot(),
        s3: s3.snapshot(),
        retried_items,
        ready,
    })
}
