//! National identifiers that decide a match on their own: the NHS number and the Unique Pupil
//! Number (UPN). Each is checked for its check character before it is trusted, so a mistyped
//! number is ignored rather than attached to a stranger.

/// An NHS number in canonical form: ten digits, no separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(u64);

impl NhsNumber {
    /// Parses an NHS number, accepting the usual `943 476 5919` / `943-476-5919` spacing.
    /// `None` when it is not ten digits or its modulus 11 check digit is wrong.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut digits = [0u8; 10];
        let mut n = 0;
        for c in raw.chars() {
            match c {
                '0'..='9' => {
                    if n == 10 {
                        return None;
                    }
                    digits[n] = c as u8 - b'0';
                    n += 1;
                }
                ' ' | '-' => {}
                _ => return None,
            }
        }
        if n != 10 || nhs_check_digit(&digits[..9]) != Some(digits[9]) {
            return None;
        }
        Some(Self(
            digits.iter().fold(0u64, |acc, d| acc * 10 + u64::from(*d)),
        ))
    }

    /// The ten digits as a number (the first digit may be 0, so format with `{:010}`).
    pub fn value(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:010}", self.0)
    }
}

/// The modulus 11 check digit of the first nine digits (weights 10 down to 2; `11 - sum mod 11`,
/// 11 becomes 0); `None` when the result is 10, which no NHS number is issued with.
fn nhs_check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

/// True for exactly ten digits with a correct modulus 11 check digit (no separators).
pub fn nhs_number_valid(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) && NhsNumber::parse(s).is_some()
}

/// The letters a UPN check letter (and a temporary UPN's last character) may take: A-Z without
/// I, O and S. A letter's position in this list is its value in the check sum.
const UPN_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// True when `s` has the contract's shape `^[A-Z][0-9]{11}[0-9A-Z]$`.
pub fn upn_format_valid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 13
        && b[0].is_ascii_uppercase()
        && b[1..12].iter().all(u8::is_ascii_digit)
        && (b[12].is_ascii_digit() || b[12].is_ascii_uppercase())
}

/// True when `s` is a UPN with a correct DfE check letter: characters 2 to 13 are multiplied by
/// their position (2..=13), a digit counting its face value and a letter (13th character of a
/// temporary UPN) its index in A-Z less I, O, S; the sum modulo 23 indexes the same letter list
/// to give the first character. The LA number (characters 2-4) is not checked against the list
/// of authorities, which changes.
pub fn upn_valid(s: &str) -> bool {
    if !upn_format_valid(s) {
        return false;
    }
    let b = s.as_bytes();
    let mut sum = 0u32;
    for (pos, &c) in (2u32..).zip(&b[1..]) {
        let value = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            match UPN_LETTERS.iter().position(|&l| l == c) {
                Some(i) => i as u32,
                None => return false,
            }
        };
        sum += value * pos;
    }
    UPN_LETTERS[(sum % 23) as usize] == b[0]
}

/// A UPN in canonical form (upper case, no spaces), kept only when its check letter is right.
pub fn normalise_upn(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    upn_valid(&s).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_number_check_digit() {
        assert!(nhs_number_valid("9434765919"));
        assert!(!nhs_number_valid("9434765918"));
        assert!(nhs_number_valid("9876543210"));
        assert!(!nhs_number_valid("943476591"), "nine digits");
        assert!(!nhs_number_valid("94347659190"), "eleven digits");
        assert!(!nhs_number_valid("943476591X"));
        assert!(
            !nhs_number_valid("943 476 5919"),
            "the strict check takes no spaces"
        );
        assert_eq!(
            NhsNumber::parse("943 476 5919").map(|n| n.to_string()),
            Some("9434765919".to_string())
        );
    }

    #[test]
    fn a_check_digit_of_ten_is_never_valid() {
        // 000000006: sum = 6*2 = 12, 12 mod 11 = 1, 11 - 1 = 10 → no valid check digit exists.
        for d in 0..=9 {
            assert!(!nhs_number_valid(&format!("000000006{d}")));
        }
        // 000000001: sum 2, 11 - 2 = 9.
        assert!(nhs_number_valid("0000000019"));
        // 000000000: sum 0 → 11 → 0.
        assert!(nhs_number_valid("0000000000"));
    }

    #[test]
    fn upn_format_and_check_letter() {
        assert!(upn_format_valid("B801200005001"));
        assert!(upn_valid("B801200005001"));
        assert!(!upn_valid("A801200005001"), "wrong check letter");
        assert!(!upn_format_valid("b801200005001"));
        assert!(!upn_format_valid("B80120000500"));
        assert!(!upn_format_valid("B80120000A001"));
        assert_eq!(
            normalise_upn(" b801 2000 05001 "),
            Some("B801200005001".into())
        );
        assert_eq!(normalise_upn("A801200005001"), None);
    }

    #[test]
    fn a_temporary_upn_ends_in_a_letter_that_counts_in_the_sum() {
        // Characters 2-12 of B801200005001 sum to 93 - 13*1 = 80; a final 'B' (value 1) gives 93
        // again, so the check letter is still B.
        assert!(upn_valid("B80120000500B"));
        assert!(!upn_valid("B80120000500C"));
        // I, O and S are never used.
        assert!(!upn_valid("B80120000500I"));
    }
}
