//! `./dev sim --seed N --ops M`: one deterministic simulation run; exits non-zero with the
//! seed, the step and the last operations when an invariant breaks.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config = loyalty_sim::Config::new(1, 100_000);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--seed" => config.seed = value("--seed"),
            "--ops" => config.ops = value("--ops"),
            "--no-faults" => config.faults = loyalty_sim::faults::FaultRates::none(),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let started = std::time::Instant::now();
    match loyalty_sim::run(&config) {
        Ok(summary) => {
            println!("{summary}");
            println!("wall time: {:.2?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("{problem}");
    }
    eprintln!(
        "usage: loyalty-sim [--seed N] [--ops M] [--no-faults]   (defaults: seed 1, 100000 ops)"
    );
    std::process::exit(2)
}
