//! `zfadm`: the operator CLI. The commands live in `cli/`, one module per command
//! group (`pki`, `zone`, `host`, `image`, `network`, `cluster`, `controller`,
//! `bench`). It talks to the controllers over the operator API and depends on
//! `zonefleet-proto` only, not on the controller's library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
