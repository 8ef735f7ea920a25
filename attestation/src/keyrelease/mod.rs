//! Model-key release (DESIGN §12, docs/protocol.md §5): the model owner seals the 32-byte model
//! key to the enclave's fresh, attested X25519 key with HPKE (RFC 9180) in Auth mode, suite
//! DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, bound to one handshake transcript.
//! The enclave opens it only with the key-release server's public key from its bound deployment
//! configuration.

use crate::sealed::{MODEL_KEY_LEN, ModelKey};
use alloc::vec::Vec;
use core::fmt;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

type KemPrivate = <X25519HkdfSha256 as Kem>::PrivateKey;
type KemPublic = <X25519HkdfSha256 as Kem>::PublicKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;

/// Domain label of the HPKE `info`.
pub const INFO_LABEL: &[u8] = b"WARD-KEY-RELEASE-v1";
/// Length of the encapsulated key.
pub const ENC_LEN: usize = 32;
/// Length of the HPKE ciphertext of a model key (key + tag).
pub const CIPHERTEXT_LEN: usize = MODEL_KEY_LEN + 16;
/// Encoded message length.
pub const MESSAGE_LEN: usize = ENC_LEN + CIPHERTEXT_LEN;

/// Why a key release failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReleaseError {
    /// A public key that is not a valid X25519 point encoding.
    InvalidPublicKey,
    /// HPKE encapsulation or encryption failed.
    Seal,
    /// The message does not open: another sender key, another handshake, or tampered bytes.
    Open,
    /// A message of the wrong length.
    MalformedMessage,
}

impl fmt::Display for KeyReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidPublicKey => "invalid X25519 public key",
            Self::Seal => "sealing the model key failed",
            Self::Open => {
                "the released key does not open (wrong key-release sender, other handshake, or tampered)"
            }
            Self::MalformedMessage => "malformed key-release message",
        })
    }
}

impl core::error::Error for KeyReleaseError {}

/// The HPKE message: encapsulated key and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReleaseMessage {
    pub enc: [u8; ENC_LEN],
    pub ciphertext: [u8; CIPHERTEXT_LEN],
}

impl KeyReleaseMessage {
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut b = [0u8; MESSAGE_LEN];
        b[..ENC_LEN].copy_from_slice(&self.enc);
        b[ENC_LEN..].copy_from_slice(&self.ciphertext);
        b
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, KeyReleaseError> {
        if bytes.len() != MESSAGE_LEN {
            return Err(KeyReleaseError::MalformedMessage);
        }
        let mut m = Self {
            enc: [0; ENC_LEN],
            ciphertext: [0; CIPHERTEXT_LEN],
        };
        m.enc.copy_from_slice(&bytes[..ENC_LEN]);
        m.ciphertext.copy_from_slice(&bytes[ENC_LEN..]);
        Ok(m)
    }
}

fn info(transcript_hash: &[u8; 64]) -> [u8; 19 + 64] {
    let mut i = [0u8; 19 + 64];
    i[..INFO_LABEL.len()].copy_from_slice(INFO_LABEL);
    i[INFO_LABEL.len()..].copy_from_slice(transcript_hash);
    i
}

/// An X25519 key pair in HPKE form: the enclave's per-handshake release key, or the key-release
/// server's long-term sender key. The secret is wiped when dropped.
pub struct ReleaseKeyPair {
    secret: KemPrivate,
    public: KemPublic,
}

impl ReleaseKeyPair {
    /// A fresh key pair (the enclave, once per key-release handshake).
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let (secret, public) = X25519HkdfSha256::gen_keypair_with_rng(rng);
        Self { secret, public }
    }

    /// A key pair from 32 secret bytes (the key-release server's key file).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<Self, KeyReleaseError> {
        let secret =
            KemPrivate::from_bytes(bytes).map_err(|_| KeyReleaseError::InvalidPublicKey)?;
        let public = X25519HkdfSha256::sk_to_pk(&secret);
        Ok(Self { secret, public })
    }

    /// The public key, as it appears in a ServerHello or a deployment configuration.
    pub fn public_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }
}

/// Model owner side: seals `key` to the enclave's `release_public` for the handshake whose
/// transcript hash is given, authenticated as `sender`.
pub fn seal_model_key(
    rng: &mut impl rand_core::CryptoRng,
    sender: &ReleaseKeyPair,
    release_public: &[u8; 32],
    transcript_hash: &[u8; 64],
    key: &ModelKey,
) -> Result<KeyReleaseMessage, KeyReleaseError> {
    let recipient =
        KemPublic::from_bytes(release_public).map_err(|_| KeyReleaseError::InvalidPublicKey)?;
    let mode = OpModeS::<X25519HkdfSha256>::Auth((sender.secret.clone(), sender.public.clone()));
    let (enc, ciphertext) =
        hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &mode,
            &recipient,
            &info(transcript_hash),
            key.as_bytes(),
            &[],
            rng,
        )
        .map_err(|_| KeyReleaseError::Seal)?;
    let mut message = KeyReleaseMessage {
        enc: [0; ENC_LEN],
        ciphertext: [0; CIPHERTEXT_LEN],
    };
    message.enc.copy_from_slice(&enc.to_bytes());
    if ciphertext.len() != CIPHERTEXT_LEN {
        return Err(KeyReleaseError::Seal);
    }
    message.ciphertext.copy_from_slice(&ciphertext);
    Ok(message)
}

/// Enclave side: opens a release message with this handshake's release key, accepting only
/// `expected_sender_public` (the configuration's `key_release_public_key`) as the sender.
pub fn open_model_key(
    release: &ReleaseKeyPair,
    expected_sender_public: &[u8; 32],
    transcript_hash: &[u8; 64],
    message: &KeyReleaseMessage,
) -> Result<ModelKey, KeyReleaseError> {
    let sender = KemPublic::from_bytes(expected_sender_public)
        .map_err(|_| KeyReleaseError::InvalidPublicKey)?;
    let enc = EncappedKey::from_bytes(&message.enc).map_err(|_| KeyReleaseError::Open)?;
    let mode = OpModeR::<X25519HkdfSha256>::Auth(sender);
    let plain: Zeroizing<Vec<u8>> = Zeroizing::new(
        hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &mode,
            &release.secret,
            &enc,
            &info(transcript_hash),
            &message.ciphertext,
            &[],
        )
        .map_err(|_| KeyReleaseError::Open)?,
    );
    let bytes: [u8; MODEL_KEY_LEN] = plain[..]
        .try_into()
        .map_err(|_| KeyReleaseError::MalformedMessage)?;
    Ok(ModelKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests;
