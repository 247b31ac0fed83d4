//! Earning beyond pack codes: rules as data, their limits and validity windows, sell-in
//! lines, and tiers with their multipliers.
//!
//! A [`Rule`] is configuration an admin writes (`PUT /admin/rules/{ruleId}`); a new promotion
//! is a new rule, never new code. A rule is triggered either by a target action a participant
//! reports, or by a sell-in line for one SKU (points per unit). Limits are counted per
//! participant: ever, and per calendar period. The adapter enforces them with conditional
//! counters in the same transaction as the ledger entry; this module only says which counters
//! an accrual needs and what their ceilings are.

use std::collections::{BTreeMap, HashMap};

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc,
};
use serde::{Deserialize, Serialize};

use crate::ids::{OutletId, ParticipantId};
use crate::zone::Zone;
use crate::{Classified, InfraError, Kind, Points};

/// A short id an admin chooses for a rule, a challenge or a supplier, e.g. `survey-2026-q4`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

pub type RuleId = Slug;
pub type SupplierId = Slug;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ids must be 1 to 64 characters of a-z, 0-9 and '-'")]
pub struct InvalidSlug;

pub(crate) fn is_slug(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, InvalidSlug> {
        is_slug(raw)
            .then(|| Self(raw.to_string()))
            .ok_or(InvalidSlug)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = InvalidSlug;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Slug> for String {
    fn from(value: Slug) -> String {
        value.0
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product code as printed on distributor invoices: upper-case letters, digits, '-'.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SKU must be 1 to 32 characters of A-Z, 0-9 and '-'")]
pub struct InvalidSku;

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, InvalidSku> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
        ok.then(|| Self(raw.to_string())).ok_or(InvalidSku)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = InvalidSku;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> String {
        value.0
    }
}

/// The target actions a participant can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    WelcomeBonus,
    OutletSelfAudit,
    PriceMonitoring,
    Survey,
    QuizPassed,
    TrainingCompleted,
    FirstAppOrder,
}

impl Action {
    /// Actions that can by their nature happen once in a participant's life, whatever the
    /// rule says.
    pub fn once_ever(self) -> bool {
        matches!(self, Action::WelcomeBonus | Action::FirstAppOrder)
    }
}

/// What makes a rule earn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Action(Action),
    /// Points per unit of this product on a validated sell-in line.
    SellIn(Sku),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

impl Period {
    /// The period containing `at`, counted in `zone`: a stable key named by the local date
    /// (`D2026-11-30`, `W2026-48`, `M2026-11`) and the instant it ends, when the next
    /// period's local midnight starts (so a DST day is 23 or 25 hours long, and a window is
    /// never cut short or stretched by the offset).
    pub fn window(self, at: DateTime<Utc>, zone: Zone) -> (String, DateTime<Utc>) {
        let day = zone.date_of(at);
        let (key, end) = match self {
            Period::Day => (format!("D{day}"), day + Duration::days(1)),
            Period::Week => {
                let week = day.iso_week();
                let monday = day - Duration::days(day.weekday().num_days_from_monday() as i64);
                (
                    format!("W{}-{:02}", week.year(), week.week()),
                    monday + Duration::days(7),
                )
            }
            Period::Month => {
                let next = if day.month() == 12 {
                    NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
                }
                .expect("day 1");
                (format!("M{}-{:02}", day.year(), day.month()), next)
            }
        };
        (key, zone.start_of(end))
    }
}

/// One end of a rule's validity window, as the admin gave it: an instant (RFC 3339 with an
/// offset, the same everywhere), or a local date or date-time without an offset, read in the
/// participant's region zone when an action is checked (a promotion "from 1 December" then
/// starts at each region's own midnight).
///
/// Stored as the string it was given in normal form, so the kind is in the value: with an
/// offset (`2026-12-01T00:00:00Z`) an instant, without (`2026-12-01T00:00:00`) local. Rules
/// stored before local bounds existed hold instants, and read as instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Instant(DateTime<Utc>),
    Local(NaiveDateTime),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a validity bound is an RFC 3339 instant (2026-12-01T00:00:00Z), or a local date \
     (2026-12-01) or date-time (2026-12-01T00:00:00) read in the participant's region zone"
)]
pub struct InvalidBound;

impl Bound {
    pub fn parse(raw: &str) -> Result<Bound, InvalidBound> {
        if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
            return Ok(Bound::Instant(t.with_timezone(&Utc)));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f") {
            return Ok(Bound::Local(t));
        }
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map(|d| Bound::Local(d.and_time(NaiveTime::MIN)))
            .map_err(|_| InvalidBound)
    }

    /// The instant this bound stands for in `zone`.
    pub fn at(self, zone: Zone) -> DateTime<Utc> {
        match self {
            Bound::Instant(t) => t,
            Bound::Local(t) => zone.instant(t),
        }
    }

    /// The earliest and latest instants this bound can stand for, over every zone (UTC−12
    /// to UTC+14).
    fn span(self) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            Bound::Instant(t) => (t, t),
            Bound::Local(t) => (
                t.and_utc() - Duration::hours(14),
                t.and_utc() + Duration::hours(12),
            ),
        }
    }
}

impl From<DateTime<Utc>> for Bound {
    fn from(t: DateTime<Utc>) -> Bound {
        Bound::Instant(t)
    }
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::Instant(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Bound::Local(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.f")),
        }
    }
}

impl Serialize for Bound {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bound, D::Error> {
        let raw = String::deserialize(d)?;
        Bound::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodLimit {
    pub max: u32,
    pub period: Period,
}

/// What a rule does with a credit its budget cannot cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverBudget {
    /// Refuse the action: 422 `budget_exhausted`, nothing written.
    #[default]
    Refuse,
    /// Credit the points as pending, held for review; a reviewer's approval pays them from
    /// the budget then (and is refused while the budget still cannot cover them).
    Hold,
}

impl OverBudget {
    fn is_refuse(&self) -> bool {
        *self == OverBudget::Refuse
    }
}

/// Who may report an action rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    /// The participant themselves (self-reported): only for rules with a limit.
    Participant,
    /// An admin, for a named participant, after seeing evidence.
    Reviewer,
    /// A machine client (e.g. the app's order system) whose token carries the
    /// `actions:report` scope, for a named participant.
    Service,
}

impl Reporter {
    /// The reporter of a rule that does not say: rules stored before reporters existed, and
    /// rules an admin puts without one. A rule with a limit stays self-reported, as it was;
    /// one without a limit goes to reviewers, so nothing unlimited is self-reported by
    /// accident.
    fn default_for(per_participant: Option<u32>, per_period: Option<PeriodLimit>) -> Reporter {
        if per_participant.is_some() || per_period.is_some() {
            Reporter::Participant
        } else {
            Reporter::Reviewer
        }
    }
}

/// A rule as stored, from before `reported_by` existed or after: read through
/// [`Reporter::default_for`] when it has none.
#[derive(Deserialize)]
struct StoredRule {
    id: RuleId,
    trigger: Trigger,
    points: Points,
    per_participant: Option<u32>,
    per_period: Option<PeriodLimit>,
    valid_from: Bound,
    valid_until: Option<Bound>,
    #[serde(default)]
    over_budget: OverBudget,
    reported_by: Option<Reporter>,
}

