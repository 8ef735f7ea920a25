//! The checks a TD must pass before the kernel runs in it. `platform.rs` gathers the inputs
//! (TDG.VP.INFO's outputs, CPUID leaf 0xD, the TD's own TDREPORT); the decisions are here,
//! tested on the host.

use super::{ATTRIBUTE_SEPT_VE_DISABLE, TdxError, XSAVE_AREA_BYTES};
use ward_attestation::guest::binding::{self, BindingError};
use ward_attestation::guest::tdx::tdcall::{self, TdInfo, TdcallRegisters};

/// TDG.VP.INFO's answer, checked: a GPA width of 48 or 52 whose shared bit is the one the loader
/// handed over, and SEPT_VE_DISABLE set.
pub fn check_vp_info(out: &TdcallRegisters, loader_shared_mask: u64) -> Result<TdInfo, TdxError> {
    let td = tdcall::decode_vp_info(out).map_err(TdxError::VpInfo)?;
    if td.shared_mask() != loader_shared_mask {
        return Err(TdxError::SharedBitMismatch {
            loader: loader_shared_mask,
            module: td.shared_mask(),
        });
    }
    if td.attributes & ATTRIBUTE_SEPT_VE_DISABLE == 0 {
        return Err(TdxError::SeptVeEnabled {
            attributes: td.attributes,
        });
    }
    Ok(td)
}

/// The XSAVE area for the enabled state (CPUID.(0xD, 0).EBX) must fit what the #VE entry
/// reserves.
pub fn check_xsave_size(bytes: u32) -> Result<(), TdxError> {
    if bytes > XSAVE_AREA_BYTES {
        return Err(TdxError::XsaveTooLarge { bytes });
    }
    Ok(())
}

/// Whether the deployment configuration was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigBinding {
    /// Its SHA-384 is MRCONFIGID.
    Bound,
    /// There is none (nothing is served then).
    Absent,
}

/// DESIGN §4: the configuration's SHA-384 must be MRCONFIGID of the TD's own TDREPORT.
pub fn check_config(tdreport: &[u8], config: Option<&[u8]>) -> Result<ConfigBinding, TdxError> {
    let Some(config) = config else {
        return Ok(ConfigBinding::Absent);
    };
    binding::check_tdx(tdreport, config).map_err(|e| match e {
        BindingError::Mismatch => TdxError::ConfigMismatch,
        BindingError::Evidence(_) => TdxError::OwnReportMalformed,
    })?;
    Ok(ConfigBinding::Bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_attestation::guest::tdx::tdcall::TdcallError;
    use ward_attestation::measure::config::mr_config_id;

    fn vp_info(gpa_width: u64, attributes: u64) -> TdcallRegisters {
        TdcallRegisters {
            rcx: gpa_width,
            rdx: attributes,
            r8: (1 << 32) | 1,
            ..Default::default()
        }
    }

    #[test]
    fn the_shared_bit_must_be_the_loaders() {
        let td = check_vp_info(&vp_info(52, ATTRIBUTE_SEPT_VE_DISABLE), 1 << 51).unwrap();
        assert_eq!((td.gpa_width, td.shared_mask()), (52, 1 << 51));
        assert_eq!(
            check_vp_info(&vp_info(48, ATTRIBUTE_SEPT_VE_DISABLE), 1 << 51),
            Err(TdxError::SharedBitMismatch {
                loader: 1 << 51,
                module: 1 << 47
            })
        );
        assert_eq!(
            check_vp_info(&vp_info(48, ATTRIBUTE_SEPT_VE_DISABLE), 0),
            Err(TdxError::SharedBitMismatch {
                loader: 0,
                module: 1 << 47
            })
        );
        assert_eq!(
            check_vp_info(&vp_info(39, ATTRIBUTE_SEPT_VE_DISABLE), 1 << 38),
            Err(TdxError::VpInfo(TdcallError::BadGpaWidth(39)))
        );
        let failed = TdcallRegisters {
            rax: 0x8000_0000_0000_0000,
            ..vp_info(52, ATTRIBUTE_SEPT_VE_DISABLE)
        };
        assert!(matches!(
            check_vp_info(&failed, 1 << 51),
            Err(TdxError::VpInfo(TdcallError::Status(_)))
        ));
    }

    #[test]
    fn a_td_that_lets_the_host_raise_ve_is_refused() {
        assert_eq!(
            check_vp_info(&vp_info(52, 1), 1 << 51),
            Err(TdxError::SeptVeEnabled { attributes: 1 })
        );
        // A debug TD passes (logged; verifiers refuse its quotes).
        let debug = check_vp_info(&vp_info(52, ATTRIBUTE_SEPT_VE_DISABLE | 1), 1 << 51).unwrap();
        assert!(debug.debug());
    }

    #[test]
    fn xsave_state_must_fit_the_entry_stub() {
        // x87 + SSE + AVX + AVX-512 (the most the loader enables) is 2688 bytes.
        assert_eq!(check_xsave_size(2688), Ok(()));
        assert_eq!(check_xsave_size(XSAVE_AREA_BYTES), Ok(()));
        // AMX tile data alone is 8 KiB.
        assert_eq!(
            check_xsave_size(11008),
            Err(TdxError::XsaveTooLarge { bytes: 11008 })
        );
    }

    #[test]
    fn the_configuration_must_hash_to_mrconfigid() {
        let config = b"min_model_version = 3\nslots = 4\n";
        let mut tdreport = [0u8; 1024];
        tdreport[0] = 0x81;
        // TDINFO at 512: ATTRIBUTES, XFAM, MRTD (528), MRCONFIGID (576).
        tdreport[576..624].copy_from_slice(&mr_config_id(config));
        assert_eq!(
            check_config(&tdreport, Some(config)),
            Ok(ConfigBinding::Bound)
        );
        assert_eq!(
            check_config(&tdreport, Some(b"min_model_version = 1\nslots = 4\n")),
            Err(TdxError::ConfigMismatch)
        );
        assert_eq!(check_config(&tdreport, None), Ok(ConfigBinding::Absent));
        assert_eq!(
            check_config(&tdreport[..100], Some(config)),
            Err(TdxError::OwnReportMalformed)
        );
    }
}
