//! Invariants, checked after every step against the memory store and the model.
//!
//! After a step only what it touched is checked (the claimant, their outlet, the global
//! counts), incrementally, so a run stays linear; [`Checker::check_everything`] rechecks the
//! whole store from scratch every few thousand steps and at the end.
//!
//! A later feature adds its invariants here, beside these.

use std::collections::BTreeMap;

use loyalty_domain::fraud::Subject;
use loyalty_domain::ids::{OutletId, ParticipantId};
use loyalty_domain::ledger::{gather_plan, Balance, EntryKind, ProgrammeAccount, PROGRAMME_SHARDS};
use loyalty_platform::memory::claims::{ClaimsWorld, CodeStatus, StoredBalance};
use loyalty_platform::memory::ledger::ProgrammeShards;
use loyalty_platform::memory::MemoryClaims;

use loyalty_domain::cashback::{OrderId, OrderStatus, PartnerId};
use loyalty_platform::memory::cashback::CashbackWorld;
use loyalty_platform::memory::MemoryCashback;
use loyalty_platform::stores::cashback::OUTSTANDING_CLAWBACKS;

use crate::cashback::{Model as CashbackModel, CAP};
use crate::claims::Model;

#[derive(Debug, Default)]
pub struct Checker {
    /// Every entry id seen so far, and whose account it is in.
    seen: BTreeMap<String, ParticipantId>,
    /// Per participant: how many entries were checked, and their replayed balance.
    replayed: BTreeMap<ParticipantId, (usize, Balance)>,
    /// Double entry, incrementally: each participant's points (available + pending + held)
    /// when last checked, and their sum.
    member_points: BTreeMap<ParticipantId, i64>,
    member_sum: i64,
}

impl Checker {
    /// What one step may have changed.
    pub fn check_step(
        &mut self,
        store: &MemoryClaims,
        model: &Model,
        participant: &ParticipantId,
        outlet: Option<&OutletId>,
        window_start: i64,
    ) -> Result<(), String> {
        store.inspect(|w| {
            self.check_participant(w, model, participant)?;
            self.check_double_entry(w, participant)?;
            if let Some(o) = outlet {
                check_outlet(w, model, o)?;
            }
            let mut subjects = vec![Subject::Participant(participant.clone())];
            if let Some(o) = outlet {
                subjects.push(Subject::Outlet(o.clone()));
            }
            for s in subjects {
                check_fraud_state(w, model, &s, window_start)?;
            }
            check_counts(w, model)
        })
    }

    /// Everything, from scratch.
    pub fn check_everything(&mut self, store: &MemoryClaims, model: &Model) -> Result<(), String> {
        store.inspect(|w| {
            let mut seen: BTreeMap<&str, &ParticipantId> = BTreeMap::new();
            let people: std::collections::BTreeSet<&ParticipantId> = w
                .entries
                .keys()
                .chain(w.balances.keys())
                .chain(model.balances.keys())
                .collect();
            for p in people {
                let entries = w.entries.get(p).map(Vec::as_slice).unwrap_or_default();
                for e in entries {
                    if let Some(q) = seen.insert(e.id.as_str(), p) {
                        return Err(credited_twice(e.id.as_str(), q, p));
                    }
                }
                let replayed = Balance::replay(entries).map_err(|e| {
                    format!("the entries of {p} do not replay: {e} (a bucket would go negative)")
                })?;
                let stored = stored_balance(w, p)?;
                if stored != replayed {
                    return Err(format!(
                        "the balance of {p} is not the sum of its entries: stored {stored:?}, entries give {replayed:?}"
                    ));
                }
                compare_with_model(w, model, p, entries)?;
            }
            let claimed: Vec<_> = w
                .codes
                .iter()
                .filter_map(|(code, c)| match &c.status {
                    CodeStatus::Claimed { by, receipt, .. } => Some((code, by, receipt)),
                    CodeStatus::Issued => None,
                })
                .collect();
            if claimed.len() as u64 != model.commits {
                return Err(format!(
                    "{} codes are claimed in the store, the model expects {}",
                    claimed.len(),
                    model.commits
                ));
            }
            for (code, by, receipt) in claimed {
                match seen.get(receipt.entry_id.as_str()) {
                    Some(q) if *q == by => {}
                    other => {
                        return Err(format!(
                            "code …{} is claimed by {by} but its entry is in {other:?}",
                            &code[12..]
                        ))
                    }
                }
            }
            for o in w.outlet_totals.keys().chain(model.outlet_totals.keys()) {
                check_outlet(w, model, o)?;
            }
            check_reviews(w, model)?;
            self.member_points = w
                .balances
                .iter()
                .map(|(p, b)| (p.clone(), points(b)))
                .collect();
            self.member_sum = self.member_points.values().sum();
            check_sum_zero(w, self.member_sum)?;
            check_counts(w, model)
        })
    }

