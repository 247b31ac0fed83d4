//! Business and operational metrics, as CloudWatch embedded metric format (EMF) lines.
//!
//! A function's `App` holds a [`Metrics`]: over [`Emf`] in Lambda (one JSON object per line
//! on stdout, which CloudWatch Logs turns into metrics, no API call and no dependency), over
//! [`crate::memory::RecordedMetrics`] in handler tests.
//!
//! Every metric is declared once here ([`ALL`]) with its unit and dimension names; the
//! template's dashboard and alarms are checked against that list (`infra/local`,
//! `metrics_tests.rs`). A dimension value is a `&'static str`: a stable problem code, a route
//! key or an outcome name compiled into the binary. A participant id, phone number or code
//! is read at run time, so it cannot be one without leaking memory on purpose:
//!
//! ```compile_fail,E0597
//! use loyalty_platform::metrics::{Dim, Point, CLAIMS_REFUSED};
//! let code = String::from("ABCD-EFGH-JKLM");
//! Point::new(&CLAIMS_REFUSED, 1, &[(Dim::Reason, code.as_str())]);
//! ```

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};

use crate::http::{self, Problem};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "LoyaltyEngine";

/// The dimensions a metric can have. `Function` is added by the sink ([`Emf`]), never by
/// the code that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    Function,
    /// An API route key, `"POST /claims"`.
    Route,
    /// The class of an HTTP status: `2xx`, `4xx`, `5xx`.
    Outcome,
    /// A stable problem code or result reason.
    Reason,
    /// Who a fraud lock holds: `participant` or `outlet`.
    Subject,
    /// A batch job's result.
    Result,
}

