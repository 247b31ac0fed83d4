//! Importing sell-in (`POST /admin/sell-in`): every validated, priced invoice line is
//! credited exactly once, scaled by its participant's tier.
//!
//! Parsing and pricing are pure ([`crate::earning::parse_sell_in_csv`],
//! [`crate::earning::price_lines`]); [`import`] decides the rest over the [`SellInStore`]
//! port: a line imported before with other content refuses the whole import before any
//! write ([`ImportOutcome::Changed`]); otherwise each line is one atomic write (its marker,
//! keyed by the line's identity and holding its fingerprint, with its ledger entry), whose
//! refusal says whether the line was credited before with the same content
//! ([`SellInCredit::AlreadyImported`]) or, by a concurrent import, with other content
//! ([`SellInCredit::Changed`]), or that the line's participant is not registered and active
//! ([`SellInCredit::ParticipantNotActive`]: a blocked participant earns nothing; the line is
//! reported and nothing of it written, so importing it again after an unblock credits it).
//! Challenge progress is not part of the port: the handler
//! records it for every line the import credited or found credited
//! ([`LineOutcome::progress`]), so a retried import completes what an interrupted one had
//! not.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::challenge::ProgressSource;
use crate::earning::{
    earned_trailing_12_months, entry_ids, with_multiplier, LineError, MonthlyEarned, PricedLine,
    RuleId, Tier, Tiers,
};
use crate::ids::{EntryId, ParticipantId};
use crate::ledger::{Entry, EntryKind};
use crate::InfraError;

/// What crediting one sell-in line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SellInCredit {
    Credited,
    /// The same line with the same content was credited before: nothing was written.
    AlreadyImported,
    /// The line was credited before with other content: nothing was written.
    Changed,
    /// The participant has no profile or is blocked: nothing was written.
    ParticipantNotActive,
}

/// The port through which sell-in reaches storage.
pub trait SellInStore: Send + Sync {
    /// Of the lines given as (entry id, fingerprint), the positions of those credited before
    /// with another fingerprint (a consistent read).
    fn changed_lines(
        &self,
        lines: &[(EntryId, String)],
    ) -> impl Future<Output = Result<Vec<usize>, InfraError>> + Send;

    /// The configured tiers (one base tier at ×1 when none are).
    fn tiers(&self) -> impl Future<Output = Result<Tiers, InfraError>> + Send;

    /// The points the participant earned per month: the basis of their tier.
    fn earned_months(
        &self,
        participant: &ParticipantId,
    ) -> impl Future<Output = Result<MonthlyEarned, InfraError>> + Send;

    /// One atomic write: the line's marker (`fingerprint`, keyed by the entry id, which is
    /// the line's identity) with the entry, its balance and its outbox record, checking the
    /// participant's standing; all or nothing. When several conditions fail, the answer is
    /// the first of: changed, already imported, participant not active.
    fn credit_line(
        &self,
        entry: &Entry,
        rule: &RuleId,
        fingerprint: &str,
    ) -> impl Future<Output = Result<SellInCredit, InfraError>> + Send;
}

/// One line of an import that was not refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOutcome {
    pub line: PricedLine,
    /// The entry as written (or as it would have been, when not credited now).
    pub entry: Entry,
    pub credit: SellInCredit,
}

impl LineOutcome {
    /// The challenge progress the line counts for: `None` for a line changed by a
    /// concurrent import or refused for its participant's standing (nothing of it was
    /// written).
    pub fn progress(&self, at: DateTime<Utc>) -> Option<ProgressSource> {
        matches!(
            self.credit,
            SellInCredit::Credited | SellInCredit::AlreadyImported
        )
        .then(|| ProgressSource {
            participant: self.line.line.participant.clone(),
            supplier: self.line.line.supplier.clone(),
            units: self.line.line.quantity as u64,
            date: self.line.line.date,
            reference: self.entry.id.as_str().to_string(),
            at,
        })
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Lines imported before with other content: nothing was written.
    Changed(Vec<LineError>),
    /// Every line in upload order, each credited now, before, or (only when a concurrent
    /// import changed it after the check) not at all.
    Imported(Vec<LineOutcome>),
}

impl ImportOutcome {
    /// Lines credited now, lines credited before, points credited now.
    pub fn counts(lines: &[LineOutcome]) -> (u64, u64, u64) {
        lines.iter().fold((0, 0, 0), |(c, r, p), l| match l.credit {
            SellInCredit::Credited => (c + 1, r, p + l.entry.amount.get()),
            SellInCredit::AlreadyImported => (c, r + 1, p),
            SellInCredit::Changed | SellInCredit::ParticipantNotActive => (c, r, p),
        })
    }