impl From<StoredRule> for Rule {
    fn from(r: StoredRule) -> Rule {
        Rule {
            reported_by: r
                .reported_by
                .unwrap_or_else(|| Reporter::default_for(r.per_participant, r.per_period)),
            id: r.id,
            trigger: r.trigger,
            points: r.points,
            per_participant: r.per_participant,
            per_period: r.per_period,
            valid_from: r.valid_from,
            valid_until: r.valid_until,
            over_budget: r.over_budget,
        }
    }
}

/// An earning rule, as validated configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredRule")]
pub struct Rule {
    pub id: RuleId,
    pub trigger: Trigger,
    /// Per action, or per unit for sell-in, before the tier multiplier.
    pub points: Points,
    /// How many times one participant may earn from this rule, ever.
    pub per_participant: Option<u32>,
    pub per_period: Option<PeriodLimit>,
    pub valid_from: Bound,
    /// Exclusive; none means open-ended.
    pub valid_until: Option<Bound>,
    /// Rules stored before this setting existed read as `refuse`; `refuse` is not written,
    /// so their JSON stays as it was.
    #[serde(default, skip_serializing_if = "OverBudget::is_refuse")]
    pub over_budget: OverBudget,
    /// Who may report the action. Sell-in rules are credited by imports and ignore it.
    pub reported_by: Reporter,
}

/// A rule as an admin sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    pub action: Option<Action>,
    pub sku: Option<String>,
    pub points: u64,
    pub per_participant: Option<u32>,
    pub per_period: Option<PeriodLimit>,
    pub valid_from: Bound,
    pub valid_until: Option<Bound>,
    #[serde(default)]
    pub over_budget: OverBudget,
    /// None: see [`Reporter::default_for`].
    pub reported_by: Option<Reporter>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule names exactly one of `action` or `sku`")]
    Trigger,
    #[error(transparent)]
    Sku(#[from] InvalidSku),
    #[error("points must be a whole number from 1 to {max}")]
    Points { max: u64 },
    #[error("a limit must be at least 1")]
    ZeroLimit,
    #[error("valid_until must be after valid_from")]
    Window,
    #[error("sell-in rules are limited by invoice lines, not by per-participant counts")]
    SellInLimit,
    #[error("only action rules can hold an over-budget credit for review")]
    SellInHold,
    #[error("a self-reported rule (reported_by participant) needs per_participant or per_period")]
    SelfReportedUnlimited,
}

impl Classified for RuleError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        "invalid_rule"
    }
}

impl Rule {
    pub fn parse(id: RuleId, req: RuleRequest) -> Result<Rule, RuleError> {
        let trigger = match (req.action, req.sku) {
            (Some(a), None) => Trigger::Action(a),
            (None, Some(sku)) => Trigger::SellIn(Sku::parse(&sku)?),
            _ => return Err(RuleError::Trigger),
        };
        let points = Points::parse(req.points).map_err(|_| RuleError::Points {
            max: Points::MAX_MOVEMENT,
        })?;
        if req.per_participant == Some(0) || req.per_period.is_some_and(|p| p.max == 0) {
            return Err(RuleError::ZeroLimit);
        }
        if matches!(trigger, Trigger::SellIn(_))
            && (req.per_participant.is_some() || req.per_period.is_some())
        {
            return Err(RuleError::SellInLimit);
        }
        // A window of two local bounds, or of two instants, compares as it is; a mixed one is
        // refused only when it is empty in every zone.
        let empty = |from: Bound, until: Bound| match (from, until) {
            (Bound::Local(f), Bound::Local(u)) => u <= f,
            (from, until) => until.span().1 <= from.span().0,
        };
        if req.valid_until.is_some_and(|u| empty(req.valid_from, u)) {
            return Err(RuleError::Window);
        }
        // A sell-in line has no review path: an import is refused or credited whole.
        if matches!(trigger, Trigger::SellIn(_)) && req.over_budget == OverBudget::Hold {
            return Err(RuleError::SellInHold);
        }
        let per_participant = match trigger {
            Trigger::Action(a) if a.once_ever() => Some(1),
            _ => req.per_participant,
        };
        let reported_by = req
            .reported_by
            .unwrap_or_else(|| Reporter::default_for(per_participant, req.per_period));
        // A participant could otherwise credit themselves without end.
        if reported_by == Reporter::Participant
            && per_participant.is_none()
            && req.per_period.is_none()
        {
            return Err(RuleError::SelfReportedUnlimited);
        }
        Ok(Rule {
            id,
            trigger,
            points,
            per_participant,
            per_period: req.per_period,
            valid_from: req.valid_from,
            valid_until: req.valid_until,
            over_budget: req.over_budget,
            reported_by,
        })
    }

    /// Whether the rule earns at `at` for a participant counting in `zone` (which local
    /// bounds are read in).
    pub fn is_valid_at(&self, at: DateTime<Utc>, zone: Zone) -> bool {
        at >= self.valid_from.at(zone) && self.valid_until.is_none_or(|u| at < u.at(zone))
    }

