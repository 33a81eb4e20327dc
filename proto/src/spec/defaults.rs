//! vmadm-like defaults for what a spec leaves out.

use uuid::Uuid;

use super::capability::Capability;
use super::limits::TMPFS_MIB;
use super::placement::RuleMode;
use super::zone::{Brand, OnHostLost, ZoneSpec};

/// `max_physical_memory` when absent, MiB.
pub const DEFAULT_MAX_PHYSICAL_MEMORY: u64 = 256;
/// The smallest `max_swap` filled in, MiB: `max(max_physical_memory, 256)`.
pub const DEFAULT_MIN_SWAP: u64 = 256;
/// `cpu_shares` when absent.
pub const DEFAULT_CPU_SHARES: u32 = 100;
/// `max_lwps` when absent.
pub const DEFAULT_MAX_LWPS: u32 = 2000;
/// `io_priority` when absent.
pub const DEFAULT_IO_PRIORITY: u32 = 100;
/// `quota` when absent, GiB.
pub const DEFAULT_QUOTA: u32 = 10;
/// `init` when absent.
pub const DEFAULT_INIT: &str = "/sbin/init";

/// `limit_priv` when absent: Docker's default set less `CAP_MKNOD` (a zone sees no
/// devices and must not make any).
pub const DEFAULT_LIMIT_PRIV: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::SysChroot,
    Capability::AuditWrite,
    Capability::Setfcap,
    // reboot(2) from inside a zone only ends the zone's own PID namespace (the
    // kernel turns it into SIGHUP or SIGINT for the zone's init: see zsched), so
    // `reboot` and `poweroff` inside a zone act on that zone alone.
    Capability::SysBoot,
];

impl ZoneSpec {
    /// Fills in every property left out, as vmadm would: a new uuid, brand `os`,
    /// 256 MiB of memory, `max_swap = max(memory, 256)`, 100 CPU shares, 2000
    /// lwps, I/O priority 100, a 10 GiB quota, `tmpfs = memory` (at most 1 TiB), the default
    /// capability set, `init ["/sbin/init"]`, `autoboot false`, `on_host_lost
    /// wait`. The first NIC becomes primary when none is, spoofing flags become
    /// false, and a present placement's modes become `hard`. `cpu_cap` stays
    /// absent (uncapped), and so do what only the operator can know (alias,
    /// hostname, owner, resolvers, placement).
    pub fn with_defaults(mut self) -> Self {
        self.uuid.get_or_insert_with(Uuid::new_v4);
        self.brand.get_or_insert(Brand::Os);
        let memory = *self
            .max_physical_memory
            .get_or_insert(DEFAULT_MAX_PHYSICAL_MEMORY);
        self.max_swap.get_or_insert(memory.max(DEFAULT_MIN_SWAP));
        self.cpu_shares.get_or_insert(DEFAULT_CPU_SHARES);
        self.max_lwps.get_or_insert(DEFAULT_MAX_LWPS);
        self.io_priority.get_or_insert(DEFAULT_IO_PRIORITY);
        self.quota.get_or_insert(DEFAULT_QUOTA);
        // Kept inside tmpfs's own range: a huge zone still gets a valid /tmp, and a
        // bad memory size is reported once, by validate(), not twice.
        let tmpfs = memory.clamp(u64::from(*TMPFS_MIB.start()), u64::from(*TMPFS_MIB.end()));
        self.tmpfs
            .get_or_insert(u32::try_from(tmpfs).unwrap_or(u32::MAX));
        self.limit_priv
            .get_or_insert_with(|| DEFAULT_LIMIT_PRIV.to_vec());
        self.init
            .get_or_insert_with(|| vec![DEFAULT_INIT.to_string()]);
        self.autoboot.get_or_insert(false);
        self.user_namespace.get_or_insert(true);
        self.on_host_lost.get_or_insert(OnHostLost::Wait);
        let has_primary = self.nics.iter().any(|n| n.primary == Some(true));
        for (i, nic) in self.nics.iter_mut().enumerate() {
            nic.primary.get_or_insert(i == 0 && !has_primary);
            nic.allow_ip_spoofing.get_or_insert(false);
            nic.allow_mac_spoofing.get_or_insert(false);
        }
        if let Some(placement) = &mut self.placement {
            if let Some(spread) = &mut placement.spread {
                spread.mode.get_or_insert(RuleMode::Hard);
            }
            for affinity in &mut placement.affinity {
                affinity.mode.get_or_insert(RuleMode::Hard);
            }
        }
        self
    }
}
