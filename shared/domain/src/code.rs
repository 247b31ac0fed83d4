//! Printable pack codes: what is printed under a bottle cap or inside a pack, typed by a
//! person or scanned from a QR code.
//!
//! A code is [`Code::LEN`] characters from a 29-character alphabet, shown in groups of four
//! (`ABCD-EFGH-JKLM-NPQR`). The first [`Code::DATA_LEN`] characters are a base-29 number
//! D = r · [`BATCHES`] + batch, where r is exactly 60 random bits and batch is the batch
//! number: the claim path finds the batch (points, validity, region) from the code alone,
//! in its warm cache, without a read. 15 characters hold 15 · log2(29) = 72.87 bits; 60 of
//! them are random (exactly 60.000 bits per code) and the rest name one of 7,484 batches.
//! Guessing one of a million issued codes of a batch takes about 2^40 tries on average.
//! The last character is a check character.
//!
//! The check character makes the weighted sum Σ wᵢ·vᵢ ≡ 0 (mod 29), with weights
//! wᵢ = 16, 15, ..., 1 from the left. Because 29 is prime and every weight and every weight
//! difference of neighbours is non-zero mod 29, every single-character substitution and
//! every adjacent transposition changes the sum, so it is caught (the exhaustive test below
//! checks this).

use rand::RngCore;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::{Classified, Kind};

/// Upper-case symbols without look-alikes: no 0/O, 1/I/L; of the pairs U/V and 2/Z only U
/// and 2 are kept (so a typed V or Z can only have meant U or 2). 5/S and 8/B are kept to
/// reach a prime size; a misread of either is a single substitution, which the check catches.
pub const ALPHABET: &[u8; 29] = b"23456789ABCDEFGHJKMNPQRSTUWXY";
const P: u32 = ALPHABET.len() as u32;

/// Random bits per code.
pub const RANDOM_BITS: u32 = 60;
// The guessing arithmetic in the README relies on this floor.
const _: () = assert!(RANDOM_BITS >= 60);
/// How many batch numbers fit beside 60 random bits: the largest B with B · 2^60 ≤ 29^15.
pub const BATCHES: u32 = 7_484;
const DATA_SPACE: u128 = 29u128.pow(Code::DATA_LEN as u32);
const _: () = assert!((BATCHES as u128) << RANDOM_BITS <= DATA_SPACE);
const _: () = assert!(((BATCHES as u128) + 1) << RANDOM_BITS > DATA_SPACE);

/// Inputs longer than this are refused before any work is done on them.
const MAX_INPUT_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a code is 16 characters from {alphabet}; {reason}", alphabet = std::str::from_utf8(ALPHABET).unwrap_or_default())]
    Malformed { reason: &'static str },
    #[error("this code does not add up; please check what you typed, character by character")]
    CheckFailed,
    #[error("this link is not a code link: expected https://host/c/CODE")]
    UnrecognisedLink,
}

impl Classified for CodeError {
    fn kind(&self) -> Kind {
        Kind::BadInput
    }
    fn code(&self) -> &'static str {
        match self {
            CodeError::Malformed { .. } => "code_malformed",
            CodeError::CheckFailed => "code_check_failed",
            CodeError::UnrecognisedLink => "code_link_unrecognised",
        }
    }
}

/// A well-formed code whose check character is right. Whether it was ever issued is for the
/// code store to say.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code([u8; Code::LEN]);

impl std::fmt::Debug for Code {
    // A code is a bearer secret worth points: never print it whole by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code({})", crate::redact::tail(self.canonical()))
    }
}

fn value_of(symbol: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == symbol).map(|i| i as u8)
}

/// Weight of position `i` (0-based from the left): 16 down to 1, all distinct and non-zero
/// mod 29, so the check character (the last) has weight 1.
fn weight(i: usize) -> u32 {
    (Code::LEN - i) as u32
}

fn weighted_sum(values: &[u8]) -> u32 {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| weight(i) * v as u32)
        .sum::<u32>()
        % P
}

impl Code {
    pub const LEN: usize = 16;
    pub const DATA_LEN: usize = Self::LEN - 1;
    fn from_values(values: &[u8; Self::LEN]) -> Self {
        Code(values.map(|v| ALPHABET[v as usize]))
    }

    /// Appends the check character to 15 data values.
    fn with_check(data: &[u8; Self::DATA_LEN]) -> Self {
        let mut values = [0u8; Self::LEN];
        values[..Self::DATA_LEN].copy_from_slice(data);
        let sum = weighted_sum(&values);
        values[Self::DATA_LEN] = ((P - sum) % P) as u8;
        Self::from_values(&values)
    }

