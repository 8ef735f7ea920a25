//! The service loop: one [`ServerSession`] per vsock connection, key release and model
//! loading, the scheduler, and the fixed cadence of the answer streams.
//!
//! [`Service::run_once`] does one round of everything and never blocks: accept connections,
//! feed received bytes to their sessions and act on the sessions' events, run one engine step,
//! emit one record per answering session when a cadence tick is due, and write out what the
//! sessions produced as far as the peers' credit allows. The kernel calls it in a loop.

use super::engine::{LoadedModel, StepOutput};
use super::io::{Clock, Disk, SocketError, Sockets};
use super::load::{LoadError, unseal_from_disk};
use super::memory::{BatcherMemory, SlotsFit};
use super::scheduler::{Refusal, Scheduler, batcher_config};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use log::{info, warn};
use ward_attestation::config::Config;
use ward_attestation::protocol::{
    ErrorCode, EvidenceProvider, ModelStatus, ProtocolError, ServerEvent, ServerParams,
    ServerSession,
};
use ward_attestation::sealed::ModelKey;
use ward_inference::kernels::Kernels;
use ward_inference::parallel::Executor;

/// The vsock port the service listens on.
pub const SERVICE_PORT: u32 = 5000;
/// Positions per slot context (prompt + answer), within the model's own context length.
pub const SLOT_CONTEXT: usize = 1024;
/// Bytes read from a connection per call.
const RECV_CHUNK: usize = 4096;

/// Fixed inputs of the service.
pub struct ServiceParams {
    /// The image's build identifier (ServerHello).
    pub build_id: [u8; 32],
    /// The deployment configuration's exact bytes (ServerHello, evidence binding).
    pub config_bytes: Vec<u8>,
    /// The same, parsed.
    pub config: Config,
    /// The engine's kernels.
    pub kernels: Kernels,
    /// The CPUs each batched engine step is split across.
    pub executor: &'static dyn Executor,
    /// Largest model plaintext accepted (a bound derived from free memory).
    pub max_plaintext: u64,
    /// Records a verified model's SHA-384 with the platform before it serves (TDX: extends
    /// RTMR 2, so quotes name the model); an error refuses the model.
    pub record_model: fn(&[u8; 48]) -> Result<(), String>,
    /// Heap bytes free now: the slots must fit in what the model's weights leave.
    pub free_memory: fn() -> u64,
}

/// What the service serves.
enum ModelState {
    NotLoaded,
    Failed(String),
    Loaded(&'static LoadedModel),
}

/// Times of the last model load, for the log and `ward demo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadTimes {
    /// Reading, authenticating, decrypting and hashing the sealed model.
    pub unseal_micros: u64,
    /// Parsing the GGUF and building the engine, tokenizer and slots.
    pub build_micros: u64,
}

struct Connection<Id> {
    id: Id,
    session: ServerSession,
    outbox: VecDeque<u8>,
    /// Nothing more is read; the connection closes once the outbox is written.
    ending: bool,
}

/// The in-enclave service over sockets `S`, with clock `C`, evidence `E` and randomness `R`.
pub struct Service<S: Sockets, C: Clock, E: EvidenceProvider, R: rand_chacha::rand_core::CryptoRng>
{
    sockets: S,
    disk: Option<Box<dyn Disk>>,
    clock: C,
    evidence: E,
    rng: R,
    params: ServiceParams,
    model: ModelState,
    scheduler: Option<Scheduler<S::Id>>,
    connections: Vec<Connection<S::Id>>,
    next_tick: u64,
    last_load: Option<LoadTimes>,
    /// Most slots one engine step has served so far (logged when it grows).
    most_busy: usize,
    /// The configured benchmark waits for the end of the loop iteration that loaded the model
    /// (so the key release's answer goes out first).
    bench_pending: bool,
}

fn status_reason(error: &LoadError) -> String {
    let text = error.to_string();
    // The ServerHello carries at most 128 bytes of status text.
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    String::from(&text[..end])
}

