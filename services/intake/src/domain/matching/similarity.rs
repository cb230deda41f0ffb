//! Jaro-Winkler similarity, for names that differ by a typing slip (`Jonson` / `Johnson`).
//! Implemented here because it is short and the inputs are short: no allocation for names of up
//! to 64 characters (longer names are compared on their first 64).

const MAX: usize = 64;

/// Jaro-Winkler similarity in `0.0..=1.0` (1.0 = identical), with the usual prefix scale 0.1
/// over at most four leading characters.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a.is_ascii() && b.is_ascii() {
        jw(
            &a.as_bytes()[..a.len().min(MAX)],
            &b.as_bytes()[..b.len().min(MAX)],
        )
    } else {
        let mut ca = ['\0'; MAX];
        let mut cb = ['\0'; MAX];
        let na = fill(&mut ca, a);
        let nb = fill(&mut cb, b);
        jw(&ca[..na], &cb[..nb])
    }
}

fn fill(buf: &mut [char; MAX], s: &str) -> usize {
    let mut n = 0;
    for (slot, c) in buf.iter_mut().zip(s.chars()) {
        *slot = c;
        n += 1;
    }
    n
}

fn jw<T: PartialEq + Copy>(a: &[T], b: &[T]) -> f64 {
    let j = jaro(a, b);
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    j + prefix as f64 * 0.1 * (1.0 - j)
}

fn jaro<T: PartialEq + Copy>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_used = 0u64;
    let mut a_used = 0u64;
    let mut matches = 0usize;
    for (i, x) in a.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for (j, y) in b.iter().enumerate().take(hi).skip(lo) {
            if b_used & (1 << j) == 0 && y == x {
                b_used |= 1 << j;
                a_used |= 1 << i;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut transpositions = 0usize;
    let mut j = 0usize;
    for (i, x) in a.iter().enumerate() {
        if a_used & (1 << i) == 0 {
            continue;
        }
        while b_used & (1 << j) == 0 {
            j += 1;
        }
        if *x != b[j] {
            transpositions += 1;
        }
        j += 1;
    }
    let m = matches as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - transpositions as f64 / 2.0) / m) / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.001
    }

    #[test]
    fn textbook_values() {
        assert!(close(jaro_winkler("martha", "marhta"), 0.961));
        assert!(close(jaro_winkler("dwayne", "duane"), 0.840));
        assert!(close(jaro_winkler("dixon", "dicksonx"), 0.813));
        assert!(close(jaro_winkler("same", "same"), 1.0));
        assert!(close(jaro_winkler("abc", "xyz"), 0.0));
        assert!(close(jaro_winkler("", ""), 1.0));
        assert!(close(jaro_winkler("a", ""), 0.0));
    }

    #[test]
    fn non_ascii_and_long_names() {
        assert!(close(jaro_winkler("zoë", "zoë"), 1.0));
        assert!(jaro_winkler("zoë", "zoe") > 0.8);
        let long = "a".repeat(100);
        assert!(close(jaro_winkler(&long, &long), 1.0));
    }
}
