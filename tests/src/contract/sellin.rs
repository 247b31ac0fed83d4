//! The contract of the [`SellInStore`] port, run against both adapters: [`MemorySellIn`]
//! (`tests/tests/memory/`) and [`EarningStore`] on the emulator
//! (`tests/tests/integration/contract.rs`). Each case is an `async fn` over a
//! [`SellInHarness`]; [`sell_in_store_contract!`](crate::sell_in_store_contract) turns every
//! case into a test for one adapter. If the two adapters disagree, the memory one is wrong.

use chrono::{DateTime, SubsecRound, Utc};
use loyalty_domain::earning::{entry_ids, PricedLine, RuleId, SellInLine, Sku, Tier, Tiers};
use loyalty_domain::ids::{EntryId, OutletId, ParticipantId};
use loyalty_domain::ledger::{Balance, Entry, ProgrammeAccount, PROGRAMME_SHARDS};
use loyalty_domain::participant::ProfileFacts;
use loyalty_domain::sellin::{self, entry_of, ImportOutcome, SellInCredit, SellInStore};
use loyalty_domain::Points;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::memory::sellin::SellInBug;
use loyalty_platform::memory::MemorySellIn;
use loyalty_platform::stores::earning::{EarningStore, EarningTables};
use loyalty_platform::stores::ledger::DynamoLedger;

use crate::TestStack;

/// One adapter of the port, with what the contract needs to observe it, read through the
/// adapter's own storage, never through the port under test.
#[allow(async_fn_in_trait)]
pub trait SellInHarness {
    type Store: SellInStore;
    fn store(&self) -> &Self::Store;
    /// The stored balance; the default (version 0) for an account without entries.
    async fn balance(&self, participant: &ParticipantId) -> Balance;
    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry>;
    /// The fingerprint in the line's marker.
    async fn marker(&self, entry: &EntryId) -> Option<String>;
    /// Gives the sell-in programme account a budget, through the adapter's ledger.
    async fn fund_sell_in(&self, amount: Points);
    /// Registers the participant, active, as registration writes their profile.
    async fn register(&self, participant: &ParticipantId);
    /// Sets a registered participant's standing, as the admin's block and unblock do.
    async fn set_standing(&self, participant: &ParticipantId, status: &str);
}

// --- The memory adapter ----------------------------------------------------------------

pub struct MemoryHarness {
    store: MemorySellIn,
}

pub async fn memory() -> MemoryHarness {
    MemoryHarness {
        store: MemorySellIn::new(),
    }
}

/// A memory adapter with a deliberate bug: the contract must fail on it.
pub fn memory_with_bug(bug: SellInBug) -> MemoryHarness {
    MemoryHarness {
        store: MemorySellIn::with_planted_bug(bug),
    }
}

impl SellInHarness for MemoryHarness {
    type Store = MemorySellIn;

    fn store(&self) -> &MemorySellIn {
        &self.store
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.store
            .balance(participant)
            .map(|b| b.to_balance().expect("readable balance"))
            .unwrap_or_default()
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.store.entries(participant);
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }

    async fn marker(&self, entry: &EntryId) -> Option<String> {
        self.store.marker(entry).map(|m| m.fingerprint)
    }

    async fn fund_sell_in(&self, amount: Points) {
        self.store
            .ledger()
            .fund_budget(&ProgrammeAccount::SellIn, amount, "fund-sell-in");
    }

    async fn register(&self, participant: &ParticipantId) {
        self.store
            .ledger()
            .register(participant, ProfileFacts::default());
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        self.store
            .ledger()
            .set_active(participant, status == "active");
    }
}

// --- The DynamoDB adapter on the emulator ----------------------------------------------

pub struct DynamoHarness {
    stack: TestStack,
    store: EarningStore,
    ledger: DynamoLedger,
}

