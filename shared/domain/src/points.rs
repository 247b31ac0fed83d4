//! Points are whole numbers. Never floats.

use serde::{Deserialize, Serialize};

/// An amount of points. Arithmetic is checked: an overflow is a bug, not a wrap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("points must be a whole number from 1 to {max}")]
    OutOfRange { max: u64 },
}

impl Points {
    pub const ZERO: Points = Points(0);
    /// No single movement may exceed this; it keeps sums of millions of entries far from u64::MAX.
    pub const MAX_MOVEMENT: u64 = 1_000_000_000;

    /// A positive amount for one movement.
    pub fn parse(value: u64) -> Result<Self, PointsError> {
        if value == 0 || value > Self::MAX_MOVEMENT {
            return Err(PointsError::OutOfRange {
                max: Self::MAX_MOVEMENT,
            });
        }
        Ok(Points(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }

    /// `self * numerator / denominator`, rounded down, without floats.
    pub fn scale(self, numerator: u64, denominator: u64) -> Points {
        debug_assert!(denominator > 0);
        Points(((self.0 as u128 * numerator as u128) / denominator as u128) as u64)
    }
}

impl std::fmt::Display for Points {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_huge_amounts_are_rejected() {
        assert!(Points::parse(0).is_err());
        assert!(Points::parse(Points::MAX_MOVEMENT + 1).is_err());
        assert_eq!(Points::parse(5).unwrap().get(), 5);
    }

    #[test]
    fn scaling_rounds_down_without_floats() {
        assert_eq!(Points(1000).scale(7, 10), Points(700));
        assert_eq!(Points(999).scale(7, 10), Points(699));
    }
}
