//! Facts about this host boot and its processes, read from `/proc`.

use std::fs;

/// This host boot's id, which changes at every reboot.
pub fn current_boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process's start time in clock ticks since boot, or `None` if it is gone.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after
    // the last ')' are unambiguous. starttime is field 22, the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A process's parent pid, or `None` if it is gone.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // ppid is field 4, the 2nd after the command name (see process_start_ticks).
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a process has exited and waits to be reaped (state `Z` or `X`).
pub fn is_zombie(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable_and_stable() {
        let me = std::process::id() as i32;
        let a = process_start_ticks(me).expect("own stat");
        assert_eq!(Some(a), process_start_ticks(me));
        assert_eq!(process_start_ticks(i32::MAX), None);
        assert!(!is_zombie(me));
        let parent = i32::try_from(std::os::unix::process::parent_id()).unwrap();
        assert_eq!(parent_pid(me), Some(parent));
        assert_eq!(parent_pid(i32::MAX), None);
        assert!(current_boot_id().is_some_and(|b| !b.is_empty()));
    }
}
