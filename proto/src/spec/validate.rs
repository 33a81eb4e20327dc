//! Validation of a whole zone spec: every problem at once, each naming its field.

use super::check;
use super::defaults::DEFAULT_MAX_PHYSICAL_MEMORY;
use super::error::{Problems, ValidationErrors, ValueError};
use super::limits::{
    CPU_CAP, CPU_SHARES, IO_PRIORITY, MAX_LWPS, MEMORY_MIB, METADATA_BYTES, QUOTA_GIB, TMPFS_MIB,
};
use super::nic::check_nics;
use super::zone::ZoneSpec;

impl ZoneSpec {
    /// Checks every rule of `docs/zone-spec.md` and returns every problem found, in
    /// field order, each as `{field}: {value} {problem}; allowed {allowed}`.
    /// Absent properties are not checked (their defaults are valid), except that
    /// `max_swap` is compared with the memory the zone will get.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut p = Problems::default();
        if let Some(uuid) = self.uuid.filter(uuid::Uuid::is_nil) {
            p.push(
                "uuid",
                ValueError::string(&uuid.to_string(), "is the nil UUID", "any other UUID"),
            );
        }
        if let Some(alias) = &self.alias {
            p.check("alias", check::dns_label(alias));
        }
        for problem in self.image.check() {
            p.push("image", problem);
        }
        self.check_resources(&mut p);
        self.check_limit_priv(&mut p);
        check_nics(&self.nics, &mut p);
        if let Some(hostname) = &self.hostname {
            p.check("hostname", check::dns_label(hostname));
        }
        p.check("resolvers", check::resolver_count(self.resolvers.len()));
        if let Some(domain) = &self.dns_domain {
            p.check("dns_domain", check::dns_name(domain));
        }
        self.check_metadata(&mut p);
        self.check_init(&mut p);
        if let Some(owner) = &self.owner {
            p.check("owner", check::owner(owner));
        }
        if let Some(placement) = &self.placement {
            placement.check("placement", &mut p);
        }
        p.finish()
    }

    fn check_resources(&self, p: &mut Problems) {
        let (lo, hi) = (*MEMORY_MIB.start(), *MEMORY_MIB.end());
        if let Some(memory) = self.max_physical_memory {
            p.check("max_physical_memory", check::range(memory, lo, hi, "MiB"));
        }
        if let Some(swap) = self.max_swap {
            // memsw counts memory and swap together, so it can't be below memory.
            let memory = self
                .max_physical_memory
                .unwrap_or(DEFAULT_MAX_PHYSICAL_MEMORY);
            let floor = memory.clamp(lo, hi);
            p.check(
                "max_swap",
                check::range(swap, floor, hi, "MiB, at least max_physical_memory"),
            );
        }
        let ranges = [
            ("cpu_cap", self.cpu_cap, &CPU_CAP, "% of one CPU"),
            (
                "cpu_shares",
                self.cpu_shares,
                &CPU_SHARES,
                "relative weight",
            ),
            (
                "max_lwps",
                self.max_lwps,
                &MAX_LWPS,
                "processes and threads",
            ),
            (
                "io_priority",
                self.io_priority,
                &IO_PRIORITY,
                "relative weight",
            ),
            ("quota", self.quota, &QUOTA_GIB, "GiB"),
            ("tmpfs", self.tmpfs, &TMPFS_MIB, "MiB"),
        ];
        for (field, value, range, unit) in ranges {
            if let Some(value) = value {
                p.check(
                    field,
                    check::range(value, *range.start(), *range.end(), unit),
                );
            }
        }
    }

    fn check_limit_priv(&self, p: &mut Problems) {
        let Some(caps) = &self.limit_priv else { return };
        for (i, cap) in caps.iter().enumerate() {
            if let Some(first) = caps[..i].iter().position(|c| c == cap) {
                p.push(
                    format!("limit_priv[{i}]"),
                    ValueError::string(
                        cap.name(),
                        format!("duplicates limit_priv[{first}]"),
                        "each capability once",
                    ),
                );
            }
        }
    }

    fn check_metadata(&self, p: &mut Problems) {
        let bytes: usize = self
            .customer_metadata
            .iter()
            .chain(&self.tags)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if bytes > METADATA_BYTES {
            p.push(
                "customer_metadata",
                ValueError::new(
                    format!("{bytes} bytes"),
                    "is too large (with tags)",
                    format!("at most {METADATA_BYTES} bytes of keys and values in customer_metadata and tags together"),
                ),
            );
        }
    }

    fn check_init(&self, p: &mut Problems) {
        let Some(argv) = &self.init else { return };
        if argv.is_empty() {
            p.push(
                "init",
                ValueError::new(
                    "[]",
                    "is empty",
                    "an argv whose first element is an absolute path",
                ),
            );
        }
        if let Some(argv0) = argv.first().filter(|a| !a.starts_with('/')) {
            p.push(
                "init[0]",
                ValueError::string(argv0, "is not an absolute path", "a path starting with '/'"),
            );
        }
        for (i, arg) in argv.iter().enumerate() {
            if arg.contains('\0') {
                // execve(2) takes C strings: a NUL would silently cut the argument.
                p.push(
                    format!("init[{i}]"),
                    ValueError::string(arg, "contains a NUL byte", "text without NUL bytes"),
                );
            }
        }
    }
}
