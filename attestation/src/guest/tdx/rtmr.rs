//! Runtime measurement registers: TDG.MR.RTMR.EXTEND sets RTMR = SHA-384(RTMR || data) with a
//! 48-byte data block. A verifier replays a log of extensions to predict the RTMR a TDREPORT
//! or quote carries. Ward extends RTMR[`MODEL_RTMR`] once, with the SHA-384 of the loaded
//! model's plaintext (DESIGN §10), so a quote names the model that answers.

use sha2::{Digest, Sha384};

/// The RTMR Ward extends with the model digest (RTMR0–1 are firmware/OS by TDVF convention).
pub const MODEL_RTMR: u8 = 2;

/// One extension step.
pub fn extend(rtmr: &[u8; 48], data: &[u8; 48]) -> [u8; 48] {
    Sha384::new()
        .chain_update(rtmr)
        .chain_update(data)
        .finalize()
        .into()
}

/// The register value after extending a zero register with each of `events` in order.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a [u8; 48]>) -> [u8; 48] {
    events
        .into_iter()
        .fold([0u8; 48], |rtmr, event| extend(&rtmr, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex48(s: &str) -> [u8; 48] {
        let mut out = [0u8; 48];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn replay_matches_an_independent_computation() {
        // Expected values computed with Python's hashlib:
        //   r = bytes(48); r = sha384(r + sha384(b"ward-model")); r = sha384(r + b"\xab" * 48)
        let model: [u8; 48] = Sha384::digest(b"ward-model").into();
        let first = hex48(
            "517bf2675c91fabfb67a17c5c104463716a5fd5920b0aa2115cbb90a9c3b30e8f2396a8770f89104d49f0b7982fd5190",
        );
        let second = hex48(
            "3d2acf64f83c1b73a25e08ca49ce9b821ea8dfe87357f3ee8ca7101a9c77ca70f92904813132031196f0ffa0a67824cb",
        );
        assert_eq!(replay([&model]), first);
        assert_eq!(replay([&model, &[0xAB; 48]]), second);
        // Order matters: a reordered log predicts a different register.
        assert_ne!(replay([&[0xAB; 48], &model]), second);
        assert_eq!(replay([]), [0u8; 48]);
    }
}
