//! Which host ids each zone's user namespace maps to. Every zone with
//! `user_namespace` gets, at create, a range of [`RANGE_SIZE`] ids that no
//! other zone of this host holds, recorded in its `zone.json`; it is free again
//! only when that zone is deleted (its files on disk are owned by the range).
//!
//! Ranges are slots above [`FIRST_BASE`], far from the ids a host's users,
//! `/etc/subuid` (100000+) and systemd-nspawn's picks (below 0x70000000) use.

use crate::isolation::userns::IdRange;

/// Ids per zone: 0..65535, what a distribution expects (nobody is 65534).
pub const RANGE_SIZE: u32 = 65536;
/// The host id of the first slot's zone root.
pub const FIRST_BASE: u32 = 0x8000_0000;
/// Slots available above [`FIRST_BASE`] (the last id, 2^32 − 1, is not an id).
pub const SLOTS: u32 = (u32::MAX - FIRST_BASE) / RANGE_SIZE;

/// The lowest slot at or above `first` that none of `taken` overlaps, if any
/// is left.
pub fn allocate(first: u32, taken: &[IdRange]) -> Option<IdRange> {
    let start_slot = first.saturating_sub(FIRST_BASE) / RANGE_SIZE;
    (start_slot..SLOTS)
        .map(|slot| IdRange {
            host_base: FIRST_BASE + slot * RANGE_SIZE,
            count: RANGE_SIZE,
        })
        .find(|r| !taken.iter().any(|t| overlaps(r, t)))
}

fn overlaps(a: &IdRange, b: &IdRange) -> bool {
    let (a0, a1) = (
        u64::from(a.host_base),
        u64::from(a.host_base) + u64::from(a.count),
    );
    let (b0, b1) = (
        u64::from(b.host_base),
        u64::from(b.host_base) + u64::from(b.count),
    );
    a0 < b1 && b0 < a1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_zone_gets_a_range_no_other_holds() {
        let a = allocate(FIRST_BASE, &[]).unwrap();
        assert_eq!(a.host_base, FIRST_BASE);
        let b = allocate(FIRST_BASE, &[a]).unwrap();
        assert_eq!(b.host_base, FIRST_BASE + RANGE_SIZE);
        // A deleted zone's slot is reused; a held one never.
        assert_eq!(allocate(FIRST_BASE, &[b]).unwrap(), a);
        let odd = IdRange {
            host_base: FIRST_BASE + 10,
            count: 5,
        };
        assert_eq!(allocate(FIRST_BASE, &[odd]).unwrap(), b);
        // The last slot fits below 2^32 − 1.
        let last = FIRST_BASE + (SLOTS - 1) * RANGE_SIZE;
        assert!(u64::from(last) + u64::from(RANGE_SIZE) <= u64::from(u32::MAX));
        let from_last = allocate(last, &[]).unwrap();
        assert_eq!(from_last.host_base, last);
        assert_eq!(allocate(last, &[from_last]), None, "full: no range");
    }
}