    /// Member accounts plus programme accounts sum to zero. Only `participant` moved in this
    /// step, so the members' sum is kept up to date from its change alone;
    /// [`Checker::check_everything`] recomputes it.
    fn check_double_entry(
        &mut self,
        w: &ClaimsWorld,
        participant: &ParticipantId,
    ) -> Result<(), String> {
        let now = w.balances.get(participant).map(points).unwrap_or(0);
        let before = self
            .member_points
            .insert(participant.clone(), now)
            .unwrap_or(0);
        self.member_sum += now - before;
        check_sum_zero(w, self.member_sum)
    }

    fn check_participant(
        &mut self,
        w: &ClaimsWorld,
        model: &Model,
        p: &ParticipantId,
    ) -> Result<(), String> {
        let entries = w.entries.get(p).map(Vec::as_slice).unwrap_or_default();
        let (checked, balance) = self.replayed.entry(p.clone()).or_default();
        let from = *checked;
        if entries.len() < *checked {
            return Err(format!(
                "{p} had {checked} entries and now has {}: entries are append-only",
                entries.len()
            ));
        }
        for e in &entries[*checked..] {
            if e.participant != *p {
                return Err(format!("entry {} of {p} names {}", e.id, e.participant));
            }
            if let Some(q) = self.seen.insert(e.id.as_str().to_string(), p.clone()) {
                return Err(credited_twice(e.id.as_str(), &q, p));
            }
            *balance = balance.apply(e.kind, e.amount).map_err(|err| {
                format!(
                    "entry {} of {p} cannot be applied: {err} (a bucket would go negative)",
                    e.id
                )
            })?;
        }
        *checked = entries.len();
        let stored = stored_balance(w, p)?;
        if stored != *balance {
            return Err(format!(
                "the balance of {p} is not the sum of its entries: stored {stored:?}, entries give {balance:?}"
            ));
        }
        compare_with_model(w, model, p, &entries[from..])
    }
}

/// Review decisions, from scratch: every decision entry decides a held claim of the same
/// account, the way the model says it was decided (so a held claim credits at most once,
/// and only when approved; a rejected one never credits), and a held claim is on the queue
/// exactly while no decision exists for it.
fn check_reviews(w: &ClaimsWorld, model: &Model) -> Result<(), String> {
    for (p, entries) in &w.entries {
        let held: BTreeMap<&str, &loyalty_domain::ledger::Entry> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::CodeClaimUnderReview)
            .map(|e| (e.id.as_str(), e))
            .collect();
        let mut decided = std::collections::BTreeSet::new();
        for e in entries {
            if !matches!(
                e.kind,
                EntryKind::ReviewApproved | EntryKind::ReviewRejected
            ) {
                continue;
            }
            let reviewed = e.id.as_str().strip_prefix("review-").unwrap_or_default();
            let Some(h) = held.get(reviewed) else {
                return Err(format!(
                    "{p}: decision {} names no held claim of this account",
                    e.id
                ));
            };
            if !decided.insert(reviewed) {
                return Err(format!("{p}: held claim {reviewed} was decided twice"));
            }
            if e.amount != h.amount {
                return Err(format!(
                    "{p}: decision {} moves {} points, the held claim {}",
                    e.id,
                    e.amount.get(),
                    h.amount.get()
                ));
            }
            let modelled = model.decided.get(reviewed).map(|(_, d)| d.entry_kind());
            if modelled != Some(e.kind) {
                return Err(format!(
                    "{p}: held claim {reviewed} is decided {:?}, the model says {modelled:?}",
                    e.kind
                ));
            }
        }
        for id in held.keys() {
            if w.reviews.contains_key(*id) == decided.contains(id) {
                return Err(format!(
                    "{p}: held claim {id} is {}queued with {}a decision",
                    if w.reviews.contains_key(*id) {
                        ""
                    } else {
                        "not "
                    },
                    if decided.contains(id) { "" } else { "no " }
                ));
            }
        }
    }
    Ok(())
}

