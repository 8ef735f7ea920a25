//! Weight matrices repacked once at load into the layout the kernels read.
//!
//! Quantized rows are interleaved in pairs, block by block, so that one 256- or 512-bit load
//! brings the same block of two rows (an AVX-512 register then holds both rows' products side by
//! side, each accumulating in its own lanes in llama.cpp's order). Pairs are grouped by four
//! (eight rows), and a group stores block 0 of its four pairs, then block 1, ...: a kernel that
//! walks eight rows at once reads one sequential stream. A pair block (`block_offset`) is:
//! - Q4_0 (36 bytes): `d_r, d_r1` (f16), `qs_r[16]`, `qs_r1[16]`
//! - Q4_1 (40 bytes): `d_r, d_r1, m_r, m_r1` (f16), `qs_r[16]`, `qs_r1[16]`
//! - Q8_0 (68 bytes): `d_r, d_r1` (f16), `qs_r[32]`, `qs_r1[32]`
//!
//! Rows are padded with zeros to a whole group. F32 and F16 matrices are stored as f32 rows.
//!
//! [`PackedMatrix::pack_all`] puts all the matrices of a model in one buffer: one large
//! allocation, which a host allocator can back with huge pages (streaming ~100 MB per token
//! through 4 KiB pages costs a TLB walk every 4 KiB).

use super::aligned::{AlignedBytes, AlignedF32};
use crate::gguf::{TensorInfo, TensorType};
use crate::quant::{BLOCK, dequantize_row, row_bytes};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Row pairs stored block-interleaved together.
pub const PAIRS_PER_GROUP: usize = 4;

/// Why a tensor cannot be used as a matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    /// The tensor is not two-dimensional (or has more than two non-unit dimensions).
    NotAMatrix,
    /// The data length does not match rows × cols of the type.
    SizeMismatch,
}

/// A weight matrix of `rows` rows of `cols` elements, ready for the kernels.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    tensor_type: TensorType,
    rows: usize,
    cols: usize,
    /// Buffer holding the packed quantized bytes (possibly shared with other matrices), and
    /// where this matrix's bytes start in it (64-byte aligned).
    buffer: Arc<AlignedBytes>,
    start: usize,
    len: usize,
    floats: AlignedF32,
}

/// A matrix to pack: type, rows, columns and the rows in llama.cpp's format.
#[derive(Debug, Clone, Copy)]
pub struct MatrixSource<'a> {
    pub tensor_type: TensorType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> MatrixSource<'a> {
    /// A GGUF tensor with shape `[cols, rows]`.
    pub fn from_tensor(tensor: &TensorInfo<'a>) -> Result<Self, PackError> {
        if tensor.dims[2] != 1 || tensor.dims[3] != 1 {
            return Err(PackError::NotAMatrix);
        }
        let cols = usize::try_from(tensor.dims[0]).map_err(|_| PackError::SizeMismatch)?;
        let rows = usize::try_from(tensor.dims[1]).map_err(|_| PackError::SizeMismatch)?;
        Ok(Self {
            tensor_type: tensor.tensor_type,
            rows,
            cols,
            data: tensor.data,
        })
    }

    fn check(&self) -> Result<(), PackError> {
        let row_len = row_bytes(self.tensor_type, self.cols);
        if self.rows == 0
            || self.cols == 0
            || !self
                .cols
                .is_multiple_of(self.tensor_type.block_elements() as usize)
            || self.rows.checked_mul(row_len) != Some(self.data.len())
        {
            return Err(PackError::SizeMismatch);
        }
        Ok(())
    }

    /// Bytes of packed quantized data, rounded up to a cache line (0 for float types).
    fn packed_len(&self) -> usize {
        let geometry = PackedMatrix::empty(self.tensor_type, self.rows, self.cols);
        (geometry.group_count() * geometry.group_stride()).next_multiple_of(64)
    }
}

impl PackedMatrix {
    fn empty(tensor_type: TensorType, rows: usize, cols: usize) -> Self {
        Self {
            tensor_type,
            rows,
            cols,
            buffer: Arc::new(AlignedBytes::default()),
            start: 0,
            len: 0,
            floats: AlignedF32::default(),
        }
    }

    /// Packs a GGUF tensor with shape `[cols, rows]` into its own buffer.
    pub fn from_tensor(tensor: &TensorInfo<'_>) -> Result<Self, PackError> {
        Ok(Self::pack_all(&[MatrixSource::from_tensor(tensor)?])?.remove(0))
    }

