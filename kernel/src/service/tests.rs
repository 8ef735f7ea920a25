//! The service end to end on the host: in-memory sockets and disk, the real client state
//! machine, a sealed tiny model.

use super::engine::PROMPT_BATCH;
use super::io::{Clock, SocketError, Sockets};
use super::load::tests::MemoryDisk;
use super::serve::{Service, ServiceParams};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use ward_attestation::config::Config;
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{
    ClientEvent, ClientParams, ClientSession, ErrorCode, ModelStatus, NoHardwareVerifier, Purpose,
    Request, SimulatedAttester,
};
use ward_attestation::sealed::{ModelKey, seal_image};
use ward_inference::chat::{ChatMessage, ChatTemplate};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::sampler::{Sampler, SamplerConfig};
use ward_inference::tokenizer::Tokenizer;
use ward_tools::tiny_model::{TinyModelSpec, tiny_model_gguf};

#[derive(Default)]
struct Pipe {
    to_server: VecDeque<u8>,
    to_client: Vec<u8>,
    client_closed: bool,
    server_closed: bool,
}

#[derive(Default)]
struct MemorySockets {
    pipes: Vec<Pipe>,
    accepting: VecDeque<usize>,
}

impl Sockets for MemorySockets {
    type Id = usize;

    fn poll(&mut self) -> Result<(), SocketError> {
        Ok(())
    }

    fn accept(&mut self) -> Option<usize> {
        self.accepting.pop_front()
    }

    fn recv(&mut self, id: usize, buffer: &mut [u8]) -> Result<usize, SocketError> {
        let pipe = &mut self.pipes[id];
        if pipe.to_server.is_empty() && pipe.client_closed {
            return Err(SocketError::Closed);
        }
        let count = buffer.len().min(pipe.to_server.len());
        for (slot, byte) in buffer.iter_mut().zip(pipe.to_server.drain(..count)) {
            *slot = byte;
        }
        Ok(count)
    }

    fn send(&mut self, id: usize, data: &[u8]) -> Result<usize, SocketError> {
        // Small writes, as a peer with little credit would take them.
        let count = data.len().min(1000);
        self.pipes[id].to_client.extend_from_slice(&data[..count]);
        Ok(count)
    }

    fn close(&mut self, id: usize) {
        self.pipes[id].server_closed = true;
    }
}

/// Advances 10 ms per reading, so cadence ticks come every few rounds.
struct StepClock(Cell<u64>);

impl Clock for StepClock {
    fn now_micros(&self) -> u64 {
        let now = self.0.get() + 10_000;
        self.0.set(now);
        now
    }
}

type TestService = Service<MemorySockets, StepClock, SimulatedAttester, ChaCha20Rng>;

const MODEL_VERSION: u64 = 5;

struct Fixture {
    service: TestService,
    release: ReleaseKeyPair,
    model_key: ModelKey,
    gguf: Vec<u8>,
}