fn points(b: &StoredBalance) -> i64 {
    b.available + b.pending + b.held
}

fn check_sum_zero(w: &ClaimsWorld, member_sum: i64) -> Result<(), String> {
    let programme: i64 = w.programme.values().sum();
    if member_sum + programme != 0 {
        return Err(format!(
            "double entry broken: member accounts hold {member_sum} points, programme accounts {programme}; they must sum to zero"
        ));
    }
    Ok(())
}

/// Double entry and budgets for a store whose programme side is a [`ProgrammeShards`]
/// (actions, cashback): member accounts (`member_sum`: available, pending and held points)
/// and programme accounts sum to zero, a budgeted shard never goes below zero, and no
/// budgeted account pays out more than it was funded.
pub fn check_programme(
    store: &str,
    member_sum: i64,
    shards: &ProgrammeShards,
) -> Result<(), String> {
    let programme = shards.sum();
    if member_sum + programme != 0 {
        return Err(format!(
            "{store}: double entry broken: member accounts hold {member_sum} points, programme accounts {programme}; they must sum to zero"
        ));
    }
    let overdrawn = shards.overdrawn();
    if !overdrawn.is_empty() {
        return Err(format!(
            "{store}: budgets overspent (account, shard, balance): {overdrawn:?}"
        ));
    }
    Ok(())
}

/// Double entry and the partner's budget in the cashback store: every shard of the budget
/// holds what the model says is left.
fn check_cashback_programme(w: &CashbackWorld, model: &CashbackModel) -> Result<(), String> {
    let members: i64 = w
        .balances
        .values()
        .map(|b| (b.available + b.pending + b.held) as i64)
        .sum();
    check_programme("cashback", members, &w.accounts)?;
    let fund = ProgrammeAccount::PartnerFund(
        PartnerId::parse(crate::cashback::ACTIVE_PARTNER).expect("partner id"),
    );
    for (shard, left) in &model.budget {
        let stored = w.accounts.balances.get(&(fund.clone(), *shard)).copied();
        if stored != Some(*left) {
            return Err(format!(
                "cashback budget shard {shard}: stored {stored:?}, the model says {left}"
            ));
        }
    }
    Ok(())
}

fn credited_twice(entry: &str, first: &ParticipantId, second: &ParticipantId) -> String {
    format!("a code was credited twice: entry {entry} is in the accounts of {first} and {second}")
}

/// The stored balance, with every bucket non-negative and the monthly counters adding up.
fn stored_balance(w: &ClaimsWorld, p: &ParticipantId) -> Result<Balance, String> {
    let Some(stored) = w.balances.get(p) else {
        return Ok(Balance::default());
    };
    check_stored(stored, &format!("the balance of {p}"))?;
    stored.to_balance().map_err(|e| e.to_string())
}

fn check_stored(stored: &StoredBalance, what: &str) -> Result<(), String> {
    let negative = stored.negative_fields();
    if !negative.is_empty() {
        return Err(format!("{what} has negative buckets: {negative:?}"));
    }
    let by_month: i64 = stored.earned_by_month.values().sum();
    if by_month != stored.lifetime_earned {
        return Err(format!(
            "{what}: points earned per month add up to {by_month}, lifetime earned is {}",
            stored.lifetime_earned
        ));
    }
    Ok(())
}

