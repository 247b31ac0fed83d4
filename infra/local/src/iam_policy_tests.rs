//! Each function's IAM policy in template.yaml grants exactly the AWS operations its code calls.
//!
//! The code side is read from source, not declared by hand: a function's operations are the
//! SDK calls found in its crate and in every `loyalty_platform` module that crate reaches
//! (`loyalty_platform::stores::ledger`, then `crate::tx` from there, and so on; test modules
//! left out). The scan is per module, so a module that also holds calls a function never
//! makes (the ledger's maintenance scans, say) would look granted-but-missing; those are
//! listed in [`UNREACHED`] with the reason, and the list itself is checked for staleness.
//!
//! The policy side is the function's `Policies`, which must be explicit `Statement`s (SAM
//! policy templates such as `DynamoDBCrudPolicy` grant far more than any function uses), and
//! may only name resources the function's environment points it at.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::template::{collect_targets, repo_root, Template};

/// Source fragments and the IAM action each one needs. Transaction items (`Put::builder()`,
/// ...) are authorised per item by the item's own action: IAM has no TransactWriteItems
/// action, and SendMessageBatch is authorised by sqs:SendMessage.
const CALLS: &[(&str, &str)] = &[
    (".get_item()", "dynamodb:GetItem"),
    (".put_item()", "dynamodb:PutItem"),
    (".update_item()", "dynamodb:UpdateItem"),
    (".delete_item()", "dynamodb:DeleteItem"),
    (".query()", "dynamodb:Query"),
    (".scan()", "dynamodb:Scan"),
    (".batch_get_item()", "dynamodb:BatchGetItem"),
    (".batch_write_item()", "dynamodb:BatchWriteItem"),
    (".transact_get_items()", "dynamodb:GetItem"),
    ("Put::builder()", "dynamodb:PutItem"),
    ("Update::builder()", "dynamodb:UpdateItem"),
    ("Delete::builder()", "dynamodb:DeleteItem"),
    ("ConditionCheck::builder()", "dynamodb:ConditionCheckItem"),
    (".send_message()", "sqs:SendMessage"),
    (".send_message_batch()", "sqs:SendMessage"),
    (".put_object()", "s3:PutObject"),
    (".get_object()", "s3:GetObject"),
    (".delete_object()", "s3:DeleteObject"),
    (".publish()", "sns:Publish"),
    (".decrypt()", "kms:Decrypt"),
    // The Parameters and Secrets extension calls ssm:GetParameter with the function's role.
    ("/systemsmanager/parameters/get", "ssm:GetParameter"),
];

/// Operations found in a module a function reaches but on a path the function never takes:
/// (binary, action, why).
const UNREACHED: &[(&str, &str, &str)] = &[
    // DynamoLedger's accounts_sum/backfill scans serve the ledger check and maintenance
    // tools; every function that reaches stores::ledger reaches them, none calls them.
    ("wallet", "dynamodb:Scan", SCANS),
    ("accrual", "dynamodb:Scan", SCANS),
    ("code-claim", "dynamodb:Scan", SCANS),
    ("codes-admin", "dynamodb:Scan", SCANS),
    ("partner-webhooks", "dynamodb:Scan", SCANS),
    ("wallet", "dynamodb:UpdateItem", READER),
    ("wallet", "dynamodb:PutItem", READER),
    ("wallet", "dynamodb:BatchGetItem", READER),
    ("wallet", "dynamodb:ConditionCheckItem", READER),
    (
        "code-claim",
        "dynamodb:BatchGetItem",
        "a claim reads one budget-free entry; gather_budget (stores::ledger) is for funded rules",
    ),
    (
        "code-claim",
        "dynamodb:BatchWriteItem",
        "DynamoClaims reads batches through CodesStore::get_batch; put_codes is the batch worker's",
    ),
    (
        "codes-admin",
        "dynamodb:BatchWriteItem",
        "CodesStore::put_codes writes the codes in the batch worker, not in the admin routes",
    ),
    (
        "codes-admin",
        "s3:PutObject",
        "S3Exports::put is the batch worker's; the admin routes only presign links (GetObject)",
    ),
    (
        "batch-worker",
        "dynamodb:BatchGetItem",
        "dynamo::batch_get_all serves budgets and phones; the worker reads batches with GetItem",
    ),
    (
        "batch-worker",
        "s3:GetObject",
        "S3Exports::link (a presigned GetObject) is the admin routes'; the worker only writes",
    ),
];

