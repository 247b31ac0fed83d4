//! [`JobQueue`] over SQS: BatchJobsQueue, one message per chunk job.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use loyalty_domain::batch::{ChunkJob, JobQueue};
use loyalty_domain::InfraError;

use crate::aws::classify_sqs;

/// SendMessageBatch's limit.
const SEND_BATCH: usize = 10;
/// Rounds of re-sending the entries SQS reported as failed.
const SEND_ATTEMPTS: usize = 3;

#[derive(Clone)]
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// Ten jobs per request; entries SQS refuses are sent again. Jobs are idempotent (a done
/// chunk is skipped), so a job sent twice is harmless.
impl JobQueue for SqsJobQueue {
    async fn enqueue(&self, jobs: &[ChunkJob]) -> Result<(), InfraError> {
        for group in jobs.chunks(SEND_BATCH) {
            let mut pending: Vec<&ChunkJob> = group.iter().collect();
            for _ in 0..SEND_ATTEMPTS {
                let entries = pending
                    .iter()
                    .enumerate()
                    .map(|(i, job)| {
                        let body = serde_json::to_string(job).expect("job serialises");
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| InfraError::permanent("enqueue chunks", e.to_string()))?;
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| classify_sqs("enqueue chunks", e))?;
                pending = out
                    .failed
                    .iter()
                    .filter_map(|f| f.id.parse::<usize>().ok())
                    .filter_map(|i| pending.get(i).copied())
                    .collect();
                if pending.is_empty() {
                    break;
                }
            }
            if !pending.is_empty() {
                return Err(InfraError::retryable(
                    "enqueue chunks",
                    format!("SQS refused {} jobs, e.g. {:?}", pending.len(), pending[0]),
                ));
            }
        }
        Ok(())
    }
}
