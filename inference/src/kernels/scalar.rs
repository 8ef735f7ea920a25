//! Portable reference kernels. They define the arithmetic every SIMD kernel reproduces bit for
//! bit, which is llama.cpp's x86 order: per block, the integer dot product of each group of four
//! quants is converted to f32 and fused-multiply-added, scaled by `d_weight * d_activation`,
//! into lane `group` of eight lanes; the lanes are summed as `hsum8` does; Q4_1 adds the
//! minimum term accumulated separately with FMAs.

use super::activations::Activations;
use super::packed::PackedMatrix;
use crate::gguf::TensorType;
use crate::quant::{ActivationBlock, BLOCK, f16_bits_to_f32};
use core::ops::Range;
use libm::fmaf;

/// The horizontal sum of eight lanes in the order of llama.cpp's `hsum_float_8`.
pub fn hsum8(lanes: &[f32; 8]) -> f32 {
    let r = [
        lanes[4] + lanes[0],
        lanes[5] + lanes[1],
        lanes[6] + lanes[2],
        lanes[7] + lanes[3],
    ];
    (r[0] + r[2]) + (r[1] + r[3])
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Quant `j` (0..32) of a 4-bit block's 16 packed bytes.
fn nibble(qs: &[u8], j: usize) -> i32 {
    if j < BLOCK / 2 {
        i32::from(qs[j] & 0x0f)
    } else {
        i32::from(qs[j - BLOCK / 2] >> 4)
    }
}

/// Dot product of row `r` of a packed quantized matrix with one activation vector.
pub fn dot_row(w: &PackedMatrix, r: usize, activation: &[ActivationBlock]) -> f32 {
    let tensor_type = w.tensor_type();
    let half = r % 2;
    let mut lanes = [0.0f32; 8];
    let mut mins = 0.0f32;
    for (b, a) in activation.iter().enumerate() {
        let (scale_slots, quant_len) = match tensor_type {
            TensorType::Q4_0 => (2, 16),
            TensorType::Q4_1 => (4, 16),
            _ => (2, 32),
        };
        let pair = w.pair_block(r / 2, b);
        let base = 0;
        let d = f16_at(pair, base + 2 * half);
        let qs = &pair[base + 2 * scale_slots + half * quant_len..][..quant_len];
        let scale = d * a.d;
        for (group, lane) in lanes.iter_mut().enumerate() {
            let mut sum = 0i32;
            for j in 4 * group..4 * group + 4 {
                let q = match tensor_type {
                    TensorType::Q4_0 => nibble(qs, j) - 8,
                    TensorType::Q4_1 => nibble(qs, j),
                    _ => i32::from(qs[j] as i8),
                };
                sum += q * i32::from(a.qs[j]);
            }
            *lane = fmaf(scale, sum as f32, *lane);
        }
        if tensor_type == TensorType::Q4_1 {
            let m = f16_at(pair, base + 4 + 2 * half);
            mins = fmaf(m, a.s, mins);
        }
    }
    hsum8(&lanes) + mins
}

/// Dot product of f32 rows in the canonical order: element `i` accumulates (FMA) into lane
/// `i % 8`, then `hsum8`.
pub fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    for (i, (&a, &b)) in w.iter().zip(x).enumerate() {
        lanes[i % 8] = fmaf(a, b, lanes[i % 8]);
    }
    hsum8(&lanes)
}

/// `out[t * out_stride + r - origin] = row r · activation t` for rows in `rows`.
pub fn matmul(
    w: &PackedMatrix,
    x: &Activations,
    rows: Range<usize>,
    out: &mut [f32],
    out_stride: usize,
    origin: usize,
) {
    match w.tensor_type() {
        TensorType::F32 | TensorType::F16 => {
            let cols = w.cols();
            for t in 0..x.n() {
                for r in rows.clone() {
                    let row = &w.float_data()[r * cols..(r + 1) * cols];
                    out[t * out_stride + r - origin] = dot_f32(row, x.floats(t));
                }
            }
        }
        _ => {
            for t in 0..x.n() {
                for r in rows.clone() {
                    out[t * out_stride + r - origin] = dot_row(w, r, x.blocks(t));
                }
            }
        }
    }
}