/// The stored balance against the model's, and `entries` (new ones, or all) against whom
/// the model credited.
fn compare_with_model(
    w: &ClaimsWorld,
    model: &Model,
    p: &ParticipantId,
    entries: &[loyalty_domain::ledger::Entry],
) -> Result<(), String> {
    let stored = stored_balance(w, p)?;
    let expected = model.balances.get(p).copied().unwrap_or_default();
    if stored != expected {
        return Err(format!(
            "the balance of {p} is {stored:?}, the model expects {expected:?}"
        ));
    }
    for e in entries {
        if model.entry_owner.get(e.id.as_str()) != Some(p) {
            return Err(format!(
                "entry {} credits {p}; the model credits {:?}",
                e.id,
                model.entry_owner.get(e.id.as_str())
            ));
        }
    }
    Ok(())
}

fn check_outlet(w: &ClaimsWorld, model: &Model, o: &OutletId) -> Result<(), String> {
    let stored = match w.outlet_totals.get(o) {
        Some(s) => {
            check_stored(s, &format!("the totals of outlet {o}"))?;
            s.to_balance().map_err(|e| e.to_string())?
        }
        None => Balance::default(),
    };
    let expected = model.outlet_totals.get(o).copied().unwrap_or_default();
    if stored != expected {
        return Err(format!(
            "the totals of outlet {o} are {stored:?}, the model expects {expected:?}"
        ));
    }
    Ok(())
}

fn check_fraud_state(
    w: &ClaimsWorld,
    model: &Model,
    s: &Subject,
    window_start: i64,
) -> Result<(), String> {
    let key = s.key();
    let (stored, expected) = (w.locks.get(&key), model.locks.get(&key));
    if stored != expected {
        return Err(format!(
            "{key} is locked until {stored:?}, the model expects {expected:?}"
        ));
    }
    let at = (key.clone(), window_start);
    let (stored, expected) = (w.failures.get(&at), model.failures.get(&at));
    if stored != expected {
        return Err(format!(
            "{key} has {stored:?} failures in this window, the model expects {expected:?}"
        ));
    }
    Ok(())
}

/// Totals over the whole store, which every step can check cheaply.
fn check_counts(w: &ClaimsWorld, model: &Model) -> Result<(), String> {
    if w.outbox.len() as u64 != model.commits + model.decisions {
        return Err(format!(
            "{} outbox records for {} claims and {} review decisions",
            w.outbox.len(),
            model.commits,
            model.decisions
        ));
    }
    if w.reviews.len() != model.held.len() {
        return Err(format!(
            "{} claims await review in the store, the model holds {}",
            w.reviews.len(),
            model.held.len()
        ));
    }
    let (mut available, mut pending) = (0i64, 0i64);
    for b in w.balances.values() {
        available += b.available;
        pending += b.pending;
    }
    if available != model.points_available as i64 || pending != model.points_pending as i64 {
        return Err(format!(
            "the store holds {available} available and {pending} pending points, the model expects {} and {}",
            model.points_available, model.points_pending
        ));
    }
    Ok(())
}

/// The cashback invariants: every balance is the sum of its entries and no bucket goes
/// negative; no event or movement counts twice; no month's cap counter exceeds the cap or
/// differs from the credits still counted against it; a clawback's taken and outstanding
/// parts add up to the credit and the outstanding ones are queued; store equals model.
#[derive(Debug, Default)]
pub struct CashbackChecker {
    /// Per participant: how many entries were replayed, and their balance.
    replayed: BTreeMap<ParticipantId, (usize, Balance)>,
}

