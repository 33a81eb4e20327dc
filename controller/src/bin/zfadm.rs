//! `zfadm`: the operator CLI.
fn main() {}
