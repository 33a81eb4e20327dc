//! [`Limits`]: the numbers a zone is held to, and their conversions to what each
//! cgroup version's files want.

use zonefleet_proto::spec::{
    cpu_cap_to_cfs_quota_us, cpu_shares_to_weight, io_priority_to_weight, CPU_SHARES, IO_PRIORITY,
};

use super::devices::DeviceRule;
use super::CgroupError;

/// The CFS period every zone uses, in microseconds: `cpu_cap` 100 (one CPU) is a
/// quota of one full period.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Largest `cpu_cap` accepted: 1000 CPUs.
pub const MAX_CPU_CAP: u32 = 100_000;

/// The resource limits of one zone, in plain numbers (the spec crate converts its
/// MiB and names into these). `None` means unlimited (or, for `devices`, no device
/// filter at all: only for the global zone's own use and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory the zone may use, bytes (`max_physical_memory`). Rounded down to a
    /// page by the kernel; the read-back expects that rounding.
    pub memory_bytes: Option<u64>,
    /// Memory plus swap, bytes (`max_swap`): v1 `memory.memsw.limit_in_bytes`; v2
    /// `memory.swap.max` gets the difference with `memory_bytes`. Needs
    /// `memory_bytes` and must be at least as large.
    pub memory_swap_bytes: Option<u64>,
    /// CPU cap in % of one CPU (`cpu_cap`; 100 = one CPU, 250 = two and a half).
    pub cpu_cap_percent: Option<u32>,
    /// Relative CPU weight on the v1 `cpu.shares` scale (`cpu_shares`), 2..=262144.
    pub cpu_shares: Option<u64>,
    /// Processes plus threads (`max_lwps`).
    pub pids_max: Option<u64>,
    /// Relative I/O weight on the v1 `blkio.weight` scale (`io_priority`), 10..=1000.
    pub io_weight: Option<u16>,
    /// The devices the zone may use; every other device is denied. `None`: no
    /// device restriction.
    pub devices: Option<Vec<DeviceRule>>,
}

impl Limits {
    /// The limits every zone gets unless its spec says more: no resource limit, the
    /// zone device allow list ([`DeviceRule::zone_defaults`]).
    pub fn zone_defaults() -> Self {
        Limits {
            devices: Some(DeviceRule::zone_defaults()),
            ..Limits::default()
        }
    }

    /// Checks every field's range; the error names the field, value and range.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let bad = |field: &'static str, value: String, allowed: String| {
            Err(CgroupError::InvalidLimit {
                field,
                value,
                allowed,
            })
        };
        if let Some(m) = self.memory_bytes {
            if m < 4096 {
                return bad("memory_bytes", m.to_string(), ">= 4096".into());
            }
        }
        if let Some(s) = self.memory_swap_bytes {
            match self.memory_bytes {
                None => {
                    return bad(
                        "memory_swap_bytes",
                        s.to_string(),
                        "only together with memory_bytes".into(),
                    )
                }
                Some(m) if s < m => {
                    return bad(
                        "memory_swap_bytes",
                        s.to_string(),
                        format!(">= memory_bytes ({m})"),
                    )
                }
                Some(_) => {}
            }
        }
        if let Some(c) = self.cpu_cap_percent {
            if !(1..=MAX_CPU_CAP).contains(&c) {
                return bad(
                    "cpu_cap_percent",
                    c.to_string(),
                    format!("1..={MAX_CPU_CAP}"),
                );
            }
        }
        if let Some(s) = self.cpu_shares {
            // The v1 range, proto's `CPU_SHARES`.
            if !u32::try_from(s).is_ok_and(|s| CPU_SHARES.contains(&s)) {
                return bad("cpu_shares", s.to_string(), "2..=262144".into());
            }
        }
        if let Some(p) = self.pids_max {
            // pids.max is an int in the kernel.
            if !(1..=i32::MAX as u64).contains(&p) {
                return bad("pids_max", p.to_string(), format!("1..={}", i32::MAX));
            }
        }
        if let Some(w) = self.io_weight {
            // The v1 `blkio.weight` range, proto's `IO_PRIORITY`.
            if !IO_PRIORITY.contains(&u32::from(w)) {
                return bad("io_weight", w.to_string(), "10..=1000".into());
            }
        }
        Ok(())
    }
}

/// CFS quota in microseconds per [`CPU_PERIOD_US`] for a cap in % of one CPU
/// (proto's conversion at the agent's period).
pub fn cpu_quota_us(cap_percent: u32) -> u64 {
    cpu_cap_to_cfs_quota_us(cap_percent, CPU_PERIOD_US)
}

/// v2 `cpu.weight` for v1 `cpu.shares` (proto's conversion, runc's formula;
/// shares beyond `u32` clamp to the top of the range).
pub fn shares_to_weight(shares: u64) -> u64 {
    u64::from(cpu_shares_to_weight(
        u32::try_from(shares).unwrap_or(u32::MAX),
    ))
}

/// v2 `io.weight` for a v1 `blkio.weight` (proto's conversion, runc's
/// formula). `io.bfq.weight` keeps the v1 scale (BFQ's own range is 1..=1000).
pub fn io_weight_v2(weight: u16) -> u64 {
    u64::from(io_priority_to_weight(u32::from(weight)))
}

/// The value the kernel stores for a memory limit of `bytes`: whole pages.
pub(crate) fn page_rounded(bytes: u64) -> u64 {
    let page = page_size();
    bytes / page * page
}

/// The system's page size.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(cpu_quota_us(50), 50_000);
        assert_eq!(cpu_quota_us(100), 100_000);
        assert_eq!(cpu_quota_us(250), 250_000);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(io_weight_v2(10), 1);
        assert_eq!(io_weight_v2(500), 4950);
        assert_eq!(io_weight_v2(1000), 10_000);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(Limits::default().validate().is_ok());
        assert!(Limits::zone_defaults().validate().is_ok());
        let cases: [(Limits, &str); 6] = [
            (
                Limits {
                    memory_swap_bytes: Some(1 << 20),
                    ..Limits::default()
                },
                "memory_swap_bytes",
            ),
            (
                Limits {
                    memory_bytes: Some(2 << 20),
                    memory_swap_bytes: Some(1 << 20),
                    ..Limits::default()
                },
                "memory_swap_bytes",
            ),
            (
                Limits {
                    cpu_cap_percent: Some(0),
                    ..Limits::default()
                },
                "cpu_cap_percent",
            ),
            (
                Limits {
                    cpu_shares: Some(1),
                    ..Limits::default()
                },
                "cpu_shares",
            ),
            (
                Limits {
                    pids_max: Some(0),
                    ..Limits::default()
                },
                "pids_max",
            ),
            (
                Limits {
                    io_weight: Some(1001),
                    ..Limits::default()
                },
                "io_weight",
            ),
        ];
        for (limits, field) in cases {
            match limits.validate() {
                Err(CgroupError::InvalidLimit { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