impl CashbackChecker {
    /// What one step may have changed: one participant, one order, the global counts.
    pub fn check_step(
        &mut self,
        store: &MemoryCashback,
        model: &CashbackModel,
        participant: Option<&ParticipantId>,
        order: Option<&(PartnerId, OrderId)>,
    ) -> Result<(), String> {
        store.with_world(|w| {
            if let Some(p) = participant {
                self.check_account(w, model, p)?;
                for ((q, month), used) in w.caps.range((p.clone(), String::new())..) {
                    if q != p {
                        break;
                    }
                    check_cap(model, q, month, *used)?;
                }
            }
            if let Some(key) = order {
                check_order(w, model, key)?;
            }
            check_cashback_counts(w, model)?;
            check_cashback_programme(w, model)
        })
    }

    /// Everything, from scratch.
    pub fn check_everything(
        &mut self,
        store: &MemoryCashback,
        model: &CashbackModel,
    ) -> Result<(), String> {
        self.replayed.clear();
        store.with_world(|w| {
            let people: std::collections::BTreeSet<&ParticipantId> = w
                .entries
                .keys()
                .chain(w.balances.keys())
                .chain(model.balances.keys())
                .collect();
            for p in people {
                self.check_account(w, model, p)?;
            }
            let mut counted: BTreeMap<(ParticipantId, String), i64> = BTreeMap::new();
            for key in w.orders.keys().chain(model.orders.keys()) {
                check_order(w, model, key)?;
            }
            for stored in w.orders.values() {
                let o = &stored.order;
                if matches!(
                    o.status,
                    OrderStatus::Pending
                        | OrderStatus::Eligible
                        | OrderStatus::Released
                        | OrderStatus::ClawedBack
                ) {
                    *counted
                        .entry((o.participant.clone(), o.month.clone()))
                        .or_default() += o.cashback.get() as i64;
                }
            }
            for ((p, month), used) in &w.caps {
                check_cap(model, p, month, *used)?;
                let credits = counted.get(&(p.clone(), month.clone())).copied().unwrap_or(0);
                if *used != credits {
                    return Err(format!(
                        "the cap counter of {p} for {month} is {used}, but the credits counted against it add up to {credits}"
                    ));
                }
            }
            check_cashback_counts(w, model)?;
            check_cashback_programme(w, model)
        })
    }

    fn check_account(
        &mut self,
        w: &CashbackWorld,
        model: &CashbackModel,
        p: &ParticipantId,
    ) -> Result<(), String> {
        let entries = w.entries.get(p).map(Vec::as_slice).unwrap_or_default();
        let (checked, mut balance) = self.replayed.get(p).copied().unwrap_or_default();
        if entries.len() < checked {
            return Err(format!("entries of {p} disappeared"));
        }
        for e in &entries[checked..] {
            balance = balance.apply(e.kind, e.amount).map_err(|err| {
                format!("cashback: the entries of {p} do not replay at {}: {err} (a bucket would go negative)", e.id)
            })?;
        }
        self.replayed.insert(p.clone(), (entries.len(), balance));
        let stored = w.balances.get(p).copied().unwrap_or_default();
        if stored != balance {
            return Err(format!(
                "cashback: the balance of {p} is not the sum of its entries: stored {stored:?}, entries give {balance:?}"
            ));
        }
        let modelled = model.balances.get(p).copied().unwrap_or_default();
        if stored != modelled {
            return Err(format!(
                "cashback: the balance of {p} is {stored:?}, the model says {modelled:?}"
            ));
        }
        Ok(())
    }
}

fn check_cap(
    model: &CashbackModel,
    p: &ParticipantId,
    month: &str,
    used: i64,
) -> Result<(), String> {
    if used < 0 || used as u64 > CAP {
        return Err(format!(
            "the cap counter of {p} for {month} is {used}, outside 0..={CAP}"
        ));
    }
    let modelled = model
        .caps
        .get(&(p.clone(), month.to_string()))
        .copied()
        .unwrap_or(0);
    if used != modelled {
        return Err(format!(
            "the cap counter of {p} for {month} is {used}, the model says {modelled}"
        ));
    }
    Ok(())
}