impl Dim {
    pub const fn name(self) -> &'static str {
        match self {
            Dim::Function => "Function",
            Dim::Route => "Route",
            Dim::Outcome => "Outcome",
            Dim::Reason => "Reason",
            Dim::Subject => "Subject",
            Dim::Result => "Result",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A metric as CloudWatch stores it: a name, a unit and the dimensions it is published with.
#[derive(Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    /// Always starts with [`Dim::Function`].
    pub dimensions: &'static [Dim],
    /// What it counts, for the README and the dashboard.
    pub meaning: &'static str,
}

const fn count(name: &'static str, dimensions: &'static [Dim], meaning: &'static str) -> Metric {
    Metric {
        name,
        unit: Unit::Count,
        dimensions,
        meaning,
    }
}

pub const REQUESTS: Metric = count(
    "Requests",
    &[Dim::Function, Dim::Route, Dim::Outcome],
    "HTTP requests answered, by route and status class (2xx, 4xx, 5xx).",
);
pub const LATENCY: Metric = Metric {
    name: "Latency",
    unit: Unit::Milliseconds,
    dimensions: &[Dim::Function, Dim::Route],
    meaning: "Time the handler took to answer, by route (from the request reaching `handle`).",
};
pub const IDEMPOTENT_REPLAYS: Metric = count(
    "IdempotentReplays",
    &[Dim::Function, Dim::Route],
    "Answers replayed for a repeated request: an Idempotency-Key or a partner event id seen \
     before (`Idempotent-Replayed: true`), or a claim of a code the claimant has already claimed.",
);
pub const CLAIMS_ACCEPTED: Metric = count(
    "ClaimsAccepted",
    &[Dim::Function],
    "Codes claimed (a replay of the claimant's own claim is an `IdempotentReplays`).",
);
pub const CLAIMS_REFUSED: Metric = count(
    "ClaimsRefused",
    &[Dim::Function, Dim::Reason],
    "Claims answered 4xx, by problem code (`code_unknown`, `claims_locked`, ...).",
);
pub const FRAUD_LOCKS: Metric = count(
    "FraudLocks",
    &[Dim::Function, Dim::Subject],
    "Locks placed after too many failed claims, on a participant or an outlet.",
);
pub const REVIEW_FLAGS: Metric = count(
    "ReviewFlags",
    &[Dim::Function],
    "Credits held for review: claims pending review, actions held for want of budget.",
);
pub const ACTION_CREDITS: Metric = count(
    "ActionCredits",
    &[Dim::Function],
    "Target actions credited (held ones included).",
);
pub const LIMIT_HITS: Metric = count(
    "LimitHits",
    &[Dim::Function, Dim::Reason],
    "Earning stopped or cut by a limit: `period_limit_reached`, `participant_limit_reached`, \
     `budget_exhausted` (actions); `monthly_cap_reached`, `capped`, `budget_exhausted` (cashback).",
);
pub const CASHBACK_CREDITS: Metric = count(
    "CashbackCredits",
    &[Dim::Function],
    "Order-created events that credited cashback (pending until release).",
);
pub const WEBHOOK_REJECTIONS: Metric = count(
    "WebhookRejections",
    &[Dim::Function, Dim::Reason],
    "Partner webhooks answered 4xx, by problem code (`invalid_signature`, `stale_signature`, ...).",
);
pub const IDENTITY_REFUSALS: Metric = count(
    "IdentityRefusals",
    &[Dim::Function, Dim::Reason],
    "Passcode, registration (invitation codes included) and change-of-phone requests answered \
     4xx, by problem code \
     (`passcode_invalid`, `too_many_attempts`, `phone_not_proven`, `phone_taken`, ...).",
);
pub const PASSCODES_SENT: Metric = count(
    "PasscodesSent",
    &[Dim::Function],
    "One-time passcodes texted: each is an SMS the programme pays for, so a surge is either a \
     campaign or SMS pumping.",
);
pub const BATCH_JOBS: Metric = count(
    "BatchJobs",
    &[Dim::Function, Dim::Result],
    "Code batch chunks handled: `done`, `already_done`, `retried` (returned to the queue), \
     `dropped` (poison or malformed).",
);

/// Every metric the code emits.
pub const ALL: &[&Metric] = &[
    &REQUESTS,
    &LATENCY,
    &IDEMPOTENT_REPLAYS,
    &CLAIMS_ACCEPTED,
    &CLAIMS_REFUSED,
    &FRAUD_LOCKS,
    &REVIEW_FLAGS,
    &ACTION_CREDITS,
    &LIMIT_HITS,
    &CASHBACK_CREDITS,
    &WEBHOOK_REJECTIONS,
    &IDENTITY_REFUSALS,
    &PASSCODES_SENT,
    &BATCH_JOBS,
];

/// One value of one metric, with its dimensions other than `Function`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub metric: &'static Metric,
    pub value: u64,
    pub dimensions: Vec<(Dim, &'static str)>,
}

impl Point {
    /// `dimensions` must name the metric's dimensions after `Function`, in order (checked
    /// in debug builds, and by [`crate::memory::RecordedMetrics`] in every handler test).
    pub fn new(metric: &'static Metric, value: u64, dimensions: &[(Dim, &'static str)]) -> Self {
        let point = Self {
            metric,
            value,
            dimensions: dimensions.to_vec(),
        };
        debug_assert!(point.is_well_formed(), "{point:?} has the wrong dimensions");
        point
    }

    /// Its dimensions are exactly those the metric declares.
    pub fn is_well_formed(&self) -> bool {
        self.metric.dimensions.first() == Some(&Dim::Function)
            && self.metric.dimensions[1..]
                .iter()
                .copied()
                .eq(self.dimensions.iter().map(|(d, _)| *d))
    }
}

/// The port: where a request's points go. Called once per request or invocation.
pub trait MetricSink: Send + Sync {
    fn emit(&self, points: &[Point]);
}

/// A function's metrics: a cheap handle on its sink.
#[derive(Clone)]
pub struct Metrics(Arc<dyn MetricSink>);

impl Metrics {
    pub fn new(sink: impl MetricSink + 'static) -> Self {
        Self(Arc::new(sink))
    }

    /// EMF lines on stdout, with `Function` = `function` (the crate's name).
    pub fn emf(function: &'static str) -> Self {
        Self::new(Emf { function })
    }

    /// Counts nothing: for benchmarks and tests that do not look.
    pub fn discard() -> Self {
        Self::new(Discard)
    }

