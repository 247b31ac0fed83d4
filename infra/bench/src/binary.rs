//! Figures 5 and 6: the code-claim binary's size, and its cold-start init time measured
//! against a local Lambda Runtime API.

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

pub struct Size {
    pub bytes: u64,
    pub what: String,
}

/// The arm64 Lambda bootstrap if `cargo lambda build --release --arm64` made one, else the
/// host release binary.
pub fn size(host_binary: &Path) -> Result<Size, BoxError> {
    let lambda = target_dir().join("lambda/code-claim/bootstrap");
    let (path, what) = if lambda.exists() {
        (
            lambda,
            "`target/lambda/code-claim/bootstrap` (cargo lambda, release)".to_string(),
        )
    } else {
        (
            host_binary.to_path_buf(),
            format!(
                "host release binary `target/release/code-claim` ({}; no `cargo lambda build --release --arm64` output found)",
                std::env::consts::ARCH
            ),
        )
    };
    Ok(Size {
        bytes: std::fs::metadata(&path)?.len(),
        what,
    })
}

/// Builds the host release binary (quick when it is up to date).
pub async fn build_release() -> Result<PathBuf, BoxError> {
    let status = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "-p", "code-claim"])
        .current_dir(loyalty_local::template::repo_root())
        .status()
        .await?;
    if !status.success() {
        return Err("cargo build --release -p code-claim failed".into());
    }
    Ok(target_dir().join("release/code-claim"))
}

/// Time from spawning the binary to its first `GET .../invocation/next`: everything the
/// function does before it can take an event (runtime, SDK config, `App::new`).
pub async fn cold_starts(
    binary: &Path,
    env: &Env,
    endpoint: &str,
    starts: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut times = Vec::with_capacity(starts);
    for _ in 0..starts {
        times.push(cold_start(binary, env, endpoint).await?);
    }
    Ok(times)
}

async fn cold_start(binary: &Path, env: &Env, endpoint: &str) -> Result<Duration, BoxError> {
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
        .env("AWS_LAMBDA_FUNCTION_NAME", "CodeClaimFunction")
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
        _ => Err("code-claim never asked for an event within 30 s".into()),
    }
}
