//! Process limits a daemon raises at start: every connection a controller or agent
//! serves is a file descriptor, and the usual soft limit (1024) is what a flood of
//! idle connections exhausts first.

/// Raises the open-file soft limit to the hard limit; the limit before and after.
pub fn raise_open_files() -> Result<(u64, u64), nix::Error> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

/// [`raise_open_files`], saying what it did (or why not) in the daemon's log.
pub fn raise_open_files_and_say() {
    match raise_open_files() {
        Ok((before, after)) if before < after => {
            tracing::info!(
                before,
                after,
                "raised the open-file soft limit to the hard limit"
            )
        }
        Ok((_, limit)) => tracing::info!(limit, "open-file limit already at its hard limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let (_, after) = super::raise_open_files().unwrap();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(after, hard);
    }
}
