//! Batches and codes in CodesTable.
//!
//! Items:
//! - `CODE#<canonical>`/`CODE`: one printed code, written `status = issued` with everything
//!   the claim transaction needs to check and credit it (`points`, `valid_until`, `region`,
//!   `sku`, `product_type`, `batch_id`).
//! - `BATCH#<number>`/`BATCH`: the order, its seed and its chunk plan, `status`
//!   `generating` until every chunk is done, then `ready`.
//! - `BATCH#<number>`/`CHUNK#<n>`: written when chunk n's codes are stored and exported.
//! - `SEQUENCE#BATCH`/`SEQUENCE`: the last batch number handed out.
//!
//! Why re-running a chunk is safe: codes are written with plain BatchWriteItem puts (which
//! cannot be conditional), so a chunk whose done-marker exists is never written again, and
//! a claimed code is never reset to issued. A worker that crashes mid-chunk leaves no marker,
//! and the retry regenerates the same codes from the seed and rewrites them; nobody can
//! have claimed them yet, because the export is written before the marker and printers only
//! take exports of `ready` batches.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::Put;
use aws_sdk_dynamodb::types::{PutRequest, ReturnValue, Select, WriteRequest};
use aws_sdk_dynamodb::Client;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use loyalty_domain::action::{KeyedRequest, StoredAnswer};
use loyalty_domain::batch::{
    Batch, BatchProgress, BatchRecords, BatchSeed, BatchSpec, BatchStatus, ChunkExports,
    ChunkMarker, ChunkPlan, CodeWriter, KeyedAnswer, PackSize, WriteStats,
};
use loyalty_domain::code::{Code, BATCHES};
use loyalty_domain::ids::RegionId;
use loyalty_domain::zone::Zones;
use loyalty_domain::{InfraError, Points};

use crate::dynamo::{classify, key, n, s, Item, ItemExt};
use crate::idempotency::Idempotency;
use crate::stores::zones::read_zones;
use crate::tx::Tx;

/// BatchWriteItem's limit.
const WRITE_BATCH: usize = 25;
/// BatchWriteItem requests in flight per chunk.
const WRITES_IN_FLIGHT: usize = 8;
/// Attempts at getting one request's unprocessed items written before giving up.
const WRITE_ATTEMPTS: u32 = 10;

const SEQUENCE_PK: &str = "SEQUENCE#BATCH";

#[derive(Clone)]
pub struct CodesStore {
    client: Client,
    table: String,
    /// Where answers to orders under an Idempotency-Key are kept (the activity table);
    /// the worker and the claim store need none.
    answers: Option<Idempotency>,
    /// ProgrammeTable, where the time zones that date an order's `valid_until` are; the
    /// worker and the claim store need none.
    programme: Option<String>,
}

fn batch_pk(number: u32) -> String {
    format!("BATCH#{number}")
}

fn chunk_sk(chunk: u32) -> String {
    // Zero-padded so markers sort by chunk number.
    format!("CHUNK#{chunk:06}")
}

fn decode_err(what: impl std::fmt::Display) -> InfraError {
    InfraError::permanent("decode batch", what.to_string())
}

