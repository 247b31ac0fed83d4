//! The API's contract, `docs/openapi.json`: compiled in, so the local API serves the document
//! of the code it runs (`GET /openapi.json`), and tested against `template.yaml` (the routes)
//! and `docs/errors.md` (the problem codes), so neither can drift from it unnoticed.

/// Where the local API serves the document; no token needed, as it holds no data.
pub const PATH: &str = "/openapi.json";

pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `METHOD /path` the document describes, in template.yaml's spelling.
pub fn routes(document: &serde_json::Value) -> Vec<String> {
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            routes.push(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    routes
}

/// Every problem code the document lists (`x-problem-codes` of each answer).
pub fn problem_codes(document: &serde_json::Value) -> Vec<String> {
    let mut codes = Vec::new();
    for item in document["paths"].as_object().into_iter().flatten() {
        for operation in item.1.as_object().into_iter().flatten() {
            for answer in operation.1["responses"].as_object().into_iter().flatten() {
                let listed = answer.1["x-problem-codes"].as_array().into_iter().flatten();
                codes.extend(listed.filter_map(|c| c.as_str()).map(String::from));
            }
        }
    }
    codes
}

/// The codes docs/errors.md documents: each back-quoted snake_case word in a table's first
/// column.
pub fn documented_codes(errors_md: &str) -> Vec<String> {
    errors_md
        .lines()
        .filter_map(|line| line.strip_prefix('|')?.split('|').next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|word| {
            !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{EventSource, Template};
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
    }

    #[test]
    fn the_document_is_openapi_3_1_with_paths_and_a_problem_schema() {
        let doc = document();
        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3.1."), "openapi: {version:?}");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        // Every $ref resolves, so a tool reading the document finds each schema it names.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("local $ref");
            assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_describes_exactly_the_http_routes_of_the_template() {
        let template = Template::load_default().unwrap();
        let declared: BTreeSet<String> = template
            .functions()
            .unwrap()
            .into_iter()
            .flat_map(|f| f.events)
            .filter_map(|e| match e.source {
                EventSource::Http { method, path, .. } => Some(format!("{method} {path}")),
                _ => None,
            })
            .collect();
        let documented = routes(&document());
        let unique: BTreeSet<String> = documented.iter().cloned().collect();
        assert_eq!(unique.len(), documented.len(), "a route documented twice");
        let missing: Vec<_> = declared.difference(&unique).collect();
        let extra: Vec<_> = unique.difference(&declared).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "template.yaml routes missing from docs/openapi.json: {missing:?}; \
             documented routes that template.yaml does not declare: {extra:?}"
        );
    }

    #[test]
    fn only_the_webhook_is_without_the_bearer_token_and_it_requires_its_signature() {
        let doc = document();
        assert_eq!(doc["security"][0]["bearerAuth"], serde_json::json!([]));
        let template = Template::load_default().unwrap();
        for e in template
            .functions()
            .unwrap()
            .into_iter()
            .flat_map(|f| f.events)
        {
            let EventSource::Http {
                method,
                path,
                authorized,
            } = e.source
            else {
                continue;
            };
            let op = &doc["paths"][&path][method.to_ascii_lowercase()];
            let own = op.get("security");
            if authorized {
                assert!(own.is_none(), "{method} {path} overrides the bearer token");
                assert!(op["responses"]["401"].is_object(), "{method} {path}: 401");
            } else {
                assert_eq!(own, Some(&serde_json::json!([{ "partnerSignature": [] }])));
            }
        }
    }

    #[test]
    fn every_problem_code_in_the_document_is_in_docs_errors_md() {
        let errors_md =
            std::fs::read_to_string(crate::template::repo_root().join("docs/errors.md"))
                .expect("docs/errors.md");
        let documented: BTreeSet<String> = documented_codes(&errors_md).into_iter().collect();
        // The reader is tested too: a parser finding nothing would pass everything.
        assert!(documented.contains("code_unknown") && documented.contains("payload_too_large"));
        let used = problem_codes(&document());
        assert!(used.len() > 100, "{} codes", used.len());
        let unknown: BTreeSet<&String> = used.iter().filter(|c| !documented.contains(*c)).collect();
        assert!(
            unknown.is_empty(),
            "codes not in docs/errors.md: {unknown:?}"
        );
    }

    #[test]
    fn the_readers_find_routes_and_codes_and_skip_prose() {
        let doc = serde_json::json!({"paths": {"/a/{id}": {
            "get": {"responses": {"404": {"x-problem-codes": ["a_missing"]}}},
            "parameters": [],
            "post": {"responses": {"200": {}}}
        }}});
        assert_eq!(routes(&doc), ["GET /a/{id}", "POST /a/{id}"]);
        assert_eq!(problem_codes(&doc), ["a_missing"]);
        let md = "Some `prose_word` here.\n| code | status |\n|---|---|\n| `one`, `two_b` | 400 | `not_me` |\n";
        assert_eq!(documented_codes(md), ["one", "two_b"]);
    }
}
