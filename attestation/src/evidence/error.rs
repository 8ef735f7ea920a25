use core::fmt;

/// Why a piece of evidence could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceError {
    /// The input ends before `what` does.
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// Bytes are left over after the structure ended.
    TrailingBytes { what: &'static str, extra: usize },
    /// A version or type field has a value this parser does not know.
    Unsupported { what: &'static str, value: u32 },
    /// A field holds a value the specification forbids.
    Invalid {
        what: &'static str,
        reason: &'static str,
    },
    /// Hex text with an odd number of digits or a non-hex character.
    BadHex { position: usize },
}

impl fmt::Display for EvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "{what} is truncated: needs {needed} bytes, only {available} available"
            ),
            Self::TrailingBytes { what, extra } => {
                write!(f, "{extra} unexpected bytes after the end of {what}")
            }
            Self::Unsupported { what, value } => write!(f, "unsupported {what}: {value}"),
            Self::Invalid { what, reason } => write!(f, "invalid {what}: {reason}"),
            Self::BadHex { position } => write!(f, "bad hex text at character {position}"),
        }
    }
}

impl core::error::Error for EvidenceError {}
