//! Transcript hash, key schedule and the per-direction record ciphers (docs/protocol.md §2–3).

use super::ProtocolError;
use super::frame::{FRAME_RECORD, Frame, RECORD_PLAINTEXT_LEN, frame_header};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use alloc::vec::Vec;
use hkdf::Hkdf;
use sha2::{Digest, Sha384, Sha512};
use zeroize::Zeroizing;

const TRANSCRIPT_LABEL: &[u8] = b"WARD-SESSION-v1 transcript";

/// SHA-512 over the ClientHello body and the ServerHello core: the evidence's REPORT_DATA.
pub fn transcript_hash(client_hello: &[u8], server_hello_core: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(TRANSCRIPT_LABEL);
    h.update((client_hello.len() as u32).to_be_bytes());
    h.update(client_hello);
    h.update((server_hello_core.len() as u32).to_be_bytes());
    h.update(server_hello_core);
    h.finalize().into()
}

/// Which way a record travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// The cipher state of one direction: key, IV and the implicit sequence number.
pub struct RecordCipher {
    cipher: Aes256Gcm,
    iv: Zeroizing<[u8; 12]>,
    seq: u64,
}

impl RecordCipher {
    fn nonce(&self) -> Result<[u8; 12], ProtocolError> {
        if self.seq == u64::MAX {
            return Err(ProtocolError::SequenceExhausted);
        }
        let mut n = *self.iv;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        Ok(n)
    }

    /// Encrypts one record plaintext into a complete frame appended to `out`.
    pub fn seal(
        &mut self,
        plaintext: &[u8; RECORD_PLAINTEXT_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let nonce = self.nonce()?;
        let header = frame_header(FRAME_RECORD, RECORD_PLAINTEXT_LEN + 16);
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let body = &mut out[start + header.len()..];
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce.into(), &header, body.into())
            .map_err(|_| ProtocolError::InvalidState("record encryption failed"))?;
        out.extend_from_slice(&tag);
        self.seq += 1;
        Ok(())
    }

    /// Authenticates and decrypts one record frame (already checked to have the record size).
    pub fn open(
        &mut self,
        frame: &Frame,
    ) -> Result<Zeroizing<[u8; RECORD_PLAINTEXT_LEN]>, ProtocolError> {
        let nonce = self.nonce()?;
        if frame.body.len() != RECORD_PLAINTEXT_LEN + 16 {
            return Err(ProtocolError::MalformedRecord("record length"));
        }
        let mut plain = Zeroizing::new([0u8; RECORD_PLAINTEXT_LEN]);
        plain.copy_from_slice(&frame.body[..RECORD_PLAINTEXT_LEN]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&frame.body[RECORD_PLAINTEXT_LEN..]);
        self.cipher
            .decrypt_inout_detached(
                &nonce.into(),
                &frame.header,
                (&mut plain[..]).into(),
                &Tag::from(tag),
            )
            .map_err(|_| ProtocolError::RecordAuthentication { seq: self.seq })?;
        self.seq += 1;
        Ok(plain)
    }
}

/// Both directions' ciphers, seen from one side.
pub struct SessionKeys {
    pub send: RecordCipher,
    pub receive: RecordCipher,
}

fn direction_cipher(prk: &Hkdf<Sha384>, name: &[u8]) -> Result<RecordCipher, ProtocolError> {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut iv = Zeroizing::new([0u8; 12]);
    let mut label = Zeroizing::new(Vec::with_capacity(24));
    for (suffix, out) in [(&b" key"[..], &mut key[..]), (&b" iv"[..], &mut iv[..])] {
        label.clear();
        label.extend_from_slice(b"ward v1 ");
        label.extend_from_slice(name);
        label.extend_from_slice(suffix);
        prk.expand(&label, out)
            .map_err(|_| ProtocolError::InvalidState("HKDF output length"))?;
    }
    Ok(RecordCipher {
        cipher: Aes256Gcm::new((&*key).into()),
        iv,
        seq: 0,
    })
}

impl SessionKeys {
    /// Runs the key schedule over the X25519 shared secret and the transcript hash.
    pub fn derive(
        shared_secret: &x25519_dalek::SharedSecret,
        transcript: &[u8; 64],
        side: Direction,
    ) -> Result<Self, ProtocolError> {
        if !shared_secret.was_contributory() {
            return Err(ProtocolError::WeakKeyExchange);
        }
        let prk = Hkdf::<Sha384>::new(Some(transcript), shared_secret.as_bytes());
        let c2s = direction_cipher(&prk, b"c2s")?;
        let s2c = direction_cipher(&prk, b"s2c")?;
        Ok(match side {
            Direction::ClientToServer => Self {
                send: c2s,
                receive: s2c,
            },
            Direction::ServerToClient => Self {
                send: s2c,
                receive: c2s,
            },
        })
    }
}
