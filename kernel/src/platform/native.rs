//! A plain VM (KVM or TCG): no memory encryption, so all memory is already host-visible and
//! sharing is bookkeeping only; evidence is simulated.

#[cfg(target_os = "none")]
use super::{ApStartError, ApStartup};
use super::{Evidence, Platform, PlatformError, check_pages};
use crate::arch::cpu_features::CpuFeatures;
use crate::arch::random;
use crate::mm::address::PhysRange;
use ward_bootinfo::PlatformKind;

/// The native platform.
pub struct Native {
    features: CpuFeatures,
}

impl Native {
    /// The platform on the current CPU.
    pub fn new(features: CpuFeatures) -> Self {
        Self { features }
    }
}

impl Platform for Native {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Native
    }

    fn name(&self) -> &'static str {
        "native"
    }

    fn private_pte_mask(&self) -> u64 {
        0
    }

    fn shared_pte_mask(&self) -> u64 {
        0
    }

    fn share(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)
    }

    fn unshare(&self, range: PhysRange) -> Result<(), PlatformError> {
        check_pages(range)
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, PlatformError> {
        Ok(Evidence::Simulated {
            report_data: *report_data,
        })
    }

    fn random_seed(&self) -> Result<[u8; 32], PlatformError> {
        random::seed(&self.features).map_err(PlatformError::Random)
    }

    /// INIT, start-up, start-up to the real-mode trampoline (`arch::smp::start_with_sipi`).
    #[cfg(target_os = "none")]
    fn start_application_processor(
        &self,
        apic_id: u32,
        startup: &ApStartup,
    ) -> Result<(), ApStartError> {
        crate::arch::smp::start_with_sipi(apic_id, startup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::address::PhysAddr;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange {
            start: PhysAddr::new(start),
            end: PhysAddr::new(end),
        }
    }

    #[test]
    fn native_has_no_masks_and_checks_ranges() {
        let native = Native::new(CpuFeatures::detect());
        assert_eq!(
            (native.private_pte_mask(), native.shared_pte_mask()),
            (0, 0)
        );
        assert_eq!(native.share(range(0x1000, 0x3000)), Ok(()));
        assert_eq!(native.unshare(range(0x1000, 0x3000)), Ok(()));
        assert!(native.share(range(0x1000, 0x1800)).is_err());
        assert!(native.share(range(0x1000, 0x1000)).is_err());
        assert_eq!(native.kind(), PlatformKind::Native);
    }

    #[test]
    fn evidence_is_marked_simulated() {
        let native = Native::new(CpuFeatures::detect());
        let data = [7u8; 64];
        assert_eq!(
            native.evidence(&data),
            Ok(Evidence::Simulated { report_data: data })
        );
    }

    #[test]
    fn seed_comes_from_the_cpu() {
        let features = CpuFeatures::detect();
        let native = Native::new(features);
        if features.rdrand || features.rdseed {
            assert_ne!(native.random_seed().unwrap(), native.random_seed().unwrap());
        }
        let no_rng = Native::new(CpuFeatures::default());
        assert!(no_rng.random_seed().is_err());
    }
}