impl<S, C, E, R> Service<S, C, E, R>
where
    S: Sockets,
    C: Clock,
    E: EvidenceProvider,
    R: rand_chacha::rand_core::CryptoRng,
{
    /// A service with no model loaded yet.
    pub fn new(
        sockets: S,
        disk: Option<Box<dyn Disk>>,
        clock: C,
        evidence: E,
        rng: R,
        params: ServiceParams,
    ) -> Self {
        Self {
            sockets,
            disk,
            clock,
            evidence,
            rng,
            params,
            model: ModelState::NotLoaded,
            scheduler: None,
            connections: Vec::new(),
            next_tick: 0,
            last_load: None,
            most_busy: 0,
            bench_pending: false,
        }
    }

    /// The sockets (tests drive their side through this).
    pub fn sockets_mut(&mut self) -> &mut S {
        &mut self.sockets
    }

    /// Times of the last successful model load.
    pub fn last_load(&self) -> Option<LoadTimes> {
        self.last_load
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn model_status(&self) -> ModelStatus {
        match &self.model {
            ModelState::NotLoaded => ModelStatus::NotLoaded,
            ModelState::Failed(reason) => ModelStatus::Failed(reason.clone()),
            ModelState::Loaded(model) => ModelStatus::Loaded(model.info.clone()),
        }
    }

    /// One round of the loop. Only a failure of the socket device is an error.
    pub fn run_once(&mut self) -> Result<(), SocketError> {
        self.sockets.poll()?;
        while let Some(id) = self.sockets.accept() {
            let session = ServerSession::new(ServerParams {
                build_id: self.params.build_id,
                config: self.params.config_bytes.clone(),
                model: self.model_status(),
                key_release_public_key: self.params.config.key_release_public_key,
            });
            info!("session {id:?}: connected");
            self.connections.push(Connection {
                id,
                session,
                outbox: VecDeque::new(),
                ending: false,
            });
        }
        for index in 0..self.connections.len() {
            self.receive(index)?;
        }
        self.engine_step();
        self.cadence();
        for index in 0..self.connections.len() {
            self.write(index)?;
        }
        self.reap();
        if core::mem::take(&mut self.bench_pending) {
            self.run_bench();
        }
        Ok(())
    }

    /// The configured benchmark on the loaded model, its table on the log (serial console).
    /// It holds the loop until it ends; then the service serves as usual.
    fn run_bench(&mut self) {
        let (ModelState::Loaded(model), Some(config)) = (&self.model, self.params.config.bench)
        else {
            return;
        };
        let executor = self.params.executor;
        info!(
            "bench: {config} on 1 and {} CPUs (under TCG the figures say nothing about real hardware)",
            executor.workers()
        );
        let clock = || self.clock.now_nanos();
        let free = (self.params.free_memory)();
        match super::bench::run(model.model(), executor, &clock, &config, free) {
            Ok(report) => {
                let mut text = String::new();
                let label = format!("{} version {}", model.info.id, model.info.version);
                let written = report
                    .write_table(&mut text, &label)
                    .and_then(|()| text.write_str("json "))
                    .and_then(|()| report.write_json(&mut text));
                if written.is_ok() {
                    for line in text.lines() {
                        info!("bench: {line}");
                    }
                }
                info!("bench: done, serving");
            }
            Err(error) => warn!("bench: not run: {error}"),
        }
    }

    fn receive(&mut self, index: usize) -> Result<(), SocketError> {
        let mut buffer = [0u8; RECV_CHUNK];
        loop {
            let connection = &mut self.connections[index];
            if connection.ending {
                return Ok(());
            }
            let count = match self.sockets.recv(connection.id, &mut buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(SocketError::Closed) => {
                    if connection.session.transport_closed().is_err() {
                        info!("session {:?}: transport closed mid-session", connection.id);
                    }
                    connection.ending = true;
                    break;
                }
                Err(error) => return Err(error),
            };
            let result =
                connection
                    .session
                    .receive(&buffer[..count], &mut self.rng, &mut self.evidence);
            buffer[..count].fill(0);
            if let Err(error) = result {
                self.end_with_error(index, &error);
                break;
            }
        }
        self.handle_events(index);
        self.collect_output(index);
        Ok(())
    }

    fn end_with_error(&mut self, index: usize, error: &ProtocolError) {
        let connection = &mut self.connections[index];
        warn!("session {:?}: ended: {error}", connection.id);
        connection.ending = true;
    }

    fn handle_events(&mut self, index: usize) {
        while let Some(event) = self.connections[index].session.poll_event() {
            let id = self.connections[index].id;
            let result = match event {
                ServerEvent::Established { purpose } => {
                    info!("session {id:?}: established ({purpose:?})");
                    Ok(())
                }
                ServerEvent::Request(request) => self.on_request(index, &request),
                ServerEvent::ModelKey(key) => self.on_model_key(index, &key),
                ServerEvent::Closed => {
                    info!("session {id:?}: closed by the client");
                    self.connections[index].ending = true;
                    Ok(())
                }
            };
            if let Err(error) = result {
                self.end_with_error(index, &error);
            }
        }
    }

    fn on_request(
        &mut self,
        index: usize,
        request: &ward_attestation::protocol::Request,
    ) -> Result<(), ProtocolError> {
        let connection = &mut self.connections[index];
        let id = connection.id;
        let session = &mut connection.session;
        match (&self.model, self.scheduler.as_mut()) {
            (ModelState::Loaded(_), Some(scheduler)) => match scheduler.admit(id, request) {
                Ok(admitted) => {
                    info!("session {id:?}: request {admitted:?}");
                    Ok(())
                }
                Err(Refusal::Busy { slots, queue }) => {
                    info!("session {id:?}: busy");
                    session.send_error(
                        ErrorCode::Busy,
                        &format!("all {slots} slots are busy and the queue of {queue} is full"),
                    )
                }
                Err(Refusal::BadRequest(why)) => session.send_error(ErrorCode::BadRequest, &why),
            },
            (ModelState::Failed(reason), _) => {
                session.send_error(ErrorCode::ModelNotLoaded, reason)
            }
            _ => session.send_error(
                ErrorCode::NoModelLoaded,
                "no model key has been released to this enclave yet",
            ),
        }
    }

    fn on_model_key(&mut self, index: usize, key: &ModelKey) -> Result<(), ProtocolError> {
        if let ModelState::Loaded(model) = &self.model {
            let info = model.info.clone();
            return self.connections[index].session.send_error(
                ErrorCode::KeyReleaseRefused,
                &format!(
                    "model {} version {} is already loaded",
                    info.id, info.version
                ),
            );
        }
        match self.load(key) {
            Ok(model) => {
                let info = model.info.clone();
                self.model = ModelState::Loaded(model);
                self.bench_pending = self.params.config.bench.is_some();
                self.connections[index]
                    .session
                    .send_key_release_result(&info)
            }
            Err(error) => {
                warn!("model not loaded: {error}");
                let reason = status_reason(&error);
                self.model = ModelState::Failed(reason.clone());
                self.connections[index]
                    .session
                    .send_error(ErrorCode::ModelNotLoaded, &reason)
            }
        }
    }

    /// Unseals, verifies and builds the model, then the slots. Nothing is kept on failure.
    fn load(&mut self, key: &ModelKey) -> Result<&'static LoadedModel, LoadError> {
        let disk = self.disk.as_deref_mut().ok_or(LoadError::NoDisk)?;
        let start = self.clock.now_micros();
        let plaintext = unseal_from_disk(
            disk,
            key,
            u64::from(self.params.config.min_model_version),
            self.params.max_plaintext,
        )?;
        let unsealed = self.clock.now_micros();
        let model = LoadedModel::build(&plaintext, self.params.kernels)?;
        let len = plaintext.bytes.len();
        let sha384 = plaintext.model.plaintext_sha384;
        drop(plaintext);
        let slots = self.params.config.slots as usize;
        let capacity = model.slot_context(SLOT_CONTEXT);
        // The slots' KV caches and batch scratch are allocated now and the sampler's buffers at
        // the first answers; a failed allocation would be fatal, so refuse what will not fit.
        let batcher = batcher_config(slots, capacity);
        let memory = BatcherMemory::of(model.model().config(), &batcher);
        memory
            .check((self.params.free_memory)())
            .map_err(LoadError::Memory)?;
        // The last step that can fail: from here on the platform's evidence names this model.
        (self.params.record_model)(&sha384).map_err(LoadError::Measurement)?;
        // The model lives for the rest of the run; sessions and slots borrow it.
        let model: &'static LoadedModel = Box::leak(Box::new(model));
        self.scheduler = Some(Scheduler::new(
            model,
            self.params.executor,
            slots,
            self.params.config.queue as usize,
            capacity,
        ));
        let built = self.clock.now_micros();
        let times = LoadTimes {
            unseal_micros: unsealed - start,
            build_micros: built - unsealed,
        };
        self.last_load = Some(times);
        info!(
            "model verified: {} version {} ({} bytes) decrypted and verified in {} ms ({} MiB/s), engine built in {} ms, {slots} slots of {capacity} positions ({} MiB)",
            model.info.id,
            model.info.version,
            len,
            times.unseal_micros / 1000,
            (len as u64 * 1_000_000 / times.unseal_micros.max(1)) >> 20,
            times.build_micros / 1000,
            memory.total().div_ceil(1 << 20),
        );
        Ok(model)
    }

    /// One batched engine step over every busy slot, then each answering session's output.
    fn engine_step(&mut self) {
        let Some(scheduler) = self.scheduler.as_mut() else {
            return;
        };
        let (busy, _) = scheduler.load();
        let started = self.clock.now_micros();
        let outputs = scheduler.step();
        let took = self.clock.now_micros().saturating_sub(started);
        if busy > self.most_busy {
            self.most_busy = busy;
            info!(
                "engine: one batched step over {busy} busy slots on {} CPUs ({} ms)",
                self.params.executor.workers(),
                took / 1000
            );
        }
        for (owner, result) in outputs {
            if let Ok(output) = &result
                && output.prompt_tokens > 0
            {
                info!(
                    "session {owner:?}: prompt of {} tokens read in {} ms",
                    output.prompt_tokens,
                    took / 1000
                );
            }
            self.deliver(owner, result);
        }
    }

    /// Streams one step's output (or failure) to the session whose request it was.
    fn deliver(&mut self, owner: S::Id, result: Result<StepOutput, String>) {
        let Some(index) = self.connections.iter().position(|c| c.id == owner) else {
            return;
        };
        let cadence = self.params.config.cadence_ms;
        let session = &mut self.connections[index].session;
        let outcome = match result {
            Ok(output) => {
                let mut outcome = Ok(());
                for text in &output.tokens {
                    outcome = outcome.and_then(|()| session.push_token(text.as_bytes()));
                }
                if output.done {
                    info!("session {owner:?}: answer complete");
                    outcome = outcome.and_then(|()| session.finish_answer());
                }
                outcome
            }
            Err(why) => {
                warn!("session {owner:?}: generation failed: {why}");
                session.send_error(ErrorCode::Internal, &why)
            }
        };
        let outcome = outcome.and_then(|()| {
            if cadence == 0 {
                session.flush_ready()
            } else {
                Ok(())
            }
        });
        if let Err(error) = outcome {
            self.end_with_error(index, &error);
        }
        self.collect_output(index);
    }

    /// One record per answering session per tick (DESIGN §11): text if any is queued, else the
    /// end of the answer once the engine is done, else a dummy.
    fn cadence(&mut self) {
        let period = u64::from(self.params.config.cadence_ms) * 1000;
        if period == 0 {
            return;
        }
        let now = self.clock.now_micros();
        if now < self.next_tick {
            return;
        }
        // A long engine step delays ticks; they are not sent in a burst afterwards.
        self.next_tick = if now - self.next_tick > period {
            now + period
        } else {
            self.next_tick + period
        };
        for index in 0..self.connections.len() {
            if self.connections[index].ending {
                continue;
            }
            if let Err(error) = self.connections[index].session.tick() {
                self.end_with_error(index, &error);
            }
            self.collect_output(index);
        }
    }

    fn collect_output(&mut self, index: usize) {
        let connection = &mut self.connections[index];
        let out = connection.session.take_output();
        connection.outbox.extend(out);
    }

    fn write(&mut self, index: usize) -> Result<(), SocketError> {
        let connection = &mut self.connections[index];
        while !connection.outbox.is_empty() {
            let (front, _) = connection.outbox.as_slices();
            match self.sockets.send(connection.id, front) {
                Ok(0) => break,
                Ok(count) => {
                    connection.outbox.drain(..count);
                }
                Err(SocketError::Closed) => {
                    connection.outbox.clear();
                    connection.ending = true;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Closes sessions that ended once their last bytes are out, and frees their requests.
    fn reap(&mut self) {
        let mut index = 0;
        while index < self.connections.len() {
            let connection = &self.connections[index];
            let done = connection.ending || connection.session.is_finished();
            if done && connection.outbox.is_empty() {
                let connection = self.connections.swap_remove(index);
                if let Some(scheduler) = self.scheduler.as_mut() {
                    scheduler.cancel(connection.id);
                }
                self.sockets.close(connection.id);
                info!("session {:?}: gone", connection.id);
            } else {
                index += 1;
            }
        }
    }
}
