//! The enclave side of a session, as a sans-I/O state machine: the kernel feeds it the bytes it
//! reads from vsock, writes out what [`ServerSession::take_output`] returns, reacts to
//! [`ServerEvent`]s, and drives the answer stream with [`ServerSession::push_token`],
//! [`ServerSession::finish_answer`] and one [`ServerSession::tick`] per cadence period.

use super::ProtocolError;
use super::evidence::EvidenceProvider;
use super::frame::{
    Expect, FRAME_ABORT, FRAME_SERVER_HELLO, Frame, FrameReader, MAX_SERVER_HELLO_FRAME_LEN,
    write_frame,
};
use super::hello::{
    ClientHello, ModelInfo, ModelStatus, Purpose, ServerHello, ServerHelloCore, abort, encode_abort,
};
use super::keys::{Direction, SessionKeys, transcript_hash};
use super::message::{
    AnswerEnd, ErrorCode, MAX_REQUEST_LEN, Request, encode_error, encode_model_info,
};
use super::record::{self, MAX_PAYLOAD, encode_content, parse_content};
use crate::keyrelease::{KeyReleaseMessage, ReleaseKeyPair, open_model_key};
use crate::sealed::ModelKey;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use sha2::{Digest, Sha384};
use zeroize::Zeroizing;

/// What the enclave tells every client in its ServerHello, and the key-release policy.
#[derive(Debug, Clone)]
pub struct ServerParams {
    /// The image's build identifier.
    pub build_id: [u8; 32],
    /// The exact deployment-configuration bytes the enclave runs with.
    pub config: Vec<u8>,
    /// The model being served (or why none is).
    pub model: ModelStatus,
    /// `key_release_public_key` of the bound configuration: the only accepted key sender.
    pub key_release_public_key: [u8; 32],
}

/// Something the service must act on.
#[derive(Debug)]
pub enum ServerEvent {
    /// The handshake completed.
    Established { purpose: Purpose },
    /// A prompt: answer it with `push_token`/`finish_answer`/`tick`, or `send_error`.
    Request(Request),
    /// A model key released by the key-release server: unseal the model, then call
    /// `send_key_release_result` (or `send_error` with the reason).
    ModelKey(ModelKey),
    /// The client closed the session.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    Established,
    Responding,
    AwaitingKeyResult,
    Closed,
    Failed,
}

/// The answer being streamed.
struct Response {
    queued: Zeroizing<Vec<u8>>,
    sent: usize,
    hasher: Sha384,
    len: u64,
    tokens: u32,
    engine_done: bool,
}

/// One client connection, enclave side.
pub struct ServerSession {
    params: ServerParams,
    state: State,
    purpose: Purpose,
    reader: FrameReader,
    out: Vec<u8>,
    events: VecDeque<ServerEvent>,
    keys: Option<SessionKeys>,
    release: Option<ReleaseKeyPair>,
    transcript: [u8; 64],
    request: Zeroizing<Vec<u8>>,
    response: Option<Response>,
}

impl ServerSession {
    pub fn new(params: ServerParams) -> Self {
        Self {
            params,
            state: State::AwaitHello,
            purpose: Purpose::Chat,
            reader: FrameReader::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            keys: None,
            release: None,
            transcript: [0; 64],
            request: Zeroizing::new(Vec::new()),
            response: None,
        }
    }

    /// Processes bytes read from the client. On error the session is over: send what
    /// `take_output` returns (possibly an Abort) and close the transport.
    pub fn receive(
        &mut self,
        input: &[u8],
        rng: &mut impl rand_core::CryptoRng,
        evidence: &mut dyn EvidenceProvider,
    ) -> Result<(), ProtocolError> {
        if matches!(self.state, State::Failed | State::Closed) {
            return Err(ProtocolError::Finished);
        }
        let result = self.receive_inner(input, rng, evidence);
        if let Err(error) = &result {
            self.fail(error);
        }
        result
    }

