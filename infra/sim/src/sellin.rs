//! Sell-in imports in the simulator: fresh invoice lines, re-imports of an earlier file with
//! the same content (in another order), re-imports with one line changed (another
//! quantity or participant), imports whose answer is lost part-way and which the
//! importer sends again, and a file raced by the same file with one line changed.
//!
//! Imports run through the real use case [`sellin::import`] over [`MemorySellIn`]. A model
//! holds every line ever credited (its identity, participant and points) and predicts each
//! answer; after every import, and in the full check, no invoice line counts twice (one
//! entry per credited line, none for a line never credited) and every balance is the sum
//! of its entries. A line of a blocked participant is answered `ParticipantNotActive` and
//! writes nothing (no marker either: the same file after an unblock credits it); a raced
//! import naming a blocked participant is not run, the race model assumes every line lands.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, NaiveDate};
use futures::executor::block_on;
use loyalty_domain::earning::{
    entry_ids, MonthlyEarned, PricedLine, RuleId, SellInLine, Sku, Tiers,
};
use loyalty_domain::ids::{EntryId, ParticipantId};
use loyalty_domain::ledger::Entry;
use loyalty_domain::sellin::{self, ImportOutcome, SellInCredit, SellInStore};
use loyalty_domain::{InfraError, Points};
use loyalty_platform::memory::MemorySellIn;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellInOp {
    /// A file of new invoice lines.
    Fresh,
    /// An earlier file again, reordered: every line already imported.
    Same,
    /// An earlier file again with one line changed: refused whole, nothing written.
    Changed,
    /// A file of new lines whose import fails part-way (the answer is lost), sent again.
    Retried,
    /// A file of new lines and the same file with one line changed, imported at the same
    /// time: both pass the check for changed lines before either writes, and the rival
    /// import runs to its end between two lines of the original.
    Raced,
}

impl SellInOp {
    pub fn kind(&self) -> &'static str {
        match self {
            SellInOp::Fresh => "sell-in fresh",
            SellInOp::Same => "sell-in same again",
            SellInOp::Changed => "sell-in changed",
            SellInOp::Retried => "sell-in retried",
            SellInOp::Raced => "sell-in raced by a change",
        }
    }

    /// Weights per 1,000 steps.
    pub fn generate(rng: &mut ChaCha8Rng) -> Option<SellInOp> {
        Some(match rng.random_range(0..1_000) {
            0..15 => SellInOp::Fresh,
            15..25 => SellInOp::Same,
            25..32 => SellInOp::Changed,
            32..40 => SellInOp::Retried,
            40..46 => SellInOp::Raced,
            _ => return None,
        })
    }
}

impl fmt::Display for SellInOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// The simulation's sell-in: the store, the files sent so far and the model.
#[derive(Default)]
pub struct SellIn {
    pub store: MemorySellIn,
    files: Vec<Vec<PricedLine>>,
    /// Every line credited: its entry id → (participant, points).
    credited: BTreeMap<EntryId, (ParticipantId, u64)>,
    /// What the model credited each participant.
    sums: BTreeMap<ParticipantId, i64>,
    next_invoice: u64,
    /// Participants an admin blocked: their lines are credited nothing.
    pub blocked: std::collections::BTreeSet<ParticipantId>,
}

/// A store whose `credit_line` fails (after writing nothing) once `left` credits are spent:
/// an import interrupted part-way, whose answer the importer never sees.
struct Interrupted<'a> {
    inner: &'a MemorySellIn,
    left: AtomicUsize,
}

impl SellInStore for Interrupted<'_> {
    async fn changed_lines(&self, lines: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
        self.inner.changed_lines(lines).await
    }
    async fn tiers(&self) -> Result<Tiers, InfraError> {
        self.inner.tiers().await
    }
    async fn earned_months(&self, p: &ParticipantId) -> Result<MonthlyEarned, InfraError> {
        self.inner.earned_months(p).await
    }
    async fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        if self.left.load(Ordering::SeqCst) == 0 {
            return Err(InfraError::retryable("credit sell-in", "connection lost"));
        }
        self.left.fetch_sub(1, Ordering::SeqCst);
        self.inner.credit_line(entry, rule, fingerprint).await
    }
}

