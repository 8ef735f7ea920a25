//! The client side of a session, as a sans-I/O state machine: `ward chat` and
//! `ward release-key` feed it the bytes they read from the socket and write out what
//! [`ClientSession::take_output`] returns.

use super::ProtocolError;
use super::evidence::{
    Binding, EvidenceKind, EvidenceRejected, EvidenceVerifier, VerifiedEvidence,
};
use super::frame::{Expect, FRAME_ABORT, FRAME_CLIENT_HELLO, Frame, FrameReader, write_frame};
use super::hello::{
    CLIENT_HELLO_LEN, ClientHello, ModelInfo, ModelStatus, PROTOCOL_VERSION, Purpose, ServerHello,
    parse_abort,
};
use super::keys::{Direction, SessionKeys, transcript_hash};
use super::message::{AnswerEnd, ErrorCode, Request, parse_error, parse_model_info};
use super::record::{self, MAX_PAYLOAD, encode_content, parse_content};
use super::simulated::verify_simulated;
use crate::keyrelease::{ReleaseKeyPair, seal_model_key};
use crate::sealed::ModelKey;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha384};
use subtle::ConstantTimeEq;

/// What the client accepts.
#[derive(Debug, Clone)]
pub struct ClientParams {
    pub purpose: Purpose,
    /// Accept SIMULATED evidence (native platform, development only).
    pub allow_simulated: bool,
    /// For simulated evidence: allowed measurements (empty: any).
    pub simulated_measurements: Vec<[u8; 48]>,
    /// When set, the deployment configuration must be exactly these bytes.
    pub expected_config: Option<Vec<u8>>,
}

/// What the verified handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub purpose: Purpose,
    pub evidence: VerifiedEvidence,
    pub model: ModelStatus,
    pub build_id: [u8; 32],
    /// The deployment configuration the evidence binds.
    pub config: Vec<u8>,
    /// The enclave's key-release key (purpose key release only).
    pub release_public: Option<[u8; 32]>,
    pub transcript_hash: [u8; 64],
}

/// Something the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The evidence verified and the keys are in place.
    Established(Box<SessionInfo>),
    /// The next bytes of the answer.
    AnswerText(Vec<u8>),
    /// The authenticated end of the answer (length and SHA-384 already checked).
    AnswerEnd(AnswerEnd),
    /// The request or key release failed on the server.
    Error { code: ErrorCode, message: String },
    /// The released key unsealed this model.
    KeyReleaseResult(ModelInfo),
    /// The server closed the session.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SentHello,
    Established,
    AwaitingAnswer,
    AwaitingKeyResult,
    Closed,
    Failed,
}

/// One connection to an enclave, client side.
pub struct ClientSession {
    params: ClientParams,
    state: State,
    reader: FrameReader,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    secret: Option<x25519_dalek::EphemeralSecret>,
    hello: [u8; CLIENT_HELLO_LEN],
    keys: Option<SessionKeys>,
    info: Option<SessionInfo>,
    answer_hasher: Sha384,
    answer_len: u64,
}

impl ClientSession {
    /// Starts a session: the ClientHello is ready in `take_output`.
    pub fn new(params: ClientParams, rng: &mut impl rand_core::CryptoRng) -> Self {
        let secret = x25519_dalek::EphemeralSecret::random_from_rng(rng);
        let mut client_nonce = [0u8; 32];
        rng.fill_bytes(&mut client_nonce);
        let hello = ClientHello {
            version: PROTOCOL_VERSION,
            purpose: params.purpose,
            client_nonce,
            client_public: x25519_dalek::PublicKey::from(&secret).to_bytes(),
        }
        .encode();
        let mut out = Vec::new();
        write_frame(&mut out, FRAME_CLIENT_HELLO, &hello);
        Self {
            params,
            state: State::SentHello,
            reader: FrameReader::new(),
            out,
            events: VecDeque::new(),
            secret: Some(secret),
            hello,
            keys: None,
            info: None,
            answer_hasher: Sha384::new(),
            answer_len: 0,
        }
    }

