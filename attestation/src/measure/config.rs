//! The deployment configuration is bound to the launch by its digest (DESIGN §4): SNP carries
//! 32 bytes of `HOST_DATA`, TDX 48 bytes of `MRCONFIGID`, both fixed by the host at launch and
//! reported by the hardware. Both are taken over the exact bytes of the configuration file that
//! is passed to the guest through fw_cfg.

use sha2::{Digest, Sha256, Sha384};

/// SNP `HOST_DATA` for a configuration file: its SHA-256.
pub fn host_data(config: &[u8]) -> [u8; 32] {
    Sha256::digest(config).into()
}

/// TDX `MRCONFIGID` for a configuration file: its SHA-384.
pub fn mr_config_id(config: &[u8]) -> [u8; 48] {
    Sha384::digest(config).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::encoding::to_hex;

    #[test]
    fn digests_of_abc() {
        assert_eq!(
            to_hex(&host_data(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            to_hex(&mr_config_id(b"abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
    }
}
