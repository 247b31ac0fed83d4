//! Identifiers. Each is a newtype with a `parse` constructor, so an unchecked string never
//! reaches a key expression.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to {max} characters of A-Z, a-z, 0-9, '-', '_' or ':'")]
pub struct InvalidId {
    pub what: &'static str,
    pub max: usize,
}

macro_rules! opaque_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                let ok = !raw.is_empty()
                    && raw.len() <= $max
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
                if ok {
                    Ok(Self(raw.to_string()))
                } else {
                    Err(InvalidId { what: $what, max: $max })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A participant: the token subject of a person in a programme.
    ParticipantId, "participant id", 64
);
opaque_id!(
    /// An outlet (a shop) that owners and sellers belong to.
    OutletId, "outlet id", 64
);
opaque_id!(
    /// A sales region; batches ship to one, outlets sit in one.
    RegionId, "region id", 32
);
opaque_id!(
    /// A batch of printed codes.
    BatchId, "batch id", 64
);
opaque_id!(
    /// A ledger entry. Derived from the entry's source, so a retry produces the same id.
    EntryId, "entry id", 200
);

/// A client-chosen key that makes a balance-changing request safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 8 to 128 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let ok = (8..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(raw.to_string()))
            .ok_or(InvalidIdempotencyKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_key_separators_and_empty_strings() {
        assert!(ParticipantId::parse("p-123_abc").is_ok());
        assert!(ParticipantId::parse("").is_err());
        assert!(ParticipantId::parse("a#b").is_err());
        assert!(ParticipantId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn ids_deserialize_through_parse() {
        assert!(serde_json::from_str::<OutletId>("\"o-1\"").is_ok());
        assert!(serde_json::from_str::<OutletId>("\"o 1\"").is_err());
    }

    #[test]
    fn idempotency_keys_need_eight_printable_characters() {
        assert!(IdempotencyKey::parse("abcdefgh").is_ok());
        assert!(IdempotencyKey::parse("short").is_err());
        assert!(IdempotencyKey::parse("with space inside").is_err());
    }
}
