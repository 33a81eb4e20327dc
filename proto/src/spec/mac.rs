//! MAC addresses of zone NICs.

use std::fmt;

use super::error::ValueError;
use super::text::text_type;

/// An Ethernet MAC address, written as six lowercase hex pairs joined by ':'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Reads `aa:bb:cc:dd:ee:ff` (either case, ':' or '-' between pairs).
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let refuse = || {
            ValueError::string(
                s,
                "is not a MAC address",
                "six hex pairs joined by ':', e.g. \"02:00:00:0a:00:05\"",
            )
        };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(refuse());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            // from_str_radix alone would take "+2".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(refuse());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| refuse())?;
        }
        Ok(MacAddr(bytes))
    }

    /// A group (multicast or broadcast) address: the low bit of the first octet.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// A locally administered address (the kind zonefleet generates).
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }

    /// A NIC's own address must be unicast and not all zeros.
    pub(crate) fn check_unicast(&self) -> Result<(), ValueError> {
        if self.is_multicast() || self.0 == [0; 6] {
            Err(ValueError::string(
                &self.to_string(),
                "is not a unicast address",
                "a non-zero MAC whose first octet is even",
            ))
        } else {
            Ok(())
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

text_type!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes() {
        let mac: MacAddr = "02-00-0A-00-00-05".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:0a:00:00:05");
        assert!(mac.is_local() && !mac.is_multicast());
        for bad in [
            "",
            "02:00:0a:00:00",
            "02:00:0a:00:00:05:06",
            "02:00:0a:00:00:5",
            "zz:00:0a:00:00:05",
            "+2:00:0a:00:00:05",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unicast_only() {
        assert!("02:00:00:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .check_unicast()
            .is_ok());
        assert_eq!(
            "01:00:5e:00:00:01".parse::<MacAddr>().unwrap().check_unicast().unwrap_err().to_string(),
            "\"01:00:5e:00:00:01\" is not a unicast address; allowed a non-zero MAC whose first octet is even"
        );
        assert!("00:00:00:00:00:00"
            .parse::<MacAddr>()
            .unwrap()
            .check_unicast()
            .is_err());
        assert!("ff:ff:ff:ff:ff:ff"
            .parse::<MacAddr>()
            .unwrap()
            .check_unicast()
            .is_err());
    }
}
