//! The enclave with two CPUs serving two users at once (issue 6): it boots with `-smp 2`,
//! reports both CPUs and "engine on 2 CPUs", takes the model key, then answers two concurrent
//! sessions with different prompts from one fixed-slot batcher whose steps are split across
//! both CPUs — and each answer equals `ward generate`'s greedy answer for its prompt on the host.
//!
//! The tiny generated model keeps this fast under TCG. Needs the image and the `ward` binary:
//! `cargo run --release -p ward-tools -- build`.

use std::sync::Barrier;
use std::thread;
use ward_attestation::protocol::NoHardwareVerifier;
use ward_tests::enclave::{Enclave, Owner, chat_session, host_greedy, request};
use ward_tools::tiny_model::TinyModelSpec;

/// Tokens per answer: enough steps that the two requests share batched steps.
const MAX_TOKENS: u32 = 40;

#[test]
fn two_sessions_on_two_cpus_get_the_hosts_answers() {
    // Seed 8's tiny model answers these two prompts differently (most seeds answer any prompt
    // with newlines), so a mix-up between the slots would show.
    let spec = TinyModelSpec {
        seed: 8,
        ..TinyModelSpec::default()
    };
    let owner = Owner::tiny("e2e-smp", &spec);
    // Two slots and no queue: both requests must run in slots at once, never one after the other.
    let config = owner.config(2, |c| {
        c.slots = 2;
        c.queue = 0;
        c.cadence_ms = 20;
    });
    let enclave = Enclave::boot(&config, &owner.disk, 512, 2);
    let serial = enclave.serial();
    assert!(serial.contains(" cpus=2 "), "{serial}");
    assert!(serial.contains("SMP: 2 CPUs started"), "{serial}");
    assert!(serial.contains("engine on 2 CPUs"), "{serial}");
    assert!(owner.release_key(&enclave.addr()).status.success());

    let prompts = ["count", "hello"];
    let expected: Vec<String> = prompts
        .iter()
        .map(|p| host_greedy(&owner.gguf, p, MAX_TOKENS))
        .collect();
    assert_ne!(
        expected[0], expected[1],
        "the prompts should give different answers"
    );

    let both_connected = Barrier::new(prompts.len());
    let answers: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|prompt| {
                let (enclave, both_connected) = (&enclave, &both_connected);
                scope.spawn(move || {
                    let verifier = NoHardwareVerifier;
                    let mut session = chat_session(&enclave.address, &verifier);
                    both_connected.wait();
                    let answer = session
                        .ask(&request(prompt, MAX_TOKENS), |_| {})
                        .expect("answer");
                    // The tiny model's answers end in bytes that are not UTF-8, as the host's do.
                    String::from_utf8_lossy(&answer.text).into_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, expected);

    // The engine served both slots in one batched step, split across both CPUs.
    let serial = enclave.serial();
    assert!(
        serial.contains("engine: one batched step over 2 busy slots on 2 CPUs"),
        "{serial}"
    );
}
