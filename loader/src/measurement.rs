//! The loader's measurements: SHA-384 of the firmware image, the kernel ELF and the deployment
//! configuration, in that order, plus the configuration's SHA-256 (what SNP `HOST_DATA` binds).

use sha2::{Digest, Sha256, Sha384};
use ward_bootinfo::{ConfigBlob, MeasurementKind, MeasurementLog};

/// SHA-384 of `bytes`.
pub fn sha384(bytes: &[u8]) -> [u8; 48] {
    Sha384::digest(bytes).into()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Digests of a configuration copied to `address` (an absent configuration is empty: address
/// and length 0, digests of the empty string).
pub fn config_blob(address: u64, config: &[u8]) -> ConfigBlob {
    ConfigBlob {
        address: if config.is_empty() { 0 } else { address },
        length: config.len() as u64,
        sha256: sha256(config),
        sha384: sha384(config),
    }
}

/// The measurement log for an image, the kernel inside it and the configuration's digest.
pub fn measurement_log(image: &[u8], kernel_elf: &[u8], config: &ConfigBlob) -> MeasurementLog {
    let mut log = MeasurementLog::empty();
    // Three entries always fit in the log's capacity.
    log.push(MeasurementKind::FirmwareImage, sha384(image));
    log.push(MeasurementKind::KernelElf, sha384(kernel_elf));
    log.push(MeasurementKind::DeploymentConfig, config.sha384);
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> alloc::string::String {
        bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
    }

    #[test]
    fn log_records_image_kernel_and_config_in_order() {
        let config = config_blob(0x13_0000, b"abc");
        assert_eq!(config.address, 0x13_0000);
        assert_eq!(config.length, 3);
        // FIPS 180-2 test vectors for "abc".
        assert_eq!(
            hex(&config.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&config.sha384),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
        let log = measurement_log(b"image", b"kernel", &config);
        let kinds: alloc::vec::Vec<u32> = log.measurements().iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MeasurementKind::FirmwareImage as u32,
                MeasurementKind::KernelElf as u32,
                MeasurementKind::DeploymentConfig as u32
            ]
        );
        assert_eq!(
            log.find(MeasurementKind::KernelElf).unwrap().sha384,
            sha384(b"kernel")
        );
        assert_eq!(
            log.find(MeasurementKind::DeploymentConfig).unwrap().sha384,
            config.sha384
        );
    }

    #[test]
    fn absent_config_is_the_empty_string() {
        let config = config_blob(0x13_0000, b"");
        assert_eq!((config.address, config.length), (0, 0));
        assert_eq!(config.sha384, sha384(b""));
    }
}
