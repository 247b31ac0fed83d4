//! The documents stay true to the code: every configuration variable a function reads is in
//! README's configuration table (and nothing else is), every stable error code is in
//! docs/errors.md, and no document links to a file that is not in the repository.
//!
//! These read the sources as text, so they need no emulator; they fail when someone adds a
//! variable, a code or a link and forgets the document.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The non-test Rust sources of the crates that ship: the domain, the platform, the functions.
fn shipped_sources() -> Vec<(PathBuf, String)> {
    let root = repo();
    let mut dirs = vec![
        root.join("shared/domain/src"),
        root.join("shared/platform/src"),
    ];
    for function in std::fs::read_dir(root.join("functions")).unwrap() {
        dirs.push(function.unwrap().path().join("src"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                // Unit tests sit at the end of a file, after `#[cfg(test)]`.
                let shipped = text.split("#[cfg(test)]").next().unwrap().to_string();
                files.push((path, shipped));
            }
        }
    }
    files.sort();
    files
}

/// The string literals that start right after each occurrence of `prefix`.
fn literals_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let rest = text[at + prefix.len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

fn is_config_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

#[test]
fn every_configuration_variable_read_by_a_function_is_in_the_readme_table_and_no_other() {
    let mut read = BTreeSet::new();
    for (_, text) in shipped_sources() {
        for call in [".required(", ".optional(", ".parse_or("] {
            read.extend(
                literals_after(&text, call)
                    .into_iter()
                    .filter(|s| is_config_name(s))
                    .map(str::to_string),
            );
        }
    }
    assert!(
        read.contains("LEDGER_TABLE") && read.contains("FRAUD_LOCK_SECS"),
        "the scan found what functions read: {read:?}"
    );

    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table = readme
        .split("### Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let table = table.split("\n## ").next().unwrap();
    let mut documented = BTreeSet::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split('|').nth(1).unwrap();
        for name in first_cell.split('`').skip(1).step_by(2) {
            documented.insert(name.to_string());
        }
    }
    // Set by Lambda or the runtime, not by us: documented for operators, read by libraries.
    let external = ["RUST_LOG"];
    // Lambda's own credentials, read where the SDK is bypassed (the secrets extension).
    let missing: Vec<_> = read
        .difference(&documented)
        .filter(|v| !v.starts_with("AWS_"))
        .collect();
    let stale: Vec<_> = documented
        .iter()
        .filter(|d| !read.contains(*d) && !external.contains(&d.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "read by code, missing from README: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "in README, read by no function: {stale:?}"
    );
}

#[test]
fn every_stable_error_code_is_documented_in_errors_md() {
    let mut codes = BTreeSet::new();
    for (path, text) in shipped_sources() {
        // The code argument, where it is a literal (a variable's values are literals elsewhere).
        for code in literals_after(&text, "Problem::bad_request(") {
            codes.insert(code.to_string());
        }
        for (at, _) in text.match_indices("Problem::new(") {
            let rest = &text[at..];
            if let Some(comma) = rest.find(',') {
                codes.extend(
                    literals_after(&rest[comma..], ",")
                        .first()
                        .map(|c| c.to_string()),
                );
            }
        }
        // `fn code(&self)` of a `Classified` enum: every literal in its body.
        for (at, _) in text.match_indices("fn code(&self) -> &'static str") {
            let body = &text[at..];
            if body["fn code(&self) -> &'static str".len()..]
                .trim_start()
                .starts_with(';')
            {
                continue; // the trait's declaration
            }
            let end = body.find("\n    }\n").unwrap_or(body.len());
            let body = &body[..end];
            let mut rest = body;
            while let Some(start) = rest.find('"') {
                let after = &rest[start + 1..];
                let Some(stop) = after.find('"') else { break };
                codes.insert(after[..stop].to_string());
                rest = &after[stop + 1..];
            }
        }
        assert!(
            !codes.iter().any(|c| c.contains(' ')),
            "{}: a code is not snake_case: {codes:?}",
            path.display()
        );
    }
    assert!(
        codes.contains("code_unknown") && codes.contains("invalid_limit"),
        "the scan found the codes: {codes:?}"
    );
    let doc = std::fs::read_to_string(repo().join("docs/errors.md")).unwrap();
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !doc.contains(&format!("`{c}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/errors.md: {missing:?}");
}

#[test]
fn documents_link_only_to_files_inside_the_repository() {
    let root = repo();
    let mut docs = vec![root.join("README.md")];
    for dir in ["docs", "infra", "events", "reports"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for target in literals_between(&text, "](", ")") {
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = doc.parent().unwrap().join(target);
            let inside = resolved
                .canonicalize()
                .map(|p| p.starts_with(root.canonicalize().unwrap()))
                .unwrap_or(false);
            if !inside {
                broken.push(format!("{} -> {target}", doc.display()));
            }
        }
        if text.contains("../shared/") {
            broken.push(format!("{} mentions ../shared/", doc.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "links outside the repository: {broken:?}"
    );
}

fn literals_between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.match_indices(open)
        .filter_map(|(at, _)| {
            let rest = &text[at + open.len()..];
            rest.find(close).map(|end| &rest[..end])
        })
        .collect()
}
