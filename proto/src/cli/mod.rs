//! The toolkit both command lines share (`zfadm` and `zonefleet-agent`): reading a
//! spec from a file or standard input, the output format flag, aligned tables and
//! pretty JSON, and what their benchmarks report.
//!
//! Behind the `cli` feature (it brings clap), so that a library user of the
//! contract does not build a command-line parser.

pub mod bench;
pub mod input;
pub mod output;

pub use bench::percentile;
pub use input::{read_input, InputError};
pub use output::{table, write_json, Format};
