//! Linux capability names, as a zone's `limit_priv` lists them.
//!
//! Our own table rather than the `caps` crate: `zfadm` validates specs on operators'
//! workstations, which need not run Linux. The numbers are the kernel's
//! (`include/uapi/linux/capability.h`), so the agent can build bit masks from them.

use super::error::ValueError;
use super::text::text_type;

/// Declares the capability enum and its name table in one place, so the two
/// cannot drift apart.
macro_rules! capabilities {
    ($($variant:ident = $number:literal => $name:literal,)*) => {
        /// One Linux capability (`capabilities(7)`). Written as its canonical
        /// `CAP_*` name; read case-insensitively, with or without the `CAP_` prefix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Capability {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant = $number,
            )*
        }

        impl Capability {
            /// Every capability the kernel knows, in number order.
            pub const ALL: &'static [Capability] = &[$(Capability::$variant,)*];

            /// The canonical name, e.g. `CAP_CHOWN`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Capability::$variant => $name,)*
                }
            }
        }
    };
}

capabilities! {
    Chown = 0 => "CAP_CHOWN",
    DacOverride = 1 => "CAP_DAC_OVERRIDE",
    DacReadSearch = 2 => "CAP_DAC_READ_SEARCH",
    Fowner = 3 => "CAP_FOWNER",
    Fsetid = 4 => "CAP_FSETID",
    Kill = 5 => "CAP_KILL",
    Setgid = 6 => "CAP_SETGID",
    Setuid = 7 => "CAP_SETUID",
    Setpcap = 8 => "CAP_SETPCAP",
    LinuxImmutable = 9 => "CAP_LINUX_IMMUTABLE",
    NetBindService = 10 => "CAP_NET_BIND_SERVICE",
    NetBroadcast = 11 => "CAP_NET_BROADCAST",
    NetAdmin = 12 => "CAP_NET_ADMIN",
    NetRaw = 13 => "CAP_NET_RAW",
    IpcLock = 14 => "CAP_IPC_LOCK",
    IpcOwner = 15 => "CAP_IPC_OWNER",
    SysModule = 16 => "CAP_SYS_MODULE",
    SysRawio = 17 => "CAP_SYS_RAWIO",
    SysChroot = 18 => "CAP_SYS_CHROOT",
    SysPtrace = 19 => "CAP_SYS_PTRACE",
    SysPacct = 20 => "CAP_SYS_PACCT",
    SysAdmin = 21 => "CAP_SYS_ADMIN",
    SysBoot = 22 => "CAP_SYS_BOOT",
    SysNice = 23 => "CAP_SYS_NICE",
    SysResource = 24 => "CAP_SYS_RESOURCE",
    SysTime = 25 => "CAP_SYS_TIME",
    SysTtyConfig = 26 => "CAP_SYS_TTY_CONFIG",
    Mknod = 27 => "CAP_MKNOD",
    Lease = 28 => "CAP_LEASE",
    AuditWrite = 29 => "CAP_AUDIT_WRITE",
    AuditControl = 30 => "CAP_AUDIT_CONTROL",
    Setfcap = 31 => "CAP_SETFCAP",
    MacOverride = 32 => "CAP_MAC_OVERRIDE",
    MacAdmin = 33 => "CAP_MAC_ADMIN",
    Syslog = 34 => "CAP_SYSLOG",
    WakeAlarm = 35 => "CAP_WAKE_ALARM",
    BlockSuspend = 36 => "CAP_BLOCK_SUSPEND",
    AuditRead = 37 => "CAP_AUDIT_READ",
    Perfmon = 38 => "CAP_PERFMON",
    Bpf = 39 => "CAP_BPF",
    CheckpointRestore = 40 => "CAP_CHECKPOINT_RESTORE",
}

impl Capability {
    /// The kernel's number for this capability (its bit in capability masks).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The capability with this kernel number, if there is one.
    pub fn from_number(number: u8) -> Option<Capability> {
        Capability::ALL.get(usize::from(number)).copied()
    }

    /// Reads `CAP_CHOWN`, `cap_chown` or `chown`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        Capability::ALL
            .iter()
            .copied()
            .find(|c| &c.name()[4..] == bare)
            .ok_or_else(|| {
                ValueError::string(
                    s,
                    "is not a Linux capability",
                    "a name from capabilities(7), CAP_CHOWN..CAP_CHECKPOINT_RESTORE",
                )
            })
    }

    fn write(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

text_type!(Capability);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_numbered() {
        assert_eq!(Capability::ALL.len(), 41);
        for (i, c) in Capability::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.number()), i);
            assert_eq!(Capability::from_number(c.number()), Some(*c));
            assert!(c.name().starts_with("CAP_"));
        }
        assert_eq!(Capability::from_number(41), None);
    }

    #[test]
    fn parses_loosely_writes_canonically() {
        for s in ["CAP_NET_RAW", "cap_net_raw", "net_raw", "Net_Raw"] {
            assert_eq!(s.parse::<Capability>().unwrap(), Capability::NetRaw);
        }
        assert_eq!(Capability::NetRaw.to_string(), "CAP_NET_RAW");
        assert_eq!(
            serde_json::to_string(&Capability::Chown).unwrap(),
            "\"CAP_CHOWN\""
        );
        assert_eq!(
            serde_json::from_str::<Capability>("\"kill\"").unwrap(),
            Capability::Kill
        );
    }

    #[test]
    fn refuses_unknown_names() {
        assert_eq!(
            "CAP_BOGUS".parse::<Capability>().unwrap_err().to_string(),
            "\"CAP_BOGUS\" is not a Linux capability; allowed a name from capabilities(7), CAP_CHOWN..CAP_CHECKPOINT_RESTORE"
        );
        assert!("".parse::<Capability>().is_err());
        assert!("CAP_".parse::<Capability>().is_err());
    }
}