/// A store whose `credit_line` number `at` first runs a whole rival import: two imports of
/// the same invoice interleaved line by line, as two concurrent requests would be.
struct Racing<'a> {
    inner: &'a MemorySellIn,
    at: usize,
    calls: AtomicUsize,
    rival: std::sync::Mutex<Option<Vec<PricedLine>>>,
    rival_outcome: std::sync::Mutex<Option<Result<ImportOutcome, InfraError>>>,
    now: DateTime<chrono::Utc>,
}

impl SellInStore for Racing<'_> {
    async fn changed_lines(&self, lines: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
        self.inner.changed_lines(lines).await
    }
    async fn tiers(&self) -> Result<Tiers, InfraError> {
        self.inner.tiers().await
    }
    async fn earned_months(&self, p: &ParticipantId) -> Result<MonthlyEarned, InfraError> {
        self.inner.earned_months(p).await
    }
    async fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> Result<SellInCredit, InfraError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            let rival = self.rival.lock().expect("rival").take();
            if let Some(rival) = rival {
                let outcome = sellin::import(self.inner, rival, self.now).await;
                *self.rival_outcome.lock().expect("rival") = Some(outcome);
            }
        }
        self.inner.credit_line(entry, rule, fingerprint).await
    }
}

impl SellIn {
    pub fn new() -> Self {
        Self::default()
    }

    /// Over a given store (e.g. one with a planted bug).
    pub fn with_store(store: MemorySellIn) -> Self {
        Self {
            store,
            ..Self::default()
        }
    }

    /// Registers every participant of `world`, active: only they are credited.
    pub fn register(&self, world: &World) {
        for actor in &world.actors {
            self.store
                .ledger()
                .register(&actor.participant, actor.facts());
        }
    }

    /// What crediting `p` must answer now: a line credited before is already imported,
    /// else a blocked participant's line is refused, else it is credited.
    fn expect_line(&self, p: &PricedLine) -> SellInCredit {
        if self.credited.contains_key(&id_of(p)) {
            SellInCredit::AlreadyImported
        } else if self.blocked.contains(&p.line.participant) {
            SellInCredit::ParticipantNotActive
        } else {
            SellInCredit::Credited
        }
    }

    fn new_file(&mut self, rng: &mut ChaCha8Rng, world: &World) -> Vec<PricedLine> {
        let count = rng.random_range(1..=4);
        let invoice = format!("INV-SIM-{}", self.next_invoice);
        self.next_invoice += 1;
        (0..count)
            .map(|i| {
                let actor = &world.actors[world.pick(rng)];
                let quantity = rng.random_range(1..=20);
                priced(i + 2, &invoice, i, actor.participant.clone(), quantity)
            })
            .collect()
    }