    /// Packs `rows` rows of `cols` elements stored contiguously in llama.cpp's format.
    pub fn from_rows(
        tensor_type: TensorType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<Self, PackError> {
        Ok(Self::pack_all(&[MatrixSource {
            tensor_type,
            rows,
            cols,
            data,
        }])?
        .remove(0))
    }

    /// Packs several matrices into one shared buffer (one allocation for all quantized data).
    pub fn pack_all(sources: &[MatrixSource<'_>]) -> Result<Vec<Self>, PackError> {
        let mut total = 0usize;
        for source in sources {
            source.check()?;
            total = total
                .checked_add(source.packed_len())
                .ok_or(PackError::SizeMismatch)?;
        }
        let mut buffer = AlignedBytes::zeroed(total);
        let mut matrices = Vec::with_capacity(sources.len());
        let mut start = 0;
        for source in sources {
            let mut matrix = Self::empty(source.tensor_type, source.rows, source.cols);
            let row_len = row_bytes(source.tensor_type, source.cols);
            match source.tensor_type {
                TensorType::F32 | TensorType::F16 => {
                    matrix.floats = AlignedF32::zeroed(source.rows * source.cols);
                    for (row, out) in source
                        .data
                        .chunks_exact(row_len)
                        .zip(matrix.floats.as_mut_slice().chunks_exact_mut(source.cols))
                    {
                        dequantize_row(source.tensor_type, row, out);
                    }
                }
                TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q8_0 => {
                    let len = source.packed_len();
                    matrix.start = start;
                    matrix.len = len;
                    matrix.interleave(
                        source.data,
                        row_len,
                        &mut buffer.as_mut_slice()[start..start + len],
                    );
                    start += len;
                }
            }
            matrices.push(matrix);
        }
        let buffer = Arc::new(buffer);
        for matrix in &mut matrices {
            matrix.buffer = buffer.clone();
        }
        Ok(matrices)
    }

    fn interleave(&self, data: &[u8], row_len: usize, out: &mut [u8]) {
        let source_block = self.tensor_type.block_bytes() as usize;
        let (scale_bytes, quant_bytes) = match self.tensor_type {
            TensorType::Q4_1 => (4, 16),
            TensorType::Q4_0 => (2, 16),
            _ => (2, 32),
        };
        let blocks = self.blocks_per_row();
        for (row, row_data) in data.chunks_exact(row_len).enumerate() {
            let (pair, half) = (row / 2, row % 2);
            for b in 0..blocks {
                let source = &row_data[b * source_block..(b + 1) * source_block];
                let base = self.block_offset(pair, b);
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

    /// Row pairs holding data (the last may be half padding).
    pub fn pair_count(&self) -> usize {
        self.rows.div_ceil(2)
    }

    /// Groups of [`PAIRS_PER_GROUP`] pairs (the storage is padded to whole groups).
    pub fn group_count(&self) -> usize {
        self.pair_count().div_ceil(PAIRS_PER_GROUP)
    }

    /// Bytes of one group.
    pub fn group_stride(&self) -> usize {
        self.blocks_per_row() * self.group_block_stride()
    }

    /// Distance between consecutive blocks of the same pair.
    pub fn group_block_stride(&self) -> usize {
        PAIRS_PER_GROUP * self.block_stride()
    }

    /// Offset of block `b` of pair `pair` in [`Self::quant_data`].
    pub fn block_offset(&self, pair: usize, b: usize) -> usize {
        (pair / PAIRS_PER_GROUP) * self.group_stride()
            + b * self.group_block_stride()
            + (pair % PAIRS_PER_GROUP) * self.block_stride()
    }

    /// Block `b` of pair `pair` (both rows' scales and quants).
    pub fn pair_block(&self, pair: usize, b: usize) -> &[u8] {
        &self.quant_data()[self.block_offset(pair, b)..][..self.block_stride()]
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

    /// The interleaved quantized data (empty for float matrices).
    pub fn quant_data(&self) -> &[u8] {
        &self.buffer.as_slice()[self.start..self.start + self.len]
    }

    /// The f32 rows (empty for quantized matrices).
    pub fn float_data(&self) -> &[f32] {
        self.floats.as_slice()
    }

    /// Bytes the kernels read for one full product.
    pub fn byte_size(&self) -> usize {
        self.len + self.floats.len() * 4
    }
}

impl PackedMatrix {
    /// Row `r` as f32 (how llama.cpp's `get_rows` dequantizes: `q * d`, `q * d + m`).
    /// Returns `false` if `r` is out of range or `out` is not one row long.
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) -> bool {
        if r >= self.rows || out.len() != self.cols {
            return false;
        }
        if self.len == 0 {
            out.copy_from_slice(&self.floats.as_slice()[r * self.cols..(r + 1) * self.cols]);
            return true;
        }
        let half = r % 2;
        for (b, values) in out.chunks_exact_mut(BLOCK).enumerate() {
            let pair = self.pair_block(r / 2, b);
            let f16_at = |at: usize| {
                crate::quant::f16_bits_to_f32(u16::from_le_bytes([pair[at], pair[at + 1]]))
            };
            let base = 0;
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