const SCANS: &str =
    "DynamoLedger's scans serve the ledger check and maintenance tools, not a route";
const READER: &str =
    "the wallet wires DynamoLedger only as a LedgerReader (GetItem, Query); its writes (a review approval's standing check included) and budget reads are others'";

fn strip_test_items(text: &str) -> String {
    // Drops each `#[cfg(test)]` item (a `mod tests { ... }` or a helper), brace-matched.
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let open = after.find('{');
        let semi = after.find(';');
        match (open, semi) {
            (Some(o), s) if s.is_none_or(|s| o < s) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            (_, Some(s)) => rest = &after[s + 1..],
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `loyalty_platform` modules by path (`stores::ledger`), without the in-memory adapters.
fn platform_modules() -> BTreeMap<String, String> {
    let src = repo_root().join("shared/platform/src");
    rust_files(&src)
        .into_iter()
        .filter(|p| !p.starts_with(src.join("memory")))
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let path = rel.to_string_lossy().replace('/', "::");
            if path == "lib" || path.ends_with("::mod") {
                return None;
            }
            let text = strip_test_items(&std::fs::read_to_string(&p).unwrap());
            Some((path, text))
        })
        .collect()
}

fn actions_in(text: &str) -> BTreeSet<String> {
    CALLS
        .iter()
        .filter(|(fragment, _)| text.contains(fragment))
        .map(|(_, action)| action.to_string())
        .collect()
}

/// The actions a function's code calls: its crate plus the platform modules it reaches.
fn code_actions(binary: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let crate_src = repo_root().join("functions").join(binary).join("src");
    let mut texts: Vec<String> = rust_files(&crate_src)
        .iter()
        .map(|p| strip_test_items(&std::fs::read_to_string(p).unwrap()))
        .collect();
    let mut reached = BTreeSet::new();
    let mut i = 0;
    while i < texts.len() {
        let text = texts[i].clone();
        for (path, module) in modules {
            let named = text.contains(&format!("loyalty_platform::{path}"))
                || text.contains(&format!("crate::{path}"));
            if named && reached.insert(path.clone()) {
                texts.push(module.clone());
            }
        }
        i += 1;
    }
    texts.iter().flat_map(|t| actions_in(t)).collect()
}

