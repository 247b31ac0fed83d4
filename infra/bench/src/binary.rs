//! Figures 5 and 6, for every function: the release binary's size and the size of its
//! deployment zip, and its cold-start init time measured against a local Lambda Runtime API.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use loyalty_platform::config::Env;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::stack::BoxError;

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| loyalty_local::template::repo_root().join("target"))
}

/// Every function: its package (and binary) name and its logical id in template.yaml.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("participants", "ParticipantsFunction"),
    ("code-claim", "CodeClaimFunction"),
    ("wallet", "WalletFunction"),
    ("codes-admin", "CodesAdminFunction"),
    ("accrual", "AccrualFunction"),
    ("partner-webhooks", "PartnerWebhooksFunction"),
    ("batch-worker", "BatchWorkerFunction"),
];

pub struct Size {
    pub bytes: u64,
    /// The deployment package: the binary as `bootstrap`, alone in a zip (`zip -9`); none
    /// when no `zip` command is installed.
    pub zip_bytes: Option<u64>,
    pub what: String,
}

/// One function's figures.
pub struct FunctionFigures {
    pub package: &'static str,
    pub size: Size,
    /// Cold starts, or why the function did not start.
    pub cold: Result<Vec<Duration>, String>,
}

/// The arm64 Lambda bootstrap if `cargo lambda build --release --arm64` made one, else the
/// host release binary.
pub fn size(package: &str) -> Result<Size, BoxError> {
    let lambda = target_dir().join(format!("lambda/{package}/bootstrap"));
    let (path, what) = if lambda.exists() {
        (lambda, "cargo lambda arm64 bootstrap".to_string())
    } else {
        (
            host_binary(package),
            format!("host release binary ({})", std::env::consts::ARCH),
        )
    };
    Ok(Size {
        bytes: std::fs::metadata(&path)?.len(),
        zip_bytes: zip_size(&path, package),
        what,
    })
}

/// The size of a Lambda deployment zip holding the binary as `bootstrap`.
fn zip_size(binary: &Path, package: &str) -> Option<u64> {
    let dir = std::env::temp_dir().join(format!(
        "loyalty-bench-zip-{package}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::copy(binary, dir.join("bootstrap")).ok()?;
    let status = std::process::Command::new("zip")
        .args(["-q", "-9", "-X", "function.zip", "bootstrap"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let bytes = status
        .success()
        .then(|| {
            std::fs::metadata(dir.join("function.zip"))
                .ok()
                .map(|m| m.len())
        })
        .flatten();
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

pub fn host_binary(package: &str) -> PathBuf {
    target_dir().join("release").join(package)
}

/// Builds every function's host release binary (quick when they are up to date).
pub async fn build_release() -> Result<(), BoxError> {
    let mut args = vec!["build", "--release"];
    for (package, _) in FUNCTIONS {
        args.extend(["-p", package]);
    }
    let status = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(&args)
        .current_dir(loyalty_local::template::repo_root())
        .status()
        .await?;
    if !status.success() {
        return Err("cargo build --release of the functions failed".into());
    }
    Ok(())
}

/// Time from spawning the binary to its first `GET .../invocation/next`: everything the
/// function does before it can take an event (runtime, SDK config, `App::new`).
pub async fn cold_starts(
    binary: &Path,
    function_id: &str,
    env: &Env,
    endpoint: &str,
    starts: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut times = Vec::with_capacity(starts);
    for _ in 0..starts {
        times.push(cold_start(binary, function_id, env, endpoint).await?);
    }
    Ok(times)
}

async fn cold_start(
    binary: &Path,
    function_id: &str,
    env: &Env,
    endpoint: &str,
) -> Result<Duration, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (arrived, mut first) = mpsc::unbounded_channel::<Instant>();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrived = arrived.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let arrived = arrived.clone();
                    async move {
                        let at = Instant::now();
                        if req.uri().path() == "/2018-06-01/runtime/invocation/next" {
                            let _ = arrived.send(at);
                            // Holding the long poll open is what an idle Lambda does.
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new()))
                                .expect("static response"),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(env.iter())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function_id)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn()?;
    let ready = tokio::time::timeout(Duration::from_secs(30), first.recv()).await;
    child.kill().await?;
    server.abort();
    match ready {
        Ok(Some(at)) => Ok(at - started),
        _ => Err(format!("{function_id} never asked for an event within 30 s").into()),
    }
}
