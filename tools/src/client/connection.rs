//! A client session over a byte stream: handshake, prompts with streamed answers, key release.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use std::fmt;
use std::io::{self, Read, Write};
use ward_attestation::keyrelease::ReleaseKeyPair;
use ward_attestation::protocol::{
    AnswerEnd, ClientEvent, ClientParams, ClientSession, ErrorCode, EvidenceVerifier, ModelInfo,
    ProtocolError, Request, SessionInfo,
};
use ward_attestation::sealed::ModelKey;

/// A ChaCha20 generator seeded from the operating system's random source.
pub fn os_rng() -> io::Result<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| io::Error::other(format!("OS random source: {e}")))?;
    let rng = ChaCha20Rng::from_seed(seed);
    seed.fill(0);
    Ok(rng)
}

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// Reading or writing the stream failed.
    Io(io::Error),
    /// The protocol failed: evidence rejected (says which check), replay, reorder,
    /// truncation, malformed data.
    Protocol(ProtocolError),
    /// The enclave answered with an error ("busy", "no model loaded", ...).
    Server { code: ErrorCode, message: String },
    /// The enclave closed the session before answering.
    ClosedByServer,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "connection: {e}"),
            Self::Protocol(e) => write!(f, "session broken: {e}"),
            Self::Server { code, message } if message.is_empty() => {
                write!(f, "enclave: {}", code.describe())
            }
            Self::Server { code, message } => write!(f, "enclave: {}: {message}", code.describe()),
            Self::ClosedByServer => f.write_str("the enclave closed the session"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

/// A complete, verified answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: Vec<u8>,
    pub end: AnswerEnd,
}

/// An established, attested session over `S`.
pub struct Connection<'v, S: Read + Write> {
    stream: S,
    session: ClientSession,
    verifier: &'v dyn EvidenceVerifier,
    capture: Option<Vec<u8>>,
}

impl<'v, S: Read + Write> Connection<'v, S> {
    /// Runs the handshake and verifies the evidence; returns the session and what it
    /// established. With `capture`, every byte read from the stream is also kept (to check
    /// record sizes on the wire).
    pub fn handshake(
        stream: S,
        params: ClientParams,
        verifier: &'v dyn EvidenceVerifier,
        rng: &mut ChaCha20Rng,
        capture: bool,
    ) -> Result<(Self, SessionInfo), ClientError> {
        let session = ClientSession::new(params, rng);
        let mut conn = Self {
            stream,
            session,
            verifier,
            capture: capture.then(Vec::new),
        };
        conn.flush()?;
        match conn.next_event()? {
            ClientEvent::Established(info) => Ok((conn, *info)),
            _ => Err(ProtocolError::InvalidState("no ServerHello").into()),
        }
    }

    /// Every byte read so far, when capturing.
    pub fn captured(&self) -> Option<&[u8]> {
        self.capture.as_deref()
    }

    fn flush(&mut self) -> io::Result<()> {
        let out = self.session.take_output();
        if !out.is_empty() {
            self.stream.write_all(&out)?;
            self.stream.flush()?;
        }
        Ok(())
    }

    fn next_event(&mut self) -> Result<ClientEvent, ClientError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(event);
            }
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                self.session.transport_closed()?;
                return Err(ClientError::ClosedByServer);
            }
            if let Some(c) = self.capture.as_mut() {
                c.extend_from_slice(&buf[..n]);
            }
            self.session.receive(&buf[..n], self.verifier)?;
        }
    }

    /// Sends a prompt and streams the answer to `on_text` as it arrives; returns it whole once
    /// its authenticated end checked out.
    pub fn ask(
        &mut self,
        request: &Request,
        mut on_text: impl FnMut(&[u8]),
    ) -> Result<Answer, ClientError> {
        self.session.send_request(request)?;
        self.flush()?;
        let mut text = Vec::new();
        loop {
            match self.next_event()? {
                ClientEvent::AnswerText(piece) => {
                    on_text(&piece);
                    text.extend_from_slice(&piece);
                }
                ClientEvent::AnswerEnd(end) => return Ok(Answer { text, end }),
                ClientEvent::Error { code, message } => {
                    return Err(ClientError::Server { code, message });
                }
                ClientEvent::Closed => return Err(ClientError::ClosedByServer),
                ClientEvent::Established(_) | ClientEvent::KeyReleaseResult(_) => {
                    return Err(ProtocolError::InvalidState("unexpected event").into());
                }
            }
        }
    }

    /// Seals `key` to this enclave (purpose key release) and waits for the loaded model.
    /// The caller must have checked the handshake's [`SessionInfo`] against its policy first.
    pub fn release_key(
        &mut self,
        rng: &mut ChaCha20Rng,
        sender: &ReleaseKeyPair,
        key: &ModelKey,
    ) -> Result<ModelInfo, ClientError> {
        self.session.send_key_release(rng, sender, key)?;
        self.flush()?;
        match self.next_event()? {
            ClientEvent::KeyReleaseResult(model) => Ok(model),
            ClientEvent::Error { code, message } => Err(ClientError::Server { code, message }),
            ClientEvent::Closed => Err(ClientError::ClosedByServer),
            _ => Err(ProtocolError::InvalidState("unexpected event").into()),
        }
    }

    /// Ends the session with a Close record.
    pub fn close(mut self) -> Result<(), ClientError> {
        self.session.close()?;
        self.flush()?;
        Ok(())
    }
}
