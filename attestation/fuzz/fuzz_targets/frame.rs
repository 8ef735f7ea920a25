//! Frame parsing on both sides: arbitrary bytes, delivered in arbitrary pieces, to the frame
//! reader in every state, to a server awaiting a ClientHello, and to a client awaiting a
//! ServerHello. Anything may be refused; nothing may panic or allocate past the frame limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use ward_attestation::protocol::frame::{Expect, FrameReader};
use ward_attestation::protocol::{
    ClientParams, ClientSession, ModelStatus, NoHardwareVerifier, Purpose, ServerParams,
    ServerSession, SimulatedAttester,
};

fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    // The first byte picks the piece size, so the fuzzer explores split points too.
    let size = usize::from(data.first().copied().unwrap_or(1)).max(1);
    data.get(1..).unwrap_or(&[]).chunks(size)
}

fuzz_target!(|data: &[u8]| {
    for expect in [Expect::ClientHello, Expect::ServerHello, Expect::Records] {
        let mut reader = FrameReader::new();
        'outer: for piece in pieces(data) {
            let mut rest = piece;
            while !rest.is_empty() {
                match reader.feed(rest, expect) {
                    Ok((used, frame)) => {
                        if let Some(frame) = frame {
                            assert!(frame.body.len() <= 65_536);
                        }
                        rest = &rest[used..];
                    }
                    Err(_) => break 'outer,
                }
            }
        }
    }

    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut attester = SimulatedAttester::new(&mut rng, [0; 48], b"config");
    let mut server = ServerSession::new(ServerParams {
        build_id: [0; 32],
        config: b"config".to_vec(),
        model: ModelStatus::NotLoaded,
        key_release_public_key: [9; 32],
    });
    for piece in pieces(data) {
        if server.receive(piece, &mut rng, &mut attester).is_err() {
            break;
        }
    }
    let _ = server.take_output();

    let params = ClientParams {
        purpose: Purpose::Chat,
        allow_simulated: true,
        simulated_measurements: Vec::new(),
        expected_config: None,
    };
    let mut client = ClientSession::new(params, &mut rng);
    // Wrap the input as a ServerHello frame so the hello parser sees it.
    let mut frame = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(0x02);
    frame.extend_from_slice(data);
    let _ = client.receive(&frame, &NoHardwareVerifier);
    let _ = client.transport_closed();
});
