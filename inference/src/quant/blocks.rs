//! Block layouts of the weight formats, as llama.cpp stores them:
//! - Q4_0: `d: f16`, `qs: [u8; 16]`; element `j` is `qs[j] & 15`, element `j + 16` is
//!   `qs[j] >> 4`; value = `d * (q - 8)`.
//! - Q4_1: `d: f16`, `m: f16`, `qs: [u8; 16]` as Q4_0; value = `d * q + m`.
//! - Q8_0: `d: f16`, `qs: [i8; 32]`; value = `d * q`.

use crate::gguf::TensorType;
use half::f16;

/// Elements per quantization block.
pub const BLOCK: usize = 32;

pub fn f16_bits_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// Round to nearest even, as F16C's `vcvtps2ph` with rounding mode 0 (what llama.cpp uses).
pub fn f32_to_f16_bits(value: f32) -> u16 {
    f16::from_f32(value).to_bits()
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// A Q4_0 block's scale and the 32 quants (0..=15) in element order.
pub fn q4_0_block(block: &[u8; 18]) -> (f32, [u8; BLOCK]) {
    (
        f16_bits_to_f32(le16(block, 0)),
        unpack_nibbles(&block[2..18]),
    )
}

/// A Q4_1 block's scale, minimum and the 32 quants (0..=15) in element order.
pub fn q4_1_block(block: &[u8; 20]) -> (f32, f32, [u8; BLOCK]) {
    (
        f16_bits_to_f32(le16(block, 0)),
        f16_bits_to_f32(le16(block, 2)),
        unpack_nibbles(&block[4..20]),
    )
}

/// A Q8_0 block's scale and its 32 quants.
pub fn q8_0_block(block: &[u8; 34]) -> (f32, [i8; BLOCK]) {
    let mut qs = [0i8; BLOCK];
    for (q, &byte) in qs.iter_mut().zip(&block[2..34]) {
        *q = byte as i8;
    }
    (f16_bits_to_f32(le16(block, 0)), qs)
}

fn unpack_nibbles(packed: &[u8]) -> [u8; BLOCK] {
    let mut out = [0u8; BLOCK];
    for (j, &byte) in packed.iter().enumerate().take(BLOCK / 2) {
        out[j] = byte & 0x0f;
        out[j + BLOCK / 2] = byte >> 4;
    }
    out
}

/// Bytes of one row of `cols` elements of `tensor_type` (`cols` a multiple of the block size).
pub fn row_bytes(tensor_type: TensorType, cols: usize) -> usize {
    cols / tensor_type.block_elements() as usize * tensor_type.block_bytes() as usize
}

/// Dequantizes one row: `bytes` holds exactly `out.len()` elements of `tensor_type`.
/// Returns `false` (and leaves `out` untouched) when the sizes do not agree.
pub fn dequantize_row(tensor_type: TensorType, bytes: &[u8], out: &mut [f32]) -> bool {
    let cols = out.len();
    if !cols.is_multiple_of(tensor_type.block_elements() as usize)
        || bytes.len() != row_bytes(tensor_type, cols)
    {
        return false;
    }
    match tensor_type {
        TensorType::F32 => {
            for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
        TensorType::F16 => {
            for (value, chunk) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *value = f16_bits_to_f32(u16::from_le_bytes([chunk[0], chunk[1]]));
            }
        }
        TensorType::Q4_0 => {
            for (values, chunk) in out.chunks_exact_mut(BLOCK).zip(bytes.chunks_exact(18)) {
                let (d, qs) = q4_0_block(chunk.try_into().unwrap_or(&[0; 18]));
                for (value, &q) in values.iter_mut().zip(&qs) {
                    *value = (i32::from(q) - 8) as f32 * d;
                }
            }
        }
        TensorType::Q4_1 => {
            for (values, chunk) in out.chunks_exact_mut(BLOCK).zip(bytes.chunks_exact(20)) {
                let (d, m, qs) = q4_1_block(chunk.try_into().unwrap_or(&[0; 20]));
                for (value, &q) in values.iter_mut().zip(&qs) {
                    *value = f32::from(q) * d + m;
                }
            }
        }
        TensorType::Q8_0 => {
            for (values, chunk) in out.chunks_exact_mut(BLOCK).zip(bytes.chunks_exact(34)) {
                let (d, qs) = q8_0_block(chunk.try_into().unwrap_or(&[0; 34]));
                for (value, &q) in values.iter_mut().zip(&qs) {
                    *value = f32::from(q) * d;
                }
            }
        }
    }
    true
}
