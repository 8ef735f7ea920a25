//! Typed errors of the GGUF reader: every malformed input maps to one of these, with the byte
//! offset or the name it concerns.

use alloc::string::String;
use core::fmt;

/// Why a GGUF file (or a lookup in it) was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufError {
    /// The file does not start with the `GGUF` magic.
    BadMagic { found: u32 },
    /// Only little-endian GGUF v2 and v3 are read.
    UnsupportedVersion { version: u32 },
    /// A read of `needed` bytes at `offset` runs past the end of the file.
    Truncated { offset: usize, needed: u64 },
    /// A count in the header or an array exceeds what the reader accepts (or the file can hold).
    TooMany {
        what: &'static str,
        count: u64,
        limit: u64,
    },
    /// A string is longer than the reader accepts.
    StringTooLong { offset: usize, len: u64 },
    /// A string is not valid UTF-8.
    InvalidUtf8 { offset: usize },
    /// A metadata value type id that GGUF does not define.
    UnknownValueType { offset: usize, type_id: u32 },
    /// A boolean stored as something other than 0 or 1.
    InvalidBool { offset: usize, byte: u8 },
    /// Arrays nested deeper than the reader accepts.
    NestingTooDeep { offset: usize },
    /// The same metadata key appears twice.
    DuplicateKey { key: String },
    /// The same tensor name appears twice.
    DuplicateTensor { name: String },
    /// `general.alignment` is not a power of two of a sane size, or not a u32.
    BadAlignment { value: u64 },
    /// A tensor has zero or more than four dimensions, or a zero-sized dimension.
    BadDimensions { tensor_index: usize, n_dims: u32 },
    /// A tensor's element type is not one this engine reads.
    UnsupportedTensorType { tensor_index: usize, type_id: u32 },
    /// A tensor's first dimension is not a whole number of quantization blocks.
    NotBlockAligned {
        tensor_index: usize,
        ne0: u64,
        block: u64,
    },
    /// An element count or byte size overflows.
    SizeOverflow { tensor_index: usize },
    /// A tensor's data offset is not a multiple of the file's alignment.
    MisalignedTensor { tensor_index: usize, offset: u64 },
    /// A tensor's data lies (partly) outside the file.
    TensorOutOfBounds {
        tensor_index: usize,
        offset: u64,
        size: u64,
    },
    /// Two tensors' data ranges overlap.
    OverlappingTensors { first: usize, second: usize },
    /// A metadata key asked for is absent.
    MissingKey { key: String },
    /// A metadata key holds a value of another type than asked for.
    WrongType { key: String, expected: &'static str },
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic { found } => write!(f, "not a GGUF file (magic {found:#010x})"),
            Self::UnsupportedVersion { version } => {
                write!(
                    f,
                    "unsupported GGUF version {version} (v2 and v3 little-endian are read)"
                )
            }
            Self::Truncated { offset, needed } => {
                write!(
                    f,
                    "file truncated: {needed} bytes needed at offset {offset}"
                )
            }
            Self::TooMany { what, count, limit } => {
                write!(f, "too many {what}: {count} (limit {limit})")
            }
            Self::StringTooLong { offset, len } => {
                write!(f, "string of {len} bytes at offset {offset} is too long")
            }
            Self::InvalidUtf8 { offset } => write!(f, "string at offset {offset} is not UTF-8"),
            Self::UnknownValueType { offset, type_id } => {
                write!(
                    f,
                    "unknown metadata value type {type_id} at offset {offset}"
                )
            }
            Self::InvalidBool { offset, byte } => {
                write!(f, "boolean at offset {offset} holds {byte}, not 0 or 1")
            }
            Self::NestingTooDeep { offset } => {
                write!(f, "metadata arrays nested too deep at offset {offset}")
            }
            Self::DuplicateKey { key } => write!(f, "metadata key {key} appears twice"),
            Self::DuplicateTensor { name } => write!(f, "tensor {name} appears twice"),
            Self::BadAlignment { value } => write!(f, "invalid general.alignment {value}"),
            Self::BadDimensions {
                tensor_index,
                n_dims,
            } => {
                write!(
                    f,
                    "tensor {tensor_index}: invalid shape ({n_dims} dimensions)"
                )
            }
            Self::UnsupportedTensorType {
                tensor_index,
                type_id,
            } => {
                write!(
                    f,
                    "tensor {tensor_index}: unsupported tensor type {type_id}"
                )
            }
            Self::NotBlockAligned {
                tensor_index,
                ne0,
                block,
            } => write!(
                f,
                "tensor {tensor_index}: row length {ne0} is not a multiple of the block size {block}"
            ),
            Self::SizeOverflow { tensor_index } => {
                write!(f, "tensor {tensor_index}: size overflows")
            }
            Self::MisalignedTensor {
                tensor_index,
                offset,
            } => {
                write!(
                    f,
                    "tensor {tensor_index}: data offset {offset} is not aligned"
                )
            }
            Self::TensorOutOfBounds {
                tensor_index,
                offset,
                size,
            } => write!(
                f,
                "tensor {tensor_index}: data [{offset}, +{size}) lies outside the file"
            ),
            Self::OverlappingTensors { first, second } => {
                write!(f, "tensors {first} and {second} overlap")
            }
            Self::MissingKey { key } => write!(f, "metadata key {key} is missing"),
            Self::WrongType { key, expected } => {
                write!(f, "metadata key {key} is not of type {expected}")
            }
        }
    }
}

impl core::error::Error for GgufError {}