fn as_list(value: Option<&Value>) -> Vec<Value> {
    match value {
        Some(Value::Sequence(items)) => items.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

/// The actions a function's policy grants, and the template names its resources refer to.
fn policy_grants(template: &Template, function: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let resource = &template.resources[function];
    let mut actions = BTreeSet::new();
    let mut targets = Vec::new();
    for policy in as_list(resource.properties.get("Policies")) {
        let statements = policy.get("Statement").unwrap_or_else(|| {
            panic!("{function}: policy {policy:?} is a SAM policy template; write an explicit Statement")
        });
        for statement in as_list(Some(statements)) {
            assert_eq!(
                statement.get("Effect").and_then(Value::as_str),
                Some("Allow"),
                "{function}"
            );
            for action in as_list(statement.get("Action")) {
                let action = action.as_str().unwrap().to_string();
                assert!(
                    !action.contains('*'),
                    "{function} grants a wildcard {action}"
                );
                actions.insert(action);
            }
            // A Publish straight to a phone number (an SMS) names no topic: SNS authorises it
            // only on "*". So "*" is allowed for a statement granting sns:Publish alone.
            let sms_only = as_list(statement.get("Action"))
                .iter()
                .all(|a| a.as_str() == Some("sns:Publish"));
            for r in as_list(statement.get("Resource")) {
                assert!(
                    r.as_str() != Some("*") || sms_only,
                    "{function} grants on every resource"
                );
                collect_targets(&r, &mut targets);
            }
        }
    }
    let targets = targets
        .into_iter()
        .map(|t| t.split('.').next().unwrap().to_string())
        .filter(|t| !t.starts_with("AWS::"))
        .collect();
    (actions, targets)
}

#[test]
fn every_function_policy_grants_exactly_the_operations_its_code_calls() {
    let template = Template::load_default().unwrap();
    let modules = platform_modules();
    let mut problems = Vec::new();
    for function in template.functions().unwrap() {
        let code = code_actions(&function.binary, &modules);
        let (granted, _) = policy_grants(&template, &function.logical_id);
        let unreached: BTreeSet<String> = UNREACHED
            .iter()
            .filter(|(binary, _, _)| *binary == function.binary)
            .map(|(_, action, _)| action.to_string())
            .collect();
        for action in code.difference(&granted) {
            if !unreached.contains(action) {
                problems.push(format!(
                    "{} calls {action}, which its policy does not grant",
                    function.logical_id
                ));
            }
        }
        for action in granted.difference(&code) {
            problems.push(format!(
                "{} is granted {action}, which no code it reaches calls",
                function.logical_id
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_unreached_exception_is_still_needed() {
    // An exception whose action the function is granted, or no longer finds in its
    // modules, hides nothing and must go.
    let template = Template::load_default().unwrap();
    let modules = platform_modules();
    for (binary, action, _) in UNREACHED {
        let function = template
            .functions()
            .unwrap()
            .into_iter()
            .find(|f| f.binary == *binary)
            .unwrap();
        let (granted, _) = policy_grants(&template, &function.logical_id);
        assert!(!granted.contains(*action), "{binary} is granted {action}");
        assert!(
            code_actions(binary, &modules).contains(*action),
            "{binary} no longer reaches {action}"
        );
    }
}

#[test]
fn every_policy_names_only_resources_from_its_function_environment_and_all_of_them() {
    // A policy on a table the function has no name for is a grant no code can use; a table
    // in the environment without a grant is a call that will be denied.
    let template = Template::load_default().unwrap();
    for function in template.functions().unwrap() {
        let (_, granted) = policy_grants(&template, &function.logical_id);
        let mut env = Vec::new();
        for value in function.environment.values() {
            collect_targets(value, &mut env);
        }
        let env: BTreeSet<String> = env
            .into_iter()
            .map(|t| t.split('.').next().unwrap().to_string())
            .collect();
        let extra: Vec<_> = granted.difference(&env).collect();
        assert!(
            extra.is_empty(),
            "{} is granted on {extra:?}",
            function.logical_id
        );
        let storage: BTreeSet<String> = env
            .iter()
            .filter(|id| {
                template
                    .resources
                    .get(*id)
                    .is_some_and(|r| crate::provision::is_provisionable(&r.kind))
            })
            .cloned()
            .collect();
        let missing: Vec<_> = storage.difference(&granted).collect();
        assert!(
            missing.is_empty(),
            "{} has no grant on {missing:?}",
            function.logical_id
        );
    }
}

#[test]
fn the_call_scan_skips_test_modules() {
    let text =
        "fn a() { x.get_item(); }\n#[cfg(test)]\nmod tests { fn b() { y.scan(); } }\nfn c() {}";
    let kept = strip_test_items(text);
    assert!(kept.contains("get_item") && kept.contains("fn c"));
    assert!(!kept.contains("scan"));
}

/// The method called on an SDK client wherever a `client` is followed by `.name(`.
fn client_calls(text: &str) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    for (at, _) in text.match_indices("client") {
        let rest = text[at + "client".len()..].trim_start_matches(')');
        let Some(rest) = rest.trim_start().strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with('(') {
            calls.insert(name);
        }
    }
    calls
}

#[test]
fn every_sdk_operation_the_code_calls_is_one_the_policy_check_knows() {
    // A new kind of call (a `delete_item`, say) must get its IAM action in CALLS, or the
    // policy check above would not see it.
    let known: BTreeSet<String> = CALLS
        .iter()
        .filter_map(|(fragment, _)| fragment.strip_prefix('.'))
        .map(|f| f.trim_end_matches("()").to_string())
        // transact_write_items is authorised per item (Put/Update/... builders in CALLS).
        .chain(["clone", "transact_write_items"].map(String::from))
        .collect();
    let mut texts: Vec<String> = platform_modules().into_values().collect();
    for dir in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        for file in rust_files(&dir.unwrap().path().join("src")) {
            texts.push(strip_test_items(&std::fs::read_to_string(file).unwrap()));
        }
    }
    let calls: BTreeSet<String> = texts.iter().flat_map(|t| client_calls(t)).collect();
    assert!(calls.contains("get_item"), "the scan finds client calls");
    let unknown: Vec<_> = calls.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "calls the policy check ignores: {unknown:?}"
    );
}
