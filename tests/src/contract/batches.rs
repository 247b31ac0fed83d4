//! The contracts of the batch ports, run against both adapters: the memory ones
//! (`tests/tests/memory/`) and CodesStore, SQS and S3 on the emulator
//! (`tests/tests/integration/contract.rs`).
//!
//! - [`BatchRecords`], [`BatchProgress`] and [`CodeWriter`]: [`MemoryBatches`] and
//!   [`CodesStore`] (answers in the activity table), cases over a [`BatchesHarness`],
//!   [`batch_store_contract!`](crate::batch_store_contract).
//! - [`JobQueue`]: [`MemoryJobs`] and [`SqsJobQueue`], [`job_queue_contract!`](crate::job_queue_contract).
//! - [`ExportStore`] and [`ExportLinks`]: [`MemoryExports`] and [`S3Exports`], the link
//!   followed as a client would, [`exports_contract!`](crate::exports_contract).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use loyalty_domain::action::KeyedRequest;
use loyalty_domain::batch::{
    Batch, BatchProgress, BatchRecords, BatchSeed, BatchSpec, BatchStatus, ChunkExports, ChunkJob,
    ChunkMarker, ChunkPlan, CodeWriter, ExportLinks, ExportStore, JobQueue, KeyedAnswer, PackSize,
};
use loyalty_domain::code::Code;
use loyalty_domain::ids::{IdempotencyKey, RegionId};
use loyalty_domain::zone::{Zone, ZoneSettings, Zones};
use loyalty_domain::Points;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::memory::batches::BatchesBug;
use loyalty_platform::memory::{MemoryBatches, MemoryExports, MemoryJobs};
use loyalty_platform::stores::batch_jobs::SqsJobQueue;
use loyalty_platform::stores::codes::{read_code, CodesStore};
use loyalty_platform::stores::exports::S3Exports;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestStack;

// ================================================================ batch records

/// The records adapter, with observation of stored codes through its own storage.
#[allow(async_fn_in_trait)]
pub trait BatchesHarness {
    type Store: BatchRecords + BatchProgress + CodeWriter;
    fn store(&self) -> &Self::Store;
    /// A stored code's batch and status.
    async fn code(&self, code: &Code) -> Option<(u32, String)>;
    /// Sets the time zones as accrual's admin routes do.
    async fn set_zones(&self, zones: &Zones);
}

pub struct MemoryBatchesHarness(MemoryBatches);

pub async fn memory_batches() -> MemoryBatchesHarness {
    MemoryBatchesHarness(MemoryBatches::new())
}

/// A memory store with a planted bug, to show the contract catches it.
pub fn memory_batches_with_bug(bug: BatchesBug) -> MemoryBatchesHarness {
    MemoryBatchesHarness(MemoryBatches::new().with_bug(bug))
}

impl BatchesHarness for MemoryBatchesHarness {
    type Store = MemoryBatches;
    fn store(&self) -> &MemoryBatches {
        &self.0
    }
    async fn code(&self, code: &Code) -> Option<(u32, String)> {
        self.0.code(code).map(|c| (c.batch, c.status.to_string()))
    }
    async fn set_zones(&self, zones: &Zones) {
        self.0.set_zones(zones.clone());
    }
}

pub struct DynamoBatchesHarness {
    stack: TestStack,
    store: CodesStore,
}

pub async fn dynamo_batches() -> DynamoBatchesHarness {
    let stack = TestStack::for_function("CodesAdminFunction").await;
    let store = CodesStore::new(stack.dynamodb(), stack.table_name("CodesTable"))
        .with_answers(stack.table_name("ActivityTable"))
        .with_zones(stack.table_name("ProgrammeTable"));
    DynamoBatchesHarness { stack, store }
}