    /// Runs one operation and checks its answer against the model; the description is
    /// for the history.
    pub fn apply(
        &mut self,
        op: SellInOp,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<chrono::Utc>,
    ) -> (String, &'static str, Result<(), String>) {
        let (file, interrupt) = match op {
            SellInOp::Raced => return self.race(rng, world, now),
            SellInOp::Fresh => (self.new_file(rng, world), None),
            SellInOp::Retried => {
                let file = self.new_file(rng, world);
                let after = rng.random_range(0..file.len());
                (file, Some(after))
            }
            SellInOp::Same | SellInOp::Changed => {
                if self.files.is_empty() {
                    return (format!("{op}: nothing imported yet"), "nothing yet", Ok(()));
                }
                let mut file = self.files[rng.random_range(0..self.files.len())].clone();
                file.shuffle(rng);
                if op == SellInOp::Changed {
                    let i = rng.random_range(0..file.len());
                    let line = &mut file[i].line;
                    if rng.random_bool(0.5) {
                        line.quantity += 1;
                        file[i].points = Points(10 * file[i].line.quantity as u64);
                    } else {
                        line.participant = world.actors[world.pick(rng)].participant.clone();
                        line.quantity += 100;
                        file[i].points = Points(10 * file[i].line.quantity as u64);
                    }
                }
                (file, None)
            }
        };
        let described = format!(
            "{op} {} ({} lines) at {}",
            file[0].line.invoice,
            file.len(),
            now.to_rfc3339()
        );
        if let Some(after) = interrupt {
            let store = Interrupted {
                inner: &self.store,
                left: AtomicUsize::new(after),
            };
            match block_on(sellin::import(&store, file.clone(), now)) {
                Err(_) => {}
                Ok(other) => {
                    return (
                        described,
                        "unexpected",
                        Err(format!("an interrupted import answered {other:?}")),
                    )
                }
            }
            // The lines written before the failure are credited already (a blocked
            // participant's line wrote nothing).
            for p in file.iter().take(after) {
                if self.expect_line(p) == SellInCredit::Credited {
                    self.credit(id_of(p), &p.line.participant, p.points.get());
                }
            }
        }
        let outcome = match block_on(sellin::import(&self.store, file.clone(), now)) {
            Ok(o) => o,
            Err(e) => return (described, "infra error", Err(format!("import failed: {e}"))),
        };
        let result = self.settle(op, &file, &outcome);
        if matches!(op, SellInOp::Fresh | SellInOp::Retried) {
            self.files.push(file.clone());
        }
        let label = match &outcome {
            ImportOutcome::Changed(_) => "sell-in line changed",
            ImportOutcome::Imported(_) => "sell-in imported",
        };
        let result = result.and_then(|()| self.check(file.iter().map(id_of), world));
        (described, label, result)
    }

    /// [`SellInOp::Raced`]: a fresh file `original` and `changed` (line `i` with another
    /// quantity), the whole `changed` import running just before the original's line `at`.
    /// Lines before `at` are the original's by then, so when `i < at` the rival is refused
    /// whole; otherwise the rival credits line `i` with its content (and every line from
    /// `at` on), and the original then finds line `i` changed (409 `line_changed`) and the
    /// rest imported. Either way each line is credited once, with one content.
    fn race(
        &mut self,
        rng: &mut ChaCha8Rng,
        world: &World,
        now: DateTime<chrono::Utc>,
    ) -> (String, &'static str, Result<(), String>) {
        let original = self.new_file(rng, world);
        if original
            .iter()
            .any(|p| self.blocked.contains(&p.line.participant))
        {
            let described = format!(
                "sell-in {} raced: a participant is blocked",
                original[0].line.invoice
            );
            return (
                described,
                "sell-in race skipped: participant blocked",
                Ok(()),
            );
        }
        let mut changed = original.clone();
        let i = rng.random_range(0..changed.len());
        changed[i].line.quantity += 1;
        changed[i].points = Points(10 * changed[i].line.quantity as u64);
        let at = rng.random_range(0..original.len());
        let described = format!(
            "sell-in {} ({} lines) raced by line {i} changed, before line {at}, at {}",
            original[0].line.invoice,
            original.len(),
            now.to_rfc3339()
        );
        let store = Racing {
            inner: &self.store,
            at,
            calls: AtomicUsize::new(0),
            rival: std::sync::Mutex::new(Some(changed.clone())),
            rival_outcome: std::sync::Mutex::new(None),
            now,
        };
        let first = block_on(sellin::import(&store, original.clone(), now));
        let rival = store.rival_outcome.lock().expect("rival").take();
        let (Ok(first), Some(Ok(rival))) = (first, rival) else {
            return (
                described,
                "infra error",
                Err("a raced import failed or its rival never ran".into()),
            );
        };
        let result = self.settle_race(&original, &changed, i, at, &first, &rival);
        // What was credited, for later re-imports: the rival's line `i` when it won.
        let mut credited = original.clone();
        if i >= at {
            credited[i] = changed[i].clone();
        }
        self.files.push(credited);
        let label = if i < at {
            "sell-in change refused"
        } else {
            "sell-in race: line_changed"
        };
        let result = result.and_then(|()| self.check(original.iter().map(id_of), world));
        (described, label, result)
    }

