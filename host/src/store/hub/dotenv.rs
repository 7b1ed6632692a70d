//! The `.env` file of the working folder, read as the Python tools read it (python-dotenv): the
//! hub's variables may be kept there instead of in the environment. Only the names asked for are
//! looked up; the process environment is never changed, and a variable set in the environment
//! wins over the file.
//!
//! The file is local configuration, but it is still checked: it is read up to
//! [`MAX_DOTENV_BYTES`], and a line that is not `NAME=VALUE` (optionally after `export `) is
//! skipped.

use std::io::Read;
use std::path::Path;

/// Most bytes of a `.env` file read; the rest is ignored.
pub const MAX_DOTENV_BYTES: u64 = 64 * 1024;

/// The value of `name` in the `.env` file at `path`, if the file exists and sets it (the last
/// assignment wins, as in python-dotenv).
pub fn dotenv_var(path: &Path, name: &str) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_DOTENV_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    parse_var(&text, name)
}

/// The value `text` (a `.env` file) assigns to `name`.
fn parse_var(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| unquote(value.trim()))
        })
        .next_back()
}

/// A value without its quotes; an unquoted value ends at ` #` (a comment).
fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote)
            && let Some(end) = inner.find(quote)
        {
            return inner[..end].to_string();
        }
    }
    let value = value.split(" #").next().unwrap_or(value);
    value.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_as_python_dotenv_reads_them() {
        let text = "# a comment\n\
                    HF_ENDPOINT = https://mirror.example\n\
                    export HF_TOKEN=\"hf_quoted # not a comment\"\n\
                    OTHER='single'\n\
                    PLAIN=value # comment\n\
                    not an assignment\n\
                    EMPTY=\n\
                    HF_TOKEN_OLD=x\n";
        assert_eq!(
            parse_var(text, "HF_TOKEN").as_deref(),
            Some("hf_quoted # not a comment")
        );
        assert_eq!(
            parse_var(text, "HF_ENDPOINT").as_deref(),
            Some("https://mirror.example")
        );
        assert_eq!(parse_var(text, "OTHER").as_deref(), Some("single"));
        assert_eq!(parse_var(text, "PLAIN").as_deref(), Some("value"));
        assert_eq!(parse_var(text, "EMPTY").as_deref(), Some(""));
        assert_eq!(parse_var(text, "MISSING"), None);
        assert_eq!(parse_var("A=1\nA=2\n", "A").as_deref(), Some("2"));
    }

    #[test]
    fn a_file_is_read_up_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        assert_eq!(dotenv_var(&path, "HF_TOKEN"), None);
        std::fs::write(&path, "HF_TOKEN=hf_file\n").unwrap();
        assert_eq!(dotenv_var(&path, "HF_TOKEN").as_deref(), Some("hf_file"));
        let padding = "#".repeat(MAX_DOTENV_BYTES as usize);
        std::fs::write(&path, format!("{padding}\nHF_TOKEN=hf_late\n")).unwrap();
        assert_eq!(dotenv_var(&path, "HF_TOKEN"), None);
    }
}
