//! Configuration as a map of variables, read once at init.
//!
//! A Lambda builds it from its process environment; the local runner builds one per function
//! from `template.yaml`; tests build one pointing at fresh resources.

use std::collections::HashMap;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required configuration variable {0}")]
    Missing(String),
    #[error("configuration variable {key} is invalid: {reason}")]
    Invalid { key: String, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    pub fn required(&self, key: &str) -> Result<String, ConfigError> {
        match self.0.get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v.clone()),
            _ => Err(ConfigError::Missing(key.to_string())),
        }
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// Parses `key` if present, or returns `default`.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    key: key.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_in_the_error() {
        let err = Env::default().required("CODES_TABLE").unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing required configuration variable CODES_TABLE"
        );
    }

    #[test]
    fn an_unparsable_variable_is_an_error_not_a_default() {
        let env = Env::default().with("MAX", "ten");
        assert!(env.parse_or::<u32>("MAX", 10).is_err());
        assert_eq!(Env::default().parse_or::<u32>("MAX", 10).unwrap(), 10);
    }
}