    /// Parses a typed code (any case, dashes and spaces anywhere) or a QR payload
    /// `http(s)://host[/prefix]/c/CODE`.
    pub fn parse(input: &str) -> Result<Code, CodeError> {
        let input = input.trim();
        if input.len() > MAX_INPUT_LEN {
            return Err(CodeError::Malformed {
                reason: "the input is far too long",
            });
        }
        let typed = match link_body(input) {
            Some(body) => body?,
            None => input,
        };
        let mut values = [0u8; Self::LEN];
        let mut len = 0;
        for ch in typed.bytes() {
            let symbol = match ch.to_ascii_uppercase() {
                b'-' | b' ' => continue,
                b'V' => b'U',
                b'Z' => b'2',
                other => other,
            };
            let value = value_of(symbol).ok_or(CodeError::Malformed {
                reason: "it contains a character that is never printed on a code",
            })?;
            if len == Self::LEN {
                return Err(CodeError::Malformed {
                    reason: "it has too many characters",
                });
            }
            values[len] = value;
            len += 1;
        }
        if len < Self::LEN {
            return Err(CodeError::Malformed {
                reason: "it has too few characters",
            });
        }
        if weighted_sum(&values) != 0 {
            return Err(CodeError::CheckFailed);
        }
        Ok(Self::from_values(&values))
    }

    /// The batch this code was issued in (if it was issued at all).
    pub fn batch_number(&self) -> u32 {
        (self.data_value() % BATCHES as u128) as u32
    }

    fn data_value(&self) -> u128 {
        self.0[..Self::DATA_LEN].iter().fold(0u128, |acc, &s| {
            acc * P as u128 + value_of(s).expect("codes hold alphabet symbols") as u128
        })
    }

    /// The key form: 16 characters, no dashes.
    pub fn canonical(&self) -> &str {
        std::str::from_utf8(&self.0).expect("alphabet is ASCII")
    }

    /// The printed form: groups of four joined by dashes.
    pub fn display(&self) -> String {
        let c = self.canonical();
        format!("{}-{}-{}-{}", &c[0..4], &c[4..8], &c[8..12], &c[12..16])
    }

    /// What the QR code on the pack encodes: the claim page for this code.
    pub fn qr_payload(&self, base_url: &str) -> String {
        format!("{}/c/{}", base_url.trim_end_matches('/'), self.canonical())
    }

    /// A fresh code of batch `batch` (below [`BATCHES`]). The 60 random bits are the top
    /// bits of one `next_u64` (rather than anything from `Rng`), so a given random stream
    /// always yields the same codes whatever the `rand` version: a retried batch chunk must
    /// regenerate exactly its codes.
    pub fn generate<R: RngCore + ?Sized>(rng: &mut R, batch: u32) -> Code {
        assert!(
            batch < BATCHES,
            "batch number {batch} does not fit in a code"
        );
        let random = (rng.next_u64() >> (64 - RANDOM_BITS)) as u128;
        let mut d = random * BATCHES as u128 + batch as u128;
        let mut data = [0u8; Self::DATA_LEN];
        for slot in data.iter_mut().rev() {
            *slot = (d % P as u128) as u8;
            d /= P as u128;
        }
        Self::with_check(&data)
    }

    /// The codes of one chunk of a batch: the same seed and chunk number always give the
    /// same codes, and different chunks draw from independent ChaCha20 streams.
    pub fn chunk(seed: &[u8; 32], batch: u32, chunk: u32, count: u32) -> Vec<Code> {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        rng.set_stream(chunk as u64);
        (0..count)
            .map(|_| Self::generate(&mut rng, batch))
            .collect()
    }
}

