//! Every SIMD kernel against the scalar reference (bit for bit) on random data, odd sizes, row
//! sub-ranges and edge values; the scalar reference against plain f32 arithmetic.

use ward_inference::cpu::SimdLevel;
use ward_inference::gguf::TensorType;
use ward_inference::kernels::{Activations, Kernels, PackedMatrix};
use ward_inference::quant::{dequantize_row, f32_to_f16_bits, row_bytes};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

const TYPES: [TensorType; 5] = [
    TensorType::F32,
    TensorType::F16,
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q8_0,
];

/// Random rows of `tensor_type`; `edge` picks extreme quants and scales.
fn random_rows(
    rng: &mut Rng,
    tensor_type: TensorType,
    rows: usize,
    cols: usize,
    edge: bool,
) -> Vec<u8> {
    let mut data = Vec::new();
    let scale = |rng: &mut Rng| -> [u8; 2] {
        let value = if edge {
            [65504.0, -65504.0, 6.0e-8, 0.0, 1.0, -0.5][(rng.next() % 6) as usize]
        } else {
            rng.float() * 0.1
        };
        f32_to_f16_bits(value).to_le_bytes()
    };
    for _ in 0..rows {
        match tensor_type {
            TensorType::F32 => {
                for _ in 0..cols {
                    data.extend_from_slice(&(rng.float() * 3.0).to_le_bytes());
                }
            }
            TensorType::F16 => {
                for _ in 0..cols {
                    data.extend_from_slice(&f32_to_f16_bits(rng.float() * 3.0).to_le_bytes());
                }
            }
            TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q8_0 => {
                for _ in 0..cols / 32 {
                    data.extend_from_slice(&scale(rng));
                    if tensor_type == TensorType::Q4_1 {
                        data.extend_from_slice(&scale(rng));
                    }
                    let quant_bytes = if tensor_type == TensorType::Q8_0 {
                        32
                    } else {
                        16
                    };
                    for _ in 0..quant_bytes {
                        let byte = if edge {
                            [0x00, 0xff, 0x80, 0x7f, 0x0f, 0xf0][(rng.next() % 6) as usize]
                        } else {
                            rng.byte()
                        };
                        data.push(byte);
                    }
                }
            }
        }
    }
    assert_eq!(data.len(), rows * row_bytes(tensor_type, cols));
    data
}

fn random_activations(rng: &mut Rng, n: usize, cols: usize, edge: bool) -> Vec<f32> {
    (0..n * cols)
        .map(|i| {
            if edge {
                [1.0e4, -1.0e4, 0.0, 1.0e-6, -3.5, 127.0][(rng.next() % 6) as usize]
                    * if i % 7 == 0 { 1.0 } else { 0.25 }
            } else {
                rng.float() * 4.0
            }
        })
        .collect()
}

fn levels() -> Vec<SimdLevel> {
    [SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|l| l.is_supported())
        .collect()
}

fn run(
    level: SimdLevel,
    w: &PackedMatrix,
    x: &Activations,
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.n() * w.rows()];
    Kernels::with_level(level)
        .unwrap()
        .matmul(w, x, rows, &mut out, w.rows())
        .unwrap();
    out
}

fn assert_same_bits(a: &[f32], b: &[f32], context: &str) {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{context}: index {i}: {x} vs {y}"
        );
    }
}

