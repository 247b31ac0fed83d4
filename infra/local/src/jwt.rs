//! Development bearer tokens: HS256 JWTs signed with a key kept in `.local/dev-jwt-key`.
//!
//! In AWS the HTTP API's JWT authorizer verifies tokens from the identity provider; locally
//! this module plays that part with the same checks (signature, `exp`, `nbf`, `iss`, `aud`).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a well-formed HS256 JWT")]
    Malformed,
    #[error("the token signature does not verify")]
    BadSignature,
    #[error("the token has expired or has no exp")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
}

#[derive(Clone)]
pub struct DevKey(Vec<u8>);

impl std::fmt::Debug for DevKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevKey(..)")
    }
}

pub fn default_key_path() -> PathBuf {
    crate::template::repo_root()
        .join(".local")
        .join("dev-jwt-key")
}

impl DevKey {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> DevKey {
        DevKey(bytes.into())
    }

    /// Reads the key, or creates a random one (readable by its owner only) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<DevKey> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            return Ok(DevKey(bytes));
        }
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                std::io::Write::write_all(&mut file, URL_SAFE_NO_PAD.encode(&bytes).as_bytes())?;
                Ok(DevKey(bytes))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => DevKey::load_or_create(path),
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "HS256", "typ": "JWT" }).to_string());
        let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// The token's claims if it is signed with this key, current, and meant for us.
    pub fn verify(
        &self,
        token: &str,
        now_epoch_secs: i64,
        issuer: &str,
        audience: &str,
    ) -> Result<Map<String, Value>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(header)?;
        // Only HS256: accepting the token's own choice of algorithm ("none") would let anyone in.
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header_len(token)]);
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::BadSignature)?;

        let claims = match decode_json(payload)? {
            Value::Object(map) => map,
            _ => return Err(JwtError::Malformed),
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::Expired)?;
        if exp <= now_epoch_secs {
            return Err(JwtError::Expired);
        }
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|nbf| nbf > now_epoch_secs)
        {
            return Err(JwtError::NotYetValid);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(JwtError::WrongIssuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(JwtError::WrongAudience);
        }
        Ok(claims)
    }
}

/// Length of `header.payload`, the signed part.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn decode_json(part: &str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, JwtError> {
    let value = header.ok_or(JwtError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(JwtError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(token.trim())
}

/// What `mint-token` puts in a token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub role: String,
    pub sub: String,
    pub outlet: Option<(String, String)>,
    pub region: Option<String>,
    /// OAuth scopes, space-separated, as a service's token carries them (`actions:report`).
    pub scope: Option<String>,
    /// `phone_number` (E.164) and whether `phone_number_verified` is true, as Cognito's ID
    /// tokens carry them: a verified phone registers without a passcode.
    pub phone: Option<(String, bool)>,
    /// The imported member this subject adopted (`POST /registrations/imported`), as the
    /// identity provider's pre-token trigger would add it.
    pub participant_id: Option<String>,
    pub ttl_hours: i64,
}