fn fixture(config_text: &str, disk: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Fixture {
    fixture_with_memory(config_text, disk, || 256 << 20)
}

/// [`fixture`] whose heap reports `free_memory` bytes free.
fn fixture_with_memory(
    config_text: &str,
    disk: impl FnOnce(Vec<u8>) -> Vec<u8>,
    free_memory: fn() -> u64,
) -> Fixture {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let release = ReleaseKeyPair::generate(&mut rng);
    let text = alloc::format!(
        "min_model_version = 2\nkey_release_public_key = \"{}\"\n{config_text}",
        release
            .public_bytes()
            .iter()
            .map(|b| alloc::format!("{b:02x}"))
            .collect::<String>()
    );
    let config = Config::parse(text.as_bytes()).unwrap();
    let gguf = tiny_model_gguf(&TinyModelSpec::default());
    let model_key = ModelKey::from_bytes([9; 32]);
    let image = seal_image(&model_key, "tiny", MODEL_VERSION, 4096, [2; 7], &gguf).unwrap();
    let evidence = SimulatedAttester::new(&mut rng, [0x11; 48], text.as_bytes());
    let service = Service::new(
        MemorySockets::default(),
        Some(Box::new(MemoryDisk(disk(image)))),
        StepClock(Cell::new(0)),
        evidence,
        ChaCha20Rng::from_seed([4; 32]),
        ServiceParams {
            record_model: record_for_tests,
            build_id: [0x22; 32],
            config_bytes: text.into_bytes(),
            config,
            kernels: Kernels::detect(),
            executor: &ward_inference::parallel::Serial,
            max_plaintext: 64 << 20,
            free_memory,
        },
    );
    Fixture {
        service,
        release,
        model_key,
        gguf,
    }
}

struct Client {
    id: usize,
    session: ClientSession,
    events: VecDeque<ClientEvent>,
    read: usize,
}

impl Client {
    fn connect(service: &mut TestService, purpose: Purpose) -> Self {
        let sockets = service.sockets_mut();
        let id = sockets.pipes.len();
        sockets.pipes.push(Pipe::default());
        sockets.accepting.push_back(id);
        let session = ClientSession::new(
            ClientParams {
                purpose,
                allow_simulated: true,
                simulated_measurements: alloc::vec![[0x11; 48]],
                expected_config: None,
            },
            &mut ChaCha20Rng::from_seed([id as u8 + 50; 32]),
        );
        let mut client = Self {
            id,
            session,
            events: VecDeque::new(),
            read: 0,
        };
        client.flush(service);
        client
    }

    fn flush(&mut self, service: &mut TestService) {
        let out = self.session.take_output();
        service.sockets_mut().pipes[self.id].to_server.extend(out);
    }

    /// Delivers what the server wrote so far.
    fn pump(&mut self, service: &mut TestService) {
        let pipe = &service.sockets_mut().pipes[self.id];
        let fresh = pipe.to_client[self.read..].to_vec();
        self.read = pipe.to_client.len();
        if !fresh.is_empty() {
            self.session
                .receive(&fresh, &NoHardwareVerifier)
                .expect("the client accepts what the service sends");
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push_back(event);
        }
    }
}

/// Runs the service and delivers to every client until `done` holds (bounded).
fn run_until(
    service: &mut TestService,
    clients: &mut [&mut Client],
    mut done: impl FnMut(&[&mut Client]) -> bool,
) {
    for _ in 0..20_000 {
        service.run_once().unwrap();
        for client in clients.iter_mut() {
            client.pump(service);
        }
        if done(clients) {
            return;
        }
    }
    panic!("the service did not get there");
}

fn established(service: &mut TestService, purpose: Purpose) -> (Client, ModelStatus) {
    let mut client = Client::connect(service, purpose);
    run_until(service, &mut [&mut client], |c| !c[0].events.is_empty());
    match client.events.pop_front() {
        Some(ClientEvent::Established(info)) => (client, info.model),
        other => panic!("expected the handshake, got {other:?}"),
    }
}

fn ask(service: &mut TestService, client: &mut Client, user: &str, max: u32) -> ClientEvent {
    client
        .session
        .send_request(&Request {
            max_new_tokens: max,
            system: String::new(),
            user: user.into(),
        })
        .unwrap();
    client.flush(service);
    collect_answer(service, client)
}

/// The answer's text and end (as `AnswerText` with everything, or the error).
fn collect_answer(service: &mut TestService, client: &mut Client) -> ClientEvent {
    let mut text = Vec::new();
    loop {
        run_until(service, &mut [client], |c| !c[0].events.is_empty());
        match client.events.pop_front().unwrap() {
            ClientEvent::AnswerText(piece) => text.extend_from_slice(&piece),
            ClientEvent::AnswerEnd(_) => return ClientEvent::AnswerText(text),
            other => return other,
        }
    }
}

fn release_key(service: &mut TestService, sender: &ReleaseKeyPair, key: &ModelKey) -> ClientEvent {
    let (mut client, _) = established(service, Purpose::KeyRelease);
    client
        .session
        .send_key_release(&mut ChaCha20Rng::from_seed([8; 32]), sender, key)
        .unwrap();
    client.flush(service);
    run_until(service, &mut [&mut client], |c| !c[0].events.is_empty());
    client.events.pop_front().unwrap()
}

/// What `ward generate --chat USER --temperature 0` prints as text.
fn host_greedy(gguf: &[u8], user: &str, max: usize) -> Vec<u8> {
    let gguf = Gguf::parse(gguf).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let prompt = ChatTemplate::from_gguf(&gguf)
        .unwrap()
        .render(&[ChatMessage::user(user)], true)
        .unwrap();
    let ids = tokenizer.encode(&prompt, true);
    let mut ctx = model.new_context(ids.len() + max, PROMPT_BATCH);
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let mut history = ids.clone();
    let mut decoder = tokenizer.decoder();
    let mut text = String::new();
    let mut logits = model.forward(&mut ctx, &ids).unwrap().to_vec();
    for _ in 0..max {
        let id = sampler.sample(&mut logits, &history).unwrap();
        if tokenizer.is_end_of_generation(id) {
            break;
        }
        history.push(id);
        if let Some(piece) = decoder.push(id) {
            text.push_str(piece);
        }
        logits.copy_from_slice(model.forward(&mut ctx, &[id]).unwrap());
    }
    text.push_str(decoder.finish());
    text.into_bytes()
}

#[test]
fn no_model_until_released_then_greedy_answers_match_the_host() {
    let mut f = fixture("cadence_ms = 0\n", |image| image);
    let (mut chat, status) = established(&mut f.service, Purpose::Chat);
    assert_eq!(status, ModelStatus::NotLoaded);
    match ask(&mut f.service, &mut chat, "hello", 8) {
        ClientEvent::Error { code, .. } => assert_eq!(code, ErrorCode::NoModelLoaded),
        other => panic!("{other:?}"),
    }

    // A key sealed by someone other than the configured key-release server does not open.
    let stranger = ReleaseKeyPair::generate(&mut ChaCha20Rng::from_seed([5; 32]));
    match release_key(&mut f.service, &stranger, &f.model_key) {
        ClientEvent::Error { code, .. } => assert_eq!(code, ErrorCode::KeyReleaseRefused),
        other => panic!("{other:?}"),
    }

    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::KeyReleaseResult(info) => {
            assert_eq!(info.id, "tiny");
            assert_eq!(info.version, MODEL_VERSION);
        }
        other => panic!("{other:?}"),
    }
    assert!(f.service.last_load().is_some());

    // The session opened before the release is served now.
    for (question, max) in [("hello", 12), ("What is 2+2? Think.", 30)] {
        let expected = host_greedy(&f.gguf, question, max as usize);
        assert!(!expected.is_empty(), "the tiny model says something");
        match ask(&mut f.service, &mut chat, question, max) {
            ClientEvent::AnswerText(text) => assert_eq!(text, expected, "for {question:?}"),
            other => panic!("{other:?}"),
        }
    }
    let (_, status) = established(&mut f.service, Purpose::Chat);
    assert!(matches!(status, ModelStatus::Loaded(ref m) if m.version == MODEL_VERSION));

    // A second release is refused; the model stays.
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::Error { code, .. } => assert_eq!(code, ErrorCode::KeyReleaseRefused),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_benchmark_option_runs_after_the_release_and_the_service_then_serves() {
    let mut f = fixture(
        "cadence_ms = 0\nbench = { prompt = 4, gen = 2, repetitions = 1, slots = [1, 2] }\n",
        |image| image,
    );
    let (mut chat, _) = established(&mut f.service, Purpose::Chat);
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::KeyReleaseResult(info) => assert_eq!(info.version, MODEL_VERSION),
        other => panic!("{other:?}"),
    }
    let expected = host_greedy(&f.gguf, "hello", 6);
    match ask(&mut f.service, &mut chat, "hello", 6) {
        ClientEvent::AnswerText(text) => assert_eq!(text, expected),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tampered_disk_and_wrong_key_leave_only_the_reason() {
    let mut f = fixture("", |mut image| {
        let middle = 4096 + image.len() / 2;
        image[middle] ^= 0x40;
        image
    });
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.contains("chunk"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (mut chat, status) = established(&mut f.service, Purpose::Chat);
    assert!(matches!(status, ModelStatus::Failed(ref why) if why.contains("chunk")));
    match ask(&mut f.service, &mut chat, "hi", 4) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.contains("chunk"));
        }
        other => panic!("{other:?}"),
    }
    // A wrong model key fails the header check; a retry is allowed after a failure.
    match release_key(&mut f.service, &f.release, &ModelKey::from_bytes([1; 32])) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.contains("header"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn slots_that_do_not_fit_refuse_the_model_with_both_figures() {
    let mut f = fixture_with_memory("slots = 64\n", |image| image, || 4 << 20);
    let expected = "(for 64 slots of 512 positions beside the weights)";
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.starts_with("needs "), "{message}");
            assert!(message.contains(" MiB, have 4 MiB "), "{message}");
            assert!(message.ends_with(expected), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (mut chat, status) = established(&mut f.service, Purpose::Chat);
    assert!(matches!(status, ModelStatus::Failed(ref why) if why.ends_with(expected)));
    match ask(&mut f.service, &mut chat, "hi", 4) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(message.contains("have 4 MiB"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn busy_beyond_slots_and_queue_and_the_rest_served() {
    let mut f = fixture("slots = 1\nqueue = 1\ncadence_ms = 20\n", |image| image);
    assert!(matches!(
        release_key(&mut f.service, &f.release, &f.model_key),
        ClientEvent::KeyReleaseResult(_)
    ));
    let mut clients: Vec<Client> = (0..3)
        .map(|_| established(&mut f.service, Purpose::Chat).0)
        .collect();
    for client in &mut clients {
        client
            .session
            .send_request(&Request {
                max_new_tokens: 6,
                system: String::new(),
                user: "count".into(),
            })
            .unwrap();
        client.flush(&mut f.service);
    }
    let expected = host_greedy(&f.gguf, "count", 6);
    let mut outcomes = Vec::new();
    for client in &mut clients {
        outcomes.push(collect_answer(&mut f.service, client));
    }
    let busy = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                ClientEvent::Error {
                    code: ErrorCode::Busy,
                    ..
                }
            )
        })
        .count();
    let served = outcomes
        .iter()
        .filter(|o| matches!(o, ClientEvent::AnswerText(t) if *t == expected))
        .count();
    assert_eq!((busy, served), (1, 2), "{outcomes:?}");
}

#[test]
fn concurrent_sessions_get_the_answers_they_get_alone() {
    let mut f = fixture("slots = 2\nqueue = 0\ncadence_ms = 0\n", |image| image);
    assert!(matches!(
        release_key(&mut f.service, &f.release, &f.model_key),
        ClientEvent::KeyReleaseResult(_)
    ));
    let questions = [("hello", 12), ("What is 2+2? Think.", 30)];
    let mut clients: Vec<Client> = (0..questions.len())
        .map(|_| established(&mut f.service, Purpose::Chat).0)
        .collect();
    // Both requests are in before the service runs a step, so they share every batched step.
    for (client, (question, max)) in clients.iter_mut().zip(questions) {
        client
            .session
            .send_request(&Request {
                max_new_tokens: max,
                system: String::new(),
                user: question.into(),
            })
            .unwrap();
        client.flush(&mut f.service);
    }
    for (client, (question, max)) in clients.iter_mut().zip(questions) {
        let expected = host_greedy(&f.gguf, question, max as usize);
        assert!(!expected.is_empty(), "the tiny model says something");
        match collect_answer(&mut f.service, client) {
            ClientEvent::AnswerText(text) => assert_eq!(text, expected, "for {question:?}"),
            other => panic!("{other:?}"),
        }
    }
}

std::thread_local! {
    /// The digests this thread's services recorded with the "platform", and whether the next
    /// recording fails.
    static RECORDED: core::cell::RefCell<(Vec<[u8; 48]>, bool)> =
        const { core::cell::RefCell::new((Vec::new(), false)) };
}

fn record_for_tests(sha384: &[u8; 48]) -> Result<(), String> {
    RECORDED.with(|recorded| {
        let mut recorded = recorded.borrow_mut();
        if recorded.1 {
            return Err(String::from("RTMR extension refused"));
        }
        recorded.0.push(*sha384);
        Ok(())
    })
}

#[test]
fn the_verified_models_digest_is_recorded_before_it_serves() {
    use sha2::Digest;
    let mut f = fixture("", |image| image);
    RECORDED.with(|recorded| *recorded.borrow_mut() = (Vec::new(), true));
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::Error { code, message } => {
            assert_eq!(code, ErrorCode::ModelNotLoaded);
            assert!(
                message.contains("recording the model's digest failed"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let (_, status) = established(&mut f.service, Purpose::Chat);
    assert!(
        matches!(status, ModelStatus::Failed(_)),
        "not served unrecorded"
    );
    RECORDED.with(|recorded| recorded.borrow_mut().1 = false);
    match release_key(&mut f.service, &f.release, &f.model_key) {
        ClientEvent::KeyReleaseResult(info) => assert_eq!(info.id, "tiny"),
        other => panic!("{other:?}"),
    }
    let digest: [u8; 48] = sha2::Sha384::digest(&f.gguf).into();
    RECORDED.with(|recorded| assert_eq!(recorded.borrow().0, [digest]));
}
