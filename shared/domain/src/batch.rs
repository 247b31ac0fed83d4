//! Batches of printed codes: what an admin orders, and how its generation is cut into chunks
//! that workers process independently.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use std::future::Future;

use crate::action::{KeyedRequest, StoredAnswer};
use crate::code::Code;
use crate::ids::RegionId;
use crate::points::Points;
use crate::zone::Zones;
use crate::{Classified, InfraError, Kind};

/// Codes per chunk: one SQS job, one BatchWriteItem stream and one CSV export each. 10,000
/// codes are written and exported well within the worker's 15-minute limit.
pub const CHUNK_SIZE: u32 = 10_000;
pub const MAX_COUNT: u32 = 1_000_000;

/// A batch order as it arrives, before validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub sku: String,
    pub product_type: String,
    pub pack_size: String,
    pub points_per_pack: u64,
    pub region: String,
    /// `YYYY-MM-DD`: the last day on which a code may be claimed, in the claimant's region
    /// zone; not before today in the batch region's zone.
    pub valid_until: String,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchSpecError {
    #[error("sku must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    InvalidSku,
    #[error("product_type must be 1 to 80 printable characters")]
    InvalidProductType,
    #[error("pack_size must be a positive amount and a unit, e.g. \"500 ml\", \"0.5 l\", \"250 g\", \"1 kg\" or \"6 pcs\"")]
    InvalidPackSize,
    #[error(
        "points_per_pack must be a whole number from 1 to {}",
        Points::MAX_MOVEMENT
    )]
    InvalidPoints,
    #[error("region must be 1 to 32 characters of A-Z, a-z, 0-9, '-', '_' or ':'")]
    InvalidRegion,
    #[error("valid_until must be a date written YYYY-MM-DD")]
    InvalidValidUntil,
    #[error("valid_until is in the past (before today in the batch region's time zone)")]
    ValidUntilInPast,
    #[error("count must be from 1 to {MAX_COUNT}")]
    InvalidCount,
}

impl Classified for BatchSpecError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        match self {
            BatchSpecError::InvalidSku => "invalid_sku",
            BatchSpecError::InvalidProductType => "invalid_product_type",
            BatchSpecError::InvalidPackSize => "invalid_pack_size",
            BatchSpecError::InvalidPoints => "invalid_points_per_pack",
            BatchSpecError::InvalidRegion => "invalid_region",
            BatchSpecError::InvalidValidUntil => "invalid_valid_until",
            BatchSpecError::ValidUntilInPast => "valid_until_in_past",
            BatchSpecError::InvalidCount => "invalid_count",
        }
    }
}

/// A pack size in whole base units, so that "0.5 l" and "500 ml" are the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackSize {
    Millilitres(u32),
    Grams(u32),
    Pieces(u32),
}

impl PackSize {
    /// `<amount> <unit>` with unit ml, l, g, kg or pcs; litres and kilograms may have up to
    /// three decimals (they are stored as millilitres and grams).
    pub fn parse(raw: &str) -> Result<PackSize, BatchSpecError> {
        let bad = || BatchSpecError::InvalidPackSize;
        let raw = raw.trim();
        let split = raw
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (amount, unit) = (&raw[..split], raw[split..].trim());
        let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
        if whole.is_empty()
            || whole.len() > 7
            || frac.len() > 3
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        // Thousandths of the written unit, exactly: "0.5" is 500.
        let thousandths = whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(format!("{frac:0<3}").parse().ok()?))
            .ok_or_else(bad)?;
        let integral = frac.bytes().all(|b| b == b'0');
        let size = match unit.to_ascii_lowercase().as_str() {
            "ml" if integral => PackSize::Millilitres(whole),
            "l" => PackSize::Millilitres(thousandths),
            "g" if integral => PackSize::Grams(whole),
            "kg" => PackSize::Grams(thousandths),
            "pcs" if integral => PackSize::Pieces(whole),
            _ => return Err(bad()),
        };
        match size {
            PackSize::Millilitres(0) | PackSize::Grams(0) | PackSize::Pieces(0) => Err(bad()),
            size => Ok(size),
        }
    }
}