/// `Some(Ok(code text))` for a well-formed code link, `Some(Err)` for any other link, `None`
/// for input that is not a link at all.
fn link_body(input: &str) -> Option<Result<&str, CodeError>> {
    let lower = input
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let rest = if lower.starts_with("https://") {
        &input[8..]
    } else if lower.starts_with("http://") {
        &input[7..]
    } else {
        return None;
    };
    let mut segments = rest.split('/');
    let host = segments.next().unwrap_or_default();
    let path: Vec<&str> = segments.collect();
    let ok = !host.is_empty()
        && !input.contains(['?', '#', ' '])
        && path.len() >= 2
        && path[path.len() - 2] == "c"
        && !path[path.len() - 1].is_empty();
    Some(if ok {
        Ok(path[path.len() - 1])
    } else {
        Err(CodeError::UnrecognisedLink)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(code: &Code) -> [u8; Code::LEN] {
        code.0.map(|s| value_of(s).unwrap())
    }

    fn text(values: &[u8; Code::LEN]) -> String {
        values
            .iter()
            .map(|&v| ALPHABET[v as usize] as char)
            .collect()
    }

    fn sample_codes() -> Vec<Code> {
        let mut codes = vec![
            Code::with_check(&[0; Code::DATA_LEN]),
            Code::with_check(&[P as u8 - 1; Code::DATA_LEN]),
        ];
        codes.extend(Code::chunk(&[7; 32], 17, 0, 3));
        codes
    }

    #[test]
    fn the_alphabet_is_prime_sized_and_free_of_look_alikes() {
        assert!((2..P).all(|d| !P.is_multiple_of(d)), "{P} is not prime");
        for banned in b"01OILVZ" {
            assert!(
                !ALPHABET.contains(banned),
                "{} is in the alphabet",
                *banned as char
            );
        }
        let mut sorted = ALPHABET.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), ALPHABET.len(), "duplicate symbol");
        // Weights must be distinct and non-zero mod p for the detection argument to hold.
        assert!(Code::LEN < P as usize);
    }

    #[test]
    fn a_code_carries_sixty_random_bits_beside_its_batch_number() {
        let data_bits = Code::DATA_LEN as f64 * (P as f64).log2();
        let batch_bits = (BATCHES as f64).log2();
        assert!(RANDOM_BITS as f64 + batch_bits <= data_bits);
        assert!(RANDOM_BITS as f64 + (BATCHES as f64 + 1.0).log2() > data_bits);
    }

    #[test]
    fn a_code_names_its_batch_even_at_the_extremes() {
        struct Max;
        impl rand::RngCore for Max {
            fn next_u32(&mut self) -> u32 {
                u32::MAX
            }
            fn next_u64(&mut self) -> u64 {
                u64::MAX
            }
            fn fill_bytes(&mut self, dst: &mut [u8]) {
                dst.fill(0xff)
            }
        }
        for batch in [0, 1, 2_024, BATCHES - 1] {
            assert_eq!(Code::generate(&mut Max, batch).batch_number(), batch);
            assert_eq!(Code::chunk(&[4; 32], batch, 7, 1)[0].batch_number(), batch);
        }
    }

    // The check is linear: sum(code') - sum(code) depends only on the positions that changed
    // and on the old and new characters there, never on the other 14 or 15 characters. So a
    // change is caught for every code iff its difference is non-zero mod p, and trying each
    // (position, old, new) on any one valid code decides it for all codes. We still run it on
    // several base codes, which would expose a check that is accidentally not linear.
    #[test]
    fn every_single_character_substitution_is_detected() {
        for base in sample_codes() {
            let original = values(&base);
            for pos in 0..Code::LEN {
                for new in 0..P as u8 {
                    if new == original[pos] {
                        continue;
                    }
                    let mut typo = original;
                    typo[pos] = new;
                    assert_eq!(
                        Code::parse(&text(&typo)),
                        Err(CodeError::CheckFailed),
                        "position {pos}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_adjacent_transposition_is_detected() {
        // Same linearity argument: swapping a at i and b at i+1 changes the sum by
        // (wᵢ - wᵢ₊₁)(b - a) = (b - a), whatever the rest. Exhaust all pairs at all positions.
        let base = Code::with_check(&[0; Code::DATA_LEN]);
        for pos in 0..Code::LEN - 1 {
            for a in 0..P as u8 {
                for b in 0..P as u8 {
                    if a == b {
                        continue;
                    }
                    let mut vals = values(&base);
                    vals[pos] = a;
                    vals[pos + 1] = b;
                    // Re-balance with a position outside the pair so that `vals` is valid...
                    let fix = if pos == 0 { Code::LEN - 1 } else { 0 };
                    let off = weighted_sum(&vals);
                    let w_inv = (1..P).find(|x| x * weight(fix) % P == 1).unwrap();
                    vals[fix] = ((vals[fix] as u32 + (P - off) * w_inv) % P) as u8;
                    assert!(Code::parse(&text(&vals)).is_ok());
                    // ...then swap the pair and expect the check to fail.
                    vals.swap(pos, pos + 1);
                    assert_eq!(
                        Code::parse(&text(&vals)),
                        Err(CodeError::CheckFailed),
                        "positions {pos},{}",
                        pos + 1
                    );
                }
            }
        }
    }

    #[test]
    fn wrong_length_or_foreign_characters_are_malformed_not_check_failures() {
        let code = Code::chunk(&[1; 32], 1, 0, 1)[0];
        let c = code.canonical();
        assert_eq!(Code::parse(&c[..15]).unwrap_err().code(), "code_malformed");
        assert_eq!(
            Code::parse(&format!("{c}2")).unwrap_err().code(),
            "code_malformed"
        );
        assert_eq!(
            Code::parse(&format!("{}0", &c[..15])).unwrap_err().code(),
            "code_malformed"
        );
        assert_eq!(
            Code::parse(&format!("{}é", &c[..15])).unwrap_err().code(),
            "code_malformed"
        );
        assert_eq!(Code::parse("").unwrap_err().code(), "code_malformed");
        assert_eq!(
            Code::parse(&"A".repeat(10_000)).unwrap_err().code(),
            "code_malformed"
        );
    }

    #[test]
    fn v_and_z_are_read_as_the_u_and_2_printed_on_the_pack() {
        let code = Code::chunk(&[3; 32], 1, 0, 500)
            .into_iter()
            .find(|c| c.canonical().contains('U') && c.canonical().contains('2'))
            .expect("500 codes include one with both U and 2");
        let misread = code.canonical().replace('U', "v").replace('2', "Z");
        assert_eq!(Code::parse(&misread), Ok(code));
    }

    #[test]
    fn links_other_than_code_links_are_refused() {
        let code = Code::chunk(&[2; 32], 1, 0, 1)[0];
        let c = code.canonical();
        for link in [
            format!("https://club.example.com/x/{c}"),
            format!("https:///c/{c}"),
            format!("https://club.example.com/c/{c}?utm=1"),
            format!("https://club.example.com/c/{c}/"),
            "https://club.example.com".to_string(),
        ] {
            assert_eq!(
                Code::parse(&link),
                Err(CodeError::UnrecognisedLink),
                "{link}"
            );
        }
        assert_eq!(
            Code::parse(&format!("HTTPS://club.example.com/promo/c/{c}")),
            Ok(code)
        );
        assert_eq!(
            Code::parse(&format!("http://localhost:3000/c/{}", code.display())),
            Ok(code)
        );
    }

    #[test]
    fn the_same_seed_and_chunk_give_the_same_codes_and_chunks_differ() {
        let seed = [9; 32];
        assert_eq!(Code::chunk(&seed, 3, 4, 100), Code::chunk(&seed, 3, 4, 100));
        let a = Code::chunk(&seed, 3, 0, 100);
        let b = Code::chunk(&seed, 3, 1, 100);
        assert!(a.iter().all(|c| !b.contains(c)));
        assert!(a.iter().chain(&b).all(|c| c.batch_number() == 3));
        // The first codes of a longer chunk are the codes of a shorter one (the last chunk).
        assert_eq!(
            Code::chunk(&seed, 3, 4, 30)[..],
            Code::chunk(&seed, 3, 4, 100)[..30]
        );
    }

    #[test]
    fn debug_output_never_shows_a_whole_code() {
        let code = Code::chunk(&[5; 32], 1, 0, 1)[0];
        let shown = format!("{code:?}");
        assert!(!shown.contains(code.canonical()));
        assert!(shown.contains(&code.canonical()[12..]));
    }

    fn any_code() -> impl Strategy<Value = Code> {
        (any::<[u8; 32]>(), 0..BATCHES, any::<u32>())
            .prop_map(|(seed, batch, chunk)| Code::chunk(&seed, batch, chunk, 1)[0])
    }

    proptest! {
        #[test]
        fn a_displayed_code_parses_back_whatever_the_case_and_separators(
            code in any_code(),
            lower in proptest::collection::vec(any::<bool>(), Code::LEN),
            seps in proptest::collection::vec(prop_oneof![Just(""), Just("-"), Just(" "), Just(" - ")], Code::LEN),
        ) {
            let shown = code.display();
            prop_assert_eq!(Code::parse(&shown), Ok(code));
            prop_assert_eq!(Code::parse(&shown).unwrap().batch_number(), code.batch_number());
            let typed: String = code.canonical().chars().zip(lower.iter().zip(&seps))
                .map(|(ch, (&low, sep))| format!("{}{sep}", if low { ch.to_ascii_lowercase() } else { ch }))
                .collect();
            prop_assert_eq!(Code::parse(&typed), Ok(code));
        }

        #[test]
        fn a_qr_payload_parses_back_to_its_code(code in any_code(), base in "https?://[a-z]{1,12}\\.example(:[0-9]{2,4})?(/[a-z]{1,6}){0,2}/?") {
            let payload = code.qr_payload(&base);
            prop_assert_eq!(Code::parse(&payload), Ok(code));
        }

        #[test]
        fn a_single_typo_never_yields_another_valid_code(code in any_code(), pos in 0..Code::LEN, shift in 1..P as u8) {
            let mut vals = values(&code);
            vals[pos] = (vals[pos] + shift) % P as u8;
            prop_assert_eq!(Code::parse(&text(&vals)), Err(CodeError::CheckFailed));
        }
    }
}