    pub fn emit(&self, points: &[Point]) {
        if !points.is_empty() {
            self.0.emit(points);
        }
    }

    /// One count of `metric`.
    pub fn count(&self, metric: &'static Metric, dimensions: &[(Dim, &'static str)]) {
        self.emit(&[Point::new(metric, 1, dimensions)]);
    }

    /// Answers one HTTP request with `handler` and emits, in one line: its latency, its
    /// status class, a replayed Idempotency-Key, and a 4xx problem's code under the route's
    /// refusal metric, if it has one.
    pub async fn http(
        &self,
        req: &Request,
        routes: &Routes,
        handler: impl Future<Output = Result<Response<Body>, Problem>>,
    ) -> Response<Body> {
        let started = Instant::now();
        let result = handler.await;
        let (route, refusals) = routes.find(http::route_key(req));
        let refused = match (&result, refusals) {
            (Err(problem), Some(metric)) if problem.status.is_client_error() => {
                Some(Point::new(metric, 1, &[(Dim::Reason, problem.code)]))
            }
            _ => None,
        };
        let response = http::respond(result);
        let outcome = if response.status().is_server_error() {
            "5xx"
        } else if response.status().is_client_error() {
            "4xx"
        } else {
            "2xx"
        };
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut points = vec![
            Point::new(
                &REQUESTS,
                1,
                &[(Dim::Route, route), (Dim::Outcome, outcome)],
            ),
            Point::new(&LATENCY, elapsed, &[(Dim::Route, route)]),
        ];
        if response.headers().contains_key("idempotent-replayed") {
            points.push(Point::new(&IDEMPOTENT_REPLAYS, 1, &[(Dim::Route, route)]));
        }
        points.extend(refused);
        self.emit(&points);
        response
    }
}

/// A function's route keys, so that the `Route` dimension is one of them (API Gateway only
/// invokes routes of the template; anything else is `other`), each with the metric that
/// counts its 4xx answers by problem code, if any.
pub struct Routes(pub &'static [(&'static str, Option<&'static Metric>)]);

impl Routes {
    fn find(&self, key: &str) -> (&'static str, Option<&'static Metric>) {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .copied()
            .unwrap_or(("other", None))
    }

    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(k, _)| *k)
    }
}

/// The Lambda adapter: each emit is one EMF line on stdout, which Lambda sends to
/// CloudWatch Logs, which extracts the metrics.
pub struct Emf {
    pub function: &'static str,
}

impl MetricSink for Emf {
    fn emit(&self, points: &[Point]) {
        let mut out = std::io::stdout().lock();
        for line in emf_lines(self.function, now_ms(), points) {
            // A metric line lost to a closed stdout must not fail the request.
            let _ = writeln!(out, "{line}");
        }
    }
}

struct Discard;

