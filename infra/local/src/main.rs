//! `loyalty-local`: the whole platform on one machine, against a local AWS emulator.
//!
//! ```text
//! loyalty-local up [--host 127.0.0.1] [--port 3000] [--no-seed]
//! loyalty-local mint-token --role participant|rep|admin|service --sub ID [--outlet-id ID --outlet-role owner|seller] [--region ID] [--scope actions:report] [--phone +E164 [--phone-verified]] [--participant-id ID] [--ttl-hours N]
//! loyalty-local trigger FunctionLogicalId [--url http://127.0.0.1:3000]
//! loyalty-local passcode PHONE
//! loyalty-local provision [--prefix local]
//! loyalty-local sign-webhook --file BODY_OR_EVENT.json [--partner demo-market] [--secret S] [--url http://127.0.0.1:3000]
//! ```
//! `up`, `provision` and `passcode` need the emulator's address in `LOCAL_AWS_ENDPOINT`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use loyalty_local::jwt::{default_key_path, DevKey, TokenRequest};
use loyalty_local::provision::{provision, Options};
use loyalty_local::registry::Registry;
use loyalty_local::server::{ServerState, SCHEDULES_PATH};
use loyalty_local::template::Template;
use loyalty_local::{runtime, seed};

const USAGE: &str = "usage:
  loyalty-local up [--host 127.0.0.1] [--port 3000] [--no-seed]
  loyalty-local mint-token --role participant|rep|admin|service --sub ID [--outlet-id ID --outlet-role owner|seller] [--region ID] [--scope actions:report] [--phone +E164 [--phone-verified]] [--participant-id ID] [--ttl-hours N]
  loyalty-local trigger FunctionLogicalId [--url http://127.0.0.1:3000]
  loyalty-local passcode PHONE
  loyalty-local provision [--prefix local]
  loyalty-local sign-webhook --file BODY_OR_EVENT.json [--partner demo-market] [--secret S] [--url http://127.0.0.1:3000]";

/// `--name value` pairs, bare `--flag`s and positional arguments.
struct Args {
    options: HashMap<String, String>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(raw: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut args = Args {
            options: HashMap::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = raw.iter();
        while let Some(arg) = iter.next() {
            match arg.strip_prefix("--") {
                Some(name) if flags.contains(&name) => args.flags.push(name.to_string()),
                Some(name) => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    args.options.insert(name.to_string(), value.clone());
                }
                None => args.positional.push(arg.clone()),
            }
        }
        Ok(args)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self.options.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown option --{unknown}")),
            None => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let result = match raw.first().map(String::as_str) {
        Some("up") => up(&raw[1..]).await,
        Some("mint-token") => mint_token(&raw[1..]),
        Some("trigger") => trigger(&raw[1..]).await,
        Some("passcode") => passcode(&raw[1..]).await,
        Some("provision") => provision_only(&raw[1..]).await,
        Some("sign-webhook") => sign_webhook(&raw[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loyalty-local: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

fn emulator_endpoint() -> Result<String, String> {
    std::env::var("LOCAL_AWS_ENDPOINT").map_err(|_| {
        "LOCAL_AWS_ENDPOINT is not set: start the emulator (./dev up does) and point this at it"
            .to_string()
    })
}

fn token_request(args: &Args) -> Result<TokenRequest, String> {
    let role = args.get("role").ok_or("--role is required")?;
    if !matches!(role, "participant" | "rep" | "admin" | "service") {
        return Err(format!(
            "--role must be participant, rep, admin or service, not {role}"
        ));
    }
    let scope = args.get("scope").map(String::from);
    // Only a service's scopes are consulted; on another role they would mislead.
    if scope.is_some() && role != "service" {
        return Err("--scope is for --role service".into());
    }
    let sub = args.get("sub").ok_or("--sub is required")?;
    let outlet = match (args.get("outlet-id"), args.get("outlet-role")) {
        (Some(id), Some(r @ ("owner" | "seller"))) => Some((id.to_string(), r.to_string())),
        (Some(_), Some(r)) => {
            return Err(format!("--outlet-role must be owner or seller, not {r}"))
        }
        (None, None) => None,
        _ => return Err("--outlet-id and --outlet-role go together".into()),
    };
    let ttl_hours = match args.get("ttl-hours") {
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|h| *h > 0)
            .ok_or("--ttl-hours must be a positive whole number")?,
        None => 12,
    };
    let verified = args.flags.iter().any(|f| f == "phone-verified");
    let phone = match args.get("phone") {
        Some(raw) => {
            let e164 = loyalty_domain::phone::PhoneNumber::from_e164(raw)
                .map_err(|_| format!("--phone must be in E.164 (+447700900123), not {raw}"))?;
            Some((e164.as_e164().to_string(), verified))
        }
        None if verified => return Err("--phone-verified goes with --phone".into()),
        None => None,
    };
    Ok(TokenRequest {
        role: role.into(),
        sub: sub.into(),
        outlet,
        region: args.get("region").map(String::from),
        scope,
        phone,
        participant_id: args.get("participant-id").map(String::from),
        ttl_hours,
    })
}

fn mint_token(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &["phone-verified"])?;
    args.only(&[
        "role",
        "sub",
        "outlet-id",
        "outlet-role",
        "region",
        "scope",
        "phone",
        "participant-id",
        "ttl-hours",
    ])?;
    let request = token_request(&args)?;
    let key = DevKey::load_or_create(&default_key_path()).map_err(|e| format!("dev key: {e}"))?;
    println!(
        "{}",
        key.sign(&request.claims(chrono::Utc::now().timestamp()))
    );
    Ok(())
}

/// Prints a curl command posting the body (or a sample event's body), signed now.
fn sign_webhook(raw: &[String]) -> Result<(), String> {
    use loyalty_local::webhooks::{body_of, curl_command, DEMO_PARTNER, DEMO_SECRET};
    let args = Args::parse(raw, &[])?;
    args.only(&["file", "partner", "secret", "url"])?;
    let file = args.get("file").ok_or("--file is required")?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let partner = args.get("partner").unwrap_or(DEMO_PARTNER);
    let secret = match (args.get("secret"), partner) {
        (Some(secret), _) => secret,
        (None, DEMO_PARTNER) => DEMO_SECRET,
        (None, other) => return Err(format!("--secret is required for partner {other}")),
    };
    println!(
        "{}",
        curl_command(
            args.get("url").unwrap_or("http://127.0.0.1:3000"),
            partner,
            secret,
            &body_of(&text),
            chrono::Utc::now().timestamp(),
        )
    );
    Ok(())
}

async fn trigger(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &[])?;
    args.only(&["url"])?;
    let function_id = args
        .positional
        .first()
        .ok_or("which function? e.g. loyalty-local trigger ExpiryFunction")?;
    let base = args
        .get("url")
        .unwrap_or("http://127.0.0.1:3000")
        .trim_end_matches('/');
    let reply = loyalty_local::client::post(
        &format!("{base}{SCHEDULES_PATH}{function_id}"),
        &[],
        String::new(),
    )
    .await
    .map_err(|e| format!("{e} (is `loyalty-local up` running?)"))?;
    println!("{}", reply.body);
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!("HTTP {}", reply.status))
    }
}

/// Prints the last passcode the emulator was asked to send to a phone by SMS.
async fn passcode(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &[])?;
    args.only(&[])?;
    let raw_phone = args
        .positional
        .first()
        .ok_or("which phone? e.g. loyalty-local passcode +447700900123")?;
    let phone = loyalty_domain::phone::PhoneNumber::from_e164(raw_phone)
        .map_err(|_| format!("the phone must be in E.164 (+447700900123), not {raw_phone}"))?;
    let endpoint = emulator_endpoint()?;
    let reply = loyalty_local::client::send(
        "GET",
        &format!("{}/moto-api/data.json", endpoint.trim_end_matches('/')),
        &[],
        String::new(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let data: serde_json::Value =
        serde_json::from_str(&reply.body).map_err(|e| format!("emulator data: {e}"))?;
    let code = loyalty_local::client::last_sms_code(&data, phone.as_e164())
        .ok_or_else(|| format!("no passcode was sent to {}", phone.as_e164()))?;
    println!("{code}");
    Ok(())
}

async fn provision_only(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &[])?;
    args.only(&["prefix"])?;
    let template = Template::load_default().map_err(|e| e.to_string())?;
    let aws = loyalty_local::emulator_config(&emulator_endpoint()?).await;
    let resources = provision(
        &aws,
        &template,
        &Options::local(args.get("prefix").unwrap_or("local")),
    )
    .await
    .map_err(|e| e.to_string())?;
    for (id, physical) in resources.iter() {
        println!(
            "{id:<28} {}",
            physical.url.as_deref().unwrap_or(&physical.name)
        );
    }
    Ok(())
}

async fn up(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw, &["no-seed"])?;
    args.only(&["host", "port"])?;
    init_logs();
    let host = args.get("host").unwrap_or("127.0.0.1");
    let port: u16 = args
        .get("port")
        .unwrap_or("3000")
        .parse()
        .map_err(|_| "--port must be a port number")?;

    let template = Template::load_default().map_err(|e| e.to_string())?;
    let registry = Registry::builtin();
    let missing = registry.missing(&template).map_err(|e| e.to_string())?;
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|f| format!("{} (binary {})", f.logical_id, f.binary))
            .collect();
        return Err(format!(
            "template functions without a registered handler: {}. Add each crate to infra/local/Cargo.toml and Registry::builtin.",
            names.join(", ")
        ));
    }

    let endpoint = emulator_endpoint()?;
    let aws = loyalty_local::emulator_config(&endpoint).await;
    let resources = provision(&aws, &template, &Options::local("local"))
        .await
        .map_err(|e| format!("provisioning on {endpoint}: {e}"))?;
    let key = DevKey::load_or_create(&default_key_path()).map_err(|e| format!("dev key: {e}"))?;
    let apps = registry
        .instantiate(&aws, &resources)
        .map_err(|e| e.to_string())?;
    let queues = runtime::queue_sources(&apps, &resources)?;
    let schedules = runtime::schedule_sources(&apps)?;
    let state = Arc::new(ServerState::new(
        apps.clone(),
        key.clone(),
        schedules.clone(),
        resources.region.clone(),
    )?);

    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = vec![tokio::spawn(loyalty_local::server::serve(
        listener,
        state.clone(),
        stopped.clone(),
    ))];
    tasks.extend(runtime::spawn_pollers(
        aws_sdk_sqs::Client::new(&aws),
        &apps,
        queues.clone(),
        resources.region.clone(),
        stopped.clone(),
    ));
    tasks.extend(runtime::spawn_schedules(
        &apps,
        schedules.clone(),
        resources.region.clone(),
        stopped.clone(),
    ));

    let base = format!("http://{host}:{port}");
    let demo = if args.flags.iter().any(|f| f == "no-seed") {
        None
    } else {
        let s3 = loyalty_platform::aws::s3(
            &aws,
            &loyalty_platform::config::Env::default().with("S3_FORCE_PATH_STYLE", "true"),
        );
        Some(seed::demo(&state, &key, &s3).await?)
    };

    println!(
        "\nLoyalty Engine is running at {base}  (emulator {endpoint}, resources prefixed local-)"
    );
    println!("routes:");
    for route in state.router.routes() {
        println!("  {:<44} -> {}", route.key(), route.function_id);
    }
    for queue in &queues {
        println!(
            "queue consumer: {} <- {}",
            queue.function_id, queue.queue_url
        );
    }
    for schedule in &schedules {
        println!(
            "schedule: {} {} (run now: ./dev trigger {})",
            schedule.function_id, schedule.expression, schedule.function_id
        );
    }
    if let Some(demo) = &demo {
        println!("\ndemo bearer tokens (valid 12 hours; admin, rep, outlet owner, seller), for your shell:");
        for line in demo.export_lines() {
            println!("{line}");
        }
        println!(
            "\ndemo pack codes to claim (batch 1, 10 points each): {}",
            demo.codes.join("  ")
        );
        println!("\ntry:");
        for line in &demo.curl_lines(&base) {
            println!("  {line}");
        }
    }
    println!(
        "\nSMS passcodes go to the emulator, not to phones: after POST /passcodes {{\"phone\": \"+447700900123\"}},\n\
         ./dev passcode +447700900123 prints the code to POST /passcodes/verify"
    );
    println!(
        "\nmore tokens: ./dev token --role participant --sub P-1 [--phone +447700900123 --phone-verified]   |   Ctrl-C stops everything\n"
    );

    wait_for_signal().await;
    tracing::info!("stopping");
    let _ = stop.send(true);
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(std::time::Duration::from_secs(15), all)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 15 s");
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