    fn settle_race(
        &mut self,
        original: &[PricedLine],
        changed: &[PricedLine],
        i: usize,
        at: usize,
        first: &ImportOutcome,
        rival: &ImportOutcome,
    ) -> Result<(), String> {
        let lines = |o: &ImportOutcome, which: &str| match o {
            ImportOutcome::Imported(lines) => Ok(lines.iter().map(|l| l.credit).collect()),
            ImportOutcome::Changed(e) => Err(format!("the {which} import was refused: {e:?}")),
        };
        if i < at {
            match rival {
                ImportOutcome::Changed(errors) if errors.len() == 1 => {}
                other => {
                    return Err(format!(
                        "a change of a line already imported must be refused whole, got {other:?}"
                    ))
                }
            }
            let got: Vec<SellInCredit> = lines(first, "original")?;
            if got.iter().any(|c| *c != SellInCredit::Credited) {
                return Err(format!("the original import answered {got:?}"));
            }
            for p in original {
                self.credit(id_of(p), &p.line.participant, p.points.get());
            }
            return Ok(());
        }
        let rival_got: Vec<SellInCredit> = lines(rival, "rival")?;
        let rival_want: Vec<_> = (0..changed.len())
            .map(|n| {
                if n < at {
                    SellInCredit::AlreadyImported
                } else {
                    SellInCredit::Credited
                }
            })
            .collect();
        let first_got: Vec<SellInCredit> = lines(first, "original")?;
        let first_want: Vec<_> = (0..original.len())
            .map(|n| match n {
                n if n < at => SellInCredit::Credited,
                n if n == i => SellInCredit::Changed,
                _ => SellInCredit::AlreadyImported,
            })
            .collect();
        if rival_got != rival_want || first_got != first_want {
            return Err(format!(
                "raced imports answered {first_got:?} and {rival_got:?}, expected {first_want:?} and {rival_want:?}"
            ));
        }
        for (n, p) in original.iter().enumerate() {
            let credited = if n < at { p } else { &changed[n] };
            self.credit(
                id_of(credited),
                &credited.line.participant,
                credited.points.get(),
            );
        }
        Ok(())
    }

    fn settle(
        &mut self,
        op: SellInOp,
        file: &[PricedLine],
        outcome: &ImportOutcome,
    ) -> Result<(), String> {
        // A line credited before with other content refuses the file whole. Only a credited
        // line counts: a line refused for a blocked participant left no marker to differ
        // from, so a file changing it (or naming it again after a change) is imported.
        let differing = file
            .iter()
            .filter(|p| {
                self.credited.get(&id_of(p)).is_some_and(|(who, points)| {
                    *who != p.line.participant || *points != p.points.get()
                })
            })
            .count();
        match (differing, outcome) {
            (0, ImportOutcome::Changed(errors)) => Err(format!("{op} refused: {errors:?}")),
            (n, ImportOutcome::Changed(errors)) if errors.len() == n => Ok(()),
            (_, other @ ImportOutcome::Changed(_)) | (1.., other) => Err(format!(
                "a file with {differing} changed line(s) must be refused whole, got {other:?}"
            )),
            (_, ImportOutcome::Imported(lines)) => {
                for l in lines {
                    let expected = self.expect_line(&l.line);
                    if l.credit != expected {
                        return Err(format!(
                            "line {} of {}: {:?}, expected {expected:?}",
                            l.line.line.line, l.line.line.invoice, l.credit
                        ));
                    }
                    if l.credit == SellInCredit::Credited {
                        self.credit(
                            id_of(&l.line),
                            &l.line.line.participant,
                            l.entry.amount.get(),
                        );
                    }
                }
                if lines.len() != file.len() {
                    return Err("an import answered another number of lines".into());
                }
                Ok(())
            }
        }
    }