#[test]
fn simd_kernels_equal_scalar_on_random_data() {
    assert!(
        !levels().is_empty()
            || !cfg!(target_arch = "x86_64")
            || SimdLevel::detect() == SimdLevel::Scalar
    );
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for tensor_type in TYPES {
        for &(rows, cols) in &[
            (1, 32),
            (2, 64),
            (3, 96),
            (7, 32),
            (9, 160),
            (17, 64),
            (33, 576),
        ] {
            for &n in &[1usize, 2, 3, 4, 5, 7, 8, 9, 11, 16, 23] {
                for edge in [false, true] {
                    let w = PackedMatrix::from_rows(
                        tensor_type,
                        rows,
                        cols,
                        &random_rows(&mut rng, tensor_type, rows, cols, edge),
                    )
                    .unwrap();
                    let mut x = Activations::new(n, cols);
                    assert!(x.load(&random_activations(&mut rng, n, cols, edge), n));
                    let reference = run(SimdLevel::Scalar, &w, &x, 0..rows);
                    for level in levels() {
                        let context = format!(
                            "{} {rows}x{cols} n={n} edge={edge} {}",
                            tensor_type.name(),
                            level.name()
                        );
                        assert_same_bits(&run(level, &w, &x, 0..rows), &reference, &context);
                        // A row sub-range writes exactly those rows.
                        if rows >= 3 {
                            let sub = 1..rows - 1;
                            let got = run(level, &w, &x, sub.clone());
                            for t in 0..n {
                                for r in 0..rows {
                                    let v = got[t * rows + r];
                                    if sub.contains(&r) {
                                        let e = reference[t * rows + r];
                                        assert!(
                                            v.to_bits() == e.to_bits()
                                                || (v.is_nan() && e.is_nan()),
                                            "{context} sub-range"
                                        );
                                    } else {
                                        assert!(
                                            v.is_nan(),
                                            "{context}: row {r} outside the range was written"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn scalar_reference_matches_dequantized_arithmetic() {
    let mut rng = Rng(42);
    let (rows, cols, n) = (5, 128, 3);
    for tensor_type in TYPES {
        let data = random_rows(&mut rng, tensor_type, rows, cols, false);
        let w = PackedMatrix::from_rows(tensor_type, rows, cols, &data).unwrap();
        let input = random_activations(&mut rng, n, cols, false);
        let mut x = Activations::new(n, cols);
        x.load(&input, n);
        let got = run(SimdLevel::Scalar, &w, &x, 0..rows);
        let row_len = row_bytes(tensor_type, cols);
        for r in 0..rows {
            let mut row = vec![0.0f32; cols];
            assert!(dequantize_row(
                tensor_type,
                &data[r * row_len..(r + 1) * row_len],
                &mut row
            ));
            for t in 0..n {
                let exact: f64 = row
                    .iter()
                    .zip(&input[t * cols..(t + 1) * cols])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let magnitude: f64 = row
                    .iter()
                    .zip(&input[t * cols..(t + 1) * cols])
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum();
                // Float weights: rounding only. Quantized: 8-bit activations (~1/254 relative).
                let tolerance = if matches!(tensor_type, TensorType::F32 | TensorType::F16) {
                    1e-5
                } else {
                    1e-2
                } * magnitude
                    + 1e-6;
                let value = got[t * rows + r] as f64;
                assert!(
                    (value - exact).abs() <= tolerance,
                    "{} r={r} t={t}: {value} vs {exact}",
                    tensor_type.name()
                );
            }
        }
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let w = PackedMatrix::from_rows(TensorType::Q8_0, 2, 32, &[0u8; 68]).unwrap();
    let mut x = Activations::new(1, 64);
    x.load(&[0.0; 64], 1);
    let kernels = Kernels::detect();
    let mut out = vec![0.0; 2];
    assert!(kernels.matmul(&w, &x, 0..2, &mut out, 2).is_err());
    let mut x = Activations::new(1, 32);
    x.load(&[0.0; 32], 1);
    assert!(kernels.matmul(&w, &x, 0..3, &mut out, 2).is_err());
    assert!(kernels.matmul(&w, &x, 0..2, &mut out[..1], 2).is_err());
    assert!(kernels.matmul(&w, &x, 0..2, &mut out, 2).is_ok());
    assert!(PackedMatrix::from_rows(TensorType::Q8_0, 2, 32, &[0u8; 67]).is_err());
    assert!(PackedMatrix::from_rows(TensorType::Q4_1, 1, 31, &[0u8; 20]).is_err());
}

#[test]
fn activation_quantization_is_the_same_at_every_level() {
    let mut rng = Rng(99);
    // Blocks whose maximum is 127 scale by exactly 1, so halves are ties (rounded to even);
    // an all-zero block; tiny and huge magnitudes.
    let ties: Vec<f32> = (0..9 * 96)
        .map(|i| match (i / 32) % 4 {
            0 if i % 32 == 0 => 127.0,
            0 => (i % 32) as f32 * 0.5 - 8.0,
            1 => 0.0,
            2 => [1.0e-30, -3.0e-38, 5.0e-39][i % 3],
            _ => [3.0e38, -1.0e20, 0.5][i % 3],
        })
        .collect();
    for (edge, x) in [
        (false, random_activations(&mut rng, 9, 96, false)),
        (true, random_activations(&mut rng, 9, 96, true)),
        (true, ties),
    ] {
        let mut portable = Activations::new(9, 96);
        assert!(portable.load(&x, 9));
        for level in levels() {
            let mut simd = Activations::with_level(9, 96, level);
            assert!(simd.load(&x, 9));
            for t in 0..9 {
                assert_eq!(
                    simd.blocks(t),
                    portable.blocks(t),
                    "{} edge={edge}",
                    level.name()
                );
            }
        }
    }
}