impl CodesStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            answers: None,
            programme: None,
        }
    }

    /// Orders date their `valid_until` in the zones kept in `programme_table`.
    pub fn with_zones(mut self, programme_table: impl Into<String>) -> Self {
        self.programme = Some(programme_table.into());
        self
    }

    /// Orders carrying an Idempotency-Key store their answer in `activity_table`.
    pub fn with_answers(mut self, activity_table: impl Into<String>) -> Self {
        self.answers = Some(Idempotency::new(self.client.clone(), activity_table));
        self
    }

    /// The next unused batch number, or `None` when all [`BATCHES`] are spent.
    pub async fn allocate_batch_number(&self) -> Result<Option<u32>, InfraError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(SEQUENCE_PK, "SEQUENCE")))
            .update_expression("ADD #last :one")
            // Batch 0 is never handed out, so the counter starts at 1.
            .condition_expression("attribute_not_exists(#last) OR #last < :max")
            .expression_attribute_names("#last", "last")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(BATCHES - 1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match out {
            Ok(out) => {
                let last = out.attributes.unwrap_or_default().number("last")?;
                u32::try_from(last).map(Some).map_err(decode_err)
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("allocate batch number", e)),
        }
    }

    /// Writes a new batch. Numbers come from [`Self::allocate_batch_number`], so an existing
    /// item means a bug, and it is refused rather than overwritten.
    pub async fn create_batch(&self, batch: &Batch, created_by: &str) -> Result<(), InfraError> {
        match self.create_answered(batch, created_by, None).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(InfraError::permanent(
                "create batch",
                "an idempotency record refused an order that carried none",
            )),
        }
    }

    /// The batch item and, when given, the answer's record, in one `TransactWriteItems`.
    async fn create_answered(
        &self,
        batch: &Batch,
        created_by: &str,
        answer: Option<&KeyedAnswer>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        let mut tx: Tx<CreateRefusal> = Tx::new();
        tx.put(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(batch_item(batch, created_by)))
                .condition_expression("attribute_not_exists(pk)"),
            CreateRefusal::BatchExists,
        )?;
        let answers = match (answer, &self.answers) {
            (None, _) => None,
            (Some(a), Some(answers)) => {
                tx.put(
                    answers.record_of(&a.key, a.status, a.body.clone(), batch.created_at),
                    CreateRefusal::KeyTaken,
                )?;
                Some((a, answers))
            }
            (Some(_), None) => {
                return Err(InfraError::permanent(
                    "create batch",
                    "this codes store keeps no answers (CodesStore::with_answers)",
                ))
            }
        };
        match tx.commit(&self.client, "create batch").await? {
            Ok(()) => Ok(Ok(())),
            Err(refused) => match answers {
                Some((a, answers)) if refused.contains(&CreateRefusal::KeyTaken) => {
                    Ok(Err(answers
                        .answered_request(&a.key, batch.created_at)
                        .await?))
                }
                _ => Err(InfraError::permanent(
                    "create batch",
                    format!("refused: {}", refused.describe()),
                )),
            },
        }
    }

    pub async fn get_batch(&self, number: u32) -> Result<Option<Batch>, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(number), "BATCH")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("get batch", e))?;
        out.item
            .map(|item| batch_from_item(number, &item))
            .transpose()
    }

    pub async fn chunk_done(&self, number: u32, chunk: u32) -> Result<bool, InfraError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(number), chunk_sk(chunk))))
            .consistent_read(true)
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| classify("get chunk marker", e))?;
        Ok(out.item.is_some())
    }

    /// Every done-marker of a batch, in chunk order.
    pub async fn chunk_markers(&self, number: u32) -> Result<Vec<ChunkMarker>, InfraError> {
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", s(batch_pk(number)))
            .expression_attribute_values(":chunk", s("CHUNK#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("query chunk markers", e))?;
        items.iter().map(marker_from_item).collect()
    }

    /// Stores codes as `issued`, [`WRITE_BATCH`] per request, [`WRITES_IN_FLIGHT`] requests
    /// at a time, retrying unprocessed items with exponential backoff.
    pub async fn put_codes(&self, batch: &Batch, codes: &[Code]) -> Result<WriteStats, InfraError> {
        let spec = &batch.spec;
        let shared: Item = HashMap::from([
            ("sk".to_string(), s("CODE")),
            ("status".to_string(), s("issued")),
            ("batch_id".to_string(), n(batch.number)),
            ("points".to_string(), n(spec.points_per_pack.get())),
            ("valid_until".to_string(), s(spec.valid_until.to_string())),
            ("region".to_string(), s(spec.region.as_str())),
            ("sku".to_string(), s(&spec.sku)),
            ("product_type".to_string(), s(&spec.product_type)),
        ]);
        let requests = codes.chunks(WRITE_BATCH).map(|group| {
            group
                .iter()
                .map(|code| {
                    let mut item = shared.clone();
                    item.insert("pk".to_string(), s(format!("CODE#{}", code.canonical())));
                    let put = PutRequest::builder()
                        .set_item(Some(item))
                        .build()
                        .expect("item is set");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect::<Vec<_>>()
        });
        // Built up front: a stream over the lazy iterator would not be `Send` for every
        // lifetime of `codes`, which the port's future must be.
        let requests: Vec<Vec<WriteRequest>> = requests.collect();
        futures::stream::iter(requests)
            .map(|writes| self.write_all(writes))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_fold(WriteStats::default(), |total, one| async move {
                Ok(WriteStats {
                    requests: total.requests + one.requests,
                    retried_items: total.retried_items + one.retried_items,
                })
            })
            .await
    }

    async fn write_all(&self, mut writes: Vec<WriteRequest>) -> Result<WriteStats, InfraError> {
        let mut stats = WriteStats::default();
        for attempt in 0..WRITE_ATTEMPTS {
            if attempt > 0 {
                stats.retried_items += writes.len() as u64;
                let backoff = Duration::from_millis(25 << attempt.min(6));
                tokio::time::sleep(backoff).await;
            }
            stats.requests += 1;
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, writes)
                .send()
                .await
                .map_err(|e| classify("write codes", e))?;
            writes = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if writes.is_empty() {
                return Ok(stats);
            }
        }
        Err(InfraError::retryable(
            "write codes",
            format!(
                "{} items still unprocessed after {WRITE_ATTEMPTS} attempts",
                writes.len()
            ),
        ))
    }

    /// Records that a chunk is stored and exported. Written last: its presence is what
    /// makes a redelivered job a no-op.
    pub async fn mark_chunk_done(
        &self,
        number: u32,
        marker: &ChunkMarker,
    ) -> Result<(), InfraError> {
        let mut item = key(batch_pk(number), chunk_sk(marker.chunk));
        item.extend([
            ("chunk".to_string(), n(marker.chunk)),
            ("codes".to_string(), n(marker.codes)),
            ("csv_key".to_string(), s(&marker.exports.csv_key)),
            ("qr_prefix".to_string(), s(&marker.exports.qr_prefix)),
            ("done_at".to_string(), s(marker.done_at.to_rfc3339())),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify("mark chunk done", e))?;
        Ok(())
    }

    /// Flips the batch to `ready` once every chunk has its marker; `true` if this call did.
    ///
    /// Safe under concurrent workers: each worker writes its marker, then counts markers
    /// with a strongly consistent read. Of two workers finishing the last two chunks, the
    /// one that counts last sees both markers, so at least one flips the batch; the
    /// condition on `generating` makes the second flip a no-op. A worker that died between
    /// its marker and this check is covered by the redelivered job, which runs the check
    /// even though it skips the chunk.
    pub async fn mark_ready_if_complete(
        &self,
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let mut done = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
                .expression_attribute_values(":pk", s(batch_pk(batch.number)))
                .expression_attribute_values(":chunk", s("CHUNK#"))
                .consistent_read(true)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("count chunk markers", e))?;
            done += out.count as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        if done < batch.plan.chunks() as u64 {
            return Ok(false);
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(batch_pk(batch.number), "BATCH")))
            .update_expression("SET #st = :ready, ready_at = :now")
            .condition_expression("#st = :generating")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":ready", s(BatchStatus::Ready.as_str()))
            .expression_attribute_values(":generating", s(BatchStatus::Generating.as_str()))
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify("mark batch ready", e)),
        }
    }
}

