//! How a command prints: aligned columns for people, pretty JSON for scripts.

use std::io::Write;

/// Output format of a command (`-o table|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON.
    Json,
}

/// Writes `rows` under `header` as columns padded to their widest cell, two spaces
/// apart, each line without trailing blanks.
pub fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    writeln!(out, "{}", line(&header))?;
    for row in rows {
        writeln!(out, "{}", line(&row))?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON and a newline.
pub fn write_json<T: serde::Serialize + ?Sized>(
    out: &mut dyn Write,
    value: &T,
) -> std::io::Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell_and_lines_trimmed() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["UUID", "ALIAS", "MESSAGE"],
            vec![
                vec!["u-1".into(), "web".into(), String::new()],
                vec!["u-2-longer".into(), "-".into(), "pending".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "UUID        ALIAS  MESSAGE\nu-1         web\nu-2-longer  -      pending\n"
        );
    }

    #[test]
    fn json_is_pretty_with_a_newline() {
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({"a": [1]})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}\n"
        );
    }
}
