//! `loyalty-bench --out reports/claims.md [--claims N] [--batch-codes N]`
//!
//! Measures pack-code claims and batch issuance against the emulator at
//! `LOCAL_AWS_ENDPOINT` and writes a Markdown report. It states figures and targets; it
//! asserts nothing about time.

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
    /// `--only earning`: measure section 1b alone and splice it into the existing report.
    only_earning: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("reports/claims.md"),
        claims: 400,
        batch_codes: 100_000,
        only_earning: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = PathBuf::from(value()?),
            "--claims" => args.claims = value()?.parse().map_err(|e| format!("--claims: {e}"))?,
            "--batch-codes" => {
                args.batch_codes = value()?
                    .parse()
                    .map_err(|e| format!("--batch-codes: {e}"))?
            }
            "--only" => match value()?.as_str() {
                "earning" => args.only_earning = true,
                other => return Err(format!("--only: unknown part {other} (known: earning)")),
            },
            _ => {
                return Err(format!(
                    "unknown argument {flag}\nusage: loyalty-bench --out FILE [--claims N] [--batch-codes N] [--only earning]"
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

    if args.only_earning {
        step("only: round trips per action accrual and per partner webhook event");
        let resources = stack::provision_for(
            &aws,
            &template,
            &["AccrualFunction", "PartnerWebhooksFunction"],
            "earning",
        )
        .await?;
        let actions = earning::actions(&aws, &resources, 20).await?;
        let webhooks = earning::webhooks(&aws, &resources, 20).await?;
        let existing = std::fs::read_to_string(&args.out)?;
        let text = report::splice_earning(&existing, &actions, &webhooks)?;
        std::fs::write(&args.out, text)?;
        step(&format!("spliced section 1b into {}", args.out.display()));
        return Ok(());
    }

    step("round trips per claim");
    let resources = stack::provision_for(&aws, &template, &["CodeClaimFunction"], "claims").await?;
    let claim_env = resources.env_for("CodeClaimFunction")?;
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

    step("release build of code-claim");
    let binary = binary::build_release().await?;
    let size = binary::size(&binary)?;
    step(&format!("{COLD_STARTS} cold starts"));
    let cold = binary::cold_starts(&binary, &claim_env, &endpoint, COLD_STARTS).await?;

    let text = report::render(&report::Figures {
        endpoint: &endpoint,
        round_trips: &round_trips,
        latency: &latency,
        cpu: &cpu,
        issue: &issue,
        size: &size,
        cold: &cold,
        actions: &actions,
        webhooks: &webhooks,
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, text)?;
    step(&format!("wrote {}", args.out.display()));
    Ok(())
}