fn check_order(
    w: &CashbackWorld,
    model: &CashbackModel,
    key: &(PartnerId, OrderId),
) -> Result<(), String> {
    let stored = w.orders.get(key);
    let modelled = model.orders.get(key);
    let (Some(stored), Some(m)) = (stored, modelled) else {
        return if stored.is_none() && modelled.is_none() {
            Ok(())
        } else {
            Err(format!(
                "order {}/{}: stored {:?}, the model says {:?}",
                key.0, key.1, stored, modelled
            ))
        };
    };
    let o = &stored.order;
    let (taken, rest) = (o.clawed_back.get(), o.outstanding_clawback.get());
    if o.status == OrderStatus::ClawedBack {
        if taken + rest != o.cashback.get() {
            return Err(format!(
                "order {}/{}: clawed back {taken} + outstanding {rest} ≠ credit {}",
                key.0,
                key.1,
                o.cashback.get()
            ));
        }
        if (rest > 0) != (stored.queue.as_deref() == Some(OUTSTANDING_CLAWBACKS)) {
            return Err(format!(
                "order {}/{}: outstanding {rest} but queued as {:?}",
                key.0, key.1, stored.queue
            ));
        }
    } else if taken != 0 || rest != 0 {
        return Err(format!(
            "order {}/{} is {} with a clawback recorded",
            key.0,
            key.1,
            o.status.as_str()
        ));
    }
    let same = o.status == m.status
        && o.participant == m.participant
        && o.cashback.get() == m.cashback
        && o.month == m.month
        && taken == m.clawed_back
        && rest == m.outstanding
        && stored.queue == m.queue;
    if !same {
        return Err(format!(
            "order {}/{}: stored {stored:?}, the model says {m:?}",
            key.0, key.1
        ));
    }
    Ok(())
}

fn check_cashback_counts(w: &CashbackWorld, model: &CashbackModel) -> Result<(), String> {
    let appended: usize = w.entries.values().map(Vec::len).sum();
    if appended != w.entry_ids.len() {
        return Err(format!(
            "cashback: {appended} entries appended but {} distinct ids: a movement counted twice",
            w.entry_ids.len()
        ));
    }
    if w.entry_ids.len() != model.entries {
        return Err(format!(
            "cashback: {} entries stored, the model made {}",
            w.entry_ids.len(),
            model.entries
        ));
    }
    if w.events.len() != model.events.len() {
        return Err(format!(
            "cashback: {} events recorded, the model accepted {}: an event counted twice or was lost",
            w.events.len(),
            model.events.len()
        ));
    }
    if w.orders.len() != model.orders.len() {
        return Err(format!(
            "cashback: {} orders stored, the model has {}",
            w.orders.len(),
            model.orders.len()
        ));
    }
    Ok(())
}

/// Debits `points` from shard `home` of a modelled budget (`key(shard)` names a shard) as
/// the stores do: what the shard lacks is first gathered from the budget's other shards by
/// the domain's plan, so only the whole budget decides.
pub fn draw_budget<K: Ord>(
    budget: &mut BTreeMap<K, i64>,
    key: impl Fn(u32) -> K,
    home: u32,
    points: i64,
) -> Result<(), String> {
    let shards: Vec<i64> = (0..PROGRAMME_SHARDS)
        .map(|s| budget.get(&key(s)).copied().unwrap_or(0))
        .collect();
    let plan = gather_plan(&shards, home, points).ok_or("model: paid beyond the budget")?;
    for (donor, take) in plan {
        *budget.entry(key(donor)).or_default() -= take;
        *budget.entry(key(home)).or_default() += take;
    }
    *budget.entry(key(home)).or_default() -= points;
    Ok(())
}

/// What is left of a modelled budget over all its shards, if it has one.
pub fn budget_left<K: Ord>(budget: &BTreeMap<K, i64>, key: impl Fn(u32) -> K) -> Option<i64> {
    let shards: Vec<i64> = (0..PROGRAMME_SHARDS)
        .filter_map(|s| budget.get(&key(s)).copied())
        .collect();
    (!shards.is_empty()).then(|| shards.iter().sum())
}
