//! The session's evidence from the platform (docs/protocol.md §6): [`SnpEvidence`] and
//! [`TdxEvidence`] implement the protocol's [`EvidenceProvider`] on top of the guest protocols in
//! this module. The kernel supplies only the hardware step — one SNP_GUEST_REQUEST through the
//! GHCB, or TDG.MR.REPORT and GetQuote through TDCALL — as a transport; everything else (message
//! protection, sequence numbers, checking the platform's answer against the request) happens
//! here, where the host tests run it against a simulated PSP and real quotes.

use super::snp::guest_message::{GuestChannel, GuestMessageError, MESSAGE_PAGE_SIZE, MessageType};
use super::snp::messages::{self, KeyRequest, ReportRequest, ResponseError};
use super::tdx::getquote::{self, GetQuoteError, TDREPORT_LEN};
use crate::evidence::EvidenceError;
use crate::evidence::snp::SnpReport;
use crate::evidence::tdx::{TdReport, TdxQuote};
use crate::protocol::{Evidence, EvidenceKind, EvidenceProvider};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use zeroize::Zeroizing;

/// The hardware step failed (the kernel's transport says why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError(pub String);

/// Moves one SNP_GUEST_REQUEST: the kernel copies `request` into the shared request page, makes
/// the GHCB exit, and copies the shared response page into `response` (private memory).
pub trait GuestRequestTransport {
    fn exchange(
        &mut self,
        request: &[u8; MESSAGE_PAGE_SIZE],
        response: &mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<(), TransportError>;
}

/// Why platform evidence could not be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformEvidenceError {
    Transport(TransportError),
    Message(GuestMessageError),
    Response(ResponseError),
    Quote(GetQuoteError),
    /// The platform's own evidence does not parse.
    Evidence(EvidenceError),
    /// The evidence does not carry the REPORT_DATA asked for, or not at VMPL0, or the quote is
    /// not over our TDREPORT.
    Mismatch(&'static str),
}

impl fmt::Display for PlatformEvidenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "platform request failed: {}", e.0),
            Self::Message(e) => write!(f, "{e}"),
            Self::Response(e) => write!(f, "{e}"),
            Self::Quote(e) => write!(f, "{e}"),
            Self::Evidence(e) => write!(f, "platform evidence does not parse: {e}"),
            Self::Mismatch(what) => write!(f, "platform evidence mismatch: {what}"),
        }
    }
}

/// SEV-SNP: attestation reports and derived keys through VMPCK0.
pub struct SnpEvidence<T> {
    channel: GuestChannel,
    transport: T,
}

impl<T: GuestRequestTransport> SnpEvidence<T> {
    /// Uses VMPCK0 (Ward runs at VMPL0). The caller wipes the secrets page's copy of the key.
    pub fn new(vmpck0: [u8; 32], transport: T) -> Self {
        Self {
            channel: GuestChannel::new(vmpck0, 0),
            transport,
        }
    }

    fn request<'p>(
        &mut self,
        msg_type: MessageType,
        payload: &[u8],
        response: &'p mut [u8; MESSAGE_PAGE_SIZE],
    ) -> Result<&'p [u8], PlatformEvidenceError> {
        let mut request = [0u8; MESSAGE_PAGE_SIZE];
        self.channel
            .seal_request(msg_type, 1, payload, &mut request)
            .map_err(PlatformEvidenceError::Message)?;
        if let Err(e) = self.transport.exchange(&request, response) {
            // The PSP may or may not have consumed the sequence number: never guess.
            self.channel.fail();
            return Err(PlatformEvidenceError::Transport(e));
        }
        self.channel
            .open_response(response)
            .map_err(PlatformEvidenceError::Message)
    }

    /// A report over `report_data`, checked to carry it at VMPL0.
    pub fn report(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformEvidenceError> {
        let payload = ReportRequest {
            report_data: *report_data,
            vmpl: 0,
        }
        .encode();
        let mut response = [0u8; MESSAGE_PAGE_SIZE];
        let body = self.request(MessageType::ReportRequest, &payload, &mut response)?;
        let report =
            messages::report_from_response(body).map_err(PlatformEvidenceError::Response)?;
        let parsed = SnpReport::parse(report).map_err(PlatformEvidenceError::Evidence)?;
        if parsed.report_data != *report_data {
            return Err(PlatformEvidenceError::Mismatch("REPORT_DATA"));
        }
        if parsed.vmpl != 0 {
            return Err(PlatformEvidenceError::Mismatch("VMPL"));
        }
        Ok(report.to_vec())
    }

    /// A key derived by the PSP from the chip's root key and the fields `request` selects.
    pub fn derived_key(
        &mut self,
        request: &KeyRequest,
    ) -> Result<Zeroizing<[u8; 32]>, PlatformEvidenceError> {
        let mut response = Zeroizing::new([0u8; MESSAGE_PAGE_SIZE]);
        let body = self.request(MessageType::KeyRequest, &request.encode(), &mut response)?;
        messages::key_from_response(body)
            .map(Zeroizing::new)
            .map_err(PlatformEvidenceError::Response)
    }
}