    /// The counters an accrual at `at` must increment, each with its ceiling; periods are
    /// counted in `zone`.
    pub fn counters(&self, at: DateTime<Utc>, zone: Zone) -> Vec<LimitCounter> {
        let mut counters = Vec::new();
        if let Some(max) = self.per_participant {
            counters.push(LimitCounter {
                scope: LimitScope::Participant,
                key: "EVER".to_string(),
                max,
                expires_at: None,
            });
        }
        if let Some(limit) = self.per_period {
            let (key, end) = limit.period.window(at, zone);
            counters.push(LimitCounter {
                scope: LimitScope::Period,
                key,
                max: limit.max,
                expires_at: Some(end),
            });
        }
        counters
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Participant,
    Period,
}

/// One conditional counter: the increment is refused when the count has reached `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCounter {
    pub scope: LimitScope,
    /// Distinguishes the counter within the rule and participant (`EVER`, `M2026-11`).
    pub key: String,
    pub max: u32,
    /// When the period ends; a counter past it is never read again.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why an action earned nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccrualError {
    #[error("no earning rule {0}")]
    UnknownRule(RuleId),
    #[error("rule {0} is for sell-in purchases, not for actions")]
    NotAnAction(RuleId),
    #[error("rule {0} is not valid at this time")]
    OutsideWindow(RuleId),
    #[error("you have earned from rule {0} as often as it allows")]
    ParticipantLimit(RuleId),
    #[error("you have earned from rule {0} as often as it allows in this period")]
    PeriodLimit(RuleId),
    #[error("the budget of rule {0} cannot cover these points")]
    BudgetExhausted(RuleId),
    #[error("rule {rule} is reported by its {allowed}, not by you")]
    ReporterNotAllowed { rule: RuleId, allowed: &'static str },
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl Classified for AccrualError {
    fn kind(&self) -> Kind {
        match self {
            AccrualError::UnknownRule(_) => Kind::NotFound,
            AccrualError::ReporterNotAllowed { .. } => Kind::Forbidden,
            AccrualError::NotAnAction(_)
            | AccrualError::OutsideWindow(_)
            | AccrualError::BudgetExhausted(_) => Kind::Unprocessable,
            AccrualError::ParticipantLimit(_) | AccrualError::PeriodLimit(_) => Kind::Conflict,
            AccrualError::Infra(e) => e.kind(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AccrualError::UnknownRule(_) => "rule_not_found",
            AccrualError::NotAnAction(_) => "rule_not_an_action",
            AccrualError::OutsideWindow(_) => "rule_not_active",
            AccrualError::ParticipantLimit(_) => "participant_limit_reached",
            AccrualError::PeriodLimit(_) => "period_limit_reached",
            AccrualError::BudgetExhausted(_) => "budget_exhausted",
            AccrualError::ReporterNotAllowed { .. } => "reporter_not_allowed",
            AccrualError::Infra(e) => e.code(),
        }
    }
}

/// Checks an action against its rule before any write; the limits are checked by the write.
/// `zone` is the participant's region zone, which local validity bounds are read in.
pub fn check_action(
    rule: &Rule,
    reporter: Reporter,
    at: DateTime<Utc>,
    zone: Zone,
) -> Result<Action, AccrualError> {
    let action = match rule.trigger {
        Trigger::Action(a) => a,
        Trigger::SellIn(_) => return Err(AccrualError::NotAnAction(rule.id.clone())),
    };
    if reporter != rule.reported_by {
        return Err(AccrualError::ReporterNotAllowed {
            rule: rule.id.clone(),
            allowed: match rule.reported_by {
                Reporter::Participant => "participants",
                Reporter::Reviewer => "reviewers",
                Reporter::Service => "trusted services",
            },
        });
    }
    if !rule.is_valid_at(at, zone) {
        return Err(AccrualError::OutsideWindow(rule.id.clone()));
    }
    Ok(action)
}

// ------------------------------------------------------------------------------ tiers

/// A level reached by points earned over the trailing 12 months.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    /// Points earned in the trailing 12 months needed to reach this tier.
    pub threshold: u64,
    /// Applied to every accrual: 100 is ×1, 150 is ×1.5. Integer percent, never a float.
    pub multiplier_percent: u32,
}

/// The configured tiers, lowest first; the first starts at 0 so everyone has a tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Tiers(Vec<Tier>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TiersError {
    #[error("at least one tier is needed and the first must start at 0 points")]
    NoBase,
    #[error("tier thresholds must strictly increase")]
    NotIncreasing,
    #[error("tier names must be 1 to 40 characters and unique")]
    Name,
    #[error("a multiplier must be from 100 to 1000 percent")]
    Multiplier,
}

impl Classified for TiersError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        "invalid_tiers"
    }
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers(vec![Tier {
            name: "base".into(),
            threshold: 0,
            multiplier_percent: 100,
        }])
    }
}

impl Tiers {
    pub fn parse(tiers: Vec<Tier>) -> Result<Tiers, TiersError> {
        if tiers.first().is_none_or(|t| t.threshold != 0) {
            return Err(TiersError::NoBase);
        }
        if tiers.windows(2).any(|w| w[1].threshold <= w[0].threshold) {
            return Err(TiersError::NotIncreasing);
        }
        let mut names = std::collections::HashSet::new();
        for t in &tiers {
            let name = t.name.trim();
            if name.is_empty() || name.chars().count() > 40 || !names.insert(name) {
                return Err(TiersError::Name);
            }
            if !(100..=1000).contains(&t.multiplier_percent) {
                return Err(TiersError::Multiplier);
            }
        }
        Ok(Tiers(tiers))
    }

    pub fn as_slice(&self) -> &[Tier] {
        &self.0
    }

    pub fn tier_for(&self, earned_trailing_12_months: u64) -> &Tier {
        self.0
            .iter()
            .rev()
            .find(|t| t.threshold <= earned_trailing_12_months)
            .expect("the first tier starts at 0")
    }
}

/// Points earned per calendar month, as `yyyymm` → signed sum (a clawback is negative).
pub type MonthlyEarned = BTreeMap<u32, i64>;

pub fn month_key(at: DateTime<Utc>) -> u32 {
    at.year() as u32 * 100 + at.month()
}

/// Points earned in the 12 calendar months ending with `today`'s month. A month whose
/// clawbacks exceed its credits counts as nothing rather than eating into other months.
pub fn earned_trailing_12_months(months: &MonthlyEarned, today: DateTime<Utc>) -> u64 {
    let (mut y, mut m) = (today.year(), today.month());
    let mut total = 0u64;
    for _ in 0..12 {
        let v = months.get(&(y as u32 * 100 + m)).copied().unwrap_or(0);
        total += v.max(0) as u64;
        if m == 1 {
            y -= 1;
            m = 12;
        } else {
            m -= 1;
        }
    }
    total
}

/// The points an accrual credits: the rule's points scaled by the tier, rounded down, and
/// never less than the rule's own points since multipliers are at least 100%.
pub fn with_multiplier(points: Points, tier: &Tier) -> Points {
    points.scale(tier.multiplier_percent as u64, 100)
}

// ------------------------------------------------------------------------------ sell-in

/// A validated distributor invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellInLine {
    /// Where the line sits in the upload: the file line for CSV, 1-based for JSON lines.
    pub line: usize,
    pub invoice: String,
    pub date: NaiveDate,
    pub outlet: OutletId,
    /// The participant credited: the importer names them (usually the outlet's owner), so
    /// the import never guesses from membership data that may change.
    pub participant: ParticipantId,
    pub supplier: SupplierId,
    pub sku: Sku,
    pub quantity: u32,
}

/// What makes an invoice line one line, wherever and however often it is uploaded: the
/// invoice, and within it the outlet, the SKU and the date. The participant, supplier and
/// quantity are the line's content ([`SellInLine::fingerprint`]): a line whose participant
/// changed is the same line changed, never a second line, or it would be credited twice
/// (once to each participant). The line's place in the upload is not part of it either, so
/// the same file reordered is the same lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineIdentity {
    pub invoice: String,
    pub outlet: OutletId,
    pub sku: Sku,
    pub date: NaiveDate,
}

impl SellInLine {
    pub fn identity(&self) -> LineIdentity {
        LineIdentity {
            invoice: self.invoice.clone(),
            outlet: self.outlet.clone(),
            sku: self.sku.clone(),
            date: self.date,
        }
    }

    /// A hash of everything the line says (its place in the upload aside): a re-import
    /// with the same fingerprint is the same line again, with another one a changed line.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            self.invoice.as_str(),
            &self.date.to_string(),
            self.outlet.as_str(),
            self.participant.as_str(),
            self.supplier.as_str(),
            self.sku.as_str(),
            &self.quantity.to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// How a line whose participant is not registered and active is reported.
    pub fn not_active(&self) -> LineError {
        LineError {
            line: self.line,
            field: "participant_id",
            reason: format!(
                "participant {} is not registered and active: the line was not credited",
                self.participant.as_str()
            ),
        }
    }

