//! `zfadm`: the operator CLI. The commands live in `controller/src/cli/`, one module per
//! command group (`pki` today; `zone`, `host`, `cluster`… to come).

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
