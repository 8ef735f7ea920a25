//! Key release round trip and every refusal.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn setup() -> (ChaCha20Rng, ReleaseKeyPair, ReleaseKeyPair, ModelKey) {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let sender = ReleaseKeyPair::from_secret_bytes(&[0x42; 32]).unwrap();
    let enclave = ReleaseKeyPair::generate(&mut rng);
    (rng, sender, enclave, ModelKey::from_bytes([0x5A; 32]))
}

#[test]
fn round_trip() {
    let (mut rng, sender, enclave, key) = setup();
    let transcript = [7u8; 64];
    let msg = seal_model_key(
        &mut rng,
        &sender,
        &enclave.public_bytes(),
        &transcript,
        &key,
    )
    .unwrap();
    let parsed = KeyReleaseMessage::parse(&msg.encode()).unwrap();
    let opened = open_model_key(&enclave, &sender.public_bytes(), &transcript, &parsed).unwrap();
    assert_eq!(opened.as_bytes(), key.as_bytes());
}

#[test]
fn sender_public_key_is_the_x25519_public_key() {
    // RFC 7748 §6.1: Alice's private key and public key.
    let secret: [u8; 32] = [
        0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66,
        0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9,
        0x2c, 0x2a,
    ];
    let public = ReleaseKeyPair::from_secret_bytes(&secret)
        .unwrap()
        .public_bytes();
    assert_eq!(public[..4], [0x85, 0x20, 0xf0, 0x09]);
    assert_eq!(public[28..], [0xaa, 0x9b, 0x4e, 0x6a]);
}

#[test]
fn wrong_sender_key_is_refused() {
    let (mut rng, _, enclave, key) = setup();
    let impostor = ReleaseKeyPair::from_secret_bytes(&[0x43; 32]).unwrap();
    let configured = ReleaseKeyPair::from_secret_bytes(&[0x42; 32])
        .unwrap()
        .public_bytes();
    let msg = seal_model_key(&mut rng, &impostor, &enclave.public_bytes(), &[7; 64], &key).unwrap();
    assert_eq!(
        open_model_key(&enclave, &configured, &[7; 64], &msg).unwrap_err(),
        KeyReleaseError::Open
    );
}

#[test]
fn tampered_ciphertext_and_enc_are_refused() {
    let (mut rng, sender, enclave, key) = setup();
    let msg = seal_model_key(&mut rng, &sender, &enclave.public_bytes(), &[7; 64], &key).unwrap();
    for at in [0, 31, 32, 50, MESSAGE_LEN - 1] {
        let mut bytes = msg.encode();
        bytes[at] ^= 1;
        let bad = KeyReleaseMessage::parse(&bytes).unwrap();
        assert!(
            open_model_key(&enclave, &sender.public_bytes(), &[7; 64], &bad).is_err(),
            "{at}"
        );
    }
    assert_eq!(
        KeyReleaseMessage::parse(&msg.encode()[..79]).unwrap_err(),
        KeyReleaseError::MalformedMessage
    );
}

#[test]
fn other_handshake_or_other_enclave_key_is_refused() {
    let (mut rng, sender, enclave, key) = setup();
    let msg = seal_model_key(&mut rng, &sender, &enclave.public_bytes(), &[7; 64], &key).unwrap();
    // Evidence mismatch: the message was made for another transcript.
    assert_eq!(
        open_model_key(&enclave, &sender.public_bytes(), &[8; 64], &msg).unwrap_err(),
        KeyReleaseError::Open
    );
    // Another enclave key (another attested handshake) cannot open it either.
    let other = ReleaseKeyPair::generate(&mut rng);
    assert_eq!(
        open_model_key(&other, &sender.public_bytes(), &[7; 64], &msg).unwrap_err(),
        KeyReleaseError::Open
    );
}