impl<T: GuestRequestTransport> EvidenceProvider for SnpEvidence<T> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String> {
        let bytes = self.report(report_data).map_err(|e| format!("{e}"))?;
        Ok(Evidence {
            kind: EvidenceKind::SevSnp,
            bytes,
        })
    }
}

/// The TDX hardware steps.
pub trait TdxTransport {
    /// TDG.MR.REPORT over `report_data`.
    fn tdreport(&mut self, report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], TransportError>;
    /// Copies `buffer` into the shared GetQuote buffer, makes the GetQuote TDVMCALL, waits for
    /// the status to leave "in flight" (bounded), and copies the buffer back.
    fn get_quote(&mut self, buffer: &mut [u8]) -> Result<(), TransportError>;
}

/// TDX: a DCAP quote over a TDREPORT, through the host's quoting service.
pub struct TdxEvidence<T> {
    transport: T,
    buffer_len: usize,
}

impl<T: TdxTransport> TdxEvidence<T> {
    /// `buffer_len`: size of the GetQuote buffer (quotes with certification data are ~5–8 KiB).
    pub fn new(transport: T, buffer_len: usize) -> Self {
        Self {
            transport,
            buffer_len,
        }
    }

    /// A quote over `report_data`, checked to be over the TDREPORT we just made.
    pub fn quote(&mut self, report_data: &[u8; 64]) -> Result<Vec<u8>, PlatformEvidenceError> {
        let raw = self
            .transport
            .tdreport(report_data)
            .map_err(PlatformEvidenceError::Transport)?;
        let tdreport = TdReport::parse(&raw).map_err(PlatformEvidenceError::Evidence)?;
        if tdreport.report_data != *report_data {
            return Err(PlatformEvidenceError::Mismatch("TDREPORT REPORTDATA"));
        }
        let mut buffer = vec![0u8; self.buffer_len];
        getquote::encode_request(&mut buffer, &raw).map_err(PlatformEvidenceError::Quote)?;
        self.transport
            .get_quote(&mut buffer)
            .map_err(PlatformEvidenceError::Transport)?;
        let quote = getquote::decode_response(&buffer).map_err(PlatformEvidenceError::Quote)?;
        let parsed = TdxQuote::parse(quote).map_err(PlatformEvidenceError::Evidence)?;
        // The host's quoting service could hand back any quote it holds: it must be over ours.
        if parsed.body.report_data != *report_data {
            return Err(PlatformEvidenceError::Mismatch("quote REPORTDATA"));
        }
        if parsed.body.mr_td != tdreport.mr_td || parsed.body.rtmr != tdreport.rtmr {
            return Err(PlatformEvidenceError::Mismatch("quote MRTD/RTMRs"));
        }
        Ok(quote.to_vec())
    }
}

