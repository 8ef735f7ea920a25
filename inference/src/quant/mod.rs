//! Tensor block formats (llama.cpp's bit layout), the scalar dequantization reference, and the
//! 8-bit quantization of activations that the quantized matrix products consume.

mod activation;
mod blocks;

pub use activation::{ActivationBlock, quantize_row_q8};
#[cfg(target_arch = "x86_64")]
pub use activation::{quantize_row_q8_avx2, quantize_row_q8_avx512};
pub use blocks::{
    BLOCK, dequantize_row, f16_bits_to_f32, f32_to_f16_bits, q4_0_block, q4_1_block, q8_0_block,
    row_bytes,
};
