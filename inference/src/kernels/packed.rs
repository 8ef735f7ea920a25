//! Weight matrices repacked once at load into the layout the kernels read.
//!
//! Quantized rows are interleaved in pairs, block by block, so that one 256- or 512-bit load
//! brings the same block of two rows (an AVX-512 register then holds both rows' products side by
//! side, each accumulating in its own lanes in llama.cpp's order). For each pair of rows `(r, r+1)`
//! and each block `b`, at `pair * pair_stride + b * block_stride`:
//! - Q4_0 (36 bytes): `d_r, d_r1` (f16), `qs_r[16]`, `qs_r1[16]`
//! - Q4_1 (40 bytes): `d_r, d_r1, m_r, m_r1` (f16), `qs_r[16]`, `qs_r1[16]`
//! - Q8_0 (68 bytes): `d_r, d_r1` (f16), `qs_r[32]`, `qs_r1[32]`
//!
//! An odd last row is paired with a row of zeros. F32 and F16 matrices are stored as f32 rows.

use super::aligned::{AlignedBytes, AlignedF32};
use crate::gguf::{TensorInfo, TensorType};
use crate::quant::{BLOCK, dequantize_row, row_bytes};
use core::fmt;

/// Why a tensor cannot be used as a matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    /// The tensor is not two-dimensional (or has more than two non-unit dimensions).
    NotAMatrix,
    /// The data length does not match rows × cols of the type.
    SizeMismatch,
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAMatrix => write!(f, "tensor is not a matrix"),
            Self::SizeMismatch => write!(f, "tensor data size does not match its shape"),
        }
    }
}

/// A weight matrix of `rows` rows of `cols` elements, ready for the kernels.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    tensor_type: TensorType,
    rows: usize,
    cols: usize,
    quant: AlignedBytes,
    floats: AlignedF32,
}

impl PackedMatrix {
    /// Packs a GGUF tensor with shape `[cols, rows]`.
    pub fn from_tensor(tensor: &TensorInfo<'_>) -> Result<Self, PackError> {
        if tensor.dims[2] != 1 || tensor.dims[3] != 1 {
            return Err(PackError::NotAMatrix);
        }
        let cols = usize::try_from(tensor.dims[0]).map_err(|_| PackError::SizeMismatch)?;
        let rows = usize::try_from(tensor.dims[1]).map_err(|_| PackError::SizeMismatch)?;
        Self::from_rows(tensor.tensor_type, rows, cols, tensor.data)
    }

