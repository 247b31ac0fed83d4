//! `loyalty-bench --out reports/claims.md [--claims N] [--batch-codes N] [--only earning,functions]`
//!
//! Measures pack-code claims and batch issuance, round trips of actions and webhooks, and
//! every function's size and cold start, against the emulator at `LOCAL_AWS_ENDPOINT`, and
//! writes a Markdown report. It states figures and targets; it asserts nothing about time.
//! `--only earning,functions` measures only those two parts and writes a report of them.

mod binary;
mod claims;
mod counter;
mod cpu;
mod earning;
mod issue;
mod report;
mod stack;

use std::path::PathBuf;

use loyalty_local::template::Template;

use crate::stack::BoxError;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4567";
const COLD_STARTS: usize = 10;
const CPU_SAMPLES: usize = 2_000;

struct Args {
    out: PathBuf,
    claims: usize,
    batch_codes: u32,
    /// Only round trips of actions and webhooks, and the functions' sizes and cold starts.
    only_earning_and_functions: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("reports/claims.md"),
        claims: 400,
        batch_codes: 100_000,
        only_earning_and_functions: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = PathBuf::from(value()?),
            "--claims" => args.claims = value()?.parse().map_err(|e| format!("--claims: {e}"))?,
            "--only" => {
                let v = value()?;
                if v != "earning,functions" {
                    return Err(format!("--only supports `earning,functions`, not {v}"));
                }
                args.only_earning_and_functions = true;
            }
            "--batch-codes" => {
                args.batch_codes = value()?
                    .parse()
                    .map_err(|e| format!("--batch-codes: {e}"))?
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag}\nusage: loyalty-bench --out FILE [--claims N] [--batch-codes N] [--only earning,functions]"
                ))
            }
        }
    }
    if args.claims == 0 || args.batch_codes == 0 {
        return Err("--claims and --batch-codes must be positive".into());
    }
    Ok(args)
}

fn step(what: &str) {
    eprintln!("loyalty-bench: {what}");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let endpoint = std::env::var("LOCAL_AWS_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
    let aws = stack::sdk_config(&endpoint).await;
    let template = Template::load_default()?;

    step("round trips per action accrual and per partner webhook event");
    let resources = stack::provision_for(
        &aws,
        &template,
        &["AccrualFunction", "PartnerWebhooksFunction"],
        "earning",
    )
    .await?;
    let actions = earning::actions(&aws, &resources, 20).await?;
    let webhooks = earning::webhooks(&aws, &resources, 20).await?;

    let functions = measure_functions(&aws, &template, &endpoint).await?;

    if args.only_earning_and_functions {
        let text = report::render_earning_and_functions(&endpoint, &actions, &webhooks, &functions);
        return write(&args.out, text);
    }

    step("round trips per claim");
    let resources = stack::provision_for(&aws, &template, &["CodeClaimFunction"], "claims").await?;
    let codes_needed = 60 + 2 * (claims::WARM_UP + args.claims);
    let mut rig = claims::Rig::new(&aws, resources, codes_needed as u32).await?;
    let round_trips = claims::round_trips(&mut rig).await?;

    step(&format!(
        "latency: {} claims interleaved with bare transactions",
        args.claims
    ));
    let latency = claims::latency(&mut rig, args.claims).await?;

    step(&format!(
        "handler CPU time over {CPU_SAMPLES} claims, DynamoDB mocked"
    ));
    let cpu = tokio::task::spawn_blocking(|| cpu::handler_cpu(CPU_SAMPLES))
        .await
        .map_err(|e| format!("cpu benchmark: {e}"))??;

    step(&format!("issuing a batch of {} codes", args.batch_codes));
    let resources =
        stack::provision_for(&aws, &template, &["BatchWorkerFunction"], "issue").await?;
    let issue = issue::issue(&aws, &resources, args.batch_codes).await?;

    let text = report::render(&report::Figures {
        endpoint: &endpoint,
        round_trips: &round_trips,
        latency: &latency,
        cpu: &cpu,
        issue: &issue,
        functions: &functions,
        actions: &actions,
        webhooks: &webhooks,
    });
    write(&args.out, text)
}

fn write(out: &std::path::Path, text: String) -> Result<(), BoxError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, text)?;
    step(&format!("wrote {}", out.display()));
    Ok(())
}

/// Release builds of every function, their sizes, and their cold starts against tables of
/// their own.
async fn measure_functions(
    aws: &aws_config::SdkConfig,
    template: &Template,
    endpoint: &str,
) -> Result<Vec<binary::FunctionFigures>, BoxError> {
    step("release build of every function");
    binary::build_release().await?;
    let ids: Vec<&str> = binary::FUNCTIONS.iter().map(|(_, id)| *id).collect();
    let resources = stack::provision_for(aws, template, &ids, "functions").await?;
    let mut figures = Vec::new();
    for (package, id) in binary::FUNCTIONS {
        step(&format!("{package}: size and {COLD_STARTS} cold starts"));
        let size = binary::size(package)?;
        let env = resources.env_for(id)?;
        let cold = binary::cold_starts(
            &binary::host_binary(package),
            id,
            &env,
            endpoint,
            COLD_STARTS,
        )
        .await
        .map_err(|e| e.to_string());
        figures.push(binary::FunctionFigures {
            package,
            size,
            cold,
        });
    }
    Ok(figures)
}