impl BatchesHarness for DynamoBatchesHarness {
    type Store = CodesStore;
    fn store(&self) -> &CodesStore {
        &self.store
    }
    async fn code(&self, code: &Code) -> Option<(u32, String)> {
        let item = read_code(
            &self.stack.dynamodb(),
            self.stack.table_name("CodesTable"),
            code,
        )
        .await
        .unwrap()?;
        Some((
            u32::try_from(item.number("batch_id").unwrap()).unwrap(),
            item.string("status").unwrap().to_string(),
        ))
    }
    /// Through accrual's settings adapter, on the same ProgrammeTable.
    async fn set_zones(&self, zones: &Zones) {
        let settings = self.stack.earning_store();
        settings
            .put_programme_zone(zones.programme, at(0))
            .await
            .unwrap();
        for (region, zone) in &zones.regions {
            settings
                .put_region_zone(region, *zone, at(0))
                .await
                .unwrap();
        }
    }
}

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + Duration::minutes(minute)
}

fn batch(number: u32, count: u32, chunk_size: u32) -> Batch {
    Batch {
        number,
        spec: BatchSpec {
            sku: "COLA-05".into(),
            product_type: "Cola 0.5 l PET".into(),
            pack_size: PackSize::Millilitres(500),
            points_per_pack: Points(10),
            region: RegionId::parse("north").unwrap(),
            valid_until: NaiveDate::from_ymd_opt(2030, 12, 31).unwrap(),
            count,
        },
        seed: BatchSeed([number as u8; 32]),
        plan: ChunkPlan { count, chunk_size },
        status: BatchStatus::Generating,
        created_at: at(0),
    }
}

fn answer(key: &str, fingerprint: &str, batch: u32) -> KeyedAnswer {
    KeyedAnswer {
        key: KeyedRequest {
            scope: "admin-1".into(),
            key: IdempotencyKey::parse(key).unwrap(),
            fingerprint: fingerprint.into(),
        },
        status: 202,
        body: format!("{{\"batch\":{batch}}}"),
    }
}

fn marker(chunk: u32, codes: u32) -> ChunkMarker {
    ChunkMarker {
        chunk,
        codes,
        exports: ChunkExports {
            csv_key: format!("batches/1/chunk-{chunk}.csv"),
            qr_prefix: format!("batches/1/qr/chunk-{chunk}/"),
        },
        done_at: at(chunk as i64),
    }
}

/// Orders read the zones accrual's admin routes write: UTC until set, then the programme's
/// and each region's own.
pub async fn orders_are_dated_in_the_zones_accrual_sets<H: BatchesHarness>(h: H) {
    assert_eq!(h.store().zones().await.unwrap(), Zones::default());
    let zones = Zones {
        programme: Zone::parse("Asia/Omsk").unwrap(),
        regions: [(
            RegionId::parse("south").unwrap(),
            Zone::parse("America/Bogota").unwrap(),
        )]
        .into(),
    };
    h.set_zones(&zones).await;
    assert_eq!(h.store().zones().await.unwrap(), zones);
}

/// Numbers are handed out from 1, each once.
pub async fn batch_numbers_are_allocated_in_order_from_one<H: BatchesHarness>(h: H) {
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(h.store().allocate_number().await.unwrap());
    }
    assert_eq!(got, [Some(1), Some(2), Some(3)]);
}