impl std::fmt::Display for PackSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackSize::Millilitres(n) => write!(f, "{n} ml"),
            PackSize::Grams(n) => write!(f, "{n} g"),
            PackSize::Pieces(n) => write!(f, "{n} pcs"),
        }
    }
}

/// A validated batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    pub sku: String,
    pub product_type: String,
    pub pack_size: PackSize,
    pub points_per_pack: Points,
    pub region: RegionId,
    /// Last day on which codes of this batch may be claimed, a date in the claimant's region
    /// zone (see [`crate::claim::ClaimAttempt::today`]).
    pub valid_until: NaiveDate,
    pub count: u32,
}

impl BatchSpec {
    /// Validates an order's fields; the first invalid one is reported. Whether `valid_until`
    /// is already past is [`BatchSpec::still_valid_at`]'s, which needs the zones: a bad
    /// field is refused before anything is read.
    pub fn parse(req: &BatchRequest) -> Result<BatchSpec, BatchSpecError> {
        let sku_ok = (1..=64).contains(&req.sku.len())
            && req
                .sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !sku_ok {
            return Err(BatchSpecError::InvalidSku);
        }
        let product_type = req.product_type.trim();
        let product_ok = (1..=80).contains(&product_type.chars().count())
            && !product_type.chars().any(char::is_control);
        if !product_ok {
            return Err(BatchSpecError::InvalidProductType);
        }
        let pack_size = PackSize::parse(&req.pack_size)?;
        let points_per_pack =
            Points::parse(req.points_per_pack).map_err(|_| BatchSpecError::InvalidPoints)?;
        let region = RegionId::parse(&req.region).map_err(|_| BatchSpecError::InvalidRegion)?;
        let valid_until = NaiveDate::parse_from_str(&req.valid_until, "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == req.valid_until)
            .ok_or(BatchSpecError::InvalidValidUntil)?;
        if !(1..=MAX_COUNT).contains(&req.count) {
            return Err(BatchSpecError::InvalidCount);
        }
        Ok(BatchSpec {
            sku: req.sku.clone(),
            product_type: product_type.to_string(),
            pack_size,
            points_per_pack,
            region,
            valid_until,
            count: req.count,
        })
    }

    /// Cuts the batch into chunks of `chunk_size` codes (normally [`CHUNK_SIZE`]).
    /// The spec of an order placed at `now`, unless its `valid_until` is in the past. The
    /// batch ships to its region, so that is when the region's zone (or the programme zone,
    /// for a region without one) has left the day behind: a batch valid until 30 November
    /// may still be ordered at 20:00 UTC that day for Bogotá, not for Omsk.
    pub fn still_valid_at(
        self,
        now: DateTime<Utc>,
        zones: &Zones,
    ) -> Result<BatchSpec, BatchSpecError> {
        if self.valid_until < zones.for_region(Some(&self.region)).date_of(now) {
            return Err(BatchSpecError::ValidUntilInPast);
        }
        Ok(self)
    }

    pub fn plan(&self, chunk_size: u32) -> ChunkPlan {
        assert!(chunk_size > 0, "a chunk holds at least one code");
        ChunkPlan {
            count: self.count,
            chunk_size,
        }
    }
}

/// How a batch is cut into chunks. The chunk size is stored with the batch, so a batch
/// keeps its plan even if [`CHUNK_SIZE`] changes between creation and a retried chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    pub count: u32,
    pub chunk_size: u32,
}

impl ChunkPlan {
    pub fn chunks(&self) -> u32 {
        self.count.div_ceil(self.chunk_size)
    }

    /// Codes in chunk `n`: `chunk_size`, except the last, which has the rest. `None` past
    /// the end.
    pub fn chunk_len(&self, n: u32) -> Option<u32> {
        let start = n.checked_mul(self.chunk_size).filter(|&s| s < self.count)?;
        Some((self.count - start).min(self.chunk_size))
    }
}

/// The random seed every code of a batch derives from. Redacted in `Debug`: it is as good as
/// the codes themselves.
#[derive(Clone, PartialEq, Eq)]
pub struct BatchSeed(pub [u8; 32]);

impl std::fmt::Debug for BatchSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchSeed(****)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStatus {
    Generating,
    Ready,
}

