//! The batch records, their progress and the codes in memory: [`BatchRecords`],
//! [`BatchProgress`] and [`CodeWriter`] over one world, as [`crate::stores::codes::CodesStore`]
//! keeps them in one table (answers to orders as the activity table keeps them).
//!
//! A handle is cheap to clone and every clone shares the world, so a test can give one to
//! codes-admin and one to the batch worker and watch both.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use loyalty_domain::action::{KeyedRequest, StoredAnswer};
use loyalty_domain::batch::{
    Batch, BatchProgress, BatchRecords, BatchStatus, ChunkMarker, CodeWriter, KeyedAnswer,
    WriteStats,
};
use loyalty_domain::code::{Code, BATCHES};
use loyalty_domain::zone::Zones;
use loyalty_domain::InfraError;

/// How long an answer holds its key, as in `crate::idempotency`.
const ANSWER_TTL_SECS: i64 = 24 * 3600;

/// One code as `put_codes` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub batch: u32,
    pub status: &'static str,
}

#[derive(Debug, Default)]
pub struct BatchesWorld {
    /// The last batch number handed out (`SEQUENCE#BATCH`).
    pub last_number: u32,
    pub batches: BTreeMap<u32, (Batch, String)>,
    /// Done-markers by (batch, chunk): iteration is in chunk order, as the sort key's is.
    pub markers: BTreeMap<(u32, u32), ChunkMarker>,
    /// Codes by canonical form.
    pub codes: BTreeMap<String, StoredCode>,
    /// How many times each code was written: a redelivered job must not write again.
    pub code_writes: BTreeMap<String, u32>,
    /// Answers by (scope, key), with the second they expire at.
    pub answers: BTreeMap<(String, String), (StoredAnswer, i64)>,
    /// When the batch flipped to ready.
    pub ready_at: BTreeMap<u32, DateTime<Utc>>,
    /// The time zones (on DynamoDB accrual's `ZONES` items in ProgrammeTable).
    pub zones: Zones,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryBatches {
    world: Arc<Mutex<BatchesWorld>>,
    bug: Option<BatchesBug>,
}

/// Bugs to plant, only to prove the contract (`tests/src/contract/batches.rs`) catches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchesBug {
    /// Creates the batch whatever answer holds its key.
    IgnoreAnswers,
    /// Reports every complete check as the one that flipped the batch.
    ReadyEveryCall,
}

fn answer_key(key: &KeyedRequest) -> (String, String) {
    (key.scope.clone(), key.key.as_str().to_string())
}

impl MemoryBatches {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_bug(mut self, bug: BatchesBug) -> Self {
        self.bug = Some(bug);
        self
    }

    /// Starts the number sequence after `last`, as if that many batches had been ordered.
    pub fn with_last_number(self, last: u32) -> Self {
        self.world.lock().unwrap().last_number = last;
        self
    }

    /// Sets the time zones (what accrual's admin routes write).
    pub fn set_zones(&self, zones: Zones) {
        self.world.lock().unwrap().zones = zones;
    }

    pub fn inspect<R>(&self, f: impl FnOnce(&BatchesWorld) -> R) -> R {
        f(&self.world.lock().unwrap())
    }

    /// The stored batch, as the admin routes read it.
    pub fn stored(&self, number: u32) -> Option<Batch> {
        self.inspect(|w| w.batches.get(&number).map(|(b, _)| b.clone()))
    }

    pub fn code(&self, code: &Code) -> Option<StoredCode> {
        self.inspect(|w| w.codes.get(code.canonical()).cloned())
    }

    /// The largest number of times any one code was written.
    pub fn most_writes_of_one_code(&self) -> u32 {
        self.inspect(|w| w.code_writes.values().copied().max().unwrap_or(0))
    }

    fn live(w: &BatchesWorld, key: &KeyedRequest, now: DateTime<Utc>) -> Option<StoredAnswer> {
        w.answers
            .get(&answer_key(key))
            .filter(|(_, ttl)| *ttl > now.timestamp())
            .map(|(a, _)| a.clone())
    }
}

impl BatchRecords for MemoryBatches {
    async fn allocate_number(&self) -> Result<Option<u32>, InfraError> {
        let mut w = self.world.lock().unwrap();
        // `attribute_not_exists(last) OR last < :max`, with batch 0 never handed out.
        if w.last_number >= BATCHES - 1 {
            return Ok(None);
        }
        w.last_number += 1;
        Ok(Some(w.last_number))
    }