    /// Processes bytes read from the server. Any error ends the session.
    pub fn receive(
        &mut self,
        input: &[u8],
        verifier: &dyn EvidenceVerifier,
    ) -> Result<(), ProtocolError> {
        if matches!(self.state, State::Failed | State::Closed) {
            return Err(ProtocolError::Finished);
        }
        let result = self.receive_inner(input, verifier);
        if result.is_err() {
            self.fail();
        }
        result
    }

    fn receive_inner(
        &mut self,
        mut input: &[u8],
        verifier: &dyn EvidenceVerifier,
    ) -> Result<(), ProtocolError> {
        while !input.is_empty() {
            if self.state == State::Closed {
                return Err(ProtocolError::UnexpectedFrame {
                    frame_type: input[0],
                });
            }
            let expect = match self.state {
                State::SentHello => Expect::ServerHello,
                _ => Expect::Records,
            };
            let (used, frame) = self.reader.feed(input, expect)?;
            input = &input[used..];
            if let Some(frame) = frame {
                match self.state {
                    State::SentHello => self.on_server_hello(&frame, verifier)?,
                    _ => self.on_record(&frame)?,
                }
            }
        }
        Ok(())
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.keys = None;
        self.secret = None;
    }

    fn on_server_hello(
        &mut self,
        frame: &Frame,
        verifier: &dyn EvidenceVerifier,
    ) -> Result<(), ProtocolError> {
        if frame.frame_type() == FRAME_ABORT {
            return Err(parse_abort(&frame.body));
        }
        let hello = ServerHello::parse(&frame.body)?;
        if hello.core.purpose != self.params.purpose {
            return Err(ProtocolError::PurposeMismatch);
        }
        let transcript = transcript_hash(&self.hello, &hello.core_bytes);
        let binding = Binding {
            report_data: &transcript,
            config: &hello.core.config,
        };
        let evidence = match hello.evidence.kind {
            EvidenceKind::Simulated if !self.params.allow_simulated => {
                return Err(EvidenceRejected::SimulatedNotAllowed.into());
            }
            EvidenceKind::Simulated => verify_simulated(
                &hello.evidence.bytes,
                &binding,
                &self.params.simulated_measurements,
            )?,
            _ => verifier.verify(&hello.evidence, &binding)?,
        };
        if let Some(expected) = &self.params.expected_config
            && !bool::from(expected.ct_eq(&hello.core.config))
        {
            return Err(EvidenceRejected::UnexpectedConfig.into());
        }
        let secret = self.secret.take().ok_or(ProtocolError::Finished)?;
        let shared =
            secret.diffie_hellman(&x25519_dalek::PublicKey::from(hello.core.server_public));
        self.keys = Some(SessionKeys::derive(
            &shared,
            &transcript,
            Direction::ClientToServer,
        )?);
        let info = SessionInfo {
            purpose: hello.core.purpose,
            evidence,
            model: hello.core.model,
            build_id: hello.core.build_id,
            config: hello.core.config,
            release_public: hello.core.release_public,
            transcript_hash: transcript,
        };
        self.info = Some(info.clone());
        self.state = State::Established;
        self.events
            .push_back(ClientEvent::Established(Box::new(info)));
        Ok(())
    }

    fn on_record(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let keys = self.keys.as_mut().ok_or(ProtocolError::Finished)?;
        let plain = keys.receive.open(frame)?;
        let content = parse_content(&plain)?;
        match (content.content_type, self.state) {
            (record::CONTENT_DUMMY, _) => {}
            (record::CONTENT_CLOSE, _) => {
                self.state = State::Closed;
                self.keys = None;
                self.events.push_back(ClientEvent::Closed);
            }
            (record::CONTENT_ANSWER_TEXT, State::AwaitingAnswer) => {
                self.answer_hasher.update(content.payload);
                self.answer_len += content.payload.len() as u64;
                self.events
                    .push_back(ClientEvent::AnswerText(content.payload.to_vec()));
            }
            (record::CONTENT_ANSWER_END, State::AwaitingAnswer) => {
                let end = AnswerEnd::parse(content.payload)?;
                let digest: [u8; 48] = core::mem::take(&mut self.answer_hasher).finalize().into();
                let received = core::mem::take(&mut self.answer_len);
                if end.answer_len != received || end.answer_sha384 != digest {
                    return Err(ProtocolError::AnswerMismatch);
                }
                self.state = State::Established;
                self.events.push_back(ClientEvent::AnswerEnd(end));
            }
            (record::CONTENT_ERROR, State::AwaitingAnswer | State::AwaitingKeyResult) => {
                let (code, message) = parse_error(content.payload)?;
                self.answer_hasher = Sha384::new();
                self.answer_len = 0;
                self.state = State::Established;
                self.events.push_back(ClientEvent::Error { code, message });
            }
            (record::CONTENT_KEY_RELEASE_RESULT, State::AwaitingKeyResult) => {
                let model = parse_model_info(content.payload)?;
                self.state = State::Established;
                self.events.push_back(ClientEvent::KeyReleaseResult(model));
            }
            (content_type, _) => return Err(ProtocolError::UnexpectedRecord { content_type }),
        }
        Ok(())
    }