pub async fn dynamo() -> DynamoHarness {
    let stack = TestStack::for_function("AccrualFunction").await;
    let tables = EarningTables {
        programme: stack.table_name("ProgrammeTable").to_string(),
        activity: stack.table_name("ActivityTable").to_string(),
        ledger: stack.table_name("LedgerTable").to_string(),
        outbox: stack.table_name("OutboxTable").to_string(),
        participants: stack.table_name("ParticipantsTable").to_string(),
    };
    DynamoHarness {
        store: EarningStore::new(stack.dynamodb(), tables.clone()),
        ledger: DynamoLedger::new(stack.dynamodb(), tables.ledger),
        stack,
    }
}

impl SellInHarness for DynamoHarness {
    type Store = EarningStore;

    fn store(&self) -> &EarningStore {
        &self.store
    }

    async fn balance(&self, participant: &ParticipantId) -> Balance {
        self.ledger.balance(participant).await.expect("balance")
    }

    async fn entries(&self, participant: &ParticipantId) -> Vec<Entry> {
        let mut entries = self.ledger.all_entries(participant).await.expect("entries");
        entries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        entries
    }

    async fn marker(&self, entry: &EntryId) -> Option<String> {
        let out = self
            .stack
            .dynamodb()
            .get_item()
            .table_name(self.stack.table_name("ActivityTable"))
            .set_key(Some(loyalty_platform::dynamo::key(
                format!("SELLIN#{entry}"),
                "LINE",
            )))
            .consistent_read(true)
            .send()
            .await
            .expect("read marker");
        out.item
            .map(|i| i.string("fingerprint").expect("fingerprint").to_string())
    }

    async fn fund_sell_in(&self, amount: Points) {
        self.ledger
            .fund_budget(&ProgrammeAccount::SellIn, amount, "fund-sell-in", now())
            .await
            .expect("fund sell-in");
    }

    async fn register(&self, participant: &ParticipantId) {
        crate::contract::claims::register_profile(
            &self.stack,
            participant,
            &ProfileFacts::default(),
        )
        .await;
    }

    async fn set_standing(&self, participant: &ParticipantId, status: &str) {
        crate::contract::claims::set_profile_status(&self.stack, participant, status).await;
    }
}

// --- Helpers ---------------------------------------------------------------------------

/// Now, in whole microseconds (what a stored timestamp keeps).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn pid(raw: &str) -> ParticipantId {
    ParticipantId::parse(raw).expect("participant id")
}

/// A priced line of `invoice` for COLA-330 at outlet o-1, 10 points per unit.
pub fn priced(n: usize, invoice: &str, participant: &str, quantity: u32) -> PricedLine {
    PricedLine {
        line: SellInLine {
            line: n,
            invoice: invoice.into(),
            date: "2026-11-02".parse().unwrap(),
            outlet: OutletId::parse("o-1").unwrap(),
            participant: pid(participant),
            supplier: RuleId::parse("acme").unwrap(),
            sku: Sku::parse("COLA-330").unwrap(),
            quantity,
        },
        rule: RuleId::parse("cola").unwrap(),
        points: Points(10 * quantity as u64),
    }
}

fn base() -> Tier {
    Tiers::default().as_slice()[0].clone()
}

async fn credit<H: SellInHarness>(h: &H, p: &PricedLine, at: DateTime<Utc>) -> SellInCredit {
    h.store()
        .credit_line(&entry_of(p, &base(), at), &p.rule, &p.line.fingerprint())
        .await
        .expect("no infrastructure error")
}

/// Registers the participants, active: only they are credited.
async fn registered<H: SellInHarness>(h: &H, participants: &[&str]) {
    for p in participants {
        h.register(&pid(p)).await;
    }
}

fn id_of(p: &PricedLine) -> EntryId {
    entry_ids::sell_in(&p.line.identity())
}

// --- The cases -------------------------------------------------------------------------

