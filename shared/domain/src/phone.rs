//! Phone numbers in E.164: the identity of a participant (one account per phone), so that a
//! cardless programme can look a member up by the number they say at the counter.

use crate::redact;
use crate::{Classified, Kind};

/// A country calling code (1 to 3 digits, no leading zero), used for numbers typed in
/// national format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCode(String);

impl CountryCode {
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let raw = raw.trim().trim_start_matches('+');
        let ok = (1..=3).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_digit())
            && !raw.starts_with('0');
        ok.then(|| Self(raw.to_string())).ok_or(PhoneError::Invalid)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number normalised to E.164 (`+` and 8 to 15 digits).
///
/// `Debug` and `Display` show only the last four digits, so a number never reaches a log
/// by accident; storage and responses to its owner use [`PhoneNumber::as_e164`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is not valid: use international format (+44 7700 900123) or a national number with its leading 0")]
    Invalid,
}

impl Classified for PhoneError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        "phone_invalid"
    }
}

impl PhoneNumber {
    pub const MIN_DIGITS: usize = 8;
    pub const MAX_DIGITS: usize = 15;

    /// Accepts the ways people write numbers: spaces, dashes, dots and parentheses are
    /// ignored; `+` or `00` starts an international number; a national number (with or
    /// without its trunk `0`) gets `default_country`. The UK-style `+44 (0)20 ...` drops the `(0)`.
    pub fn parse(raw: &str, default_country: &CountryCode) -> Result<Self, PhoneError> {
        let trimmed = raw.trim();
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        let trimmed = if international {
            trimmed.replacen("(0)", "", 1)
        } else {
            trimmed.to_string()
        };
        let mut digits = String::with_capacity(trimmed.len());
        for (i, c) in trimmed.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneError::Invalid),
            }
        }
        let full = if trimmed.starts_with('+') {
            digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest.to_string()
        } else {
            let national = digits.strip_prefix('0').unwrap_or(&digits);
            if national.starts_with('0') {
                return Err(PhoneError::Invalid);
            }
            format!("{}{national}", default_country.as_str())
        };
        let ok =
            (Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&full.len()) && !full.starts_with('0');
        ok.then(|| Self(format!("+{full}")))
            .ok_or(PhoneError::Invalid)
    }

    /// The stored form, `+` and digits.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    /// Rebuilds a number from its stored form; anything else is refused.
    pub fn from_e164(stored: &str) -> Result<Self, PhoneError> {
        let digits = stored.strip_prefix('+').ok_or(PhoneError::Invalid)?;
        let ok = (Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self(stored.to_string()))
            .ok_or(PhoneError::Invalid)
    }
}

impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PhoneNumber({})", redact::tail(&self.0))
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact::tail(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uk() -> CountryCode {
        CountryCode::parse("44").unwrap()
    }

    fn e164(raw: &str) -> Result<String, PhoneError> {
        PhoneNumber::parse(raw, &uk()).map(|p| p.as_e164().to_string())
    }

    #[test]
    fn the_usual_ways_of_writing_one_number_normalise_to_the_same_e164() {
        for raw in [
            "+44 7700 900123",
            "+44-7700-900-123",
            "0044 7700 900123",
            "07700 900123",
            "(07700) 900.123",
            "7700900123",
            " +44 (0)7700 900123 ",
        ] {
            assert_eq!(e164(raw).as_deref(), Ok("+447700900123"), "{raw}");
        }
    }

    #[test]
    fn a_national_number_gets_the_default_country_code_not_a_hard_coded_one() {
        let france = CountryCode::parse("33").unwrap();
        let phone = PhoneNumber::parse("06 12 34 56 78", &france).unwrap();
        assert_eq!(phone.as_e164(), "+33612345678");
    }

    #[test]
    fn too_short_too_long_letters_and_misplaced_plus_are_refused() {
        for raw in [
            "",
            "+44 123",
            "+1234567890123456",
            "07700 9OO123",
            "0770+0900123",
            "abc",
            "000447700900123",
            "+0447700900123",
        ] {
            assert_eq!(e164(raw), Err(PhoneError::Invalid), "{raw}");
        }
    }

    #[test]
    fn debug_and_display_show_only_the_last_four_digits() {
        let phone = PhoneNumber::parse("+44 7700 900123", &uk()).unwrap();
        assert_eq!(phone.to_string(), "****0123");
        assert_eq!(format!("{phone:?}"), "PhoneNumber(****0123)");
        assert!(!format!("{phone:?}{phone}").contains("7700"));
    }

    #[test]
    fn the_stored_form_round_trips_and_garbage_does_not() {
        let phone = PhoneNumber::parse("07700 900123", &uk()).unwrap();
        assert_eq!(PhoneNumber::from_e164(phone.as_e164()), Ok(phone));
        assert!(PhoneNumber::from_e164("447700900123").is_err());
        assert!(PhoneNumber::from_e164("+44 7700").is_err());
    }

    #[test]
    fn a_bad_phone_is_bad_input_with_a_stable_code() {
        let err = e164("nope").unwrap_err();
        assert_eq!(err.code(), "phone_invalid");
        assert_eq!(err.kind(), Kind::BadInput);
    }

    #[test]
    fn country_codes_are_one_to_three_digits_without_leading_zero() {
        assert!(CountryCode::parse("1").is_ok());
        assert!(CountryCode::parse("+353").is_ok());
        assert!(CountryCode::parse("0").is_err());
        assert!(CountryCode::parse("4444").is_err());
        assert!(CountryCode::parse("4a").is_err());
    }
}
