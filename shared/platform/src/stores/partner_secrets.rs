//! Partners' webhook secrets: from the environment locally, from SSM in AWS.
//!
//! - [`EnvSecrets`]: `PARTNER_SECRETS` (a JSON object of partner id to secret) and/or one
//!   `PARTNER_SECRET_<ID>` per partner, the id upper-cased with `-` as `_`
//!   (`PARTNER_SECRET_DEMO_MARKET`).
//! - [`ExtensionSecrets`]: the SecureString parameter named by `PARTNER_SECRETS_PARAMETER`
//!   (the same JSON object), read through the AWS Parameters and Secrets Lambda Extension on
//!   `localhost:$PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` (2773 by default), so that no SSM
//!   SDK crate is linked. It is read once per warm function and cached; a rotated secret
//!   reaches a warm function when it is recycled, so rotate by adding the new secret beside
//!   the old one (partners may send both signatures) before removing the old one.
//!
//! [`PartnerSecretsSource::from_env`] picks the environment when it holds any secret, and the
//! extension otherwise.

use std::collections::HashMap;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use loyalty_domain::cashback::{PartnerId, PartnerSecrets, Secret};
use loyalty_domain::InfraError;
use tokio::sync::OnceCell;

use crate::config::{ConfigError, Env};

fn parse_secret_map(json: &str) -> Result<HashMap<String, Secret>, String> {
    let raw: HashMap<String, String> = serde_json::from_str(json)
        .map_err(|e| format!("expected a JSON object of partner id to secret: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v.into_bytes())))
        .collect())
}

fn env_key(partner: &str) -> String {
    format!(
        "PARTNER_SECRET_{}",
        partner.to_ascii_uppercase().replace('-', "_")
    )
}

/// Secrets from configuration variables.
#[derive(Debug, Clone, Default)]
pub struct EnvSecrets {
    by_partner: HashMap<String, Secret>,
    /// `PARTNER_SECRET_<ID>` variables, by variable name.
    by_variable: HashMap<String, Secret>,
}

impl EnvSecrets {
    /// `None` when the environment holds no partner secret at all.
    pub fn from_env(env: &Env) -> Result<Option<EnvSecrets>, ConfigError> {
        let by_partner = match env.optional("PARTNER_SECRETS") {
            Some(json) => parse_secret_map(&json).map_err(|reason| ConfigError::Invalid {
                key: "PARTNER_SECRETS".into(),
                reason,
            })?,
            None => HashMap::new(),
        };
        let by_variable: HashMap<String, Secret> = env
            .iter()
            .filter(|(k, v)| k.starts_with("PARTNER_SECRET_") && !v.is_empty())
            .map(|(k, v)| (k.clone(), Secret::new(v.as_bytes().to_vec())))
            .collect();
        if by_partner.is_empty() && by_variable.is_empty() {
            return Ok(None);
        }
        Ok(Some(EnvSecrets {
            by_partner,
            by_variable,
        }))
    }

    fn lookup(&self, partner: &PartnerId) -> Option<Secret> {
        self.by_variable
            .get(&env_key(partner.as_str()))
            .or_else(|| self.by_partner.get(partner.as_str()))
            .cloned()
    }
}

impl PartnerSecrets for EnvSecrets {
    async fn secret(&self, partner: &PartnerId) -> Result<Option<Secret>, InfraError> {
        Ok(self.lookup(partner))
    }
}

/// Secrets from an SSM parameter, through the Lambda extension.
#[derive(Debug)]
pub struct ExtensionSecrets {
    parameter: String,
    port: u16,
    token: Option<String>,
    cache: OnceCell<HashMap<String, Secret>>,
}

impl ExtensionSecrets {
    pub fn from_env(env: &Env) -> Result<ExtensionSecrets, ConfigError> {
        Ok(ExtensionSecrets {
            parameter: env.required("PARTNER_SECRETS_PARAMETER")?,
            port: env.parse_or("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", 2773)?,
            // Lambda sets it for the function; the extension accepts only callers that know it.
            token: env.optional("AWS_SESSION_TOKEN"),
            cache: OnceCell::new(),
        })
    }

    async fn fetch(&self) -> Result<HashMap<String, Secret>, InfraError> {
        let fail = |e: String| InfraError::retryable("read partner secrets", e);
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| fail(format!("extension not reachable: {e}")))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(connection);
        let path = format!(
            "/systemsmanager/parameters/get?name={}&withDecryption=true",
            percent_encode(&self.parameter)
        );
        let mut request = hyper::Request::get(path).header(hyper::header::HOST, "localhost");
        if let Some(token) = &self.token {
            request = request.header("X-Aws-Parameters-Secrets-Token", token);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            // The body may echo the request; only the status goes into the error.
            return Err(fail(format!("extension answered {status}")));
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| InfraError::permanent("read partner secrets", e.to_string()))?;
        let json = value["Parameter"]["Value"].as_str().ok_or_else(|| {
            InfraError::permanent("read partner secrets", "no Parameter.Value in the answer")
        })?;
        parse_secret_map(json).map_err(|e| InfraError::permanent("read partner secrets", e))
    }
}