impl BatchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Generating => "generating",
            BatchStatus::Ready => "ready",
        }
    }

    pub fn parse(raw: &str) -> Option<BatchStatus> {
        match raw {
            "generating" => Some(BatchStatus::Generating),
            "ready" => Some(BatchStatus::Ready),
            _ => None,
        }
    }
}

/// A batch as stored. Its number is printed inside each of its codes (see
/// [`crate::code::BATCHES`]), so numbers are allocated from a counter, never reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub number: u32,
    pub spec: BatchSpec,
    pub seed: BatchSeed,
    pub plan: ChunkPlan,
    pub status: BatchStatus,
    pub created_at: DateTime<Utc>,
}

/// One SQS job: generate, store and export chunk `chunk` of batch number `batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkJob {
    pub batch: u32,
    pub chunk: u32,
}

// ---------------------------------------------------------------- ports

/// Where a finished chunk's exports are (object keys in the exports bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkExports {
    pub csv_key: String,
    pub qr_prefix: String,
}

/// A chunk's done-marker: its codes are stored and exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMarker {
    pub chunk: u32,
    pub codes: u32,
    pub exports: ChunkExports,
    pub done_at: DateTime<Utc>,
}

/// How many requests a code write took, for benchmarks (an adapter without requests
/// reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub requests: u64,
    pub retried_items: u64,
}

/// The answer to an order, to be stored under its Idempotency-Key with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedAnswer {
    pub key: KeyedRequest,
    pub status: u16,
    pub body: String,
}

/// The batch records, as the admin routes order and follow them.
pub trait BatchRecords: Send + Sync {
    /// The next unused batch number, or `None` when every number a code can carry is used.
    fn allocate_number(&self) -> impl Future<Output = Result<Option<u32>, InfraError>> + Send;

    /// Writes a new batch and, when given, the order's answer under its key, in one write.
    /// `Ok(Err(Some(stored)))`: a live answer holds the key and nothing was written;
    /// `Ok(Err(None))`: it held the key but expired since. A batch number that exists is
    /// an error (numbers come from [`BatchRecords::allocate_number`]), never overwritten.
    fn create(
        &self,
        batch: &Batch,
        created_by: &str,
        answer: Option<&KeyedAnswer>,
    ) -> impl Future<Output = Result<Result<(), Option<StoredAnswer>>, InfraError>> + Send;

    /// The live answer under `key`, whatever its fingerprint (the caller compares).
    fn answered(
        &self,
        key: &KeyedRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<StoredAnswer>, InfraError>> + Send;

    fn batch(&self, number: u32) -> impl Future<Output = Result<Option<Batch>, InfraError>> + Send;

    /// Every done-marker of a batch, in chunk order.
    fn chunk_markers(
        &self,
        number: u32,
    ) -> impl Future<Output = Result<Vec<ChunkMarker>, InfraError>> + Send;

    /// The programme's time zones (accrual's admin routes set them), which date an order's
    /// `valid_until` in its region.
    fn zones(&self) -> impl Future<Output = Result<Zones, InfraError>> + Send;
}

/// Where the chunk jobs of an order go: one job per chunk, each delivered at least once.
pub trait JobQueue: Send + Sync {
    fn enqueue(&self, jobs: &[ChunkJob]) -> impl Future<Output = Result<(), InfraError>> + Send;
}

/// A link an admin can download an export from, for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs download links to exports.
pub trait ExportLinks: Send + Sync {
    /// A link to the object `key`, valid from `now` for `valid_for`.
    fn link(
        &self,
        key: &str,
        now: DateTime<Utc>,
        valid_for: chrono::Duration,
    ) -> impl Future<Output = Result<ExportLink, InfraError>> + Send;
}

/// A batch's progress, as the worker reads and moves it.
pub trait BatchProgress: Send + Sync {
    fn batch(&self, number: u32) -> impl Future<Output = Result<Option<Batch>, InfraError>> + Send;

