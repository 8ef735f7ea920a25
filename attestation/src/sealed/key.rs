//! The model key: 32 secret bytes, wiped when dropped.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a model key in bytes (AES-256).
pub const MODEL_KEY_LEN: usize = 32;

/// The AES-256-GCM key a model is sealed with. Never printed: `Debug` shows nothing secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ModelKey([u8; MODEL_KEY_LEN]);

impl ModelKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; MODEL_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh key from a cryptographic RNG.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut bytes = [0u8; MODEL_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw key bytes, for writing the key file or sealing it to an enclave.
    pub fn as_bytes(&self) -> &[u8; MODEL_KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ModelKey(<secret>)")
    }
}
