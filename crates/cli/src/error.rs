//! Failures as the user sees them: an invalid application file prints each diagnostic on its
//! own line exactly as compose formats it; anything else prints one line, the whole chain,
//! prefixed `sturdy:`. A closed stdout (`sturdy config | head`) is a silent success.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use sturdy_compose::{ComposeError, Diagnostic};

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The application file is invalid: every problem found, in file order.
    Invalid(Vec<Diagnostic>),
    /// Anything else.
    Other(anyhow::Error),
    /// Exit with this status, nothing more to say (`sturdy run` passes on the guest's).
    Status(u8),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> CliError {
        CliError::Other(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> CliError {
        CliError::Other(e.into())
    }
}

impl From<ComposeError> for CliError {
    fn from(e: ComposeError) -> CliError {
        match e {
            ComposeError::Read { path, source } => CliError::Other(read_error(&path, &source)),
            ComposeError::Invalid(diagnostics) => CliError::Invalid(diagnostics),
        }
    }
}

impl CliError {
    /// Prints the failure on stderr and returns the exit status.
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Invalid(diagnostics) => {
                for d in diagnostics {
                    eprintln!("{d}");
                }
                ExitCode::FAILURE
            }
            CliError::Status(code) => ExitCode::from(code),
            CliError::Other(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
            CliError::Other(e) => {
                eprintln!("sturdy: {}", one_line(&e));
                ExitCode::FAILURE
            }
        }
    }
}

/// The error chain on one line, without the `(os error N)` noise (also in messages that come
/// from the daemon as text).
fn one_line(e: &anyhow::Error) -> String {
    let line = e
        .chain()
        .map(|cause| match cause.downcast_ref::<io::Error>() {
            Some(io) => io_reason(io),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ");
    without_os_error_numbers(&line)
}

/// `text` without ` (os error N)`.
fn without_os_error_numbers(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(" (os error ") {
        let after = &rest[at + " (os error ".len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &after[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// What went wrong in an I/O error, as the OS says it but without `(os error N)`.
pub fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// The application file could not be read: say which, why, and what to do.
fn read_error(path: &Path, source: &io::Error) -> anyhow::Error {
    let reason = io_reason(source);
    let hint = match source.kind() {
        io::ErrorKind::NotFound => " (run it in a directory with a sturdy.yaml, or name the file)",
        _ => "",
    };
    anyhow::anyhow!("cannot read {}: {reason}{hint}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_lose_their_number() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
        let e = anyhow::Error::from(io::Error::from_raw_os_error(13)).context("cannot write x");
        assert_eq!(one_line(&e), "cannot write x: Permission denied");
    }

    #[test]
    fn os_error_numbers_go_from_text_too() {
        assert_eq!(
            without_os_error_numbers(
                "listen: Address already in use (os error 98); x (os error y)"
            ),
            "listen: Address already in use; x (os error y)"
        );
    }

    #[test]
    fn a_missing_file_says_what_to_do() {
        let e = read_error(Path::new("a/sturdy.yaml"), &io::Error::from_raw_os_error(2));
        assert_eq!(
            e.to_string(),
            "cannot read a/sturdy.yaml: No such file or directory \
             (run it in a directory with a sturdy.yaml, or name the file)"
        );
    }

    #[test]
    fn a_closed_pipe_is_success() {
        let e = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&e));
    }
}