/// The admin routes' port over CodesTable (answers in the activity table): translations.
impl BatchRecords for CodesStore {
    async fn allocate_number(&self) -> Result<Option<u32>, InfraError> {
        self.allocate_batch_number().await
    }
    async fn create(
        &self,
        batch: &Batch,
        created_by: &str,
        answer: Option<&KeyedAnswer>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        self.create_answered(batch, created_by, answer).await
    }
    async fn answered(
        &self,
        key: &KeyedRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        match &self.answers {
            Some(answers) => answers.answered_request(key, now).await,
            None => Ok(None),
        }
    }
    async fn batch(&self, number: u32) -> Result<Option<Batch>, InfraError> {
        self.get_batch(number).await
    }
    async fn chunk_markers(&self, number: u32) -> Result<Vec<ChunkMarker>, InfraError> {
        CodesStore::chunk_markers(self, number).await
    }
    async fn zones(&self) -> Result<Zones, InfraError> {
        // A store built without the table is a wiring mistake, not "every zone is UTC".
        let table = self.programme.as_deref().ok_or_else(|| {
            InfraError::permanent(
                "read zones",
                "the codes store was built without ProgrammeTable",
            )
        })?;
        read_zones(&self.client, table).await
    }
}

/// The worker's ports over CodesTable.
impl BatchProgress for CodesStore {
    async fn batch(&self, number: u32) -> Result<Option<Batch>, InfraError> {
        self.get_batch(number).await
    }
    async fn chunk_done(&self, number: u32, chunk: u32) -> Result<bool, InfraError> {
        CodesStore::chunk_done(self, number, chunk).await
    }
    async fn mark_chunk_done(&self, number: u32, marker: &ChunkMarker) -> Result<(), InfraError> {
        CodesStore::mark_chunk_done(self, number, marker).await
    }
    async fn mark_ready_if_complete(
        &self,
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        CodesStore::mark_ready_if_complete(self, batch, now).await
    }
}

impl CodeWriter for CodesStore {
    async fn put_codes(&self, batch: &Batch, codes: &[Code]) -> Result<WriteStats, InfraError> {
        CodesStore::put_codes(self, batch, codes).await
    }
}