    /// Packs `rows` rows of `cols` elements stored contiguously in llama.cpp's format.
    pub fn from_rows(
        tensor_type: TensorType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<Self, PackError> {
        let row_len = row_bytes(tensor_type, cols);
        if rows == 0
            || cols == 0
            || !cols.is_multiple_of(tensor_type.block_elements() as usize)
            || rows.checked_mul(row_len) != Some(data.len())
        {
            return Err(PackError::SizeMismatch);
        }
        let mut packed = Self {
            tensor_type,
            rows,
            cols,
            quant: AlignedBytes::default(),
            floats: AlignedF32::default(),
        };
        match tensor_type {
            TensorType::F32 | TensorType::F16 => {
                packed.floats = AlignedF32::zeroed(rows * cols);
                for (row, out) in data
                    .chunks_exact(row_len)
                    .zip(packed.floats.as_mut_slice().chunks_exact_mut(cols))
                {
                    dequantize_row(tensor_type, row, out);
                }
            }
            TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q8_0 => {
                packed.quant = AlignedBytes::zeroed(packed.pair_count() * packed.pair_stride());
                packed.interleave(data, row_len);
            }
        }
        Ok(packed)
    }

    fn interleave(&mut self, data: &[u8], row_len: usize) {
        let source_block = self.tensor_type.block_bytes() as usize;
        let (scale_bytes, quant_bytes) = match self.tensor_type {
            TensorType::Q4_1 => (4, 16),
            TensorType::Q4_0 => (2, 16),
            _ => (2, 32),
        };
        let blocks = self.blocks_per_row();
        let block_stride = self.block_stride();
        let pair_stride = self.pair_stride();
        let out = self.quant.as_mut_slice();
        for (row, row_data) in data.chunks_exact(row_len).enumerate() {
            let (pair, half) = (row / 2, row % 2);
            for b in 0..blocks {
                let source = &row_data[b * source_block..(b + 1) * source_block];
                let base = pair * pair_stride + b * block_stride;
                // Scales: each f16 of the row goes to slot `2 * k + half`.
                for k in 0..scale_bytes / 2 {
                    let at = base + (2 * k + half) * 2;
                    out[at..at + 2].copy_from_slice(&source[2 * k..2 * k + 2]);
                }
                let at = base + 2 * scale_bytes + half * quant_bytes;
                out[at..at + quant_bytes].copy_from_slice(&source[scale_bytes..]);
            }
        }
    }

    pub fn tensor_type(&self) -> TensorType {
        self.tensor_type
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    pub fn pair_count(&self) -> usize {
        self.rows.div_ceil(2)
    }

    /// Bytes of one block of a row pair.
    pub fn block_stride(&self) -> usize {
        match self.tensor_type {
            TensorType::Q4_0 => 36,
            TensorType::Q4_1 => 40,
            TensorType::Q8_0 => 68,
            TensorType::F32 | TensorType::F16 => 0,
        }
    }

    /// Bytes of one row pair.
    pub fn pair_stride(&self) -> usize {
        self.blocks_per_row() * self.block_stride()
    }

    /// The interleaved quantized data (empty for float matrices).
    pub fn quant_data(&self) -> &[u8] {
        self.quant.as_slice()
    }

    /// The f32 rows (empty for quantized matrices).
    pub fn float_data(&self) -> &[f32] {
        self.floats.as_slice()
    }

    /// Bytes the kernels read for one full product.
    pub fn byte_size(&self) -> usize {
        self.quant.len() + self.floats.len() * 4
    }
}

impl PackedMatrix {
    /// Row `r` as f32 (how llama.cpp's `get_rows` dequantizes: `q * d`, `q * d + m`).
    /// Returns `false` if `r` is out of range or `out` is not one row long.
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) -> bool {
        if r >= self.rows || out.len() != self.cols {
            return false;
        }
        if self.quant.is_empty() {
            out.copy_from_slice(&self.floats.as_slice()[r * self.cols..(r + 1) * self.cols]);
            return true;
        }
        let stride = self.block_stride();
        let pair = &self.quant.as_slice()[(r / 2) * self.pair_stride()..][..self.pair_stride()];
        let half = r % 2;
        let f16_at =
            |at: usize| crate::quant::f16_bits_to_f32(u16::from_le_bytes([pair[at], pair[at + 1]]));
        for (b, values) in out.chunks_exact_mut(BLOCK).enumerate() {
            let base = b * stride;
            match self.tensor_type {
                TensorType::Q8_0 => {
                    let d = f16_at(base + 2 * half);
                    let qs = &pair[base + 4 + 32 * half..][..32];
                    for (v, &q) in values.iter_mut().zip(qs) {
                        *v = f32::from(q as i8) * d;
                    }
                }
                TensorType::Q4_0 | TensorType::Q4_1 => {
                    let (scales, q4_1) = if self.tensor_type == TensorType::Q4_1 {
                        (8, true)
                    } else {
                        (4, false)
                    };
                    let d = f16_at(base + 2 * half);
                    let qs = &pair[base + scales + 16 * half..][..16];
                    for (j, &byte) in qs.iter().enumerate() {
                        let (lo, hi) = (byte & 0x0f, byte >> 4);
                        if q4_1 {
                            let m = f16_at(base + 4 + 2 * half);
                            values[j] = f32::from(lo) * d + m;
                            values[j + 16] = f32::from(hi) * d + m;
                        } else {
                            values[j] = (i32::from(lo) - 8) as f32 * d;
                            values[j + 16] = (i32::from(hi) - 8) as f32 * d;
                        }
                    }
                }
                TensorType::F32 | TensorType::F16 => return false,
            }
        }
        true
    }
}