    fn receive_inner(
        &mut self,
        mut input: &[u8],
        rng: &mut impl rand_core::CryptoRng,
        evidence: &mut dyn EvidenceProvider,
    ) -> Result<(), ProtocolError> {
        while !input.is_empty() {
            if self.state == State::Closed {
                return Err(ProtocolError::UnexpectedFrame {
                    frame_type: input[0],
                });
            }
            let expect = match self.state {
                State::AwaitHello => Expect::ClientHello,
                _ => Expect::Records,
            };
            let (used, frame) = self.reader.feed(input, expect)?;
            input = &input[used..];
            if let Some(frame) = frame {
                match self.state {
                    State::AwaitHello => self.on_client_hello(&frame, rng, evidence)?,
                    _ => self.on_record(&frame)?,
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: &ProtocolError) {
        if self.state == State::AwaitHello {
            let code = match error {
                ProtocolError::UnsupportedVersion { .. } => Some(abort::UNSUPPORTED_VERSION),
                ProtocolError::UnsupportedPurpose { .. } => Some(abort::UNSUPPORTED_PURPOSE),
                ProtocolError::EvidenceUnavailable(_) | ProtocolError::InvalidState(_) => {
                    Some(abort::INTERNAL)
                }
                ProtocolError::Finished => None,
                _ => Some(abort::MALFORMED_HELLO),
            };
            if let Some(code) = code {
                self.out.clear();
                write_frame(
                    &mut self.out,
                    FRAME_ABORT,
                    &encode_abort(code, &alloc::format!("{error}")),
                );
            }
        }
        self.state = State::Failed;
        self.keys = None;
        self.release = None;
        self.response = None;
        self.request.clear();
    }

    fn on_client_hello(
        &mut self,
        frame: &Frame,
        rng: &mut impl rand_core::CryptoRng,
        evidence: &mut dyn EvidenceProvider,
    ) -> Result<(), ProtocolError> {
        let hello = ClientHello::parse(&frame.body)?;
        let secret = x25519_dalek::EphemeralSecret::random_from_rng(rng);
        let server_public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        let release = match hello.purpose {
            Purpose::KeyRelease => Some(ReleaseKeyPair::generate(rng)),
            Purpose::Chat => None,
        };
        let core = ServerHelloCore {
            purpose: hello.purpose,
            server_public,
            release_public: release.as_ref().map(ReleaseKeyPair::public_bytes),
            build_id: self.params.build_id,
            model: self.params.model.clone(),
            config: self.params.config.clone(),
        };
        let core_bytes = core.encode()?;
        let transcript = transcript_hash(&frame.body, &core_bytes);
        let evidence = evidence
            .evidence(&transcript)
            .map_err(ProtocolError::EvidenceUnavailable)?;
        let body = ServerHello::encode_body(&core_bytes, &evidence);
        if body.len() + 1 > MAX_SERVER_HELLO_FRAME_LEN as usize {
            return Err(ProtocolError::InvalidState(
                "ServerHello larger than the frame limit",
            ));
        }
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(hello.client_public));
        self.keys = Some(SessionKeys::derive(
            &shared,
            &transcript,
            Direction::ServerToClient,
        )?);
        write_frame(&mut self.out, FRAME_SERVER_HELLO, &body);
        self.transcript = transcript;
        self.release = release;
        self.purpose = hello.purpose;
        self.state = State::Established;
        self.events.push_back(ServerEvent::Established {
            purpose: hello.purpose,
        });
        Ok(())
    }

    fn on_record(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let keys = self.keys.as_mut().ok_or(ProtocolError::Finished)?;
        let plain = keys.receive.open(frame)?;
        let content = parse_content(&plain)?;
        match (content.content_type, self.state, self.purpose) {
            (record::CONTENT_DUMMY, _, _) => {}
            (record::CONTENT_CLOSE, _, _) => {
                self.state = State::Closed;
                self.response = None;
                self.events.push_back(ServerEvent::Closed);
            }
            (record::CONTENT_REQUEST, State::Established, Purpose::Chat) => {
                if self.request.len() + content.payload.len() > MAX_REQUEST_LEN {
                    return Err(ProtocolError::MessageTooLarge {
                        max: MAX_REQUEST_LEN,
                    });
                }
                self.request.extend_from_slice(content.payload);
                if content.last_fragment {
                    let request = Request::parse(&self.request)?;
                    self.request.clear();
                    self.state = State::Responding;
                    self.response = Some(Response {
                        queued: Zeroizing::new(Vec::new()),
                        sent: 0,
                        hasher: Sha384::new(),
                        len: 0,
                        tokens: 0,
                        engine_done: false,
                    });
                    self.events.push_back(ServerEvent::Request(request));
                }
            }
            (record::CONTENT_KEY_RELEASE, State::Established, Purpose::KeyRelease)
                if self.release.is_some() =>
            {
                let message = KeyReleaseMessage::parse(content.payload)?;
                let release = self.release.take().ok_or(ProtocolError::Finished)?;
                match open_model_key(
                    &release,
                    &self.params.key_release_public_key,
                    &self.transcript,
                    &message,
                ) {
                    Ok(key) => {
                        self.state = State::AwaitingKeyResult;
                        self.events.push_back(ServerEvent::ModelKey(key));
                    }
                    Err(why) => {
                        let payload = encode_error(
                            ErrorCode::KeyReleaseRefused,
                            &alloc::format!("{why}"),
                            MAX_PAYLOAD,
                        );
                        self.send_record(record::CONTENT_ERROR, &payload)?;
                    }
                }
            }
            (content_type, _, _) => return Err(ProtocolError::UnexpectedRecord { content_type }),
        }
        Ok(())
    }

    fn send_record(&mut self, content_type: u8, payload: &[u8]) -> Result<(), ProtocolError> {
        let plain = encode_content(content_type, false, payload)?;
        let keys = self.keys.as_mut().ok_or(ProtocolError::Finished)?;
        keys.send.seal(&plain, &mut self.out)
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the transport (taken: the buffer is empty afterwards).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// True while a request is being answered (the cadence timer should run).
    pub fn is_responding(&self) -> bool {
        self.state == State::Responding
    }

    /// True once the client closed the session or the session failed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Queues the text of one generated token.
    pub fn push_token(&mut self, text: &[u8]) -> Result<(), ProtocolError> {
        let response = match (self.state, self.response.as_mut()) {
            (State::Responding, Some(r)) if !r.engine_done => r,
            _ => {
                return Err(ProtocolError::InvalidState(
                    "push_token without an open answer",
                ));
            }
        };
        response.queued.extend_from_slice(text);
        response.hasher.update(text);
        response.len += text.len() as u64;
        response.tokens = response.tokens.saturating_add(1);
        Ok(())
    }

    /// The engine finished this answer; the end is sent once the queued text is out.
    pub fn finish_answer(&mut self) -> Result<(), ProtocolError> {
        match (self.state, self.response.as_mut()) {
            (State::Responding, Some(r)) => {
                r.engine_done = true;
                Ok(())
            }
            _ => Err(ProtocolError::InvalidState(
                "finish_answer without an open answer",
            )),
        }
    }

    /// One cadence tick: while answering, emits exactly one record — queued text, else the
    /// end of the answer if the engine is done, else a dummy. Returns whether it emitted one.
    pub fn tick(&mut self) -> Result<bool, ProtocolError> {
        if self.state != State::Responding {
            return Ok(false);
        }
        self.emit_one()?;
        Ok(true)
    }

    /// Without a fixed cadence (`cadence_ms` = 0): emits every record that is ready now.
    pub fn flush_ready(&mut self) -> Result<(), ProtocolError> {
        while let Some(r) = self.response.as_ref() {
            if r.sent == r.queued.len() && !r.engine_done {
                break;
            }
            self.emit_one()?;
        }
        Ok(())
    }

    fn emit_one(&mut self) -> Result<(), ProtocolError> {
        let Some(r) = self.response.as_mut() else {
            return Err(ProtocolError::InvalidState("no open answer"));
        };
        if r.sent < r.queued.len() {
            let end = (r.sent + MAX_PAYLOAD).min(r.queued.len());
            let chunk = Zeroizing::new(r.queued[r.sent..end].to_vec());
            r.sent = end;
            if r.sent == r.queued.len() {
                r.queued.clear();
                r.sent = 0;
            }
            self.send_record(record::CONTENT_ANSWER_TEXT, &chunk)
        } else if r.engine_done {
            let end = AnswerEnd {
                token_count: r.tokens,
                answer_len: r.len,
                answer_sha384: core::mem::take(&mut r.hasher).finalize().into(),
            };
            self.response = None;
            self.state = State::Established;
            self.send_record(record::CONTENT_ANSWER_END, &end.encode())
        } else {
            self.send_record(record::CONTENT_DUMMY, &[])
        }
    }

    /// Ends the pending request or key release with an error ("busy", "no model loaded", ...).
    pub fn send_error(&mut self, code: ErrorCode, message: &str) -> Result<(), ProtocolError> {
        if !matches!(self.state, State::Responding | State::AwaitingKeyResult) {
            return Err(ProtocolError::InvalidState(
                "send_error without a pending request",
            ));
        }
        self.response = None;
        self.state = State::Established;
        self.send_record(
            record::CONTENT_ERROR,
            &encode_error(code, message, MAX_PAYLOAD),
        )
    }

    /// Reports the model that the released key unsealed.
    pub fn send_key_release_result(&mut self, model: &ModelInfo) -> Result<(), ProtocolError> {
        if self.state != State::AwaitingKeyResult {
            return Err(ProtocolError::InvalidState("no key release pending"));
        }
        self.state = State::Established;
        self.send_record(
            record::CONTENT_KEY_RELEASE_RESULT,
            &encode_model_info(model, MAX_PAYLOAD),
        )
    }

    /// Sends Close; nothing more is sent or accepted.
    pub fn close(&mut self) -> Result<(), ProtocolError> {
        if matches!(self.state, State::AwaitHello | State::Failed) {
            self.state = State::Failed;
            return Ok(());
        }
        let was_closed = self.state == State::Closed;
        self.state = State::Closed;
        self.response = None;
        if was_closed && self.keys.is_none() {
            return Ok(());
        }
        let result = self.send_record(record::CONTENT_CLOSE, &[]);
        self.keys = None;
        result
    }

    /// The transport ended. Without a Close record first, that is a truncation.
    pub fn transport_closed(&mut self) -> Result<(), ProtocolError> {
        match self.state {
            State::Closed => Ok(()),
            State::Failed => Err(ProtocolError::Finished),
            _ => {
                self.fail(&ProtocolError::Finished);
                Err(ProtocolError::Truncated)
            }
        }
    }
}