    /// The given lines: each credited line has exactly one entry, to its participant and
    /// with its points, and every other line none; the participants' balances are what the
    /// model credited them.
    fn check(&self, lines: impl Iterator<Item = EntryId>, world: &World) -> Result<(), String> {
        self.store.inspect(|w| {
            let mut touched = std::collections::BTreeSet::new();
            for id in lines {
                let found: Vec<_> = world
                    .actors
                    .iter()
                    .filter_map(|a| w.entries.get(&(a.participant.clone(), id.clone())))
                    .collect();
                match (self.credited.get(&id), found.as_slice()) {
                    (None, []) => {}
                    (Some((p, points)), [entry])
                        if &entry.participant == p && entry.amount.get() == *points =>
                    {
                        touched.insert(p.clone());
                    }
                    (expected, found) => {
                        return Err(format!(
                            "invoice line {id} counts {} time(s), expected {expected:?}",
                            found.len()
                        ))
                    }
                }
            }
            for p in touched {
                let model = self.model_sum(&p);
                let b = w.balances.get(&p).map(|b| b.available).unwrap_or(0);
                if b != model {
                    return Err(format!("{p}: balance {b}, but the model credited {model}"));
                }
            }
            Ok(())
        })
    }

    fn model_sum(&self, p: &ParticipantId) -> i64 {
        self.sums.get(p).copied().unwrap_or(0)
    }

    fn credit(&mut self, id: EntryId, p: &ParticipantId, points: u64) {
        self.credited.insert(id, (p.clone(), points));
        *self.sums.entry(p.clone()).or_default() += points as i64;
    }

    /// Every line ever credited, and no entry beyond them; every balance is the sum of its
    /// entries.
    pub fn check_everything(&self, world: &World) -> Result<(), String> {
        let total = self.store.inspect(|w| w.entries.len());
        if total != self.credited.len() {
            return Err(format!(
                "{total} sell-in entries for {} credited lines",
                self.credited.len()
            ));
        }
        self.check(self.credited.keys().cloned(), world)?;
        self.store.inspect(|w| {
            let mut sums: BTreeMap<&ParticipantId, i64> = BTreeMap::new();
            for ((p, _), e) in &w.entries {
                *sums.entry(p).or_default() += e.amount.get() as i64;
            }
            for (p, b) in &w.balances {
                let sum = sums.get(p).copied().unwrap_or(0);
                if b.available != sum || b.lifetime_earned != sum {
                    return Err(format!(
                        "{p}: balance {} (earned {}) but its sell-in entries sum to {sum}",
                        b.available, b.lifetime_earned
                    ));
                }
            }
            Ok(())
        })
    }
}

fn priced(
    n: usize,
    invoice: &str,
    i: usize,
    participant: ParticipantId,
    quantity: u32,
) -> PricedLine {
    let sku = ["COLA-330", "COLA-500", "WATER-1L", "JUICE-250"][i % 4];
    PricedLine {
        line: SellInLine {
            line: n,
            invoice: invoice.to_string(),
            date: NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
            outlet: loyalty_domain::ids::OutletId::parse("o-sim-0").expect("outlet"),
            participant,
            supplier: RuleId::parse("acme").expect("supplier"),
            sku: Sku::parse(sku).expect("sku"),
            quantity,
        },
        rule: RuleId::parse("sellin-acme").expect("rule"),
        points: Points(10 * quantity as u64),
    }
}

fn id_of(p: &PricedLine) -> EntryId {
    entry_ids::sell_in(&p.line.identity())
}
