//! Reading what an operator hands a command: a file, or `-` for standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A command's input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Standard input (`-`) could not be read.
    #[error("read stdin")]
    Stdin(#[source] std::io::Error),
    /// The named file could not be read.
    #[error("read {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// The whole of `path` as text; `-` reads standard input.
pub fn read_input(path: &Path) -> Result<String, InputError> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(InputError::Stdin)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|error| InputError::File {
            path: path.to_owned(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec.json");
        std::fs::write(&path, "{}").unwrap();
        assert_eq!(read_input(&path).unwrap(), "{}");
        let missing = dir.path().join("missing.json");
        let err = read_input(&missing).unwrap_err();
        assert_eq!(err.to_string(), format!("read {}", missing.display()));
    }
}
