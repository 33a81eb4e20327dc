//! The checks shared by every document: one function per rule, each returning the
//! [`ValueError`] that names the value and what is allowed.

use std::fmt::Display;
use std::net::IpAddr;

use ipnet::IpNet;

use super::error::ValueError;

/// What a DNS label may be (alias, hostname, group names, network names).
pub(crate) const DNS_LABEL_ALLOWED: &str =
    "1 to 63 letters, digits and '-', not starting or ending with '-'";

/// `lo..=hi` with its unit, e.g. `16..=16777216 (MiB)`.
pub(crate) fn range<T: PartialOrd + Display>(
    value: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<(), ValueError> {
    if value >= lo && value <= hi {
        return Ok(());
    }
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" ({unit})")
    };
    Err(ValueError::new(
        value.to_string(),
        "is out of range",
        format!("{lo}..={hi}{unit}"),
    ))
}

/// A DNS label (RFC 1123): 1..=63 letters, digits and '-', not starting or ending with '-'.
pub(crate) fn dns_label(s: &str) -> Result<(), ValueError> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(ValueError::string(
            s,
            "is not a DNS label",
            DNS_LABEL_ALLOWED,
        ))
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name: DNS labels joined by '.', at most 253 characters, no trailing dot.
pub(crate) fn dns_name(s: &str) -> Result<(), ValueError> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(ValueError::string(
            s,
            "is not a DNS name",
            "DNS labels (letters, digits and '-') joined by '.', at most 253 characters",
        ))
    }
}

/// A label key or value as hosts and constraints use them (`rack`, `r1`, `ssd`).
pub(crate) fn label_word(s: &str) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValueError::string(
            s,
            "is not a label word",
            "1 to 63 letters, digits, '.', '_', '-' or '/'",
        ))
    }
}

/// `len` characters of `extra` punctuation, letters and digits, starting with a
/// letter or digit: the shape of image names and versions and of owners.
fn word(s: &str, max: usize, extra: &[u8], what: &str, allowed: &str) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValueError::string(s, format!("is not {what}"), allowed))
    }
}

/// An image name: 1..=128 letters, digits, '.', '_', '-', starting with a letter or digit.
pub(crate) fn image_name(s: &str) -> Result<(), ValueError> {
    word(
        s,
        128,
        b"._-",
        "an image name",
        "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
    )
}

/// An image version: 1..=128 letters, digits, '.', '_', '-', '+', '~', starting with a
/// letter or digit ('~' as Debian versions use it, `1.0~rc1`).
pub(crate) fn image_version(s: &str) -> Result<(), ValueError> {
    word(
        s,
        128,
        b"._-+~",
        "an image version",
        "1 to 128 letters, digits, '.', '_', '-', '+' or '~', starting with a letter or digit",
    )
}

/// An owner: a short identifier such as `alice`, `team-web` or `alice@example.com`.
pub(crate) fn owner(s: &str) -> Result<(), ValueError> {
    word(
        s,
        64,
        b"._-@",
        "an owner identifier",
        "1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit",
    )
}

/// A VLAN ID: 1..=4094 (0 and 4095 are reserved by 802.1Q).
pub(crate) fn vlan_id(v: u32) -> Result<(), ValueError> {
    range(v, 1, 4094, "802.1Q VLAN ID")
}

/// An MTU: 576 (the IPv4 minimum datagram) ..= 9216 (jumbo frames).
pub(crate) fn mtu(v: u32) -> Result<(), ValueError> {
    range(v, 576, 9216, "bytes")
}

/// At most 3 resolvers: the glibc resolver reads no more (`MAXNS`).
pub(crate) fn resolver_count(n: usize) -> Result<(), ValueError> {
    if n <= 3 {
        Ok(())
    } else {
        Err(ValueError::new(
            format!("{n} resolvers"),
            "is too many",
            "at most 3 (resolv.conf's MAXNS)",
        ))
    }
}

/// `addr` lies inside `net`, in the same address family.
pub(crate) fn in_subnet(addr: IpAddr, net: &IpNet) -> Result<(), ValueError> {
    if addr.is_ipv4() != net.addr().is_ipv4() {
        let family = if net.addr().is_ipv4() { "IPv4" } else { "IPv6" };
        return Err(ValueError::string(
            &addr.to_string(),
            "is not in the same address family",
            format!("an {family} address inside {}", net.trunc()),
        ));
    }
    if net.contains(&addr) {
        Ok(())
    } else {
        Err(ValueError::string(
            &addr.to_string(),
            "is outside the subnet",
            format!("an address inside {}", net.trunc()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(range(16u64, 16, 20, "MiB").is_ok());
        assert!(range(20u64, 16, 20, "MiB").is_ok());
        assert_eq!(
            range(21u64, 16, 20, "MiB").unwrap_err().to_string(),
            "21 is out of range; allowed 16..=20 (MiB)"
        );
        assert_eq!(
            range(0u32, 1, 2, "").unwrap_err().to_string(),
            "0 is out of range; allowed 1..=2"
        );
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "web-1", "A0", &"x".repeat(63)] {
            assert!(dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a.b", "../etc", "a_b", &"x".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names() {
        assert!(dns_name("example.com").is_ok());
        assert!(dns_name("a").is_ok());
        for bad in [
            "",
            "example.com.",
            "a..b",
            "-a.com",
            &format!("{}.com", vec!["x".repeat(63); 4].join(".")),
        ] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_words() {
        assert!(label_word("topology.io/rack_1").is_ok());
        for bad in ["", "a b", "a=b", "a,b", "a(b", &"x".repeat(64)] {
            assert!(label_word(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn words() {
        assert!(image_name("base-64.lts_2").is_ok());
        assert!(image_name(".hidden").is_err());
        assert!(image_name("a@b").is_err());
        assert!(image_version("24.4.0+build1").is_ok());
        assert!(image_version("1 0").is_err());
        assert!(image_version("1.2.3-rc.1+build~x").is_ok());
        assert!(image_version(&"1".repeat(128)).is_ok());
        for bad in ["", ".1", "1@2", "1/2", "1:2", &"1".repeat(129)] {
            assert!(image_version(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "-x", "a@b", "a:b", "a/b", "a b", &"x".repeat(129)] {
            assert!(image_name(bad).is_err(), "{bad:?}");
        }
        assert!(owner("alice@example.com").is_ok());
        assert!(owner("alice smith").is_err());
        assert!(owner(&"a".repeat(65)).is_err());
    }

    #[test]
    fn subnets() {
        let net: IpNet = "10.0.0.5/24".parse().unwrap();
        assert!(in_subnet("10.0.0.1".parse().unwrap(), &net).is_ok());
        assert_eq!(
            in_subnet("10.0.1.1".parse().unwrap(), &net)
                .unwrap_err()
                .to_string(),
            "\"10.0.1.1\" is outside the subnet; allowed an address inside 10.0.0.0/24"
        );
        assert_eq!(
            in_subnet("fd00::1".parse().unwrap(), &net).unwrap_err().to_string(),
            "\"fd00::1\" is not in the same address family; allowed an IPv4 address inside 10.0.0.0/24"
        );
    }

    #[test]
    fn small_numbers() {
        assert!(vlan_id(0).is_err() && vlan_id(4095).is_err() && vlan_id(1).is_ok());
        assert!(mtu(575).is_err() && mtu(9217).is_err() && mtu(1500).is_ok());
        assert!(resolver_count(3).is_ok());
        assert_eq!(
            resolver_count(4).unwrap_err().to_string(),
            "4 resolvers is too many; allowed at most 3 (resolv.conf's MAXNS)"
        );
    }
}
