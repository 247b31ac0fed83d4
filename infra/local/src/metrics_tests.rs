//! The dashboard and the alarms in template.yaml watch metrics the code emits, with the
//! dimensions it emits them with, so the two cannot drift apart silently.
//!
//! The code side is `loyalty_platform::metrics::ALL` (each metric's name and dimension
//! names), which function emits it (its crate's source names the metric's constant, or
//! answers through `Metrics::http` for the per-route metrics), and each HTTP function's
//! `ROUTES`, which must be its routes in the template.

use std::collections::{BTreeMap, BTreeSet};

use loyalty_platform::metrics::{self, Metric, NAMESPACE};
use serde_json::Value as Json;
use serde_yaml::Value;

use crate::template::{repo_root, sub_placeholders, EventSource, Intrinsic, Template};

/// One reference to a metric of ours: its name, dimension names, and the values pinned
/// (none for a SEARCH, which names the dimensions only).
#[derive(Debug)]
struct Watched {
    by: String,
    name: String,
    dimensions: BTreeSet<String>,
    values: BTreeMap<String, String>,
}

fn template() -> Template {
    Template::load_default().expect("template.yaml parses")
}

/// `SEARCH('{LoyaltyEngine,Function,Reason} MetricName="ClaimsRefused"', 'Sum', 300)`.
fn search(by: &str, expression: &str) -> Option<Watched> {
    let schema = expression.split_once('{')?.1.split_once('}')?.0;
    let mut parts = schema.split(',').map(str::trim);
    if parts.next()? != NAMESPACE {
        return None;
    }
    let dimensions = parts.map(str::to_string).collect();
    let name = expression
        .split_once("MetricName=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| panic!("{by}: a SEARCH without MetricName: {expression}"));
    Some(Watched {
        by: by.to_string(),
        name,
        dimensions,
        values: BTreeMap::new(),
    })
}

fn dashboard_metrics(t: &Template) -> Vec<Watched> {
    let mut out = Vec::new();
    for dashboard in t.resources_of_type("AWS::CloudWatch::Dashboard") {
        let by = &dashboard.logical_id;
        let Some(Intrinsic::Sub(text)) = dashboard
            .properties
            .get("DashboardBody")
            .and_then(Intrinsic::of)
        else {
            panic!("{by}: DashboardBody must be one !Sub string");
        };
        let mut body = text.clone();
        for name in sub_placeholders(&text) {
            body = body.replace(&format!("${{{name}}}"), "resolved");
        }
        let body: Json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{by}: DashboardBody is not JSON: {e}"));
        for widget in body["widgets"].as_array().expect("widgets") {
            for line in widget["properties"]["metrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let line = line.as_array().expect("a metric line is an array");
                match line.first() {
                    Some(Json::String(namespace)) if namespace == NAMESPACE => {
                        let strings: Vec<&str> = line.iter().filter_map(Json::as_str).collect();
                        let values: BTreeMap<String, String> = strings[2..]
                            .chunks(2)
                            .map(|kv| (kv[0].to_string(), kv[1].to_string()))
                            .collect();
                        out.push(Watched {
                            by: by.clone(),
                            name: strings[1].to_string(),
                            dimensions: values.keys().cloned().collect(),
                            values,
                        });
                    }
                    Some(Json::Object(o)) => {
                        let expression = o["expression"].as_str().expect("an expression");
                        out.extend(search(by, expression));
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn alarm_metric(by: &str, metric: &Value) -> Option<Watched> {
    if metric["Namespace"].as_str() != Some(NAMESPACE) {
        return None;
    }
    let values: BTreeMap<String, String> = metric["Dimensions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|d| {
            let value = d["Value"]
                .as_str()
                .unwrap_or_else(|| panic!("{by}: dimension values of our metrics are literals"));
            (d["Name"].as_str().unwrap().to_string(), value.to_string())
        })
        .collect();
    Some(Watched {
        by: by.to_string(),
        name: metric["MetricName"]
            .as_str()
            .expect("MetricName")
            .to_string(),
        dimensions: values.keys().cloned().collect(),
        values,
    })
}

fn alarm_metrics(t: &Template) -> Vec<Watched> {
    let mut out = Vec::new();
    for alarm in t.resources_of_type("AWS::CloudWatch::Alarm") {
        let p = Value::Mapping(alarm.properties.clone());
        out.extend(alarm_metric(&alarm.logical_id, &p));
        for m in p["Metrics"].as_sequence().into_iter().flatten() {
            out.extend(alarm_metric(&alarm.logical_id, &m["MetricStat"]["Metric"]));
        }
    }
    out
}

fn declared(name: &str) -> Option<&'static Metric> {
    metrics::ALL.iter().copied().find(|m| m.name == name)
}

/// `ClaimsRefused` -> `CLAIMS_REFUSED`, the constant a function names to emit it.
fn constant(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn crate_source(binary: &str) -> String {
    let dir = repo_root().join("functions").join(binary).join("src");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        text.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    text
}

/// Whether a function's code (`source`) can emit `metric`.
fn emits(metric: &Metric, source: &str) -> bool {
    let per_request = [
        &metrics::REQUESTS,
        &metrics::LATENCY,
        &metrics::IDEMPOTENT_REPLAYS,
    ];
    if per_request.contains(&metric) {
        source.contains("self.metrics.http(")
    } else {
        source.contains(&format!("metrics::{}", constant(metric.name)))
    }
}

#[test]
fn the_dashboard_and_the_alarms_watch_only_metrics_the_functions_emit_with_their_dimensions() {
    let t = template();
    let binaries: BTreeSet<String> = t
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| f.binary)
        .collect();
    let watched: Vec<Watched> = dashboard_metrics(&t)
        .into_iter()
        .chain(alarm_metrics(&t))
        .collect();
    assert!(watched.len() >= metrics::ALL.len(), "{watched:#?}");
    let domain: String = ["shared/domain/src", "shared/domain/src/cashback"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).unwrap())
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    let mut seen = BTreeSet::new();
    for w in &watched {
        let metric = declared(&w.name)
            .unwrap_or_else(|| panic!("{}: {} is not a metric the code emits", w.by, w.name));
        let names: BTreeSet<String> = metric
            .dimensions
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        assert_eq!(
            w.dimensions, names,
            "{}: {} has other dimensions",
            w.by, w.name
        );
        if let Some(function) = w.values.get("Function") {
            assert!(
                binaries.contains(function),
                "{}: no function {function}",
                w.by
            );
            let source = crate_source(function);
            assert!(
                emits(metric, &source),
                "{}: {function} never emits {}",
                w.by,
                w.name
            );
            // A pinned reason, subject or result is a literal of that function's code or of
            // the domain's stable codes.
            for (dim, value) in w.values.iter().filter(|(d, _)| *d != "Function") {
                let quoted = format!("\"{value}\"");
                assert!(
                    source.contains(&quoted) || domain.contains(&quoted),
                    "{}: {dim}={value} is never emitted",
                    w.by
                );
            }
        }
        seen.insert(metric.name);
    }
    let unwatched: Vec<_> = metrics::ALL
        .iter()
        .filter(|m| !seen.contains(m.name))
        .map(|m| m.name)
        .collect();
    assert!(
        unwatched.is_empty(),
        "the dashboard shows none of {unwatched:?}"
    );
}

#[test]
fn every_function_sends_its_metrics_under_its_own_name_and_counts_its_template_routes() {
    let t = template();
    let routes: BTreeMap<&str, Vec<&str>> = [
        ("participants", participants::ROUTES.keys().collect()),
        ("code-claim", code_claim::ROUTES.keys().collect()),
        ("wallet", wallet::ROUTES.keys().collect()),
        ("accrual", accrual::ROUTES.keys().collect()),
        ("codes-admin", codes_admin::ROUTES.keys().collect()),
        (
            "partner-webhooks",
            partner_webhooks::ROUTES.keys().collect(),
        ),
    ]
    .into_iter()
    .collect();
    for f in t.functions().unwrap() {
        let source = crate_source(&f.binary);
        assert!(
            source.contains(&format!("Metrics::emf(\"{}\")", f.binary)),
            "{}: App::new must send EMF with Function={}",
            f.logical_id,
            f.binary
        );
        let in_template: BTreeSet<String> = f
            .events
            .iter()
            .filter_map(|e| match &e.source {
                EventSource::Http { method, path, .. } => Some(format!("{method} {path}")),
                _ => None,
            })
            .collect();
        if in_template.is_empty() {
            continue;
        }
        let in_code: BTreeSet<String> = routes
            .get(f.binary.as_str())
            .unwrap_or_else(|| panic!("{}: add its ROUTES to this test", f.binary))
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            in_code, in_template,
            "{}: ROUTES and the template differ",
            f.binary
        );
    }
}
