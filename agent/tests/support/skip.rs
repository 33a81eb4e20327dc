//! The one way a test skips: when the host lacks what the test needs, it says
//! so and returns — except under CI (`CI=true`), where a test that cannot check
//! what it is for is a failure, not a pass.
//!
//! Shared by the integration tests (`tests/support/`) and the library's own
//! unit tests (included by path from `src/lib.rs`).

/// Skips `test` because of `why`: panics under `CI=true`, else prints
/// `SKIP <test>: <why>`. Returns false, so a test can `return` on it.
pub fn skip(test: &str, why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: cannot run under CI=true (a failure, not a skip): {why}");
    }
    eprintln!("SKIP {test}: {why}");
    false
}

/// Whether `test` may run: `present`, or else [`skip`] naming `what` it needs.
pub fn require(test: &str, what: &str, present: bool) -> bool {
    present || skip(test, &format!("needs {what}"))
}

/// Whether a privileged test may run: root, or else [`skip`].
pub fn privileged(test: &str) -> bool {
    require(test, "root", nix::unistd::geteuid().is_root())
}
