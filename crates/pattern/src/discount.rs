//! The plan's discount, and the digits `{discount}` renders it as.

/// The discount a creator's code grants, as `{discount}` sees it.
///
/// `{discount}` renders digits only, since shops rarely accept `.` or `%` in codes:
///
/// - a percentage renders as the whole percent when it is integral, otherwise
///   as the percent with its decimal point removed and trailing zeros of the
///   fraction dropped: 2000 bps (20 %) → `20`, 1250 bps (12.5 %) → `125`,
///   1205 bps (12.05 %) → `1205`, 50 bps (0.5 %) → `05`;
/// - a fixed amount renders as the major amount when it is integral, otherwise
///   as all its minor units: 1000 cents → `10`, 1050 cents → `1050`,
///   5 cents → `5`.
///
/// The fractional forms are ambiguous (12.5 % and 1.25 % both give `125`);
/// they keep codes short and typeable, and the code is a label, not the source
/// of truth for the discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discount {
    /// A percentage in basis points: 2000 is 20 %.
    Percent { basis_points: u32 },
    /// An amount in the currency's minor units, with the currency's exponent
    /// (the number of minor-unit digits): 1050 with exponent 2 is 10.50.
    Fixed { minor_units: u64, exponent: u8 },
}

impl Discount {
    /// The digits `{discount}` renders, written to a stack buffer: rendering
    /// allocates nothing but the code itself.
    pub(crate) fn code_digits(self) -> Digits {
        let mut digits = Digits::default();
        match self {
            Discount::Percent { basis_points } => {
                let whole = basis_points / 100;
                let hundredths = basis_points % 100;
                digits.push(u64::from(whole), 1);
                if hundredths % 10 != 0 {
                    digits.push(u64::from(hundredths), 2);
                } else if hundredths != 0 {
                    digits.push(u64::from(hundredths / 10), 1);
                }
            }
            Discount::Fixed {
                minor_units,
                exponent,
            } => match 10_u64.checked_pow(u32::from(exponent)) {
                Some(scale) if minor_units % scale == 0 => digits.push(minor_units / scale, 1),
                // An exponent too large for u64 leaves no integral amount but zero,
                // which renders as `0` either way.
                _ => digits.push(minor_units, 1),
            },
        }
        digits
    }
}

/// ASCII digits in a fixed buffer: the longest output is a u64 (20 digits),
/// or a u32 percent plus two fraction digits.
#[derive(Debug, Default)]
pub(crate) struct Digits {
    bytes: [u8; 24],
    len: usize,
}

impl Digits {
    /// Appends `value` in decimal, zero-padded to at least `min_width` (at most 20) digits.
    fn push(&mut self, mut value: u64, min_width: usize) {
        let mut reversed = [0_u8; 20];
        let mut count = 0;
        while count < min_width || value != 0 || count == 0 {
            // `value % 10` is below 10, so the cast cannot truncate.
            reversed[count] = b'0' + (value % 10) as u8;
            value /= 10;
            count += 1;
        }
        for &digit in reversed[..count].iter().rev() {
            self.bytes[self.len] = digit;
            self.len += 1;
        }
    }

    pub(crate) fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.bytes[..self.len].iter().map(|&byte| char::from(byte))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(discount: Discount) -> String {
        discount.code_digits().chars().collect()
    }

    fn percent(basis_points: u32) -> String {
        text(Discount::Percent { basis_points })
    }

    fn fixed(minor_units: u64, exponent: u8) -> String {
        text(Discount::Fixed {
            minor_units,
            exponent,
        })
    }

    #[test]
    fn integral_percentages_are_whole_percent() {
        assert_eq!(percent(2000), "20");
        assert_eq!(percent(10_000), "100");
        assert_eq!(percent(100), "1");
        assert_eq!(percent(0), "0");
    }

    #[test]
    fn fractional_percentages_drop_the_point_and_trailing_zeros() {
        assert_eq!(percent(1250), "125");
        assert_eq!(percent(1205), "1205");
        assert_eq!(percent(1299), "1299");
        assert_eq!(percent(50), "05");
        assert_eq!(percent(5), "005");
        assert_eq!(percent(u32::MAX), "4294967295");
    }

    #[test]
    fn integral_fixed_amounts_are_major_units() {
        assert_eq!(fixed(1000, 2), "10");
        assert_eq!(fixed(0, 2), "0");
        assert_eq!(fixed(500, 0), "500");
        assert_eq!(fixed(5000, 3), "5");
    }

    #[test]
    fn fractional_fixed_amounts_are_minor_units() {
        assert_eq!(fixed(1050, 2), "1050");
        assert_eq!(fixed(5, 2), "5");
        assert_eq!(fixed(u64::MAX, 2), "18446744073709551615");
    }

    #[test]
    fn huge_exponents_do_not_overflow() {
        assert_eq!(fixed(1234, 200), "1234");
        assert_eq!(fixed(0, 255), "0");
    }
}
