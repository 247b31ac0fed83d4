//! The Markdown report: one table of headline figures, then each figure explained.

use std::fmt::Write;
use std::process::Command;
use std::time::Duration;

use crate::binary::Size;
use crate::claims::{Latency, RoundTrip};
use crate::earning::PerEvent;
use crate::issue::Issue;

pub struct Figures<'a> {
    pub endpoint: &'a str,
    pub round_trips: &'a [RoundTrip],
    pub latency: &'a Latency,
    pub cpu: &'a [Duration],
    pub issue: &'a Issue,
    pub size: &'a Size,
    pub cold: &'a [Duration],
    pub actions: &'a [PerEvent],
    pub webhooks: &'a [PerEvent],
}

/// Nearest-rank percentile.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(loyalty_local::template::repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> (usize, String) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    (cores, model)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub fn render(f: &Figures) -> String {
    let (cores, model) = machine();
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !command_output(
        "git",
        &["status", "--porcelain", "--", "shared", "functions"],
    )
    .is_empty();
    let rustc = command_output("rustc", &["--version"]);

    let steady = f
        .round_trips
        .iter()
        .find(|r| r.scenario.starts_with("steady"))
        .expect("steady state is measured");
    let steady_per_claim = steady.requests.total() as f64 / steady.claims as f64;
    let cold_cache = f
        .round_trips
        .iter()
        .find(|r| r.scenario.contains("balance version cache cold"))
        .expect("cold cache is measured");

    let l = f.latency;
    let (h50, h95) = (percentile(&l.handler, 50.0), percentile(&l.handler, 95.0));
    let (b50, b95) = (percentile(&l.bare, 50.0), percentile(&l.bare, 95.0));
    let ratio50 = h50.as_secs_f64() / b50.as_secs_f64();
    let ratio95 = h95.as_secs_f64() / b95.as_secs_f64();
    let (c50, c95) = (percentile(f.cpu, 50.0), percentile(f.cpu, 95.0));

    let i = f.issue;
    let codes_per_sec = i.codes as f64 / i.elapsed.as_secs_f64();
    let ddb_per_1000 = i.dynamodb.total() as f64 * 1000.0 / i.codes as f64;
    let s3_puts = i.s3.get("S3 PUT");
    let million_secs = 1_000_000.0 / codes_per_sec;
    let (cold50, cold_max) = (
        percentile(f.cold, 50.0),
        f.cold.iter().max().copied().unwrap_or_default(),
    );

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Pack-code claims: benchmark report\n");
    let _ = writeln!(
        w,
        "Written by `loyalty-bench` (`./dev bench`); do not edit by hand. Figures are measurements of one run, not assertions.\n"
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(
        w,
        "| date | {} |",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        w,
        "| commit | `{commit}`{} |",
        if dirty {
            " (with uncommitted changes under shared/ or functions/)"
        } else {
            ""
        }
    );
    let _ = writeln!(w, "| machine | {cores} cores, {model} |");
    let _ = writeln!(
        w,
        "| toolchain | {rustc}, release profile (LTO, 1 codegen unit) |"
    );
    let _ = writeln!(
        w,
        "| emulator | moto via `infra/moto_server.py` at {} |\n",
        f.endpoint
    );
    let _ = writeln!(
        w,
        "The emulator runs every DynamoDB request under one global lock (that is what makes its conditional writes linearizable), in Python. Absolute latencies are therefore the emulator's, not DynamoDB's; what carries over to AWS is the request count and the ratio of the handler to a bare SDK call on the same emulator.\n"
    );

    let _ = writeln!(w, "## Summary\n");
    let _ = writeln!(
        w,
        "| # | figure | value | target | |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        w,
        "| 1 | DynamoDB round trips per successful claim, steady state | {steady_per_claim:.2} | 1 | {} |",
        verdict(steady_per_claim == 1.0)
    );
    let _ = writeln!(
        w,
        "| 1 | ... first claim of a known participant, cold balance cache | {} | 2 | {} |",
        cold_cache.requests.total(),
        verdict(cold_cache.requests.total() == 2)
    );
    let _ = write!(w, "{}", earning_summary_rows(f.webhooks));
    let _ = writeln!(
        w,
        "| 2 | claim handler / bare `TransactWriteItems`, median | {ratio50:.3} ({} / {}) | ≤ 1.10 | {} |",
        ms(h50),
        ms(b50),
        verdict(ratio50 <= 1.10)
    );
    let _ = writeln!(
        w,
        "| 2 | claim handler / bare `TransactWriteItems`, p95 | {ratio95:.3} ({} / {}) | ≤ 1.10 | {} |",
        ms(h95),
        ms(b95),
        verdict(ratio95 <= 1.10)
    );
    let _ = writeln!(
        w,
        "| 3 | handler CPU per claim, no I/O, median / p95 | {} / {} | | |",
        us(c50),
        us(c95)
    );
    let _ = writeln!(
        w,
        "| 4 | batch issue, one worker | {:.0} codes/s; {ddb_per_1000:.1} DynamoDB requests and {:.1} S3 objects per 1,000 codes | | |",
        codes_per_sec,
        s3_puts as f64 * 1000.0 / i.codes as f64
    );
    let _ = writeln!(
        w,
        "| 5 | code-claim binary size | {:.1} MB ({} bytes) | | |",
        f.size.bytes as f64 / 1e6,
        thousands(f.size.bytes)
    );
    let _ = writeln!(
        w,
        "| 6 | cold-start init (spawn to first `/invocation/next`), median / max of {} | {} / {} | | |\n",
        f.cold.len(),
        ms(cold50),
        ms(cold_max)
    );

    let _ = writeln!(w, "## 1. DynamoDB round trips per claim\n");
    let _ = writeln!(
        w,
        "Counted on the wire by an SDK interceptor (`read_before_transmit`, so SDK retries would count too) on the client the claim `App` uses. Each claim is a real `POST /claims` event through `App::handle` against fresh tables; a claim that does not answer as expected aborts the run.\n"
    );
    let _ = writeln!(w, "| scenario | claims | requests per claim | by operation (total) | expected |\n|---|---|---|---|---|");
    for r in f.round_trips {
        let _ = writeln!(
            w,
            "| {} | {} | {:.2} | {} | {} |",
            r.scenario,
            r.claims,
            r.requests.total() as f64 / r.claims as f64,
            r.requests.describe(),
            r.expected
        );
    }
    let _ = writeln!(
        w,
        "\n- Steady state is one `TransactWriteItems` (nine items with an outlet: code, two lock checks, velocity counter, ledger entry, balance, outlet totals, outbox, audit). Batch metadata is cached for the life of the warm function, and the balance version comes from the function's cache.\n- A participant's very first claim is also one write: with no balance yet, the condition is `attribute_not_exists(version)`.\n- A known participant on a function that has not seen them costs a refused write (the balance condition fails and returns the current balance) and a second write.\n- A replay is one cancelled transaction (its cancellation reason carries the stored receipt) plus the audit record of the attempt.\n- A failed attempt is one cancelled transaction, then failure counters for participant and outlet and the audit record, written concurrently.\n- A mistyped code never reaches DynamoDB: the check character rejects it.\n"
    );

    let _ = write!(w, "{}", section_1b(f.actions, f.webhooks, None));

    let _ = writeln!(w, "## 2. Claim latency against the bare SDK\n");
    let _ = writeln!(
        w,
        "{} timed pairs after {} untimed ones. Each pair is one claim through `App::handle` (event to response, including JSON parsing, validation, the transaction and the response body) followed by one `TransactWriteItems` of the same shape built by hand with the SDK: the same nine items on the same tables with the same conditions, on other fresh codes of the same batch, with participants claiming as often. Interleaving gives both the same emulator state and load.\n",
        l.handler.len(),
        crate::claims::WARM_UP
    );
    let _ = writeln!(w, "| | median | p95 | max | requests sent | request bytes per claim |\n|---|---|---|---|---|---|");
    let bytes =
        |t: &crate::counter::Tally, n: usize| t.bytes.values().sum::<u64>() as f64 / n as f64;
    let _ = writeln!(
        w,
        "| claim handler | {} | {} | {} | {} | {:.0} |",
        ms(h50),
        ms(h95),
        ms(l.handler.iter().max().copied().unwrap_or_default()),
        l.handler_requests.describe(),
        bytes(&l.handler_requests, l.handler.len())
    );
    let _ = writeln!(
        w,
        "| bare `TransactWriteItems` | {} | {} | {} | {} | {:.0} |",
        ms(b50),
        ms(b95),
        ms(l.bare.iter().max().copied().unwrap_or_default()),
        l.bare_requests.describe(),
        bytes(&l.bare_requests, l.bare.len())
    );
    let _ = writeln!(
        w,
        "| ratio | {ratio50:.3} | {ratio95:.3} | | | |\n\nTarget: ratio ≤ 1.10 — median {}, p95 {}. The request sizes show the two transactions are of the same shape. On this emulator a transaction costs milliseconds of Python under a global lock, so the handler's own work (figure 3) is a small fraction of either number.\n",
        verdict(ratio50 <= 1.10),
        verdict(ratio95 <= 1.10)
    );

    let _ = writeln!(w, "## 3. Handler CPU time per claim, excluding I/O\n");
    let _ = writeln!(
        w,
        "The same handler with a DynamoDB client whose transport is `aws-smithy-mocks` answering instantly (GetItem for the batch once, then `TransactWriteItems` success). Request building, serialisation, SigV4 signing and response parsing all run; nothing waits. Time is the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) around `App::handle` on a current-thread runtime, so it excludes turning the Lambda event into a `Request`. {} claims after 200 untimed.\n",
        f.cpu.len()
    );
    let _ = writeln!(
        w,
        "| median | p95 | max |\n|---|---|---|\n| {} | {} | {} |\n",
        us(c50),
        us(c95),
        us(f.cpu.iter().max().copied().unwrap_or_default())
    );

    let _ = writeln!(w, "## 4. Batch issue throughput\n");
    let _ = writeln!(
        w,
        "A batch of {} codes ({} chunks of up to 10,000) issued by one `batch_worker::ChunkWorker` processing chunk after chunk, as one worker receiving the jobs in turn would: generate the codes from the seed, store them (BatchWriteItem, 25 per request, 8 requests in flight), export the printer's CSV and QR SVG sheets of 100 to S3, write the chunk marker, check whether the batch is complete. Requests are counted by interceptors on the worker's clients.\n",
        thousands(i.codes as u64),
        i.chunks
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| wall time | {:.1} s |", i.elapsed.as_secs_f64());
    let _ = writeln!(w, "| codes per second | {codes_per_sec:.0} |");
    let _ = writeln!(
        w,
        "| DynamoDB requests | {} ({ddb_per_1000:.1} per 1,000 codes) — {} |",
        thousands(i.dynamodb.total()),
        i.dynamodb.describe()
    );
    let _ = writeln!(w, "| items retried as unprocessed | {} |", i.retried_items);
    let _ = writeln!(
        w,
        "| S3 objects written | {} ({:.1} per 1,000 codes) |",
        thousands(s3_puts),
        s3_puts as f64 * 1000.0 / i.codes as f64
    );
    let _ = writeln!(
        w,
        "| batch flipped to ready | {} |\n",
        if i.ready { "yes" } else { "**no**" }
    );
    let _ = writeln!(
        w,
        "**Extrapolation, not a measurement:** at this rate one worker would issue 1,000,000 codes in about {:.0} s ({:.1} min), with about {} DynamoDB requests and {} S3 objects, assuming the per-code cost stays linear (requests and objects do scale linearly: they are per 25 and per 100 codes). In AWS the 100 chunks of a million-code batch are separate SQS jobs that Lambda runs concurrently, and DynamoDB's write capacity, not one worker, sets the pace; on this emulator every write also waits for the global lock.\n",
        million_secs,
        million_secs / 60.0,
        thousands((ddb_per_1000 * 1000.0).round() as u64),
        thousands((s3_puts as f64 * 1_000_000.0 / i.codes as f64).round() as u64)
    );

    let _ = writeln!(w, "## 5. Release binary size\n");
    let _ = writeln!(
        w,
        "{:.1} MB ({} bytes): {}. Stripped, LTO, one codegen unit, `panic = \"abort\"`.\n",
        f.size.bytes as f64 / 1e6,
        thousands(f.size.bytes),
        f.size.what
    );

    let _ = writeln!(w, "## 6. Cold-start init time\n");
    let _ = writeln!(
        w,
        "The host release binary is spawned with `AWS_LAMBDA_RUNTIME_API` pointing at a local Runtime API served by the benchmark, the function's environment from template.yaml and the emulator endpoint. The time is from spawn to the arrival of its first `GET /2018-06-01/runtime/invocation/next`: process start, tracing setup, SDK configuration and `App::new`. The poll is held open, then the process is killed. Lambda's own sandbox and download time is not included.\n"
    );
    let samples: Vec<String> = f.cold.iter().map(|d| ms(*d)).collect();
    let _ = writeln!(
        w,
        "| starts | median | max | all |\n|---|---|---|---|\n| {} | {} | {} | {} |",
        f.cold.len(),
        ms(cold50),
        ms(cold_max),
        samples.join(", ")
    );
    out
}

/// The summary rows of the partner webhook round trips, beside the claim's.
fn earning_summary_rows(webhooks: &[PerEvent]) -> String {
    let mut out = String::new();
    for (name, scenario) in [
        ("created", crate::earning::CREATED_STEADY),
        ("delivered", crate::earning::DELIVERED_STEADY),
    ] {
        if let Some(r) = webhooks.iter().find(|r| r.scenario == scenario) {
            let per = r.requests.total() as f64 / r.events as f64;
            let _ = writeln!(
                out,
                "| 1 | DynamoDB round trips per {name} partner order event, steady state (section 1b) | {per:.2} | 1 | {} |",
                verdict(per == 1.0)
            );
        }
    }
    out
}

/// Section 1b; `measured` names the run when the section was measured apart from the rest.
fn section_1b(actions: &[PerEvent], webhooks: &[PerEvent], measured: Option<&str>) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "## 1b. DynamoDB round trips per action accrual and per partner webhook event\n"
    );
    let _ = writeln!(
        w,
        "Counted the same way, through `accrual::App::handle` (`POST /actions` with a fresh `Idempotency-Key` each time, one participant, one survey rule) and `partner_webhooks::App::handle` (signed order events of the local demo partner: created, then delivered, eight participants).\n"
    );
    let _ = writeln!(
        w,
        "| scenario | events | requests per event | by operation (total) |\n|---|---|---|---|"
    );
    for r in actions.iter().chain(webhooks) {
        let _ = writeln!(
            w,
            "| {} | {} | {:.2} | {} |",
            r.scenario,
            r.events,
            r.requests.total() as f64 / r.events as f64,
            r.requests.describe()
        );
    }
    let _ = writeln!(
        w,
        "\n- An action reads its idempotency record, the rule, the tier table and the balance (for the tier), then writes one transaction (idempotency record, limit counters, ledger entry, balance, outlet totals, outbox). The reads of rules and tiers are not cached yet: caching them in the warm function would bring an action to 3 round trips."
    );

    let _ = writeln!(
        w,
        "- Partner order events (`functions/partner-webhooks`, rules in `loyalty_domain::cashback::order`): in the steady state a created and a delivered order are one `TransactWriteItems` each, with nothing read first. The event marker (`attribute_not_exists`), the order (absent for a created order, `status = pending` for a delivery) and the month's cap counter (`used <= cap - credit`, first guessed empty) are conditions in that one transaction, and a refusal returns the item as it was (`ALL_OLD`): the stored first result, the order, the counter. Partner rates, regional minimums and whether any challenge exists are cached per warm function for `CASHBACK_SETTINGS_CACHE_SECS` (default 60 s).\n- Second trips, and why: a cold function reads the partner's rates and the region's minimum (2 `GetItem`) or the challenge list (1 `Query`) once per cache period; a replay is the one refused transaction (no read: the marker's old item carries the first result); a cancellation or return reads the order first (its credit decides the entries and the cap room given back) and a return after release also reads the balance; while challenges exist a delivery reads the order (its lines) and records progress through the challenge store; a refusal (the month's room was smaller than guessed, the order moved) costs one more transaction.\n"
    );
    if let Some(run) = measured {
        let _ = writeln!(w, "Section 1b and its summary rows measured by `loyalty-bench --only earning` ({run}); the rest of this report by the full run above.\n");
    }
    out
}

/// Replaces section 1b and its summary rows in an existing report with a fresh measurement
/// (`loyalty-bench --only earning`), leaving every other figure as it was.
pub fn splice_earning(
    existing: &str,
    actions: &[PerEvent],
    webhooks: &[PerEvent],
) -> Result<String, String> {
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    let run = format!(
        "{}, commit `{commit}`",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let start = existing
        .find("## 1b.")
        .ok_or("the report has no section 1b")?;
    let end = existing[start..]
        .find("\n## ")
        .map(|i| start + i + 1)
        .ok_or("section 1b is the last section")?;
    let mut text = String::new();
    text.push_str(&existing[..start]);
    text.push_str(&section_1b(actions, webhooks, Some(&run)));
    text.push_str(&existing[end..]);
    // The summary rows: drop the old ones, add the new after the last claim round-trip row.
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("partner order event, steady state"))
        .map(str::to_string)
        .collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with("| 1 |"))
        .ok_or("the summary has no round-trip rows")?;
    for (i, row) in earning_summary_rows(webhooks).lines().enumerate() {
        lines.insert(at + 1 + i, row.to_string());
    }
    Ok(lines.join("\n") + "\n")
}
