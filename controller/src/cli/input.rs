//! Reading what operators hand `zfadm`: a file, or `-` for standard input.

use std::path::Path;

use anyhow::Context;

pub(super) fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))
    }
}
