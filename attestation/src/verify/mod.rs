//! Host-side verification of hardware evidence (feature `verify`): signatures and certificate
//! chains to pinned vendor roots, TCB evaluation, and the relying party's [`policy`].
//!
//! Each verifier returns a verdict that records every check separately and lists one reason per
//! failed check, so a caller can show exactly why evidence was refused. The output of
//! `ward verify` is these verdicts serialised as JSON (a contract; see `docs/policy.md`).
//!
//! - [`snp`]: SEV-SNP report ← VCEK/VLEK ← ASK/ASVK ← pinned ARK (Milan, Genoa, Turin).
//! - [`tdx`]: DCAP quote ← attestation key ← QE report ← PCK ← pinned Intel SGX root, with
//!   TCB status from Intel collateral evaluated at an explicit time (by `dcap-qvl`).

pub mod policy;
pub mod roots;
pub mod session;
pub mod snp;
pub mod tdx;
mod x509;

pub use policy::Policy;
pub use session::HardwareVerifier;

use crate::evidence::encoding::to_hex;
use alloc::string::String;

fn hex<T: AsRef<[u8]>>(bytes: T) -> String {
    to_hex(bytes.as_ref())
}