/// A batch reads back as written, through either port; an unknown number is none.
pub async fn a_batch_reads_back_as_it_was_written<H: BatchesHarness>(h: H) {
    let b = batch(1, 2_500, 1_000);
    h.store()
        .create(&b, "admin-1", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        BatchRecords::batch(h.store(), 1).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(BatchProgress::batch(h.store(), 1).await.unwrap(), Some(b));
    assert_eq!(BatchRecords::batch(h.store(), 2).await.unwrap(), None);
}

/// A number that exists is refused, and the first batch stays as it was.
pub async fn an_existing_batch_number_is_refused_and_keeps_the_first_batch<H: BatchesHarness>(
    h: H,
) {
    let first = batch(1, 2_500, 1_000);
    h.store()
        .create(&first, "admin-1", None)
        .await
        .unwrap()
        .unwrap();
    let second = batch(1, 10, 5);
    assert!(h.store().create(&second, "admin-2", None).await.is_err());
    assert_eq!(
        BatchRecords::batch(h.store(), 1).await.unwrap(),
        Some(first)
    );
}

/// The answer is written with the batch; the same key then refuses another batch with the
/// stored answer, and writes nothing.
pub async fn an_answer_written_with_its_batch_holds_its_key<H: BatchesHarness>(h: H) {
    let first = answer("order-key-1", "fp-1", 1);
    h.store()
        .create(&batch(1, 10, 5), "admin-1", Some(&first))
        .await
        .unwrap()
        .unwrap();
    let stored = h
        .store()
        .answered(&first.key, at(1))
        .await
        .unwrap()
        .expect("the answer is stored");
    assert_eq!(
        (
            stored.fingerprint.as_str(),
            stored.status,
            stored.body.as_str()
        ),
        ("fp-1", 202, "{\"batch\":1}")
    );

    let again = h
        .store()
        .create(
            &batch(2, 10, 5),
            "admin-1",
            Some(&answer("order-key-1", "fp-2", 2)),
        )
        .await
        .unwrap();
    let refused = again
        .expect_err("the key is taken")
        .expect("by a live answer");
    assert_eq!(refused.body, "{\"batch\":1}");
    assert_eq!(BatchRecords::batch(h.store(), 2).await.unwrap(), None);

    let other_caller = KeyedRequest {
        scope: "admin-2".into(),
        ..first.key.clone()
    };
    assert_eq!(
        h.store().answered(&other_caller, at(1)).await.unwrap(),
        None
    );
}

/// An answer holds its key for a day; after that the key is free again.
pub async fn an_answer_expires_after_a_day<H: BatchesHarness>(h: H) {
    let first = answer("order-key-1", "fp-1", 1);
    h.store()
        .create(&batch(1, 10, 5), "admin-1", Some(&first))
        .await
        .unwrap()
        .unwrap();
    let next_day = at(24 * 60 + 1);
    assert_eq!(
        h.store().answered(&first.key, next_day).await.unwrap(),
        None
    );
    let mut later = batch(2, 10, 5);
    later.created_at = next_day;
    h.store()
        .create(&later, "admin-1", Some(&answer("order-key-1", "fp-2", 2)))
        .await
        .unwrap()
        .expect("an expired answer no longer holds the key");
    assert_eq!(
        h.store()
            .answered(&first.key, next_day)
            .await
            .unwrap()
            .map(|a| a.fingerprint),
        Some("fp-2".to_string())
    );
}

/// Markers list in chunk order, only the batch's own.
pub async fn chunk_markers_list_in_chunk_order<H: BatchesHarness>(h: H) {
    let b = batch(1, 200, 10);
    h.store()
        .create(&b, "admin-1", None)
        .await
        .unwrap()
        .unwrap();
    for chunk in [10, 2, 0] {
        h.store()
            .mark_chunk_done(1, &marker(chunk, 10))
            .await
            .unwrap();
    }
    h.store().mark_chunk_done(2, &marker(1, 10)).await.unwrap();
    let markers = h.store().chunk_markers(1).await.unwrap();
    assert_eq!(
        markers.iter().map(|m| m.chunk).collect::<Vec<_>>(),
        [0, 2, 10]
    );
    assert_eq!(markers[1], marker(2, 10));
    assert!(h.store().chunk_done(1, 2).await.unwrap());
    assert!(!h.store().chunk_done(1, 1).await.unwrap());
}

/// The batch flips to ready once, by the call that finds every chunk marked.
pub async fn a_batch_becomes_ready_once_when_every_chunk_is_marked<H: BatchesHarness>(h: H) {
    let b = batch(1, 30, 10);
    h.store()
        .create(&b, "admin-1", None)
        .await
        .unwrap()
        .unwrap();
    for chunk in [0, 2] {
        h.store()
            .mark_chunk_done(1, &marker(chunk, 10))
            .await
            .unwrap();
        assert!(!h.store().mark_ready_if_complete(&b, at(5)).await.unwrap());
    }
    h.store().mark_chunk_done(1, &marker(1, 10)).await.unwrap();
    assert!(h.store().mark_ready_if_complete(&b, at(5)).await.unwrap());
    assert!(
        !h.store().mark_ready_if_complete(&b, at(6)).await.unwrap(),
        "the second flip is a no-op"
    );
    let stored = BatchRecords::batch(h.store(), 1).await.unwrap().unwrap();
    assert_eq!(stored.status, BatchStatus::Ready);
}

/// Codes are stored issued, as codes of their batch; writing them again changes nothing.
pub async fn codes_are_stored_as_issued_codes_of_their_batch<H: BatchesHarness>(h: H) {
    let b = batch(1, 60, 60);
    h.store()
        .create(&b, "admin-1", None)
        .await
        .unwrap()
        .unwrap();
    let codes = Code::chunk(&b.seed.0, 1, 0, 60);
    for _ in 0..2 {
        h.store().put_codes(&b, &codes).await.unwrap();
    }
    for c in [&codes[0], &codes[59]] {
        assert_eq!(h.code(c).await, Some((1, "issued".to_string())));
    }
    let unwritten = Code::chunk(&b.seed.0, 1, 1, 1);
    assert_eq!(h.code(&unwritten[0]).await, None);
}

#[macro_export]
macro_rules! batch_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(batches, $harness;
            batch_numbers_are_allocated_in_order_from_one,
            orders_are_dated_in_the_zones_accrual_sets,
            a_batch_reads_back_as_it_was_written,
            an_existing_batch_number_is_refused_and_keeps_the_first_batch,
            an_answer_written_with_its_batch_holds_its_key,
            an_answer_expires_after_a_day,
            chunk_markers_list_in_chunk_order,
            a_batch_becomes_ready_once_when_every_chunk_is_marked,
            codes_are_stored_as_issued_codes_of_their_batch,
        );
    };
}