impl MetricSink for Discard {
    fn emit(&self, _: &[Point]) {}
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An EMF document being built: its root members, and its metric directives, each the
/// dimension names and the metrics published with them.
type Line = (
    Map<String, Value>,
    Vec<(Vec<&'static str>, Vec<&'static Metric>)>,
);

/// The EMF documents of `points`: as few as possible. Dimension values and metric values
/// are members of the root object, so two points that disagree on a dimension's value, or
/// two values of one metric, go to separate lines; points with the same dimension names
/// share one metric directive.
pub fn emf_lines(function: &'static str, timestamp_ms: u64, points: &[Point]) -> Vec<Value> {
    let mut lines: Vec<Line> = Vec::new();
    for point in points {
        let fits = |root: &Map<String, Value>| {
            !root.contains_key(point.metric.name)
                && point
                    .dimensions
                    .iter()
                    .all(|(d, v)| root.get(d.name()).is_none_or(|have| have == v))
        };
        let index = match lines.iter().position(|(root, _)| fits(root)) {
            Some(i) => i,
            None => {
                let mut root = Map::new();
                root.insert(Dim::Function.name().into(), function.into());
                lines.push((root, Vec::new()));
                lines.len() - 1
            }
        };
        let (root, directives) = &mut lines[index];
        for (d, v) in &point.dimensions {
            root.insert(d.name().into(), (*v).into());
        }
        root.insert(point.metric.name.into(), point.value.into());
        let names: Vec<&'static str> = point.metric.dimensions.iter().map(|d| d.name()).collect();
        match directives.iter_mut().find(|(n, _)| *n == names) {
            Some((_, metrics)) => metrics.push(point.metric),
            None => directives.push((names, vec![point.metric])),
        }
    }
    lines
        .into_iter()
        .map(|(mut root, directives)| {
            let directives: Vec<Value> = directives
                .into_iter()
                .map(|(names, metrics)| {
                    json!({
                        "Namespace": NAMESPACE,
                        "Dimensions": [names],
                        "Metrics": metrics
                            .iter()
                            .map(|m| json!({ "Name": m.name, "Unit": m.unit.as_str() }))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            root.insert(
                "_aws".into(),
                json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }),
            );
            Value::Object(root)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_claim_is_one_emf_document_as_the_specification_shows() {
        let lines = emf_lines(
            "code-claim",
            1_700_000_000_000,
            &[Point::new(
                &CLAIMS_REFUSED,
                1,
                &[(Dim::Reason, "code_unknown")],
            )],
        );
        assert_eq!(
            lines,
            vec![json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "LoyaltyEngine",
                        "Dimensions": [["Function", "Reason"]],
                        "Metrics": [{ "Name": "ClaimsRefused", "Unit": "Count" }],
                    }],
                },
                "Function": "code-claim",
                "Reason": "code_unknown",
                "ClaimsRefused": 1,
            })]
        );
    }

    #[test]
    fn a_request_s_points_share_one_line_with_a_directive_per_dimension_set() {
        let lines = emf_lines(
            "wallet",
            1,
            &[
                Point::new(
                    &REQUESTS,
                    1,
                    &[(Dim::Route, "GET /me"), (Dim::Outcome, "2xx")],
                ),
                Point::new(&LATENCY, 7, &[(Dim::Route, "GET /me")]),
                Point::new(&IDEMPOTENT_REPLAYS, 1, &[(Dim::Route, "GET /me")]),
            ],
        );
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["Route"], "GET /me");
        assert_eq!(line["Outcome"], "2xx");
        assert_eq!(line["Latency"], 7);
        let directives = line["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 2);
        assert_eq!(
            directives[1],
            json!({
                "Namespace": "LoyaltyEngine",
                "Dimensions": [["Function", "Route"]],
                "Metrics": [
                    { "Name": "Latency", "Unit": "Milliseconds" },
                    { "Name": "IdempotentReplays", "Unit": "Count" },
                ],
            })
        );
    }

    #[test]
    fn points_that_disagree_on_a_dimension_or_repeat_a_metric_go_to_separate_lines() {
        let lines = emf_lines(
            "batch-worker",
            1,
            &[
                Point::new(&BATCH_JOBS, 2, &[(Dim::Result, "done")]),
                Point::new(&BATCH_JOBS, 1, &[(Dim::Result, "retried")]),
                Point::new(&LIMIT_HITS, 1, &[(Dim::Reason, "capped")]),
            ],
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (&lines[0]["Result"], &lines[0]["BatchJobs"]),
            (&json!("done"), &json!(2))
        );
        assert_eq!(lines[0]["LimitHits"], 1);
        assert_eq!(lines[1]["Result"], "retried");
    }

    #[test]
    fn every_metric_is_published_per_function_and_named_once() {
        let mut names: Vec<_> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for m in ALL {
            assert_eq!(m.dimensions.first(), Some(&Dim::Function), "{}", m.name);
        }
    }

    #[test]
    fn a_route_outside_the_function_s_table_is_other() {
        let routes = Routes(&[("POST /claims", Some(&CLAIMS_REFUSED))]);
        assert_eq!(
            routes.find("POST /claims"),
            ("POST /claims", Some(&CLAIMS_REFUSED))
        );
        assert_eq!(routes.find("GET /nothing"), ("other", None));
    }
}