fn batch_item(batch: &Batch, created_by: &str) -> Item {
    let spec = &batch.spec;
    let mut item = key(batch_pk(batch.number), "BATCH");
    item.extend([
        ("batch_number".to_string(), n(batch.number)),
        ("sku".to_string(), s(&spec.sku)),
        ("product_type".to_string(), s(&spec.product_type)),
        ("pack_size".to_string(), s(spec.pack_size.to_string())),
        ("points_per_pack".to_string(), n(spec.points_per_pack.get())),
        ("region".to_string(), s(spec.region.as_str())),
        ("valid_until".to_string(), s(spec.valid_until.to_string())),
        ("count".to_string(), n(spec.count)),
        ("chunk_size".to_string(), n(batch.plan.chunk_size)),
        ("chunks".to_string(), n(batch.plan.chunks())),
        ("seed".to_string(), s(STANDARD.encode(batch.seed.0))),
        ("status".to_string(), s(batch.status.as_str())),
        ("created_at".to_string(), s(batch.created_at.to_rfc3339())),
        ("created_by".to_string(), s(created_by)),
    ]);
    item
}

/// What a refused order write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateRefusal {
    BatchExists,
    KeyTaken,
}

fn batch_from_item(number: u32, item: &Item) -> Result<Batch, InfraError> {
    let u32_of = |attr: &str| -> Result<u32, InfraError> {
        u32::try_from(item.number(attr)?).map_err(decode_err)
    };
    let seed: [u8; 32] = STANDARD
        .decode(item.string("seed")?)
        .map_err(decode_err)?
        .try_into()
        .map_err(|_| decode_err("seed is not 32 bytes"))?;
    let spec = BatchSpec {
        sku: item.string("sku")?.to_string(),
        product_type: item.string("product_type")?.to_string(),
        pack_size: PackSize::parse(item.string("pack_size")?).map_err(decode_err)?,
        points_per_pack: Points(item.number("points_per_pack")?),
        region: RegionId::parse(item.string("region")?).map_err(decode_err)?,
        valid_until: item.string("valid_until")?.parse().map_err(decode_err)?,
        count: u32_of("count")?,
    };
    Ok(Batch {
        number,
        plan: ChunkPlan {
            count: spec.count,
            chunk_size: u32_of("chunk_size")?,
        },
        spec,
        seed: BatchSeed(seed),
        status: BatchStatus::parse(item.string("status")?)
            .ok_or_else(|| decode_err("unknown status"))?,
        created_at: DateTime::parse_from_rfc3339(item.string("created_at")?)
            .map_err(decode_err)?
            .with_timezone(&Utc),
    })
}

fn marker_from_item(item: &Item) -> Result<ChunkMarker, InfraError> {
    Ok(ChunkMarker {
        chunk: u32::try_from(item.number("chunk")?).map_err(decode_err)?,
        codes: u32::try_from(item.number("codes")?).map_err(decode_err)?,
        exports: ChunkExports {
            csv_key: item.string("csv_key")?.to_string(),
            qr_prefix: item.string("qr_prefix")?.to_string(),
        },
        done_at: DateTime::parse_from_rfc3339(item.string("done_at")?)
            .map_err(decode_err)?
            .with_timezone(&Utc),
    })
}

/// Reads one code item as stored, for checks and tools. `None` if it does not exist.
pub async fn read_code(
    client: &Client,
    table: &str,
    code: &Code,
) -> Result<Option<Item>, InfraError> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key(format!("CODE#{}", code.canonical()), "CODE")))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("read code", e))?;
    Ok(out.item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn chunk_markers_sort_in_chunk_order() {
        let mut sks: Vec<String> = [10, 2, 100, 0].into_iter().map(chunk_sk).collect();
        sks.sort();
        assert_eq!(
            sks,
            [
                "CHUNK#000000",
                "CHUNK#000002",
                "CHUNK#000010",
                "CHUNK#000100"
            ]
        );
    }

    #[test]
    fn a_stored_batch_with_a_short_seed_is_reported_as_corrupt_not_accepted() {
        let mut item = key("BATCH#1", "BATCH");
        for (k, v) in [
            ("sku", "S"),
            ("product_type", "T"),
            ("pack_size", "500 ml"),
            ("region", "north"),
            ("valid_until", "2030-01-01"),
            ("status", "generating"),
            ("created_at", "2026-11-22T10:00:00+00:00"),
        ] {
            item.insert(k.to_string(), s(v));
        }
        for k in ["points_per_pack", "count", "chunk_size"] {
            item.insert(k.to_string(), n(5));
        }
        item.insert("seed".to_string(), s(STANDARD.encode([1u8; 32])));
        let batch = batch_from_item(1, &item).unwrap();
        assert_eq!(batch.seed, BatchSeed([1; 32]));
        assert_eq!(batch.plan.chunks(), 1);
        item.insert("seed".to_string(), s(STANDARD.encode([1u8; 16])));
        assert!(!batch_from_item(1, &item).unwrap_err().retryable);
        item.insert("seed".to_string(), AttributeValue::N("1".into()));
        assert!(batch_from_item(1, &item).is_err());
    }
}
