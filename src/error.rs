//! The one error type of the library: a kind saying who is at fault, a short message, and where it happened.
//!
//! Format modules build errors with the constructors below; the CLI prints them as
//! `diskbridge: FILE: message (at offset 0xHEX)` and the page shows the same text with its kind.

use std::fmt;

/// Who is at fault, as a small stable classification the CLI and the page can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing failed in the environment (file system, browser storage).
    Io,
    /// A file that was asked for does not exist (a backing file, a parent, an extent, an input).
    NotFound,
    /// The input is not the format it was taken for (bad magic, unknown version).
    InvalidFormat,
    /// The input is the right format but its structures are inconsistent or truncated.
    Corrupt,
    /// The input is valid but uses a feature diskbridge does not implement (encryption, …).
    Unsupported,
    /// A size or count in the input is beyond what diskbridge accepts.
    LimitExceeded,
    /// The caller asked for something impossible (bad option, unseekable output, …).
    InvalidArgument,
    /// The caller cancelled the operation.
    Cancelled,
}

impl ErrorKind {
    /// A stable lower-case name, used by the page and the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::NotFound => "not-found",
            ErrorKind::InvalidFormat => "invalid-format",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::LimitExceeded => "limit-exceeded",
            ErrorKind::InvalidArgument => "invalid-argument",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

/// An error with its kind, message, and the file and byte offset it concerns when known.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    file: Option<String>,
    offset: Option<u64>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a short message (starting with a capital letter, no trailing period).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), file: None, offset: None }
    }

    /// The input is not this format.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFormat, message)
    }

    /// The input's structures are inconsistent.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// A valid feature diskbridge does not implement.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// A value beyond diskbridge's limits.
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LimitExceeded, message)
    }

    /// A bad request from the caller.
    pub fn argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// The operation was cancelled.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "Cancelled")
    }

    /// An I/O failure while doing `what`: `NotFound` for a file that does not exist, `Io` otherwise. The message
    /// says what failed and why (`Cannot open: Permission denied`), once.
    pub fn io(err: std::io::Error, what: impl Into<String>) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
        let reason = err.to_string();
        // std appends " (os error N)" to the system's own wording; the number tells a user nothing more.
        let reason = match err.raw_os_error() {
            Some(code) => reason.strip_suffix(&format!(" (os error {code})")).unwrap_or(&reason).to_string(),
            None => reason,
        };
        Self::new(kind, format!("{}: {reason}", what.into()))
    }

    /// Records the byte offset in the file where the problem is (the first one recorded wins).
    pub fn at(mut self, offset: u64) -> Self {
        self.offset.get_or_insert(offset);
        self
    }

    /// Records the file the error concerns (the innermost one recorded wins, so a backing file's
    /// error names the backing file, not the overlay).
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        if self.file.is_none() {
            self.file = Some(file.into());
        }
        self
    }

    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without file and offset.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The file the error concerns, when known.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The byte offset in that file, when known.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }
}

impl fmt::Display for Error {
    /// `message (at offset 0xHEX)`; the file is left to the caller, which knows how to name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(offset) = self.offset {
            write!(f, " (at offset {offset:#x})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_offset_in_hex_and_first_offset_wins() {
        let e = Error::corrupt("L2 table offset unaligned").at(0x30000).at(5).in_file("a.qcow2").in_file("b");
        assert_eq!(e.to_string(), "L2 table offset unaligned (at offset 0x30000)");
        assert_eq!(e.file(), Some("a.qcow2"));
        assert_eq!(e.kind().name(), "corrupt");
    }

    #[test]
    fn io_errors_say_why_once_and_missing_files_are_not_found() {
        let gone = Error::io(std::io::Error::from_raw_os_error(2), "Cannot open");
        assert_eq!((gone.kind(), gone.message()), (ErrorKind::NotFound, "Cannot open: No such file or directory"));
        let denied = Error::io(std::io::Error::from_raw_os_error(13), "Cannot open");
        assert_eq!((denied.kind(), denied.message()), (ErrorKind::Io, "Cannot open: Permission denied"));
        assert!(std::error::Error::source(&denied).is_none());
    }
}