    /// How a re-import of this line with other content is reported.
    pub fn changed(&self) -> LineError {
        LineError {
            line: self.line,
            field: "line",
            reason: format!(
                "invoice {} (outlet {}, SKU {}, {}) was imported before with another \
                 participant, supplier or quantity",
                self.invoice,
                self.outlet.as_str(),
                self.sku.as_str(),
                self.date
            ),
        }
    }
}

/// A line as uploaded: every field a string or number, checked by [`SellInLine::parse`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSellInLine {
    pub invoice: String,
    pub date: String,
    pub outlet_id: String,
    pub participant_id: String,
    pub supplier_id: String,
    pub sku: String,
    pub quantity: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: usize,
    pub field: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SellInError {
    #[error("the import is empty")]
    Empty,
    #[error("the import has more than {max} lines")]
    TooLarge { max: usize },
    #[error("{} line(s) are invalid; nothing was imported", .0.len())]
    Lines(Vec<LineError>),
    /// Lines imported before with other content. Found before any write, the whole import
    /// is refused; see the accrual function for a change that races the import.
    #[error(
        "{} line(s) were imported before with another participant, supplier or quantity",
        .0.len()
    )]
    Changed(Vec<LineError>),
}

impl Classified for SellInError {
    fn kind(&self) -> Kind {
        match self {
            SellInError::Empty | SellInError::TooLarge { .. } => Kind::BadInput,
            SellInError::Lines(_) => Kind::Unprocessable,
            SellInError::Changed(_) => Kind::Conflict,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            SellInError::Empty => "empty_import",
            SellInError::TooLarge { .. } => "import_too_large",
            SellInError::Lines(_) => "invalid_lines",
            SellInError::Changed(_) => "line_changed",
        }
    }
}

pub const MAX_SELL_IN_LINES: usize = 1000;
pub const CSV_HEADER: [&str; 7] = [
    "invoice",
    "date",
    "outlet_id",
    "participant_id",
    "supplier_id",
    "sku",
    "quantity",
];

impl SellInLine {
    pub fn parse(line: usize, raw: &RawSellInLine) -> Result<SellInLine, LineError> {
        let err = |field: &'static str, reason: String| LineError {
            line,
            field,
            reason,
        };
        let invoice = raw.invoice.trim();
        if invoice.is_empty()
            || invoice.len() > 64
            || !invoice
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'))
        {
            return Err(err(
                "invoice",
                "1 to 64 characters of letters, digits, '-', '_' or '/'".into(),
            ));
        }
        let date = raw
            .date
            .trim()
            .parse::<NaiveDate>()
            .map_err(|_| err("date", "a date as YYYY-MM-DD".into()))?;
        let outlet =
            OutletId::parse(raw.outlet_id.trim()).map_err(|e| err("outlet_id", e.to_string()))?;
        let participant = ParticipantId::parse(raw.participant_id.trim())
            .map_err(|e| err("participant_id", e.to_string()))?;
        let supplier =
            RuleId::parse(raw.supplier_id.trim()).map_err(|e| err("supplier_id", e.to_string()))?;
        let sku = Sku::parse(raw.sku.trim()).map_err(|e| err("sku", e.to_string()))?;
        let quantity = match &raw.quantity {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|q| (1..=100_000).contains(q))
        .ok_or_else(|| err("quantity", "a whole number from 1 to 100000".into()))?
            as u32;
        Ok(SellInLine {
            line,
            invoice: invoice.to_string(),
            date,
            outlet,
            participant,
            supplier,
            sku,
            quantity,
        })
    }
}

fn collect(parsed: Vec<Result<SellInLine, LineError>>) -> Result<Vec<SellInLine>, SellInError> {
    if parsed.is_empty() {
        return Err(SellInError::Empty);
    }
    if parsed.len() > MAX_SELL_IN_LINES {
        return Err(SellInError::TooLarge {
            max: MAX_SELL_IN_LINES,
        });
    }
    let mut seen = HashMap::new();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for p in parsed {
        match p {
            Ok(l) => {
                if let Some(first) = seen.insert(l.identity(), l.line) {
                    errors.push(LineError {
                        line: l.line,
                        field: "sku",
                        reason: format!("repeats line {first} (same invoice, outlet, SKU, date)"),
                    });
                } else {
                    lines.push(l);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(SellInError::Lines(errors))
    }
}

/// Parses a CSV upload with the header [`CSV_HEADER`] (in any column order). Line numbers
/// are the file's, the header being line 1.
pub fn parse_sell_in_csv(text: &str) -> Result<Vec<SellInLine>, SellInError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header_error = |reason: String| {
        SellInError::Lines(vec![LineError {
            line: 1,
            field: "header",
            reason,
        }])
    };
    let headers = reader
        .headers()
        .map_err(|e| header_error(e.to_string()))?
        .clone();
    let mut columns = [0usize; 7];
    for (i, name) in CSV_HEADER.iter().enumerate() {
        columns[i] = headers
            .iter()
            .position(|h| h == *name)
            .ok_or_else(|| header_error(format!("column {name} is missing")))?;
    }
    // Each line is read on its own so that its number is the file's, blank lines included;
    // a sell-in field never holds a line break.
    let mut parsed = Vec::new();
    for (index, text_line) in text.lines().enumerate().skip(1) {
        if text_line.trim().is_empty() {
            continue;
        }
        let line = index + 1;
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text_line.as_bytes())
            .records()
            .next();
        let Some(Ok(record)) = record else {
            parsed.push(Err(LineError {
                line,
                field: "line",
                reason: "not a valid CSV line".into(),
            }));
            continue;
        };
        let field = |i: usize| record.get(columns[i]).unwrap_or("").to_string();
        let raw = RawSellInLine {
            invoice: field(0),
            date: field(1),
            outlet_id: field(2),
            participant_id: field(3),
            supplier_id: field(4),
            sku: field(5),
            quantity: serde_json::Value::String(field(6)),
        };
        parsed.push(SellInLine::parse(line, &raw));
    }
    collect(parsed)
}

/// Parses newline-delimited JSON objects, one line each; blank lines are skipped but counted.
pub fn parse_sell_in_json_lines(text: &str) -> Result<Vec<SellInLine>, SellInError> {
    let parsed = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<RawSellInLine>(l)
                .map_err(|e| LineError {
                    line: i + 1,
                    field: "line",
                    reason: format!("not a sell-in line object: {e}"),
                })
                .and_then(|raw| SellInLine::parse(i + 1, &raw))
        })
        .collect();
    collect(parsed)
}

/// A line with the points it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub line: SellInLine,
    pub rule: RuleId,
    /// Before the tier multiplier, which depends on the participant at write time.
    pub points: Points,
}

