//! Device access rules shared by the v1 `devices` controller and the v2 eBPF filter.

use std::fmt;

/// Which kind of device a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
    /// Both (`a`).
    All,
}

/// Access bits of a rule (v1's `rwm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceAccess {
    /// Read (`r`).
    pub read: bool,
    /// Write (`w`).
    pub write: bool,
    /// mknod (`m`).
    pub mknod: bool,
}

impl DeviceAccess {
    /// Read, write and mknod.
    pub const RWM: DeviceAccess = DeviceAccess {
        read: true,
        write: true,
        mknod: true,
    };
}

impl fmt::Display for DeviceAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One allowed device (or range, with `*` wildcards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    /// Character, block or both.
    pub kind: DeviceKind,
    /// Major number; `None` is `*`.
    pub major: Option<u32>,
    /// Minor number; `None` is `*`.
    pub minor: Option<u32>,
    /// What is allowed.
    pub access: DeviceAccess,
}

impl DeviceRule {
    /// A character device rule with all access.
    pub const fn char(major: u32, minor: Option<u32>) -> Self {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access: DeviceAccess::RWM,
        }
    }

    /// What a zone may use: null, zero, full, random, urandom, tty, ptmx and the
    /// pts range (the zone's own `/dev` holds only these).
    pub fn zone_defaults() -> Vec<DeviceRule> {
        vec![
            DeviceRule::char(1, Some(3)), // null
            DeviceRule::char(1, Some(5)), // zero
            DeviceRule::char(1, Some(7)), // full
            DeviceRule::char(1, Some(8)), // random
            DeviceRule::char(1, Some(9)), // urandom
            DeviceRule::char(5, Some(0)), // tty
            DeviceRule::char(5, Some(2)), // ptmx
            DeviceRule::char(136, None),  // pts/*
        ]
    }
}

/// The v1 `devices.allow` / `devices.list` syntax: `c 1:3 rwm`, `c 136:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
            DeviceKind::All => 'a',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        write!(
            f,
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_syntax() {
        let d = DeviceRule::zone_defaults();
        assert_eq!(d[0].to_string(), "c 1:3 rwm");
        assert_eq!(d[7].to_string(), "c 136:* rwm");
        let r = DeviceRule {
            kind: DeviceKind::Block,
            major: None,
            minor: None,
            access: DeviceAccess {
                read: true,
                write: false,
                mknod: true,
            },
        };
        assert_eq!(r.to_string(), "b *:* rm");
    }
}
