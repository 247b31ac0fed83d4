//! The contract of the wallet's [`LedgerReader`] port, run against both adapters:
//! [`MemoryLedger`] (`tests/tests/memory/`) and [`DynamoLedger`] on the emulator
//! (`tests/tests/integration/contract.rs`). Entries are seeded as every feature appends
//! them ([`append_items`] in DynamoDB, [`MemoryLedger::append`] in memory);
//! [`ledger_reader_contract!`](crate::ledger_reader_contract) makes one test per case.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use loyalty_domain::earning::{month_key, Tier, Tiers};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{Entry, EntryKind, HistoryError, LedgerReader};
use loyalty_domain::Points;
use loyalty_platform::memory::MemoryLedger;
use loyalty_platform::stores::ledger::{append_items, DynamoLedger};

use crate::TestStack;

/// One adapter of the port, with seeding through the adapter's own storage.
#[allow(async_fn_in_trait)]
pub trait LedgerReaderHarness {
    type Reader: LedgerReader;
    fn reader(&self) -> &Self::Reader;
    async fn append(&self, entry: &Entry);
    async fn set_tiers(&self, tiers: &Tiers);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    ledger: MemoryLedger,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        ledger: MemoryLedger::new(),
    }
}

impl LedgerReaderHarness for MemoryHarness {
    type Reader = MemoryLedger;
    fn reader(&self) -> &MemoryLedger {
        &self.ledger
    }
    async fn append(&self, entry: &Entry) {
        self.ledger.append(entry.clone()).expect("a covered entry");
    }
    async fn set_tiers(&self, tiers: &Tiers) {
        self.ledger.set_tiers(tiers.clone());
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    ledger: DynamoLedger,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("WalletFunction").await;
    let ledger = DynamoLedger::new(stack.dynamodb(), stack.table_name("LedgerTable"))
        .with_programme(stack.table_name("ProgrammeTable"));
    DynamoHarness { stack, ledger }
}

impl LedgerReaderHarness for DynamoHarness {
    type Reader = DynamoLedger;
    fn reader(&self) -> &DynamoLedger {
        &self.ledger
    }
    async fn append(&self, entry: &Entry) {
        append_items(self.stack.table_name("LedgerTable"), entry, None)
            .unwrap()
            .commit(&self.stack.dynamodb(), "seed entry")
            .await
            .unwrap()
            .expect("a fresh, covered entry");
    }
    async fn set_tiers(&self, tiers: &Tiers) {
        // As `PUT /admin/tiers` stores them (`EarningStore::put_tiers`).
        self.stack
            .dynamodb()
            .put_item()
            .table_name(self.stack.table_name("ProgrammeTable"))
            .item("pk", AttributeValue::S("TIERS".into()))
            .item("sk", AttributeValue::S("TIERS".into()))
            .item(
                "tiers",
                AttributeValue::S(serde_json::to_string(tiers).unwrap()),
            )
            .send()
            .await
            .unwrap();
    }
}

// --- The cases ---------------------------------------------------------------------------

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + Duration::minutes(minute)
}

fn entry(participant: &str, n: u32, kind: EntryKind, points: u64, minute: i64) -> Entry {
    Entry {
        id: EntryId::parse(&format!("claim-{n:04}")).unwrap(),
        participant: ParticipantId::parse(participant).unwrap(),
        outlet: Some(OutletId::parse("o-1").unwrap()),
        kind,
        amount: Points(points),
        source: "contract".into(),
        created_at: at(minute),
        expires_on: None,
    }
}

fn p(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).unwrap()
}