/// Prices every line by the sell-in rule for its SKU valid on the line's date. A line with
/// no such rule is an error, so an import never silently earns nothing.
pub fn price_lines(lines: Vec<SellInLine>, rules: &[Rule]) -> Result<Vec<PricedLine>, SellInError> {
    let mut priced = Vec::new();
    let mut errors = Vec::new();
    for line in lines {
        // The invoice date is already the distributor's local date: read at its noon, a
        // local bound compares with it as it is (hence UTC), an instant as before.
        let at = line
            .date
            .and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"));
        let rule = rules
            .iter()
            .filter(|r| matches!(&r.trigger, Trigger::SellIn(s) if *s == line.sku))
            .find(|r| r.is_valid_at(at.and_utc(), Zone::UTC));
        match rule {
            Some(r) => {
                let points = r
                    .points
                    .get()
                    .checked_mul(line.quantity as u64)
                    .filter(|p| *p <= Points::MAX_MOVEMENT);
                match points {
                    Some(p) => priced.push(PricedLine {
                        rule: r.id.clone(),
                        points: Points(p),
                        line,
                    }),
                    None => errors.push(LineError {
                        line: line.line,
                        field: "quantity",
                        reason: "earns more points than one movement may carry".into(),
                    }),
                }
            }
            None => errors.push(LineError {
                line: line.line,
                field: "sku",
                reason: format!("no sell-in rule for {} on {}", line.sku.as_str(), line.date),
            }),
        }
    }
    if errors.is_empty() {
        Ok(priced)
    } else {
        Err(SellInError::Lines(errors))
    }
}

/// Deterministic entry ids for accruals, so a retry maps onto what it already wrote.
pub mod entry_ids {
    use sha2::{Digest, Sha256};

    use crate::ids::{EntryId, ParticipantId};

    fn hashed(prefix: &str, parts: &[&str]) -> EntryId {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        EntryId::parse(&format!("{prefix}-{hex}")).expect("hex is id-safe")
    }

    /// One per participant and Idempotency-Key: the key is what makes a report one report.
    pub fn action(participant: &ParticipantId, idempotency_key: &str) -> EntryId {
        hashed("action", &[participant.as_str(), idempotency_key])
    }