impl PartnerSecrets for ExtensionSecrets {
    async fn secret(&self, partner: &PartnerId) -> Result<Option<Secret>, InfraError> {
        // A failed load is not cached: the next request tries again.
        let secrets = self.cache.get_or_try_init(|| self.fetch()).await?;
        Ok(secrets.get(partner.as_str()).cloned())
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The implementation chosen by configuration.
#[derive(Debug)]
pub enum PartnerSecretsSource {
    Env(EnvSecrets),
    Extension(ExtensionSecrets),
}

impl PartnerSecretsSource {
    pub fn from_env(env: &Env) -> Result<PartnerSecretsSource, ConfigError> {
        match EnvSecrets::from_env(env)? {
            Some(secrets) => Ok(PartnerSecretsSource::Env(secrets)),
            None => Ok(PartnerSecretsSource::Extension(ExtensionSecrets::from_env(
                env,
            )?)),
        }
    }
}

impl PartnerSecrets for PartnerSecretsSource {
    async fn secret(&self, partner: &PartnerId) -> Result<Option<Secret>, InfraError> {
        match self {
            PartnerSecretsSource::Env(s) => s.secret(partner).await,
            PartnerSecretsSource::Extension(s) => s.secret(partner).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn partner(id: &str) -> PartnerId {
        PartnerId::parse(id).unwrap()
    }

    #[tokio::test]
    async fn secrets_come_from_a_json_map_or_one_variable_per_partner() {
        let env = Env::default()
            .with("PARTNER_SECRETS", r#"{"demo-market":"s1"}"#)
            .with("PARTNER_SECRET_OTHER_SHOP", "s2");
        let source = PartnerSecretsSource::from_env(&env).unwrap();
        assert!(matches!(source, PartnerSecretsSource::Env(_)));
        let get = |p: &'static str| {
            let source = &source;
            async move { source.secret(&partner(p)).await.unwrap() }
        };
        assert_eq!(get("demo-market").await, Some(Secret::new(b"s1".to_vec())));
        assert_eq!(get("other-shop").await, Some(Secret::new(b"s2".to_vec())));
        assert_eq!(get("nobody").await, None);
    }

    #[test]
    fn without_secrets_in_the_environment_the_ssm_parameter_is_required() {
        let err = PartnerSecretsSource::from_env(&Env::default()).unwrap_err();
        assert!(err.to_string().contains("PARTNER_SECRETS_PARAMETER"));
        let bad = Env::default().with("PARTNER_SECRETS", "not json");
        assert!(PartnerSecretsSource::from_env(&bad).is_err());
    }

    /// A stand-in for the extension: answers every request with the parameter, counts them,
    /// and remembers the last request head.
    async fn fake_extension(
        value: &'static str,
    ) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let head = Arc::new(std::sync::Mutex::new(String::new()));
        let (h, seen) = (hits.clone(), head.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let read = socket.read(&mut buf).await.unwrap_or(0);
                *seen.lock().unwrap() = String::from_utf8_lossy(&buf[..read]).to_string();
                let body = serde_json::json!({ "Parameter": { "Value": value } }).to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (port, hits, head)
    }

    #[tokio::test]
    async fn the_extension_is_asked_once_with_the_session_token_and_then_cached() {
        let (port, hits, head) = fake_extension(r#"{"demo-market":"from-ssm"}"#).await;
        let env = Env::default()
            .with("PARTNER_SECRETS_PARAMETER", "/loyalty/partner-secrets")
            .with("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
            .with("AWS_SESSION_TOKEN", "session-token");
        let source = PartnerSecretsSource::from_env(&env).unwrap();
        assert!(matches!(source, PartnerSecretsSource::Extension(_)));
        for _ in 0..3 {
            assert_eq!(
                source.secret(&partner("demo-market")).await.unwrap(),
                Some(Secret::new(b"from-ssm".to_vec()))
            );
        }
        assert_eq!(source.secret(&partner("other")).await.unwrap(), None);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let head = head.lock().unwrap().to_ascii_lowercase();
        assert!(head.contains("name=%2floyalty%2fpartner-secrets&withdecryption=true"));
        assert!(head.contains("x-aws-parameters-secrets-token: session-token"));
    }

    #[tokio::test]
    async fn an_unreachable_extension_is_a_retryable_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let env = Env::default()
            .with("PARTNER_SECRETS_PARAMETER", "/p")
            .with("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string());
        let source = PartnerSecretsSource::from_env(&env).unwrap();
        let err = source.secret(&partner("demo-market")).await.unwrap_err();
        assert!(err.retryable);
    }
}