impl<T: TdxTransport> EvidenceProvider for TdxEvidence<T> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String> {
        let bytes = self.quote(report_data).map_err(|e| format!("{e}"))?;
        Ok(Evidence {
            kind: EvidenceKind::Tdx,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::snp::messages::{RootKey, field};
    use crate::guest::snp::simulated_psp::{SimulatedPsp, VMPCK};

    struct PspTransport {
        psp: SimulatedPsp,
        /// Hypervisor misbehaviour: hand back this (old) response instead of the PSP's.
        replay: Option<[u8; MESSAGE_PAGE_SIZE]>,
        record: Option<[u8; MESSAGE_PAGE_SIZE]>,
        fail: bool,
    }

    impl PspTransport {
        fn new() -> Self {
            Self {
                psp: SimulatedPsp::new(),
                replay: None,
                record: None,
                fail: false,
            }
        }
    }

    impl GuestRequestTransport for &mut PspTransport {
        fn exchange(
            &mut self,
            request: &[u8; MESSAGE_PAGE_SIZE],
            response: &mut [u8; MESSAGE_PAGE_SIZE],
        ) -> Result<(), TransportError> {
            if self.fail {
                return Err(TransportError("GHCB exit refused".into()));
            }
            let answer = self
                .psp
                .handle(request)
                .map_err(|e| TransportError(format!("{e:?}")))?;
            self.record = Some(answer);
            *response = self.replay.unwrap_or(answer);
            Ok(())
        }
    }

    #[test]
    fn snp_evidence_carries_the_report_data() {
        let mut transport = PspTransport::new();
        let mut provider = SnpEvidence::new(VMPCK, &mut transport);
        for byte in [1u8, 2, 3] {
            let evidence = provider.evidence(&[byte; 64]).unwrap();
            assert_eq!(evidence.kind, EvidenceKind::SevSnp);
            assert_eq!(
                SnpReport::parse(&evidence.bytes).unwrap().report_data,
                [byte; 64]
            );
        }
        let request = KeyRequest {
            root_key: RootKey::Vcek,
            guest_field_select: field::MEASUREMENT,
            vmpl: 0,
            guest_svn: 0,
            tcb_version: 0,
        };
        let a = provider.derived_key(&request).unwrap();
        let b = provider.derived_key(&request).unwrap();
        assert_eq!(*a, *b);
    }

    #[test]
    fn snp_replayed_response_ends_the_channel() {
        let mut transport = PspTransport::new();
        let mut provider = SnpEvidence::new(VMPCK, &mut transport);
        provider.evidence(&[1; 64]).unwrap();
        let old = provider.transport.record.unwrap();
        provider.transport.replay = Some(old);
        let error = provider.report(&[2; 64]).unwrap_err();
        assert_eq!(
            error,
            PlatformEvidenceError::Message(GuestMessageError::WrongSequence {
                expected: 4,
                got: 2
            })
        );
        provider.transport.replay = None;
        assert_eq!(
            provider.report(&[3; 64]).unwrap_err(),
            PlatformEvidenceError::Message(GuestMessageError::KeyWiped)
        );
    }

    #[test]
    fn snp_transport_failure_wipes_the_key() {
        let mut transport = PspTransport::new();
        transport.fail = true;
        let mut provider = SnpEvidence::new(VMPCK, &mut transport);
        assert!(matches!(
            provider.report(&[1; 64]),
            Err(PlatformEvidenceError::Transport(_))
        ));
        provider.transport.fail = false;
        assert!(provider.evidence(&[1; 64]).unwrap_err().contains("wiped"));
    }

    const QUOTE: &[u8] = include_bytes!(
        "../../testdata/vectors/tdx/trustee/deps_verifier_test_data_tdx_quote_4.dat"
    );

    /// A TD whose TDREPORT matches the vector quote's body (except where a test changes it) and
    /// whose quoting service returns that quote.
    struct VectorTd {
        mr_td_flip: bool,
        quote: Vec<u8>,
    }

    impl TdxTransport for VectorTd {
        fn tdreport(
            &mut self,
            report_data: &[u8; 64],
        ) -> Result<[u8; TDREPORT_LEN], TransportError> {
            let body = TdxQuote::parse(QUOTE).unwrap().body;
            let mut raw = [0u8; TDREPORT_LEN];
            raw[0] = 0x81;
            raw[128..192].copy_from_slice(report_data);
            raw[528..576].copy_from_slice(&body.mr_td);
            if self.mr_td_flip {
                raw[528] ^= 1;
            }
            for (i, rtmr) in body.rtmr.iter().enumerate() {
                raw[720 + 48 * i..768 + 48 * i].copy_from_slice(rtmr);
            }
            Ok(raw)
        }

        fn get_quote(&mut self, buffer: &mut [u8]) -> Result<(), TransportError> {
            assert_eq!(buffer[24], 0x81, "the TDREPORT goes to the quoting service");
            buffer[20..24].copy_from_slice(&(self.quote.len() as u32).to_le_bytes());
            buffer[24..24 + self.quote.len()].copy_from_slice(&self.quote);
            Ok(())
        }
    }

    #[test]
    fn tdx_evidence_is_a_quote_over_our_tdreport() {
        let body = TdxQuote::parse(QUOTE).unwrap().body;
        let mut provider = TdxEvidence::new(
            VectorTd {
                mr_td_flip: false,
                quote: QUOTE.to_vec(),
            },
            16384,
        );
        let evidence = provider.evidence(&body.report_data).unwrap();
        assert_eq!(evidence.kind, EvidenceKind::Tdx);
        assert_eq!(evidence.bytes, QUOTE);
        // A quote the host had lying around, over other REPORTDATA, is refused.
        assert_eq!(
            provider.quote(&[0x55; 64]).unwrap_err(),
            PlatformEvidenceError::Mismatch("quote REPORTDATA")
        );
        let mut other_td = TdxEvidence::new(
            VectorTd {
                mr_td_flip: true,
                quote: QUOTE.to_vec(),
            },
            16384,
        );
        assert_eq!(
            other_td.quote(&body.report_data).unwrap_err(),
            PlatformEvidenceError::Mismatch("quote MRTD/RTMRs")
        );
        let mut garbage = TdxEvidence::new(
            VectorTd {
                mr_td_flip: false,
                quote: vec![0xAA; 100],
            },
            16384,
        );
        assert!(matches!(
            garbage.quote(&body.report_data),
            Err(PlatformEvidenceError::Evidence(_))
        ));
        let mut small = TdxEvidence::new(
            VectorTd {
                mr_td_flip: false,
                quote: QUOTE.to_vec(),
            },
            512,
        );
        assert!(matches!(
            small.quote(&body.report_data),
            Err(PlatformEvidenceError::Quote(GetQuoteError::BufferTooSmall(
                512
            )))
        ));
    }
}
