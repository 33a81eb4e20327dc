//! The "semver-ish" order of image versions, which decides what `name` without
//! `@version` means: the highest version.
//!
//! Rules: build metadata after `+` is ignored; the rest splits at the first `-` into
//! a core and a pre-release. Cores compare `.`-segment by segment: numeric segments
//! numerically (leading zeros ignored, any length), a numeric segment below an
//! alphanumeric one, alphanumeric ones bytewise, a missing segment as `0` (so `1.0`
//! equals `1.0.0`). A version without a pre-release is above the same core with one
//! (`1.0.0-rc.1 < 1.0.0`); pre-releases compare segment-wise, a shorter prefix first.
//! Versions that compare equal are told apart by the caller ([`super::highest`]: the
//! last given).

use std::cmp::Ordering;

/// Compares two image versions by the rules of this module.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split(a);
    let (b_core, b_pre) = split(b);
    compare_core(a_core, b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_pre(x, y),
    })
}

/// Splits off build metadata, then the pre-release.
fn split(v: &str) -> (&str, Option<&str>) {
    let v = v.split_once('+').map_or(v, |(v, _)| v);
    match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    }
}

fn compare_core(a: &str, b: &str) -> Ordering {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let ord = compare_segment(x.unwrap_or("0"), y.unwrap_or("0"));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = compare_segment(x, y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_segment(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => {
            // Compare as numbers of any length without parsing: strip leading zeros,
            // then the longer is larger, then bytewise.
            let a = a.trim_start_matches('0');
            let b = b.trim_start_matches('0');
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        let sorted = [
            "0",
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-beta",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2",
            "1.10",
            "1.10.1",
            "2",
            "2.a",
            "10",
            "99999999999999999999999",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn equal_versions() {
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0+a", "1.0+b"), Ordering::Equal);
        assert_eq!(compare_versions("01.2", "1.2"), Ordering::Equal);
    }

    #[test]
    fn dates_order_as_expected() {
        assert_eq!(compare_versions("20240115", "20231231"), Ordering::Greater);
        assert_eq!(
            compare_versions("2024.01.15", "2023.12.31"),
            Ordering::Greater
        );
    }
}
