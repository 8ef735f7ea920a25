//! The vendor certificates `ward verify` trusts, built in so a relying party never takes a root
//! from the party it is checking. AMD's ARKs with the ASK (signs VCEKs) and ASVK (signs VLEKs) of
//! each product line, and Intel's SGX root CA (DCAP, also for TDX). Copied from the public test
//! vectors (see `attestation/testdata/vectors/PROVENANCE.md` and `LICENSES.md`).

use crate::evidence::snp::Product;

/// The pinned AMD certificates of one product line (PEM).
pub struct AmdRoots {
    pub product: Product,
    /// AMD Root Key, self-signed.
    pub ark: &'static [u8],
    /// AMD SEV Key: signs VCEKs.
    pub ask: &'static [u8],
    /// AMD SEV VLEK Key: signs VLEKs.
    pub asvk: &'static [u8],
}

pub const AMD: [AmdRoots; 3] = [
    AmdRoots {
        product: Product::Milan,
        ark: include_bytes!("roots/milan_ark.pem"),
        ask: include_bytes!("roots/milan_ask.pem"),
        asvk: include_bytes!("roots/milan_asvk.pem"),
    },
    AmdRoots {
        product: Product::Genoa,
        ark: include_bytes!("roots/genoa_ark.pem"),
        ask: include_bytes!("roots/genoa_ask.pem"),
        asvk: include_bytes!("roots/genoa_asvk.pem"),
    },
    AmdRoots {
        product: Product::Turin,
        ark: include_bytes!("roots/turin_ark.pem"),
        ask: include_bytes!("roots/turin_ask.pem"),
        asvk: include_bytes!("roots/turin_asvk.pem"),
    },
];

/// Intel SGX Root CA (DER), the root of PCK certificates and of Intel's collateral signers.
pub const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("roots/intel_sgx_root_ca.der");
