//! JSON logs, as CloudWatch Logs Insights wants them.

/// Installs a JSON subscriber filtered by `RUST_LOG` (default `info`). Safe to call twice:
/// the second call is a no-op, which lets the local runner host many functions.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time() // Lambda stamps every line already.
        .try_init();
}