// ================================================================ job queue

/// The queue adapter, with a consumer's view of it.
#[allow(async_fn_in_trait)]
pub trait JobsHarness {
    type Queue: JobQueue;
    fn queue(&self) -> &Self::Queue;
    /// Every job waiting, as consumers receive them (in any order), removed.
    async fn receive_all(&self) -> Vec<ChunkJob>;
}

pub struct MemoryJobsHarness(MemoryJobs);

pub async fn memory_jobs() -> MemoryJobsHarness {
    MemoryJobsHarness(MemoryJobs::new())
}

impl JobsHarness for MemoryJobsHarness {
    type Queue = MemoryJobs;
    fn queue(&self) -> &MemoryJobs {
        &self.0
    }
    async fn receive_all(&self) -> Vec<ChunkJob> {
        self.0.drain()
    }
}

pub struct SqsJobsHarness {
    stack: TestStack,
    queue: SqsJobQueue,
}

pub async fn sqs_jobs() -> SqsJobsHarness {
    let stack = TestStack::for_function("CodesAdminFunction").await;
    let queue = SqsJobQueue::new(stack.sqs(), stack.queue_url("BatchJobsQueue"));
    SqsJobsHarness { stack, queue }
}

impl JobsHarness for SqsJobsHarness {
    type Queue = SqsJobQueue;
    fn queue(&self) -> &SqsJobQueue {
        &self.queue
    }
    async fn receive_all(&self) -> Vec<ChunkJob> {
        let sqs = self.stack.sqs();
        let url = self.stack.queue_url("BatchJobsQueue");
        let mut jobs = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return jobs;
            }
            for m in messages {
                jobs.push(serde_json::from_str(m.body().unwrap()).unwrap());
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

/// Every job sent arrives once, however many requests the adapter needs for them.
pub async fn every_job_enqueued_is_received_once<H: JobsHarness>(h: H) {
    let jobs: Vec<ChunkJob> = (0..23).map(|chunk| ChunkJob { batch: 4, chunk }).collect();
    h.queue().enqueue(&jobs).await.unwrap();
    let mut got = h.receive_all().await;
    got.sort_by_key(|j| (j.batch, j.chunk));
    assert_eq!(got, jobs);
}

/// Nothing to send sends nothing.
pub async fn no_jobs_send_nothing<H: JobsHarness>(h: H) {
    h.queue().enqueue(&[]).await.unwrap();
    assert!(h.receive_all().await.is_empty());
}

#[macro_export]
macro_rules! job_queue_contract {
    ($harness:path) => {
        $crate::contract_cases!(batches, $harness;
            every_job_enqueued_is_received_once,
            no_jobs_send_nothing,
        );
    };
}

// ================================================================ exports

/// The exports adapter, with a reader of objects and a client that follows links.
#[allow(async_fn_in_trait)]
pub trait ExportsHarness {
    type Exports: ExportStore + ExportLinks;
    fn exports(&self) -> &Self::Exports;
    /// The object's content type and body, as stored.
    async fn object(&self, key: &str) -> Option<(String, Vec<u8>)>;
    /// What a client downloading `url` gets.
    async fn download(&self, url: &str) -> Option<Vec<u8>>;
}

pub struct MemoryExportsHarness(MemoryExports);

pub async fn memory_exports() -> MemoryExportsHarness {
    MemoryExportsHarness(MemoryExports::new())
}

impl ExportsHarness for MemoryExportsHarness {
    type Exports = MemoryExports;
    fn exports(&self) -> &MemoryExports {
        &self.0
    }
    async fn object(&self, key: &str) -> Option<(String, Vec<u8>)> {
        self.0.object(key).map(|o| (o.content_type, o.body))
    }
    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let key = url.strip_prefix("memory://")?.split('?').next()?;
        self.0.object(key).map(|o| o.body)
    }
}

pub struct S3ExportsHarness {
    stack: TestStack,
    exports: S3Exports,
}

pub async fn s3_exports() -> S3ExportsHarness {
    let stack = TestStack::for_function("BatchWorkerFunction").await;
    let exports = S3Exports::new(stack.s3(), stack.bucket("ExportsBucket"));
    S3ExportsHarness { stack, exports }
}

impl ExportsHarness for S3ExportsHarness {
    type Exports = S3Exports;
    fn exports(&self) -> &S3Exports {
        &self.exports
    }
    async fn object(&self, key: &str) -> Option<(String, Vec<u8>)> {
        let out = self
            .stack
            .s3()
            .get_object()
            .bucket(self.stack.bucket("ExportsBucket"))
            .key(key)
            .send()
            .await
            .ok()?;
        let content_type = out.content_type().unwrap_or_default().to_string();
        Some((content_type, out.body.collect().await.ok()?.to_vec()))
    }
    /// A plain HTTP/1.1 GET of the link, as a browser would send it (no credentials).
    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_at(rest.find('/')?);
        let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&response[..split]).to_string();
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        let body = &response[split + 4..];
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Some(dechunk(body));
        }
        Some(body.to_vec())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
    out
}