    /// The lines not credited because their participant is not registered and active, as
    /// the import's answer reports them.
    pub fn not_active(lines: &[LineOutcome]) -> Vec<LineError> {
        lines
            .iter()
            .filter(|l| l.credit == SellInCredit::ParticipantNotActive)
            .map(|l| l.line.line.not_active())
            .collect()
    }
}

/// The entry a priced line is credited as, at the participant's tier.
pub fn entry_of(p: &PricedLine, tier: &Tier, now: DateTime<Utc>) -> Entry {
    Entry {
        id: entry_ids::sell_in(&p.line.identity()),
        participant: p.line.participant.clone(),
        outlet: Some(p.line.outlet.clone()),
        kind: EntryKind::Accrual,
        amount: with_multiplier(p.points, tier),
        source: format!(
            "sell-in {} {} x{}",
            p.line.invoice,
            p.line.sku.as_str(),
            p.line.quantity
        ),
        created_at: now,
        expires_on: None,
    }
}

/// Imports priced lines: refused as a whole when a line was credited before with other
/// content, else each line credited exactly once, in upload order.
pub async fn import<S: SellInStore>(
    store: &S,
    priced: Vec<PricedLine>,
    now: DateTime<Utc>,
) -> Result<ImportOutcome, InfraError> {
    let identities: Vec<_> = priced
        .iter()
        .map(|p| (entry_ids::sell_in(&p.line.identity()), p.line.fingerprint()))
        .collect();
    let changed = store.changed_lines(&identities).await?;
    if !changed.is_empty() {
        return Ok(ImportOutcome::Changed(
            changed.iter().map(|&i| priced[i].line.changed()).collect(),
        ));
    }
    let tiers = store.tiers().await?;
    let mut tier_cache: HashMap<ParticipantId, Tier> = HashMap::new();
    let mut outcomes = Vec::with_capacity(priced.len());
    for (p, (_, fingerprint)) in priced.into_iter().zip(identities) {
        let participant = &p.line.participant;
        let tier = match tier_cache.get(participant) {
            Some(t) => t.clone(),
            None => {
                let months = store.earned_months(participant).await?;
                let t = tiers
                    .tier_for(earned_trailing_12_months(&months, now))
                    .clone();
                tier_cache.insert(participant.clone(), t.clone());
                t
            }
        };
        let entry = entry_of(&p, &tier, now);
        let credit = store.credit_line(&entry, &p.rule, &fingerprint).await?;
        outcomes.push(LineOutcome {
            line: p,
            entry,
            credit,
        });
    }
    Ok(ImportOutcome::Imported(outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::earning::{SellInLine, Sku};
    use crate::ids::OutletId;
    use crate::Points;
    use std::sync::Mutex;

    /// A store with fixed markers and earned points, recording every write and tier read.
    #[derive(Default)]
    struct Scripted {
        changed: Vec<usize>,
        months: MonthlyEarned,
        month_reads: Mutex<u32>,
        credits: Mutex<Vec<Entry>>,
    }

    impl SellInStore for Scripted {
        async fn changed_lines(&self, _: &[(EntryId, String)]) -> Result<Vec<usize>, InfraError> {
            Ok(self.changed.clone())
        }
        async fn tiers(&self) -> Result<Tiers, InfraError> {
            Tiers::parse(vec![
                Tier {
                    name: "base".into(),
                    threshold: 0,
                    multiplier_percent: 100,
                },
                Tier {
                    name: "gold".into(),
                    threshold: 100,
                    multiplier_percent: 200,
                },
            ])
            .map_err(|e| InfraError::permanent("tiers", e.to_string()))
        }
        async fn earned_months(&self, _: &ParticipantId) -> Result<MonthlyEarned, InfraError> {
            *self.month_reads.lock().unwrap() += 1;
            Ok(self.months.clone())
        }
        async fn credit_line(
            &self,
            entry: &Entry,
            _: &RuleId,
            _: &str,
        ) -> Result<SellInCredit, InfraError> {
            self.credits.lock().unwrap().push(entry.clone());
            Ok(SellInCredit::Credited)
        }
    }

    fn at() -> DateTime<Utc> {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    fn priced(n: usize, sku: &str, quantity: u32) -> PricedLine {
        PricedLine {
            line: SellInLine {
                line: n,
                invoice: "INV-1".into(),
                date: "2026-11-20".parse().unwrap(),
                outlet: OutletId::parse("o-1").unwrap(),
                participant: ParticipantId::parse("p-ana").unwrap(),
                supplier: RuleId::parse("acme").unwrap(),
                sku: Sku::parse(sku).unwrap(),
                quantity,
            },
            rule: RuleId::parse("cola").unwrap(),
            points: Points(quantity as u64),
        }
    }

    #[tokio::test]
    async fn a_changed_line_refuses_the_import_before_any_write() {
        let store = Scripted {
            changed: vec![1],
            ..Scripted::default()
        };
        let lines = vec![priced(2, "COLA-1", 3), priced(3, "COLA-2", 4)];
        let outcome = import(&store, lines, at()).await.unwrap();
        let ImportOutcome::Changed(errors) = outcome else {
            panic!("refused: {outcome:?}");
        };
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), vec![3]);
        assert!(store.credits.lock().unwrap().is_empty());
        assert_eq!(*store.month_reads.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn each_line_is_credited_at_the_tier_read_once_per_participant() {
        let mut months = MonthlyEarned::new();
        months.insert(crate::earning::month_key(at()), 150);
        let store = Scripted {
            months,
            ..Scripted::default()
        };
        let lines = vec![priced(2, "COLA-1", 3), priced(3, "COLA-2", 4)];
        let ImportOutcome::Imported(done) = import(&store, lines, at()).await.unwrap() else {
            panic!("imported");
        };
        assert_eq!(ImportOutcome::counts(&done), (2, 0, 14));
        assert_eq!(*store.month_reads.lock().unwrap(), 1);
        let credits = store.credits.lock().unwrap();
        assert_eq!(credits[0].source, "sell-in INV-1 COLA-1 x3");
        assert_ne!(credits[0].id, credits[1].id);
        assert!(done
            .iter()
            .all(|l| l.progress(at()).unwrap().reference == l.entry.id.as_str()));
    }

    #[test]
    fn a_line_refused_for_its_participants_standing_is_reported_and_counts_for_nothing() {
        let p = priced(4, "COLA-1", 3);
        let line = LineOutcome {
            entry: entry_of(&p, Tiers::default().tier_for(0), at()),
            line: p,
            credit: SellInCredit::ParticipantNotActive,
        };
        assert_eq!(line.progress(at()), None);
        let lines = [line];
        assert_eq!(ImportOutcome::counts(&lines), (0, 0, 0));
        let reported = ImportOutcome::not_active(&lines);
        assert_eq!((reported[0].line, reported[0].field), (4, "participant_id"));
    }
}