impl TokenRequest {
    pub fn claims(&self, now_epoch_secs: i64) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("iss".into(), crate::LOCAL_ISSUER.into());
        claims.insert("aud".into(), crate::LOCAL_AUDIENCE.into());
        claims.insert("sub".into(), self.sub.clone().into());
        claims.insert("role".into(), self.role.clone().into());
        claims.insert("iat".into(), now_epoch_secs.into());
        claims.insert(
            "exp".into(),
            (now_epoch_secs + self.ttl_hours * 3600).into(),
        );
        if let Some((outlet_id, outlet_role)) = &self.outlet {
            claims.insert("outlet_id".into(), outlet_id.clone().into());
            claims.insert("outlet_role".into(), outlet_role.clone().into());
        }
        if let Some(region) = &self.region {
            claims.insert("region".into(), region.clone().into());
        }
        if let Some(scope) = &self.scope {
            claims.insert("scope".into(), scope.clone().into());
        }
        if let Some(member) = &self.participant_id {
            claims.insert("participant_id".into(), member.clone().into());
        }
        if let Some((phone, verified)) = &self.phone {
            claims.insert("phone_number".into(), phone.clone().into());
            claims.insert("phone_number_verified".into(), (*verified).into());
        }
        claims
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LOCAL_AUDIENCE, LOCAL_ISSUER};

    const NOW: i64 = 1_800_000_000;

    fn token(key: &DevKey, ttl_hours: i64) -> String {
        let request = TokenRequest {
            role: "rep".into(),
            sub: "R1".into(),
            outlet: None,
            region: Some("north".into()),
            scope: None,
            phone: None,
            participant_id: None,
            ttl_hours,
        };
        key.sign(&request.claims(NOW))
    }

    #[test]
    fn a_minted_token_verifies_and_carries_its_claims() {
        let key = DevKey::from_bytes(b"k1".to_vec());
        let claims = key
            .verify(&token(&key, 1), NOW + 60, LOCAL_ISSUER, LOCAL_AUDIENCE)
            .unwrap();
        assert_eq!(claims["sub"], "R1");
        assert_eq!(claims["role"], "rep");
        assert_eq!(claims["region"], "north");
    }

    #[test]
    fn a_service_token_carries_its_scope_and_other_tokens_none() {
        let service = TokenRequest {
            role: "service".into(),
            sub: "svc-app-orders".into(),
            outlet: None,
            region: None,
            scope: Some("actions:report".into()),
            phone: None,
            participant_id: None,
            ttl_hours: 1,
        };
        assert_eq!(service.claims(NOW)["scope"], "actions:report");
        let key = DevKey::from_bytes(b"k1".to_vec());
        let claims = key
            .verify(&token(&key, 1), NOW + 60, LOCAL_ISSUER, LOCAL_AUDIENCE)
            .unwrap();
        assert!(claims.get("scope").is_none());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let key = DevKey::from_bytes(b"k1".to_vec());
        assert_eq!(
            key.verify(&token(&key, 1), NOW + 3600, LOCAL_ISSUER, LOCAL_AUDIENCE),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let mine = DevKey::from_bytes(b"k1".to_vec());
        let theirs = DevKey::from_bytes(b"k2".to_vec());
        assert_eq!(
            mine.verify(&token(&theirs, 1), NOW, LOCAL_ISSUER, LOCAL_AUDIENCE),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let key = DevKey::from_bytes(b"k1".to_vec());
        let original = token(&key, 1);
        let parts: Vec<&str> = original.split('.').collect();
        let mut claims: Value = decode_json(parts[1]).unwrap();
        claims["role"] = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert_eq!(
            key.verify(&forged, NOW, LOCAL_ISSUER, LOCAL_AUDIENCE),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn a_token_for_another_audience_or_issuer_is_refused() {
        let key = DevKey::from_bytes(b"k1".to_vec());
        let t = token(&key, 1);
        assert_eq!(
            key.verify(&t, NOW, LOCAL_ISSUER, "someone-else"),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(
            key.verify(&t, NOW, "https://other-issuer", LOCAL_AUDIENCE),
            Err(JwtError::WrongIssuer)
        );
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let key = DevKey::from_bytes(b"k1".to_vec());
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            Value::Object(
                TokenRequest {
                    role: "admin".into(),
                    sub: "A".into(),
                    outlet: None,
                    region: None,
                    scope: None,
                    phone: None,
                    participant_id: None,
                    ttl_hours: 1,
                }
                .claims(NOW),
            )
            .to_string(),
        );
        assert_eq!(
            key.verify(
                &format!("{header}.{payload}."),
                NOW,
                LOCAL_ISSUER,
                LOCAL_AUDIENCE
            ),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn a_missing_or_non_bearer_authorization_header_is_refused() {
        assert_eq!(bearer(None), Err(JwtError::Missing));
        assert_eq!(bearer(Some("Basic abc")), Err(JwtError::Malformed));
        assert_eq!(bearer(Some("Bearer ")), Err(JwtError::Malformed));
        assert_eq!(bearer(Some("bearer a.b.c")), Ok("a.b.c"));
    }

    #[test]
    fn the_dev_key_is_created_once_and_then_reused() {
        let dir =
            std::env::temp_dir().join(format!("loyalty-local-key-{}-{}", std::process::id(), NOW));
        let path = dir.join("dev-jwt-key");
        let first = DevKey::load_or_create(&path).unwrap();
        let second = DevKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, second.0);
        assert_eq!(first.0.len(), 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