/// An object reads back with its content type; writing it again replaces it.
pub async fn an_export_reads_back_with_its_content_type<H: ExportsHarness>(h: H) {
    let key = "batches/1/chunk-0.csv";
    h.exports()
        .put(key, b"code\nA\n".to_vec(), "text/csv; charset=utf-8")
        .await
        .unwrap();
    h.exports()
        .put(key, b"code\nB\n".to_vec(), "text/csv; charset=utf-8")
        .await
        .unwrap();
    assert_eq!(
        h.object(key).await,
        Some(("text/csv; charset=utf-8".to_string(), b"code\nB\n".to_vec()))
    );
    assert_eq!(h.object("batches/1/chunk-1.csv").await, None);
}

/// A link downloads the object without credentials, and says when it ends.
pub async fn a_link_downloads_its_export_and_says_when_it_ends<H: ExportsHarness>(h: H) {
    let key = "batches/1/chunk-0.csv";
    h.exports()
        .put(key, b"code\nA\n".to_vec(), "text/csv; charset=utf-8")
        .await
        .unwrap();
    // Signed from the wall clock: S3 checks a link's time against its own.
    let now = Utc::now();
    let link = h
        .exports()
        .link(key, now, Duration::minutes(15))
        .await
        .unwrap();
    assert_eq!(link.expires_at, now + Duration::minutes(15));
    assert!(link.url.contains("chunk-0.csv"), "{}", link.url);
    assert_eq!(h.download(&link.url).await, Some(b"code\nA\n".to_vec()));
}

#[macro_export]
macro_rules! exports_contract {
    ($harness:path) => {
        $crate::contract_cases!(batches, $harness;
            an_export_reads_back_with_its_content_type,
            a_link_downloads_its_export_and_says_when_it_ends,
        );
    };
}