pub async fn a_line_its_funded_shard_cannot_cover_fails_and_writes_nothing(h: impl SellInHarness) {
    registered(&h, &["p-ana", "p-bo"]).await;
    // One point per shard: short of the line's 30 wherever it lands.
    h.fund_sell_in(Points(PROGRAMME_SHARDS as u64)).await;
    let line = priced(2, "INV-9", "p-ana", 3);
    let refused = h
        .store()
        .credit_line(
            &entry_of(&line, &base(), now()),
            &line.rule,
            &line.line.fingerprint(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(h.entries(&pid("p-ana")).await.is_empty());
    assert_eq!(h.balance(&pid("p-ana")).await, Balance::default());
    assert_eq!(h.marker(&id_of(&line)).await, None);
}

pub async fn a_line_is_credited_once_and_again_with_the_same_content_is_already_imported(
    h: impl SellInHarness,
) {
    registered(&h, &["p-ana", "p-bo"]).await;
    let at = now();
    let line = priced(2, "INV-1", "p-ana", 3);
    assert_eq!(h.store().tiers().await.unwrap(), Tiers::default());
    assert!(h
        .store()
        .earned_months(&pid("p-ana"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(credit(&h, &line, at).await, SellInCredit::Credited);
    let entries = h.entries(&pid("p-ana")).await;
    assert_eq!(entries, vec![entry_of(&line, &base(), at)]);
    assert_eq!(h.balance(&pid("p-ana")).await.available, 30);
    assert_eq!(h.marker(&id_of(&line)).await, Some(line.line.fingerprint()));
    let months = h.store().earned_months(&pid("p-ana")).await.unwrap();
    assert_eq!(months.values().sum::<i64>(), 30);

    // The same line again, even in another place of another upload, a moment later.
    let again = priced(7, "INV-1", "p-ana", 3);
    let later = at + chrono::Duration::seconds(5);
    assert_eq!(
        credit(&h, &again, later).await,
        SellInCredit::AlreadyImported
    );
    assert_eq!(h.entries(&pid("p-ana")).await, entries);
    let balance = h.balance(&pid("p-ana")).await;
    assert_eq!((balance.available, balance.version), (30, 1));
    let lines = [(id_of(&again), again.line.fingerprint())];
    assert!(h.store().changed_lines(&lines).await.unwrap().is_empty());
}

pub async fn a_line_with_other_content_is_changed_and_writes_nothing(h: impl SellInHarness) {
    registered(&h, &["p-ana", "p-bo"]).await;
    let at = now();
    let first = priced(2, "INV-2", "p-ana", 3);
    assert_eq!(credit(&h, &first, at).await, SellInCredit::Credited);
    let before = h.balance(&pid("p-ana")).await;

    // Another quantity, or another participant: the same line changed, never a second line.
    for changed in [
        priced(2, "INV-2", "p-ana", 4),
        priced(2, "INV-2", "p-bo", 3),
    ] {
        let lines = [
            (id_of(&changed), changed.line.fingerprint()),
            (
                id_of(&priced(3, "INV-3", "p-ana", 1)),
                priced(3, "INV-3", "p-ana", 1).line.fingerprint(),
            ),
        ];
        assert_eq!(h.store().changed_lines(&lines).await.unwrap(), vec![0]);
        assert_eq!(credit(&h, &changed, at).await, SellInCredit::Changed);
    }
    assert_eq!(h.balance(&pid("p-ana")).await, before);
    assert_eq!(h.entries(&pid("p-ana")).await.len(), 1);
    assert!(h.entries(&pid("p-bo")).await.is_empty());
    assert_eq!(h.balance(&pid("p-bo")).await, Balance::default());
    assert_eq!(
        h.marker(&id_of(&first)).await,
        Some(first.line.fingerprint())
    );
}

pub async fn an_import_credits_each_line_once_and_a_changed_line_refuses_it_whole(
    h: impl SellInHarness,
) {
    registered(&h, &["p-ana", "p-bo"]).await;
    let at = now();
    let lines = vec![
        priced(2, "INV-4", "p-ana", 1),
        priced(3, "INV-5", "p-ana", 2),
        priced(4, "INV-6", "p-bo", 5),
    ];
    let ImportOutcome::Imported(first) =
        sellin::import(h.store(), lines.clone(), at).await.unwrap()
    else {
        panic!("fresh lines are imported");
    };
    assert_eq!(ImportOutcome::counts(&first), (3, 0, 80));

    // A retried import (the answer was lost) credits nothing again.
    let ImportOutcome::Imported(again) = sellin::import(h.store(), lines, at).await.unwrap() else {
        panic!("the same lines are imported again");
    };
    assert_eq!(ImportOutcome::counts(&again), (0, 3, 0));
    assert!(again.iter().all(|l| l.progress(at).is_some()));

    // One changed line among new ones: nothing is written, the changed line is named.
    let changed = vec![
        priced(2, "INV-7", "p-ana", 1),
        priced(3, "INV-5", "p-ana", 9),
    ];
    match sellin::import(h.store(), changed, at).await.unwrap() {
        ImportOutcome::Changed(errors) => {
            assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3])
        }
        other => panic!("a changed line refuses the import: {other:?}"),
    }
    assert_eq!(h.balance(&pid("p-ana")).await.available, 30);
    assert_eq!(h.balance(&pid("p-bo")).await.available, 50);
    assert_eq!(
        h.marker(&id_of(&priced(2, "INV-7", "p-ana", 1))).await,
        None
    );
    let mut all = h.entries(&pid("p-ana")).await;
    all.extend(h.entries(&pid("p-bo")).await);
    assert_eq!(all.len(), 3);
}

pub async fn a_line_of_a_blocked_or_unknown_participant_writes_nothing_and_is_reported(
    h: impl SellInHarness,
) {
    registered(&h, &["p-ana", "p-bo"]).await;
    h.set_standing(&pid("p-bo"), "blocked").await;
    let lines = vec![
        priced(2, "INV-20", "p-ana", 1),
        priced(3, "INV-21", "p-bo", 2),
        priced(4, "INV-22", "p-nobody", 3),
    ];
    let ImportOutcome::Imported(done) = sellin::import(h.store(), lines.clone(), now())
        .await
        .unwrap()
    else {
        panic!("imported");
    };
    let credits: Vec<_> = done.iter().map(|l| l.credit).collect();
    assert_eq!(
        credits,
        vec![
            SellInCredit::Credited,
            SellInCredit::ParticipantNotActive,
            SellInCredit::ParticipantNotActive,
        ]
    );
    let reported: Vec<_> = ImportOutcome::not_active(&done)
        .iter()
        .map(|e| e.line)
        .collect();
    assert_eq!(reported, vec![3, 4]);
    for (p, line) in [("p-bo", &lines[1]), ("p-nobody", &lines[2])] {
        assert!(h.entries(&pid(p)).await.is_empty());
        assert_eq!(h.balance(&pid(p)).await, Balance::default());
        assert_eq!(h.marker(&id_of(line)).await, None, "no marker for {p}");
    }
    // Unblocked, the same import credits the refused line once and the rest is as before.
    h.set_standing(&pid("p-bo"), "active").await;
    let ImportOutcome::Imported(again) = sellin::import(h.store(), lines, now()).await.unwrap()
    else {
        panic!("imported");
    };
    let credits: Vec<_> = again.iter().map(|l| l.credit).collect();
    assert_eq!(
        credits,
        vec![
            SellInCredit::AlreadyImported,
            SellInCredit::Credited,
            SellInCredit::ParticipantNotActive,
        ]
    );
    assert_eq!(h.balance(&pid("p-bo")).await.available, 20);
}

#[macro_export]
macro_rules! sell_in_store_contract {
    ($harness:path) => {
        $crate::contract_cases!(sellin, $harness;
            a_line_is_credited_once_and_again_with_the_same_content_is_already_imported,
            a_line_with_other_content_is_changed_and_writes_nothing,
            an_import_credits_each_line_once_and_a_changed_line_refuses_it_whole,
            a_line_its_funded_shard_cannot_cover_fails_and_writes_nothing,
            a_line_of_a_blocked_or_unknown_participant_writes_nothing_and_is_reported,
        );
    };
}
