//! Matrix products of packed weights with batches of activations, in three implementations —
//! portable scalar reference, AVX2+FMA, AVX-512 VNNI — that give bit-identical results. The
//! implementation is chosen once (from CPUID) when [`Kernels`] is built.
//!
//! Products are computed for a range of rows so that a thread pool can split a matrix into row
//! blocks; every weight block is read once per call for all activation vectors of the batch.

mod activations;
mod aligned;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod packed;
pub mod scalar;
mod spread;

pub use activations::{Activations, Fill, RowFiller};
pub use aligned::{AlignedBytes, AlignedF32};
pub use packed::{MatrixSource, PackError, PackedMatrix};

use crate::cpu::SimdLevel;
use crate::gguf::TensorType;
use core::fmt;
use core::ops::Range;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

fn quant_kind(tensor_type: TensorType) -> Option<u8> {
    match tensor_type {
        TensorType::Q4_0 => Some(Q4_0),
        TensorType::Q4_1 => Some(Q4_1),
        TensorType::Q8_0 => Some(Q8_0),
        TensorType::F32 | TensorType::F16 => None,
    }
}

/// A product whose operands do not fit together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// This CPU cannot run the requested level.
    Unsupported(SimdLevel),
    /// Activation length differs from the matrix's row length.
    ColumnMismatch { matrix: usize, activations: usize },
    /// The row range is empty or runs past the matrix.
    BadRows,
    /// The output buffer is too small.
    OutputTooSmall,
    /// Quantized weights need activations a whole number of blocks long.
    NotQuantized,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(level) => write!(f, "this CPU cannot run {} kernels", level.name()),
            Self::ColumnMismatch {
                matrix,
                activations,
            } => {
                write!(
                    f,
                    "matrix rows have {matrix} values, activations {activations}"
                )
            }
            Self::BadRows => write!(f, "row range outside the matrix"),
            Self::OutputTooSmall => write!(f, "output buffer too small"),
            Self::NotQuantized => write!(f, "activations are not block-quantized"),
        }
    }
}

impl core::error::Error for KernelError {}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::NotAMatrix => write!(f, "tensor is not a matrix"),
            PackError::SizeMismatch => write!(f, "tensor data size does not match its shape"),
        }
    }
}

impl core::error::Error for PackError {}

/// The kernel set in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    level: SimdLevel,
}

impl Kernels {
    /// The best kernels for this CPU.
    pub fn detect() -> Self {
        Self {
            level: SimdLevel::detect(),
        }
    }

    /// Kernels of a given level, if this CPU supports it.
    pub fn with_level(level: SimdLevel) -> Result<Self, KernelError> {
        if level.is_supported() {
            Ok(Self { level })
        } else {
            Err(KernelError::Unsupported(level))
        }
    }

    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// `out[t * out_stride + r] = w[r] · x[t]` for `r` in `rows`, `t < x.n()`.
    pub fn matmul(
        &self,
        w: &PackedMatrix,
        x: &Activations,
        rows: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), KernelError> {
        self.matmul_from(w, x, rows, out, out_stride, 0)
    }

    /// [`Self::matmul`] into a buffer holding only the rows computed:
    /// `out[t * out_stride + (r - rows.start)] = w[r] · x[t]`. Each row's value is the same as
    /// from [`Self::matmul`]; this lets workers each fill their own disjoint block of rows.
    pub fn matmul_block(
        &self,
        w: &PackedMatrix,
        x: &Activations,
        rows: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<(), KernelError> {
        let origin = rows.start;
        self.matmul_from(w, x, rows, out, out_stride, origin)
    }

    /// Row `r` of activation `t` into `out[t * out_stride + r - origin]`, `origin <= rows.start`.
    fn matmul_from(
        &self,
        w: &PackedMatrix,
        x: &Activations,
        rows: Range<usize>,
        out: &mut [f32],
        out_stride: usize,
        origin: usize,
    ) -> Result<(), KernelError> {
        if x.cols() != w.cols() {
            return Err(KernelError::ColumnMismatch {
                matrix: w.cols(),
                activations: x.cols(),
            });
        }
        if rows.start >= rows.end || rows.end > w.rows() {
            return Err(KernelError::BadRows);
        }
        if quant_kind(w.tensor_type()).is_some() && !x.is_quantized() {
            return Err(KernelError::NotQuantized);
        }
        if x.n() == 0 {
            return Ok(());
        }
        let span = rows.end - origin.min(rows.start);
        let needed = (x.n() - 1)
            .checked_mul(out_stride)
            .and_then(|v| v.checked_add(span));
        if origin > rows.start
            || out_stride < span
            || needed.is_none_or(|needed| out.len() < needed)
        {
            return Err(KernelError::OutputTooSmall);
        }
        match self.level {
            SimdLevel::Scalar => scalar::matmul(w, x, rows, out, out_stride, origin),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the level was checked against CPUID/XCR0 when `self` was built; shapes and
            // the output size were checked above.
            SimdLevel::Avx2 => unsafe { avx2::matmul(w, x, rows, out, out_stride, origin) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX-512.
            SimdLevel::Avx512 => unsafe { avx512::matmul(w, x, rows, out, out_stride, origin) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => scalar::matmul(w, x, rows, out, out_stride, origin),
        }
        Ok(())
    }
}