    fn send_record(
        &mut self,
        content_type: u8,
        last_fragment: bool,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        let plain = encode_content(content_type, last_fragment, payload)?;
        let keys = self.keys.as_mut().ok_or(ProtocolError::Finished)?;
        keys.send.seal(&plain, &mut self.out)
    }

    fn require_idle(&self, purpose: Purpose) -> Result<(), ProtocolError> {
        if self.state != State::Established {
            return Err(ProtocolError::InvalidState(
                "session not established or busy",
            ));
        }
        if self.params.purpose != purpose {
            return Err(ProtocolError::InvalidState(
                "not allowed for this session's purpose",
            ));
        }
        Ok(())
    }

    /// Sends a prompt (split into as many fixed-size records as it needs).
    pub fn send_request(&mut self, request: &Request) -> Result<(), ProtocolError> {
        self.require_idle(Purpose::Chat)?;
        let bytes = request.encode()?;
        let mut pieces = bytes.chunks(MAX_PAYLOAD).peekable();
        while let Some(piece) = pieces.next() {
            self.send_record(record::CONTENT_REQUEST, pieces.peek().is_none(), piece)?;
        }
        self.answer_hasher = Sha384::new();
        self.answer_len = 0;
        self.state = State::AwaitingAnswer;
        Ok(())
    }

    /// Seals `key` to the enclave's attested release key, as the key-release server `sender`.
    /// Call only after the evidence was checked against the model owner's policy.
    pub fn send_key_release(
        &mut self,
        rng: &mut impl rand_core::CryptoRng,
        sender: &ReleaseKeyPair,
        key: &ModelKey,
    ) -> Result<(), ProtocolError> {
        self.require_idle(Purpose::KeyRelease)?;
        let info = self.info.as_ref().ok_or(ProtocolError::Finished)?;
        let release_public = info
            .release_public
            .ok_or(ProtocolError::InvalidState("server sent no release key"))?;
        let message = seal_model_key(rng, sender, &release_public, &info.transcript_hash, key)?;
        self.send_record(record::CONTENT_KEY_RELEASE, false, &message.encode())?;
        self.state = State::AwaitingKeyResult;
        Ok(())
    }

    /// Sends Close; the session is over.
    pub fn close(&mut self) -> Result<(), ProtocolError> {
        if self.keys.is_none() {
            self.state = State::Closed;
            return Ok(());
        }
        let result = self.send_record(record::CONTENT_CLOSE, false, &[]);
        self.state = State::Closed;
        self.keys = None;
        result
    }

    /// The transport ended. Unless the session was closed with a Close record, that is a
    /// truncation.
    pub fn transport_closed(&mut self) -> Result<(), ProtocolError> {
        match self.state {
            State::Closed => Ok(()),
            State::Failed => Err(ProtocolError::Finished),
            _ => {
                self.fail();
                Err(ProtocolError::Truncated)
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to write to the transport (taken).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// The verified session, once established.
    pub fn session_info(&self) -> Option<&SessionInfo> {
        self.info.as_ref()
    }

    /// True while an answer or key-release result is awaited.
    pub fn is_waiting(&self) -> bool {
        matches!(self.state, State::AwaitingAnswer | State::AwaitingKeyResult)
    }

    /// True once closed or failed.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }
}
