//! Guest-side platform protocols, as pure data transformations the loader and kernel drive
//! (docs/confidential-guests.md). Nothing here touches hardware: the bare-metal code reads and
//! writes MSRs, executes PVALIDATE/TDCALL and copies shared pages, and hands the bytes to these
//! modules, so every encoding and every check on host-provided data is tested on the host.
//!
//! - [`snp`]: AMD SEV-SNP — GHCB MSR protocol (GHCB spec 56421 §2.3.1), the GHCB page layout
//!   with its valid bitmap, the secrets and CPUID pages, and SNP_GUEST_REQUEST messages
//!   (Firmware ABI 56860 ch. 7: AES-256-GCM with VMPCK0, sequence numbers).
//! - [`tdx`]: Intel TDX — TDCALL leaves and TDVMCALL sub-functions (TDX Module ABI, GHCI),
//!   #VE exit-qualification decoding, RTMR extend replay, the GetQuote buffer.
//! - [`insn`]: the small x86 decoder the #VC and #VE handlers need (CPUID, IN/OUT, MMIO MOVs,
//!   RDMSR/WRMSR).
//! - [`provider`]: the session's evidence from the platform (SNP report, TDX quote) and SNP
//!   derived keys, over a transport the kernel implements with the hardware instructions.
//! - [`binding`]: the deployment configuration checked against HOST_DATA / MRCONFIGID of the
//!   enclave's own evidence.

pub mod binding;
pub mod insn;
pub mod provider;
pub mod snp;
pub mod tdx;
