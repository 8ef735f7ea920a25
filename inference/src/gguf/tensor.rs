//! Tensor descriptors: element type, shape and the validated byte range of the data.

use super::error::GgufError;

/// Most dimensions a GGML tensor has.
pub const MAX_DIMS: usize = 4;

/// The tensor element types this engine reads (GGML type ids in the comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// 0: little-endian f32.
    F32,
    /// 1: IEEE half precision.
    F16,
    /// 2: blocks of 32: f16 scale, 16 bytes of 4-bit quants (value = d * (q - 8)).
    Q4_0,
    /// 3: blocks of 32: f16 scale and min, 16 bytes of 4-bit quants (value = d * q + m).
    Q4_1,
    /// 8: blocks of 32: f16 scale, 32 signed bytes (value = d * q).
    Q8_0,
}

impl TensorType {
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
        }
    }

    /// Elements per block.
    pub fn block_elements(self) -> u64 {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
        }
    }
}

/// One tensor of the file. `dims[0]` is the innermost (row) dimension, as in GGML.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    pub n_dims: usize,
    pub dims: [u64; MAX_DIMS],
    pub tensor_type: TensorType,
    /// Offset of the data from the start of the file.
    pub file_offset: u64,
    /// The tensor's bytes, inside the file.
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    /// The shape, innermost dimension first.
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims]
    }

    pub fn element_count(&self) -> u64 {
        // Cannot overflow: checked when the file was parsed.
        self.dims.iter().product()
    }

    /// Number of rows (all dimensions but the first).
    pub fn rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// Byte size of a tensor of type `tensor_type` with shape `dims` (unused dims are 1).
pub fn tensor_byte_size(
    tensor_index: usize,
    tensor_type: TensorType,
    dims: &[u64; MAX_DIMS],
) -> Result<u64, GgufError> {
    let overflow = GgufError::SizeOverflow { tensor_index };
    let block = tensor_type.block_elements();
    if !dims[0].is_multiple_of(block) {
        return Err(GgufError::NotBlockAligned {
            tensor_index,
            ne0: dims[0],
            block,
        });
    }
    let row_bytes = (dims[0] / block)
        .checked_mul(tensor_type.block_bytes())
        .ok_or(overflow.clone())?;
    let mut elements = dims[0];
    let mut bytes = row_bytes;
    for &dim in &dims[1..] {
        elements = elements.checked_mul(dim).ok_or(overflow.clone())?;
        bytes = bytes.checked_mul(dim).ok_or(overflow.clone())?;
    }
    // Element counts are used as usize (and i64 by other tools) downstream.
    if elements > i64::MAX as u64 || usize::try_from(bytes).is_err() {
        return Err(overflow);
    }
    Ok(bytes)
}
