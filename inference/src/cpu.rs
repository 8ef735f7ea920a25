//! CPU feature detection without `std`: CPUID for what the processor implements and XGETBV for
//! what the operating system (or our kernel) has enabled in XCR0. Both must agree before a
//! vector width is used.

/// The instruction-set level the kernels run at, picked once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Portable reference code.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (plus everything of `Avx2`).
    Avx512,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "scalar" => Some(Self::Scalar),
            "avx2" => Some(Self::Avx2),
            "avx512" => Some(Self::Avx512),
            _ => None,
        }
    }

    /// The best level this CPU and OS support.
    pub fn detect() -> Self {
        detect()
    }

    /// Whether this CPU and OS can run code of this level.
    pub fn is_supported(self) -> bool {
        self <= detect()
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> SimdLevel {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    let max_leaf = __cpuid(0).eax;
    if max_leaf < 7 {
        return SimdLevel::Scalar;
    }
    let leaf1 = __cpuid(1);
    let leaf7 = __cpuid_count(7, 0);
    let bit = |reg: u32, n: u32| reg & (1 << n) != 0;
    let osxsave = bit(leaf1.ecx, 27);
    if !osxsave {
        return SimdLevel::Scalar;
    }
    // SAFETY: XGETBV is available because CPUID reports OSXSAVE (CR4.OSXSAVE set).
    let xcr0 = unsafe { _xgetbv(0) };
    // XCR0: SSE (bit 1) and AVX (bit 2) state; opmask, ZMM0-15 upper, ZMM16-31 (bits 5-7).
    let os_avx = xcr0 & 0b110 == 0b110;
    let os_avx512 = os_avx && xcr0 & 0b1110_0000 == 0b1110_0000;

    let fma = bit(leaf1.ecx, 12);
    let f16c = bit(leaf1.ecx, 29);
    let avx = bit(leaf1.ecx, 28);
    let avx2 = bit(leaf7.ebx, 5);
    let avx512f = bit(leaf7.ebx, 16);
    let avx512bw = bit(leaf7.ebx, 30);
    let avx512vl = bit(leaf7.ebx, 31);
    let avx512vnni = bit(leaf7.ecx, 11);

    let has_avx2 = os_avx && avx && avx2 && fma && f16c;
    if has_avx2 && os_avx512 && avx512f && avx512bw && avx512vl && avx512vnni {
        SimdLevel::Avx512
    } else if has_avx2 {
        SimdLevel::Avx2
    } else {
        SimdLevel::Scalar
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> SimdLevel {
    SimdLevel::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std_detection() {
        let std_avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let std_avx512 = std_avx2
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        let expected = if std_avx512 {
            SimdLevel::Avx512
        } else if std_avx2 {
            SimdLevel::Avx2
        } else {
            SimdLevel::Scalar
        };
        assert_eq!(SimdLevel::detect(), expected);
    }
}
