//! Partner webhooks on one machine: the demo partner's secret, and signing a body the way a
//! partner does (`loyalty-local sign-webhook`).

use loyalty_domain::cashback::{sign, Secret};
use loyalty_platform::config::Env;

pub const DEMO_PARTNER: &str = "demo-market";
/// Public, like everything in this repository: it signs the sample events and local requests,
/// and is never configured in AWS, where secrets come from SSM (`PartnerSecretsParameter`).
pub const DEMO_SECRET: &str = "demo-market-local-secret";

/// Local-only configuration beside a function's template variables.
pub fn local_overrides(binary: &str, env: Env) -> Env {
    match binary {
        "partner-webhooks" => env.with(
            "PARTNER_SECRETS",
            serde_json::json!({ DEMO_PARTNER: DEMO_SECRET }).to_string(),
        ),
        _ => env,
    }
}

/// The body to sign in `text`: the `body` of an API Gateway event (a sample under
/// `events/partner-webhooks/`), or the text itself.
pub fn body_of(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(event) if event.get("routeKey").is_some() => event["body"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_default(),
        _ => text.to_string(),
    }
}

/// A `curl` command that posts `body` for `partner`, signed at `timestamp`.
pub fn curl_command(
    base_url: &str,
    partner: &str,
    secret: &str,
    body: &str,
    timestamp: i64,
) -> String {
    let header = sign(
        &Secret::new(secret.as_bytes().to_vec()),
        timestamp,
        body.as_bytes(),
    );
    format!(
        "curl -sS -X POST '{}/webhooks/partners/{partner}' -H 'content-type: application/json' -H 'x-loyalty-signature: {header}' --data-raw '{}'",
        base_url.trim_end_matches('/'),
        body.replace('\'', r"'\''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_events_body_is_signed_as_the_function_verifies_it() {
        let text = std::fs::read_to_string(
            crate::template::repo_root().join("events/partner-webhooks/order-created.json"),
        )
        .unwrap();
        let body = body_of(&text);
        assert!(body.starts_with("{\"event_id\""));
        let line = curl_command(
            "http://127.0.0.1:3000/",
            DEMO_PARTNER,
            DEMO_SECRET,
            &body,
            1_800_000_000,
        );
        let header = line
            .split("x-loyalty-signature: ")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap();
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let secret = Secret::new(DEMO_SECRET.as_bytes().to_vec());
        assert_eq!(
            loyalty_domain::cashback::verify(&secret, Some(header), body.as_bytes(), at),
            Ok(())
        );
        assert!(line
            .starts_with("curl -sS -X POST 'http://127.0.0.1:3000/webhooks/partners/demo-market'"));
    }
}