    async fn create(
        &self,
        batch: &Batch,
        created_by: &str,
        answer: Option<&KeyedAnswer>,
    ) -> Result<Result<(), Option<StoredAnswer>>, InfraError> {
        let mut w = self.world.lock().unwrap();
        // Every condition before any write, as one transaction: the batch must be new, the
        // key free (or its answer expired).
        let exists = w.batches.contains_key(&batch.number);
        if let Some(a) = answer.filter(|_| self.bug != Some(BatchesBug::IgnoreAnswers)) {
            let held = w.answers.get(&answer_key(&a.key)).cloned();
            if let Some((stored, ttl)) = held {
                if ttl > batch.created_at.timestamp() {
                    return Ok(Err(Some(stored)));
                }
            }
        }
        if exists {
            return Err(InfraError::permanent(
                "create batch",
                format!("refused: batch {} exists", batch.number),
            ));
        }
        w.batches
            .insert(batch.number, (batch.clone(), created_by.to_string()));
        if let Some(a) = answer {
            w.answers.insert(
                answer_key(&a.key),
                (
                    StoredAnswer {
                        fingerprint: a.key.fingerprint.clone(),
                        status: a.status,
                        body: a.body.clone(),
                        content_type: None,
                    },
                    batch.created_at.timestamp() + ANSWER_TTL_SECS,
                ),
            );
        }
        Ok(Ok(()))
    }

    async fn answered(
        &self,
        key: &KeyedRequest,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredAnswer>, InfraError> {
        Ok(self.inspect(|w| Self::live(w, key, now)))
    }

    async fn batch(&self, number: u32) -> Result<Option<Batch>, InfraError> {
        Ok(self.stored(number))
    }

    async fn chunk_markers(&self, number: u32) -> Result<Vec<ChunkMarker>, InfraError> {
        Ok(self.inspect(|w| {
            w.markers
                .range((number, 0)..=(number, u32::MAX))
                .map(|(_, m)| m.clone())
                .collect()
        }))
    }

    async fn zones(&self) -> Result<Zones, InfraError> {
        Ok(self.inspect(|w| w.zones.clone()))
    }
}

impl BatchProgress for MemoryBatches {
    async fn batch(&self, number: u32) -> Result<Option<Batch>, InfraError> {
        Ok(self.stored(number))
    }

    async fn chunk_done(&self, number: u32, chunk: u32) -> Result<bool, InfraError> {
        Ok(self.inspect(|w| w.markers.contains_key(&(number, chunk))))
    }

    async fn mark_chunk_done(&self, number: u32, marker: &ChunkMarker) -> Result<(), InfraError> {
        self.world
            .lock()
            .unwrap()
            .markers
            .insert((number, marker.chunk), marker.clone());
        Ok(())
    }

    async fn mark_ready_if_complete(
        &self,
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let mut w = self.world.lock().unwrap();
        let done = w
            .markers
            .range((batch.number, 0)..=(batch.number, u32::MAX))
            .count();
        if done < batch.plan.chunks() as usize {
            return Ok(false);
        }
        // `#st = :generating`: only the first flip counts.
        match w.batches.get_mut(&batch.number) {
            Some((stored, _)) if stored.status == BatchStatus::Generating => {
                stored.status = BatchStatus::Ready;
                w.ready_at.insert(batch.number, now);
                Ok(true)
            }
            Some(_) => Ok(self.bug == Some(BatchesBug::ReadyEveryCall)),
            None => Err(InfraError::permanent(
                "mark batch ready",
                format!("no batch {}", batch.number),
            )),
        }
    }
}

impl CodeWriter for MemoryBatches {
    async fn put_codes(&self, batch: &Batch, codes: &[Code]) -> Result<WriteStats, InfraError> {
        let mut w = self.world.lock().unwrap();
        for code in codes {
            let canonical = code.canonical().to_string();
            w.codes.insert(
                canonical.clone(),
                StoredCode {
                    batch: batch.number,
                    status: "issued",
                },
            );
            *w.code_writes.entry(canonical).or_default() += 1;
        }
        Ok(WriteStats::default())
    }
}