    fn chunk_done(
        &self,
        number: u32,
        chunk: u32,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Records that a chunk is stored and exported. Written last: its presence is what
    /// makes a redelivered job a no-op.
    fn mark_chunk_done(
        &self,
        number: u32,
        marker: &ChunkMarker,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// Flips the batch from generating to ready once every chunk has its marker; `true`
    /// only for the call that flipped it.
    fn mark_ready_if_complete(
        &self,
        batch: &Batch,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;
}

/// Stores generated codes as issued. Writing the same codes again is harmless: nobody can
/// have claimed a code of a chunk without a marker.
pub trait CodeWriter: Send + Sync {
    fn put_codes(
        &self,
        batch: &Batch,
        codes: &[Code],
    ) -> impl Future<Output = Result<WriteStats, InfraError>> + Send;
}

/// The exports bucket, as the worker writes it.
pub trait ExportStore: Send + Sync {
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 22 November 2026, 10:00 UTC.
    fn now() -> DateTime<Utc> {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn utc() -> Zones {
        Zones::default()
    }

    fn request() -> BatchRequest {
        BatchRequest {
            sku: "COLA-05".into(),
            product_type: "Cola 0.5 l PET".into(),
            pack_size: "0.5 l".into(),
            points_per_pack: 10,
            region: "north".into(),
            valid_until: "2027-12-31".into(),
            count: 25_000,
        }
    }

    fn error_of(edit: impl FnOnce(&mut BatchRequest)) -> &'static str {
        let mut req = request();
        edit(&mut req);
        BatchSpec::parse(&req)
            .and_then(|s| s.still_valid_at(now(), &utc()))
            .unwrap_err()
            .code()
    }

    #[test]
    fn a_valid_order_becomes_a_spec_with_normalised_pack_size() {
        let spec = BatchSpec::parse(&request())
            .and_then(|s| s.still_valid_at(now(), &utc()))
            .unwrap();
        assert_eq!(spec.pack_size, PackSize::Millilitres(500));
        assert_eq!(spec.points_per_pack, Points(10));
        assert_eq!(
            spec.valid_until,
            NaiveDate::from_ymd_opt(2027, 12, 31).unwrap()
        );
    }

    #[test]
    fn each_invalid_field_is_named_by_its_own_code() {
        assert_eq!(error_of(|r| r.sku = "COLA#05".into()), "invalid_sku");
        assert_eq!(error_of(|r| r.sku = String::new()), "invalid_sku");
        assert_eq!(
            error_of(|r| r.product_type = "  ".into()),
            "invalid_product_type"
        );
        assert_eq!(
            error_of(|r| r.product_type = "a\nb".into()),
            "invalid_product_type"
        );
        assert_eq!(
            error_of(|r| r.pack_size = "half a litre".into()),
            "invalid_pack_size"
        );
        assert_eq!(
            error_of(|r| r.points_per_pack = 0),
            "invalid_points_per_pack"
        );
        assert_eq!(
            error_of(|r| r.region = "north east".into()),
            "invalid_region"
        );
        assert_eq!(
            error_of(|r| r.valid_until = "31/12/2027".into()),
            "invalid_valid_until"
        );
        assert_eq!(
            error_of(|r| r.valid_until = "2027-02-30".into()),
            "invalid_valid_until"
        );
        assert_eq!(
            error_of(|r| r.valid_until = "2026-11-21".into()),
            "valid_until_in_past"
        );
        assert_eq!(error_of(|r| r.count = 0), "invalid_count");
        assert_eq!(error_of(|r| r.count = MAX_COUNT + 1), "invalid_count");
    }

    #[test]
    fn a_batch_may_be_valid_until_today_inclusive() {
        let mut req = request();
        req.valid_until = "2026-11-22".into();
        assert!(BatchSpec::parse(&req)
            .and_then(|s| s.still_valid_at(now(), &utc()))
            .is_ok());
    }

    #[test]
    fn valid_until_is_in_the_past_by_the_date_of_the_batchs_region_zone() {
        use crate::zone::Zone;
        let north = RegionId::parse("north").unwrap();
        let zones = |zone: &str| Zones {
            programme: Zone::UTC,
            regions: [(north.clone(), Zone::parse(zone).unwrap())].into(),
        };
        let order = |valid_until: &str, at: &str, zones: &Zones| {
            let mut req = request();
            req.valid_until = valid_until.into();
            BatchSpec::parse(&req)
                .and_then(|s| s.still_valid_at(at.parse().unwrap(), zones))
                .map(|s| s.valid_until)
        };
        // 19:00 UTC on 30 November is 1 December in Omsk (UTC+6): November is over there,
        // though not in UTC nor in a region without a zone of its own.
        let omsk = zones("Asia/Omsk");
        let late = "2026-11-30T19:00:00Z";
        assert_eq!(
            order("2026-11-30", late, &omsk),
            Err(BatchSpecError::ValidUntilInPast)
        );
        assert!(order("2026-12-01", late, &omsk).is_ok());
        assert!(order("2026-11-30", late, &utc()).is_ok());
        let mut south = request();
        south.region = "south".into();
        south.valid_until = "2026-11-30".into();
        let south = BatchSpec::parse(&south).unwrap();
        assert!(south.still_valid_at(late.parse().unwrap(), &omsk).is_ok());
        // 03:00 UTC on 1 December is still 30 November in Bogotá (UTC−5).
        let bogota = zones("America/Bogota");
        let early = "2026-12-01T03:00:00Z";
        assert!(order("2026-11-30", early, &bogota).is_ok());
        assert_eq!(
            order("2026-11-30", early, &utc()),
            Err(BatchSpecError::ValidUntilInPast)
        );
    }

    #[test]
    fn pack_sizes_are_stored_in_whole_base_units() {
        assert_eq!(PackSize::parse("500 ml"), Ok(PackSize::Millilitres(500)));
        assert_eq!(PackSize::parse("0.33 l"), Ok(PackSize::Millilitres(330)));
        assert_eq!(PackSize::parse("1.5L"), Ok(PackSize::Millilitres(1500)));
        assert_eq!(PackSize::parse("250 g"), Ok(PackSize::Grams(250)));
        assert_eq!(PackSize::parse("1 kg"), Ok(PackSize::Grams(1000)));
        assert_eq!(PackSize::parse("6 pcs"), Ok(PackSize::Pieces(6)));
        for bad in [
            "0 ml",
            "0.0005 l",
            "2.5 ml",
            "1.5 pcs",
            "ml",
            "5",
            "-1 l",
            "1..5 l",
            "99999999 g",
            "9999999 l",
            "1 gallon",
        ] {
            assert_eq!(
                PackSize::parse(bad),
                Err(BatchSpecError::InvalidPackSize),
                "{bad}"
            );
        }
        assert_eq!(PackSize::parse("0.5 l").unwrap().to_string(), "500 ml");
    }

    #[test]
    fn chunks_cover_the_count_exactly_with_a_smaller_last_chunk() {
        let plan = ChunkPlan {
            count: 25_000,
            chunk_size: 10_000,
        };
        assert_eq!(plan.chunks(), 3);
        assert_eq!(
            (0..plan.chunks())
                .map(|n| plan.chunk_len(n).unwrap())
                .collect::<Vec<_>>(),
            [10_000, 10_000, 5_000]
        );
        assert_eq!(plan.chunk_len(3), None);
        let exact = ChunkPlan {
            count: 20_000,
            chunk_size: 10_000,
        };
        assert_eq!(exact.chunks(), 2);
        assert_eq!(exact.chunk_len(1), Some(10_000));
        let max = ChunkPlan {
            count: MAX_COUNT,
            chunk_size: CHUNK_SIZE,
        };
        assert_eq!(
            (0..max.chunks())
                .map(|n| max.chunk_len(n).unwrap())
                .sum::<u32>(),
            MAX_COUNT
        );
        assert_eq!(max.chunk_len(u32::MAX), None);
    }

    #[test]
    fn a_chunk_job_refuses_unknown_fields_and_bad_numbers() {
        assert_eq!(
            serde_json::from_str::<ChunkJob>(r#"{"batch":7,"chunk":2}"#).unwrap(),
            ChunkJob { batch: 7, chunk: 2 }
        );
        assert!(serde_json::from_str::<ChunkJob>(r#"{"batch":"7","chunk":2}"#).is_err());
        assert!(serde_json::from_str::<ChunkJob>(r#"{"batch":7,"chunk":-1}"#).is_err());
        assert!(serde_json::from_str::<ChunkJob>(r#"{"batch":7,"chunk":1,"x":1}"#).is_err());
    }

    #[test]
    fn a_seed_is_never_printed() {
        assert_eq!(format!("{:?}", BatchSeed([42; 32])), "BatchSeed(****)");
    }
}
