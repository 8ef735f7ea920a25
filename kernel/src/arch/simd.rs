//! The SIMD level the inference kernels run at, chosen once at start from [`CpuFeatures`].

use super::cpu_features::{CpuFeatures, XCR0_AVX, XCR0_AVX512};
use core::fmt;

/// Vector instruction level, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain scalar code (plus the compile-time SSE baseline).
    Scalar,
    /// AVX2 with FMA (x86-64-v3; TCG `-cpu max`).
    Avx2Fma,
    /// AVX-512 F/BW/VL with VNNI int8 dot products.
    Avx512Vnni,
}

impl SimdLevel {
    /// The name printed in the boot log and used in docs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2Fma => "avx2-fma",
            Self::Avx512Vnni => "avx512-vnni",
        }
    }

    /// The best level `features` support, requiring the OS-enabled state for each.
    pub fn select(features: &CpuFeatures) -> Self {
        let ymm_enabled = features.osxsave && features.xcr0 & XCR0_AVX == XCR0_AVX;
        let zmm_enabled = ymm_enabled && features.xcr0 & XCR0_AVX512 == XCR0_AVX512;
        let avx2 = ymm_enabled && features.avx && features.avx2 && features.fma;
        let avx512 = features.avx512f && features.avx512bw && features.avx512vl;
        if avx2 && zmm_enabled && avx512 && features.avx512vnni {
            Self::Avx512Vnni
        } else if avx2 {
            Self::Avx2Fma
        } else {
            Self::Scalar
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epyc() -> CpuFeatures {
        CpuFeatures {
            osxsave: true,
            avx: true,
            fma: true,
            avx2: true,
            avx512f: true,
            avx512bw: true,
            avx512vl: true,
            avx512vnni: true,
            rdrand: true,
            rdseed: true,
            xcr0: 0b1110_0111,
        }
    }

    #[test]
    fn picks_the_best_enabled_level() {
        assert_eq!(SimdLevel::select(&epyc()), SimdLevel::Avx512Vnni);
        let tcg_max = CpuFeatures {
            avx512f: false,
            avx512bw: false,
            avx512vl: false,
            avx512vnni: false,
            xcr0: 0b111,
            ..epyc()
        };
        assert_eq!(SimdLevel::select(&tcg_max), SimdLevel::Avx2Fma);
        assert_eq!(
            SimdLevel::select(&CpuFeatures::default()),
            SimdLevel::Scalar
        );
    }

    #[test]
    fn os_state_gates_the_instructions() {
        // AVX-512 present but ZMM state not enabled in XCR0: AVX2 only.
        assert_eq!(
            SimdLevel::select(&CpuFeatures {
                xcr0: 0b111,
                ..epyc()
            }),
            SimdLevel::Avx2Fma
        );
        // AVX state not enabled at all: scalar.
        assert_eq!(
            SimdLevel::select(&CpuFeatures {
                xcr0: 0b011,
                ..epyc()
            }),
            SimdLevel::Scalar
        );
        assert_eq!(
            SimdLevel::select(&CpuFeatures {
                osxsave: false,
                ..epyc()
            }),
            SimdLevel::Scalar
        );
        // No VNNI, or no FMA.
        assert_eq!(
            SimdLevel::select(&CpuFeatures {
                avx512vnni: false,
                ..epyc()
            }),
            SimdLevel::Avx2Fma
        );
        assert_eq!(
            SimdLevel::select(&CpuFeatures {
                fma: false,
                ..epyc()
            }),
            SimdLevel::Scalar
        );
    }

    #[test]
    fn detection_on_this_host_is_consistent() {
        let features = CpuFeatures::detect();
        let level = SimdLevel::select(&features);
        if level >= SimdLevel::Avx2Fma {
            assert!(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
        }
        if level == SimdLevel::Avx512Vnni {
            assert!(std::is_x86_feature_detected!("avx512vnni"));
        }
        assert_eq!(features.avx2, std::is_x86_feature_detected!("avx2"));
    }
}