    /// One per invoice line identity, so re-importing a line appends nothing. (The entry
    /// sits under its participant, so it alone cannot tell a line moved to another
    /// participant: the store keeps a line marker for that.) Unchanged since the first
    /// import, so lines imported before keep their ids.
    pub fn sell_in(line: &super::LineIdentity) -> EntryId {
        hashed(
            "sellin",
            &[
                &line.invoice,
                line.outlet.as_str(),
                line.sku.as_str(),
                &line.date.to_string(),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request(json: serde_json::Value) -> RuleRequest {
        serde_json::from_value(json).unwrap()
    }

    fn survey() -> Rule {
        Rule::parse(
            RuleId::parse("survey-q4").unwrap(),
            request(serde_json::json!({
                "action": "survey", "points": 40, "per_participant": 5,
                "per_period": {"max": 2, "period": "week"},
                "valid_from": "2026-10-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"
            })),
        )
        .unwrap()
    }

    #[test]
    fn a_rule_refuses_over_budget_credits_unless_it_says_hold_and_only_action_rules_may_hold() {
        let refusing = survey();
        assert_eq!(refusing.over_budget, OverBudget::Refuse);
        let stored = serde_json::to_value(&refusing).unwrap();
        assert!(
            stored.get("over_budget").is_none(),
            "rules stored before the setting keep their JSON"
        );
        let holding = Rule::parse(
            RuleId::parse("survey-q4").unwrap(),
            request(serde_json::json!({
                "action": "survey", "points": 40, "over_budget": "hold",
                "valid_from": "2026-10-01T00:00:00Z"
            })),
        )
        .unwrap();
        assert_eq!(holding.over_budget, OverBudget::Hold);
        let read: Rule = serde_json::from_value(serde_json::to_value(&holding).unwrap()).unwrap();
        assert_eq!(read, holding);
        let sell_in = request(serde_json::json!({
            "sku": "COLA-500", "points": 5, "over_budget": "hold",
            "valid_from": "2026-10-01T00:00:00Z"
        }));
        assert_eq!(
            Rule::parse(RuleId::parse("acme").unwrap(), sell_in),
            Err(RuleError::SellInHold)
        );
    }

    #[test]
    fn a_self_reported_rule_without_a_limit_is_refused_and_an_unstated_reporter_follows_the_limits()
    {
        let unlimited = |reported_by: Option<&str>| {
            let mut json = serde_json::json!({
                "action": "survey", "points": 40, "valid_from": "2026-10-01T00:00:00Z"
            });
            if let Some(r) = reported_by {
                json["reported_by"] = r.into();
            }
            Rule::parse(RuleId::parse("survey-q4").unwrap(), request(json))
        };
        assert_eq!(
            unlimited(Some("participant")),
            Err(RuleError::SelfReportedUnlimited)
        );
        assert_eq!(
            unlimited(None).unwrap().reported_by,
            Reporter::Reviewer,
            "nothing unlimited is self-reported by accident"
        );
        assert_eq!(
            unlimited(Some("service")).unwrap().reported_by,
            Reporter::Service
        );
        assert_eq!(survey().reported_by, Reporter::Participant);
        let welcome = Rule::parse(
            RuleId::parse("welcome").unwrap(),
            request(serde_json::json!({
                "action": "welcome_bonus", "points": 40, "reported_by": "participant",
                "valid_from": "2026-10-01T00:00:00Z"
            })),
        )
        .unwrap();
        assert_eq!(
            welcome.per_participant,
            Some(1),
            "a once-ever action is its own limit"
        );
    }

    #[test]
    fn a_rule_stored_before_reporters_existed_is_self_reported_only_when_it_has_a_limit() {
        let mut limited = serde_json::to_value(survey()).unwrap();
        limited.as_object_mut().unwrap().remove("reported_by");
        let read: Rule = serde_json::from_value(limited.clone()).unwrap();
        assert_eq!(read.reported_by, Reporter::Participant);
        limited.as_object_mut().unwrap().remove("per_participant");
        limited.as_object_mut().unwrap().remove("per_period");
        let read: Rule = serde_json::from_value(limited).unwrap();
        assert_eq!(read.reported_by, Reporter::Reviewer);
        let mut service = survey();
        service.reported_by = Reporter::Service;
        let read: Rule = serde_json::from_value(serde_json::to_value(&service).unwrap()).unwrap();
        assert_eq!(read, service, "a stated reporter is kept");
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    #[test]
    fn a_rule_is_valid_from_its_start_up_to_but_excluding_its_end() {
        let r = survey();
        // Instants are the same in every zone.
        for z in [Zone::UTC, zone("Asia/Omsk"), zone("America/Bogota")] {
            assert!(!r.is_valid_at(at("2026-09-30T23:59:59Z"), z));
            assert!(r.is_valid_at(at("2026-10-01T00:00:00Z"), z));
            assert!(r.is_valid_at(at("2026-12-31T23:59:59Z"), z));
            assert!(!r.is_valid_at(at("2027-01-01T00:00:00Z"), z));
        }
        assert_eq!(
            check_action(
                &r,
                Reporter::Participant,
                at("2027-01-01T00:00:00Z"),
                Zone::UTC
            ),
            Err(AccrualError::OutsideWindow(r.id.clone()))
        );
        assert_eq!(
            check_action(
                &r,
                Reporter::Participant,
                at("2026-11-22T10:00:00Z"),
                Zone::UTC
            ),
            Ok(Action::Survey)
        );
    }

    #[test]
    fn a_local_validity_window_opens_and_closes_at_each_regions_own_midnight() {
        let december = Rule::parse(
            RuleId::parse("december").unwrap(),
            request(serde_json::json!({
                "action": "survey", "points": 40, "per_participant": 5,
                "valid_from": "2026-12-01", "valid_until": "2027-01-01T00:00:00"
            })),
        )
        .unwrap();
        let (omsk, bogota) = (zone("Asia/Omsk"), zone("America/Bogota"));
        // 2026-11-30T18:30Z is 00:30 on 1 December in Omsk (UTC+6), 13:30 on 30 November
        // in Bogota (UTC−5).
        let t = at("2026-11-30T18:30:00Z");
        assert!(december.is_valid_at(t, omsk));
        assert!(!december.is_valid_at(t, bogota));
        assert!(!december.is_valid_at(at("2026-11-30T17:59:59Z"), omsk));
        // 2027-01-01T03:00Z is 22:00 on 31 December in Bogota, 09:00 on 1 January in Omsk.
        let t = at("2027-01-01T03:00:00Z");
        assert!(december.is_valid_at(t, bogota));
        assert!(!december.is_valid_at(t, omsk));
        assert_eq!(
            check_action(&december, Reporter::Participant, t, omsk),
            Err(AccrualError::OutsideWindow(december.id.clone()))
        );
        // The kind is stored: local bounds read back local, instants as instants.
        let stored = serde_json::to_value(&december).unwrap();
        assert_eq!(stored["valid_from"], "2026-12-01T00:00:00");
        assert_eq!(serde_json::from_value::<Rule>(stored).unwrap(), december);
        assert_eq!(
            serde_json::to_value(survey()).unwrap()["valid_from"],
            "2026-10-01T00:00:00Z"
        );
    }

    #[test]
    fn a_rule_stored_with_instants_reads_back_as_instants() {
        // As PUT /admin/rules stored rules before local bounds existed.
        let stored = serde_json::json!({
            "id": "survey-q4", "trigger": {"action": "survey"}, "points": 40,
            "per_participant": 5, "per_period": null,
            "valid_from": "2026-10-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
            "reported_by": "participant"
        });
        let rule: Rule = serde_json::from_value(stored).unwrap();
        assert_eq!(rule.valid_from, Bound::Instant(at("2026-10-01T00:00:00Z")));
        assert_eq!(
            rule.valid_until,
            Some(Bound::Instant(at("2027-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn validity_bounds_are_instants_local_dates_or_local_date_times_and_nothing_else() {
        assert_eq!(
            Bound::parse("2026-12-01T06:00:00+06:00"),
            Ok(Bound::Instant(at("2026-12-01T00:00:00Z")))
        );
        assert!(matches!(
            Bound::parse("2026-12-01T08:30:00"),
            Ok(Bound::Local(_))
        ));
        for bad in ["2026-12-32", "1 December", "2026-12-01 08:30", ""] {
            assert_eq!(Bound::parse(bad), Err(InvalidBound), "{bad}");
        }
        let window = |from: &str, until: &str| {
            Rule::parse(
                RuleId::parse("r").unwrap(),
                request(serde_json::json!({
                    "action": "survey", "points": 10, "per_participant": 1,
                    "valid_from": from, "valid_until": until
                })),
            )
        };
        assert_eq!(
            window("2026-12-01", "2026-12-01").unwrap_err(),
            RuleError::Window
        );
        // Mixed kinds are refused only when empty in every zone.
        assert!(window("2026-12-01", "2026-12-01T06:00:00Z").is_ok());
        assert_eq!(
            window("2026-12-02", "2026-12-01T00:00:00Z").unwrap_err(),
            RuleError::Window
        );
    }

    #[test]
    fn an_action_counts_against_the_participant_limit_and_the_current_period() {
        let counters = survey().counters(at("2026-11-22T10:00:00Z"), Zone::UTC);
        assert_eq!(counters.len(), 2);
        assert_eq!((counters[0].key.as_str(), counters[0].max), ("EVER", 5));
        assert_eq!((counters[1].key.as_str(), counters[1].max), ("W2026-47", 2));
        assert_eq!(counters[1].expires_at, Some(at("2026-11-23T00:00:00Z")));
    }

    #[test]
    fn periods_roll_over_at_day_iso_week_and_month_boundaries() {
        let window = |p: Period, t: DateTime<Utc>| p.window(t, Zone::UTC);
        let sunday = at("2026-11-22T23:59:59Z");
        let monday = at("2026-11-23T00:00:00Z");
        assert_ne!(
            window(Period::Week, sunday).0,
            window(Period::Week, monday).0
        );
        assert_ne!(window(Period::Day, sunday).0, window(Period::Day, monday).0);
        assert_eq!(
            window(Period::Month, sunday).0,
            window(Period::Month, monday).0
        );
        let (key, end) = window(Period::Month, at("2026-12-31T12:00:00Z"));
        assert_eq!(
            (key.as_str(), end),
            ("M2026-12", at("2027-01-01T00:00:00Z"))
        );
        // ISO week 53 of 2026 runs into January 2027 and keeps its year.
        assert_eq!(
            window(Period::Week, at("2027-01-01T08:00:00Z")).0,
            "W2026-53"
        );
    }

    #[test]
    fn in_utc_plus_6_a_month_ends_at_local_midnight_not_utc_midnight() {
        let omsk = zone("Asia/Omsk");
        // 23:30 on 30 November and 00:30 on 1 December in Omsk: the same UTC date.
        let (last, first) = (at("2026-11-30T17:30:00Z"), at("2026-11-30T18:30:00Z"));
        assert_eq!(last.date_naive(), first.date_naive());
        let (m_last, end) = Period::Month.window(last, omsk);
        let (m_first, _) = Period::Month.window(first, omsk);
        assert_eq!(
            (m_last.as_str(), m_first.as_str()),
            ("M2026-11", "M2026-12")
        );
        assert_eq!(
            end,
            at("2026-11-30T18:00:00Z"),
            "local midnight of 1 December"
        );
        // Day and week (Monday 30 November is in ISO week 49) turn at the same instant.
        assert_eq!(Period::Day.window(last, omsk).0, "D2026-11-30");
        assert_eq!(Period::Day.window(first, omsk).0, "D2026-12-01");
        // And 00:30 UTC on 1 December, a new UTC month, is still December in Omsk, while
        // 05:30 UTC on 31 December (11:30 local) is still December too.
        assert_eq!(
            Period::Month.window(at("2026-12-01T00:30:00Z"), omsk).0,
            "M2026-12"
        );
        let (key, end) = Period::Month.window(at("2026-12-31T19:30:00Z"), omsk);
        assert_eq!(
            (key.as_str(), end),
            ("M2027-01", at("2027-01-31T18:00:00Z"))
        );
    }

    #[test]
    fn in_utc_minus_5_a_month_ends_at_local_midnight_not_utc_midnight() {
        let bogota = zone("America/Bogota");
        // 23:30 on 30 November in Bogota is 04:30 UTC on 1 December; 00:30 on 1 December is
        // 05:30 UTC: the same UTC date and month, different local months.
        let (last, first) = (at("2026-12-01T04:30:00Z"), at("2026-12-01T05:30:00Z"));
        assert_eq!(last.date_naive(), first.date_naive());
        let (m_last, end) = Period::Month.window(last, bogota);
        assert_eq!(m_last, "M2026-11");
        assert_eq!(Period::Month.window(first, bogota).0, "M2026-12");
        assert_eq!(end, at("2026-12-01T05:00:00Z"));
        // Vice versa: 23:30 UTC on 30 November and 00:30 UTC on 1 December are both
        // 30 November in Bogota (18:30 and 19:30), though their UTC months differ.
        let (a, b) = (at("2026-11-30T23:30:00Z"), at("2026-12-01T00:30:00Z"));
        assert_ne!(
            Period::Month.window(a, Zone::UTC).0,
            Period::Month.window(b, Zone::UTC).0
        );
        assert_eq!(
            Period::Month.window(a, bogota).0,
            Period::Month.window(b, bogota).0
        );
        assert_eq!(Period::Day.window(b, bogota).0, "D2026-11-30");
        // A week turns at local midnight between Sunday 29 November and Monday 30 November.
        assert_eq!(
            Period::Week.window(at("2026-11-30T04:59:59Z"), bogota).0,
            "W2026-48"
        );
        assert_eq!(
            Period::Week.window(at("2026-11-30T05:00:00Z"), bogota).0,
            "W2026-49"
        );
    }

    #[test]
    fn a_day_across_a_dst_change_ends_at_the_next_local_midnight() {
        // New York leaves DST on Sunday 1 November 2026: that day is 25 hours long.
        let ny = zone("America/New_York");
        let (key, end) = Period::Day.window(at("2026-11-01T12:00:00Z"), ny);
        assert_eq!(
            (key.as_str(), end),
            ("D2026-11-01", at("2026-11-02T05:00:00Z"))
        );
        let (key, end) = Period::Month.window(at("2026-10-31T12:00:00Z"), ny);
        assert_eq!(
            (key.as_str(), end),
            ("M2026-10", at("2026-11-01T04:00:00Z"))
        );
    }

    proptest::proptest! {
        /// Whatever the zone and instant, the window holds the instant, its end is the
        /// start of the next period, and the key is the local date's.
        #[test]
        fn a_window_contains_its_instant_and_ends_where_the_next_begins(
            secs in 1_700_000_000i64..1_900_000_000,
            z in 0usize..5,
            p in 0usize..3,
        ) {
            let zone = zone(["UTC", "Asia/Omsk", "America/Bogota", "America/New_York",
                "Europe/London"][z]);
            let period = [Period::Day, Period::Week, Period::Month][p];
            let t = DateTime::from_timestamp(secs, 0).unwrap();
            let (key, end) = period.window(t, zone);
            proptest::prop_assert!(end > t);
            proptest::prop_assert_ne!(&period.window(end, zone).0, &key);
            proptest::prop_assert_eq!(&period.window(end - Duration::seconds(1), zone).0, &key);
            proptest::prop_assert_eq!(zone.local(end).time(), NaiveTime::MIN);
        }
    }

    #[test]
    fn a_welcome_bonus_is_once_ever_whatever_the_rule_says() {
        let r = Rule::parse(
            RuleId::parse("welcome").unwrap(),
            request(serde_json::json!({
                "action": "welcome_bonus", "points": 100, "per_participant": 3,
                "valid_from": "2026-01-01T00:00:00Z"
            })),
        )
        .unwrap();
        assert_eq!(r.per_participant, Some(1));
        assert!(r.is_valid_at(at("2099-01-01T00:00:00Z"), Zone::UTC));
        let counters = r.counters(at("2026-11-22T10:00:00Z"), Zone::UTC);
        assert_eq!(counters.len(), 1);
        assert_eq!(counters[0].scope, LimitScope::Participant);
    }

    #[test]
    fn malformed_rules_are_refused() {
        let id = || RuleId::parse("r").unwrap();
        let base = serde_json::json!({"action": "survey", "points": 10, "valid_from": "2026-01-01T00:00:00Z"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            request(b)
        };
        assert_eq!(
            Rule::parse(id(), with("points", 0.into())),
            Err(RuleError::Points {
                max: Points::MAX_MOVEMENT
            })
        );
        assert_eq!(
            Rule::parse(id(), with("sku", "COLA".into())),
            Err(RuleError::Trigger)
        );
        assert_eq!(
            Rule::parse(id(), with("per_participant", 0.into())),
            Err(RuleError::ZeroLimit)
        );
        assert_eq!(
            Rule::parse(id(), with("valid_until", "2026-01-01T00:00:00Z".into())),
            Err(RuleError::Window)
        );
        let mut sell = base.clone();
        sell.as_object_mut().unwrap().remove("action");
        sell["sku"] = "COLA-05".into();
        sell["per_participant"] = 2.into();
        assert_eq!(
            Rule::parse(id(), request(sell)),
            Err(RuleError::SellInLimit)
        );
        assert!(RuleId::parse("Upper").is_err());
    }

    fn gold_tiers() -> Tiers {
        Tiers::parse(vec![
            Tier {
                name: "base".into(),
                threshold: 0,
                multiplier_percent: 100,
            },
            Tier {
                name: "silver".into(),
                threshold: 1000,
                multiplier_percent: 125,
            },
            Tier {
                name: "gold".into(),
                threshold: 5000,
                multiplier_percent: 150,
            },
        ])
        .unwrap()
    }

    #[test]
    fn the_tier_is_the_highest_whose_threshold_is_reached() {
        let t = gold_tiers();
        assert_eq!(t.tier_for(0).name, "base");
        assert_eq!(t.tier_for(999).name, "base");
        assert_eq!(t.tier_for(1000).name, "silver");
        assert_eq!(t.tier_for(7000).name, "gold");
        assert_eq!(with_multiplier(Points(41), t.tier_for(1000)), Points(51));
    }

    #[test]
    fn tiers_must_start_at_zero_increase_and_multiply_sensibly() {
        let tier = |name: &str, threshold, m| Tier {
            name: name.into(),
            threshold,
            multiplier_percent: m,
        };
        assert_eq!(Tiers::parse(vec![]), Err(TiersError::NoBase));
        assert_eq!(
            Tiers::parse(vec![tier("a", 10, 100)]),
            Err(TiersError::NoBase)
        );
        assert_eq!(
            Tiers::parse(vec![tier("a", 0, 100), tier("b", 0, 120)]),
            Err(TiersError::NotIncreasing)
        );
        assert_eq!(
            Tiers::parse(vec![tier("a", 0, 50)]),
            Err(TiersError::Multiplier)
        );
        assert_eq!(
            Tiers::parse(vec![tier("a", 0, 100), tier("a", 5, 120)]),
            Err(TiersError::Name)
        );
    }

    #[test]
    fn only_the_trailing_twelve_months_count_towards_a_tier() {
        let months = MonthlyEarned::from([
            (202512, 900), // 13th month back from 2026-12: out
            (202601, 100), // 12th month back: in
            (202606, -50), // a month of clawbacks counts as nothing
            (202612, 400),
        ]);
        assert_eq!(
            earned_trailing_12_months(&months, at("2026-12-05T00:00:00Z")),
            500
        );
        assert_eq!(month_key(at("2026-03-31T23:00:00Z")), 202603);
    }

    const HEADER: &str = "invoice,date,outlet_id,participant_id,supplier_id,sku,quantity\n";

    fn one_line(csv_line: &str, at_line: usize) -> SellInLine {
        let blanks = "\n".repeat(at_line - 2);
        let mut lines = parse_sell_in_csv(&format!("{HEADER}{blanks}{csv_line}\n")).unwrap();
        assert_eq!(lines[0].line, at_line);
        lines.remove(0)
    }

    #[test]
    fn a_sell_in_line_is_identified_by_invoice_outlet_sku_and_date_wherever_it_sits() {
        let line = one_line("INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10", 2);
        let moved = one_line("INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10", 7);
        assert_eq!(line.identity(), moved.identity());
        assert_eq!(line.fingerprint(), moved.fingerprint());
        // The entry id is the one lines imported before were given.
        assert_eq!(
            entry_ids::sell_in(&line.identity()).as_str(),
            "sellin-36eb25895e11b40ec0c6ee29"
        );
        for other in [
            "INV-2,2026-11-10,o-1,p-1,acme,COLA-05,10",
            "INV-1,2026-11-11,o-1,p-1,acme,COLA-05,10",
            "INV-1,2026-11-10,o-2,p-1,acme,COLA-05,10",
            "INV-1,2026-11-10,o-1,p-1,acme,COLA-1,10",
        ] {
            let other = one_line(other, 2);
            assert_ne!(other.identity(), line.identity(), "{other:?}");
            assert_ne!(
                entry_ids::sell_in(&other.identity()),
                entry_ids::sell_in(&line.identity())
            );
        }
    }

    #[test]
    fn a_line_with_another_participant_supplier_or_quantity_is_the_same_line_changed() {
        let line = one_line("INV-1,2026-11-10,o-1,p-1,acme,COLA-05,10", 2);
        for changed in [
            "INV-1,2026-11-10,o-1,p-9,acme,COLA-05,10",
            "INV-1,2026-11-10,o-1,p-1,other,COLA-05,10",
            "INV-1,2026-11-10,o-1,p-1,acme,COLA-05,11",
        ] {
            let changed = one_line(changed, 2);
            assert_eq!(changed.identity(), line.identity());
            assert_ne!(changed.fingerprint(), line.fingerprint(), "{changed:?}");
        }
        let error = SellInError::Changed(vec![line.changed()]);
        assert_eq!(
            (error.kind(), error.code()),
            (Kind::Conflict, "line_changed")
        );
    }

    #[test]
    fn a_good_csv_parses_every_line() {
        let csv = format!(
            "{HEADER}INV-1,2026-11-20,o-1,p-1,acme,COLA-05,12\nINV-1,2026-11-20,o-1,p-1,acme,COLA-1,3\n"
        );
        let lines = parse_sell_in_csv(&csv).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].line, lines[0].quantity), (2, 12));
        assert_eq!(lines[1].sku.as_str(), "COLA-1");
    }

    #[test]
    fn bad_csv_lines_are_all_reported_by_file_line_number() {
        let csv = format!(
            "{HEADER}INV-1,2026-11-20,o-1,p-1,acme,COLA-05,12\nINV-1,2026-13-01,o-1,p-1,acme,COLA-05,1\n\nINV-2,2026-11-20,o 1,p-1,acme,COLA-05,1\nINV-3,2026-11-20,o-1,p-1,acme,COLA-05,-4\nINV-1,2026-11-20,o-1,p-1,acme,COLA-05,5\n"
        );
        let Err(SellInError::Lines(errors)) = parse_sell_in_csv(&csv) else {
            panic!("expected line errors");
        };
        let got: Vec<_> = errors.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(
            got,
            vec![(3, "date"), (5, "outlet_id"), (6, "quantity"), (7, "sku")]
        );
    }

    #[test]
    fn a_csv_without_a_required_column_is_refused_at_line_one() {
        let Err(SellInError::Lines(errors)) =
            parse_sell_in_csv("invoice,date,outlet_id\nINV-1,2026-11-20,o-1\n")
        else {
            panic!("expected a header error");
        };
        assert_eq!((errors[0].line, errors[0].field), (1, "header"));
        assert_eq!(parse_sell_in_csv(HEADER), Err(SellInError::Empty));
    }

    #[test]
    fn json_lines_are_numbered_from_one_and_typed() {
        let text = r#"{"invoice":"I-1","date":"2026-11-20","outlet_id":"o-1","participant_id":"p-1","supplier_id":"acme","sku":"COLA-05","quantity":2}

{"invoice":"I-1","date":"2026-11-20","outlet_id":"o-1","participant_id":"p-1","supplier_id":"acme","sku":"COLA-05","quantity":2.5}
not json"#;
        let Err(SellInError::Lines(errors)) = parse_sell_in_json_lines(text) else {
            panic!("expected line errors");
        };
        let got: Vec<_> = errors.iter().map(|e| (e.line, e.field)).collect();
        assert_eq!(got, vec![(3, "quantity"), (4, "line")]);
    }

    #[test]
    fn a_line_is_priced_per_unit_by_the_rule_valid_on_its_date() {
        let rule = Rule::parse(
            RuleId::parse("cola-promo").unwrap(),
            request(serde_json::json!({
                "sku": "COLA-05", "points": 3,
                "valid_from": "2026-11-01T00:00:00Z", "valid_until": "2026-12-01T00:00:00Z"
            })),
        )
        .unwrap();
        let csv = format!(
            "{HEADER}INV-1,2026-11-20,o-1,p-1,acme,COLA-05,12\nINV-2,2026-12-01,o-1,p-1,acme,COLA-05,1\nINV-3,2026-11-20,o-1,p-1,acme,FANTA,1\n"
        );
        let lines = parse_sell_in_csv(&csv).unwrap();
        let Err(SellInError::Lines(errors)) =
            price_lines(lines.clone(), std::slice::from_ref(&rule))
        else {
            panic!("expected pricing errors");
        };
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![3, 4]
        );
        let priced = price_lines(lines[..1].to_vec(), &[rule]).unwrap();
        assert_eq!(priced[0].points, Points(36));
    }

    #[test]
    fn entry_ids_are_deterministic_and_distinct_per_source() {
        let p = ParticipantId::parse("p-1").unwrap();
        assert_eq!(
            entry_ids::action(&p, "key-00001"),
            entry_ids::action(&p, "key-00001")
        );
        assert_ne!(
            entry_ids::action(&p, "key-00001"),
            entry_ids::action(&p, "key-00002")
        );
    }
}
