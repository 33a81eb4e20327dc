//! The toolkit both command lines share (`zfadm` and `zonefleet-agent`): reading a
//! spec from a file or standard input, the output format flag, aligned tables and
//! pretty JSON, what their benchmarks report, and a terminal in raw mode.
//!
//! Behind the `cli` feature (it brings clap), so that a library user of the
//! contract does not build a command-line parser.

pub mod bench;
pub mod input;
pub mod output;
pub mod terminal;

pub use bench::percentile;
pub use input::{read_input, InputError};
pub use output::{table, write_json, Format};
pub use terminal::RawMode;
