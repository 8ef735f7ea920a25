//! Hostile input never panics: every truncation and thousands of seeded random corruptions of
//! the real vectors go through the parsers, the measurement calculators and the verifiers, which
//! must answer with an error or a refusal.

mod common;

use common::vector;
use ward_attestation::evidence::snp::SnpReport;
use ward_attestation::evidence::tdx::{TdReport, TdxQuote};
use ward_attestation::measure::firmware::Firmware;
use ward_attestation::measure::snp::{SnpLaunch, launch_digest};
use ward_attestation::measure::tdx::mrtd;
use ward_attestation::verify::Policy;
use ward_attestation::verify::snp::{self, SnpEvidence};
use ward_attestation::verify::tdx::{self, TdxEvidence};

/// xorshift64*: a small seeded generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` copies of `input`, each with 1 to 8 random bytes overwritten.
fn corruptions(input: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let mut copy = input.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(copy.len());
                copy[at] = rng.next() as u8;
            }
            copy
        })
        .collect()
}

#[test]
fn snp_reports() {
    let report = vector("snp/oak/genoa_oc_report.bin");
    let vcek = vector("snp/oak/genoa_oc_vcek.der");
    for len in 0..report.len() {
        assert!(SnpReport::parse(&report[..len]).is_err());
    }
    for (i, bad) in corruptions(&report, 3000, 1).iter().enumerate() {
        let _ = SnpReport::parse(bad);
        if i % 30 == 0 {
            let v = snp::verify(
                &SnpEvidence {
                    report: bad,
                    vek: Some(&vcek),
                    chain: None,
                },
                &Policy::default(),
            );
            assert!(!v.accepted || bad == &report);
        }
    }
    // Corrupted certificates are refused, not trusted.
    for bad in corruptions(&vcek, 100, 2) {
        let v = snp::verify(
            &SnpEvidence {
                report: &report,
                vek: Some(&bad),
                chain: None,
            },
            &Policy::default(),
        );
        assert!(!v.accepted || bad == vcek);
    }
}

#[test]
fn tdx_quotes() {
    let quote = vector("tdx/dcap-qvl/sample_tdx_quote");
    for len in 0..4936 {
        assert!(TdxQuote::parse(&quote[..len]).is_err(), "{len}");
    }
    for (i, bad) in corruptions(&quote, 3000, 3).iter().enumerate() {
        let _ = TdxQuote::parse(bad);
        if i % 30 == 0 {
            let evidence = TdxEvidence {
                quote: bad,
                collateral: None,
                at: 1_771_977_600,
            };
            assert!(!tdx::verify(&evidence, &Policy::default()).accepted);
        }
    }
    let tdreport = [0x81u8; 1024];
    for bad in corruptions(&tdreport, 500, 4) {
        let _ = TdReport::parse(&bad);
    }
}

#[test]
fn firmware_images() {
    let image = vector("measurement/virtee-sev/tests_measurement_ovmf_AmdSev_suffix.bin");
    let launch = SnpLaunch {
        vcpus: 2,
        vcpu_signature: 0x0080_0f12,
        guest_features: 1,
    };
    for len in 0..image.len() {
        let _ = Firmware::parse(&image[len..]);
    }
    // Corrupt only the metadata end of the image, where the parsers look.
    let mut rng = Rng(5);
    for _ in 0..3000 {
        let mut bad = image.clone();
        for _ in 0..1 + rng.below(4) {
            let at = image.len() - 1 - rng.below(0xb00);
            bad[at] = rng.next() as u8;
        }
        let _ = launch_digest(&bad, &launch);
        let _ = mrtd(&bad);
    }
}