/// The account is what the entries moved, with what was earned counted per month; an
/// account without entries is zeros.
pub async fn an_account_is_what_its_entries_moved<H: LedgerReaderHarness>(h: H) {
    h.append(&entry("p-1", 1, EntryKind::CodeClaim, 40, 0))
        .await;
    h.append(&entry("p-1", 2, EntryKind::CodeClaimUnderReview, 25, 1))
        .await;
    h.append(&entry("p-1", 3, EntryKind::Redemption, 15, 2))
        .await;
    let account = h.reader().account(&p("p-1")).await.unwrap();
    let b = account.balance;
    assert_eq!(
        (
            b.available,
            b.pending,
            b.spent,
            b.lifetime_earned,
            b.version
        ),
        (25, 25, 15, 40, 3)
    );
    assert_eq!(
        account.earned_by_month.get(&month_key(at(0))).copied(),
        Some(40)
    );
    let none = h.reader().account(&p("p-2")).await.unwrap();
    assert_eq!(none, Default::default());
}

/// History pages newest first, each entry exactly once, and only the participant's own.
pub async fn history_pages_newest_first_without_gaps_or_repeats<H: LedgerReaderHarness>(h: H) {
    // Appended out of time order: the order is by time, not by append.
    for (n, minute) in [(1, 3), (2, 0), (3, 4), (4, 1), (5, 2)] {
        h.append(&entry("p-1", n, EntryKind::CodeClaim, 10, minute))
            .await;
    }
    h.append(&entry("p-2", 9, EntryKind::CodeClaim, 10, 5))
        .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = h
            .reader()
            .history(&p("p-1"), cursor.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|e| e.id.as_str().to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the listing ends");
    assert_eq!(
        seen,
        [
            "claim-0003",
            "claim-0001",
            "claim-0005",
            "claim-0004",
            "claim-0002"
        ]
    );
}

/// A cursor of another participant's history, a tampered one and garbage are refused.
pub async fn a_foreign_or_tampered_cursor_is_invalid<H: LedgerReaderHarness>(h: H) {
    for n in 0..3 {
        h.append(&entry("p-1", n, EntryKind::CodeClaim, 10, n as i64))
            .await;
    }
    let page = h.reader().history(&p("p-1"), None, 1).await.unwrap();
    let cursor = page.next_cursor.expect("more entries follow");
    let mut tampered = cursor.clone();
    tampered.insert(2, 'Q');
    for (who, c) in [
        ("p-2", cursor.as_str()),
        ("p-1", tampered.as_str()),
        ("p-1", "garbage!"),
    ] {
        let got = h.reader().history(&p(who), Some(c), 1).await;
        assert!(
            matches!(got, Err(HistoryError::InvalidCursor)),
            "{who} {c}: {got:?}"
        );
    }
}

/// An outlet's totals add up its members' entries.
pub async fn outlet_totals_add_up_the_outlets_entries<H: LedgerReaderHarness>(h: H) {
    h.append(&entry("p-1", 1, EntryKind::CodeClaim, 40, 0))
        .await;
    h.append(&entry("p-2", 2, EntryKind::CodeClaim, 30, 1))
        .await;
    let totals = h
        .reader()
        .outlet_totals(&OutletId::parse("o-1").unwrap())
        .await
        .unwrap();
    assert_eq!((totals.available, totals.lifetime_earned), (70, 70));
    let other = h
        .reader()
        .outlet_totals(&OutletId::parse("o-2").unwrap())
        .await
        .unwrap();
    assert_eq!(other, Default::default());
}

/// Tiers are read back as they were stored.
pub async fn tiers_are_read_as_stored<H: LedgerReaderHarness>(h: H) {
    let tiers = Tiers::parse(vec![
        Tier {
            name: "base".into(),
            threshold: 0,
            multiplier_percent: 100,
        },
        Tier {
            name: "gold".into(),
            threshold: 500,
            multiplier_percent: 150,
        },
    ])
    .unwrap();
    h.set_tiers(&tiers).await;
    assert_eq!(h.reader().tiers().await.unwrap(), Some(tiers));
}

#[macro_export]
macro_rules! ledger_reader_contract {
    ($harness:path) => {
        $crate::contract_cases!(ledger_reader, $harness;
            an_account_is_what_its_entries_moved,
            history_pages_newest_first_without_gaps_or_repeats,
            a_foreign_or_tampered_cursor_is_invalid,
            outlet_totals_add_up_the_outlets_entries,
            tiers_are_read_as_stored,
        );
    };
}
