use core::fmt;

/// Why an image could not be measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeasureError {
    /// The image does not end with the OVMF GUID table footer.
    NoGuidTable,
    /// A GUID table entry is malformed.
    BadGuidTable(&'static str),
    /// The table has no entry with this GUID, which the measurement needs.
    MissingEntry(&'static str),
    /// A metadata block ("ASEV" or "TDVF") is malformed.
    BadMetadata {
        which: &'static str,
        reason: &'static str,
    },
    /// The image size is not a whole number of pages, or does not fit below 4 GiB.
    BadImageSize(usize),
    /// `vcpus` must be at least 1.
    NoVcpus,
    /// The vCPU type is not one QEMU defines.
    UnknownVcpuType,
}

impl fmt::Display for MeasureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoGuidTable => write!(f, "the image has no OVMF GUID table at its end"),
            Self::BadGuidTable(reason) => write!(f, "malformed OVMF GUID table: {reason}"),
            Self::MissingEntry(name) => write!(f, "the OVMF GUID table has no {name} entry"),
            Self::BadMetadata { which, reason } => {
                write!(f, "malformed {which} metadata: {reason}")
            }
            Self::BadImageSize(size) => write!(
                f,
                "image size {size} is not a whole number of 4 KiB pages below 4 GiB"
            ),
            Self::NoVcpus => write!(f, "at least one vCPU is needed"),
            Self::UnknownVcpuType => write!(f, "unknown vCPU type"),
        }
    }
}

impl core::error::Error for MeasureError {}
