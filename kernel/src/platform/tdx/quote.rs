//! Getting a quote from the host (GHCI "TDG.VP.VMCALL<GetQuote>"): the TD puts the request (a
//! TDREPORT, `ward_attestation::guest::tdx::getquote`) in a shared buffer and makes the
//! TDVMCALL (status 0, as Linux does). The host marks the request "in flight" before the call
//! returns and its quoting service answers asynchronously, filling in the buffer and changing
//! the status. The TD polls that field; a host that neither marks nor answers leaves an empty
//! answer, which the buffer parser refuses.
//!
//! The host may never answer, so the wait is bounded twice: by elapsed time, and by a number of
//! polls that ends it even when the clock does not advance (an uncalibrated TSC reads 0).

use super::TdCall;
use core::fmt;
use ward_attestation::guest::tdx::tdvmcall::{self, TdvmcallError};

/// The buffer's status while the quoting service works (GHCI: GET_QUOTE_IN_FLIGHT).
pub const STATUS_IN_FLIGHT: u64 = u64::MAX;
/// Offset of the status field in the GetQuote buffer.
pub const STATUS_OFFSET: usize = 8;

/// How long to wait for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitBounds {
    /// Give up after this many microseconds.
    pub timeout_micros: u64,
    /// Give up after this many polls, whatever the clock says.
    pub max_polls: u64,
}

/// Why no quote arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteError {
    /// The request does not fit the shared buffer.
    BufferTooSmall {
        /// Bytes to exchange.
        needed: usize,
        /// The shared buffer's size.
        have: usize,
    },
    /// Copying to or from the shared buffer failed.
    Buffer,
    /// The GetQuote TDVMCALL could not be made or the host refused it.
    Request(TdvmcallError),
    /// The status stayed "in flight" until a bound ran out.
    TimedOut {
        /// Microseconds waited.
        waited_micros: u64,
        /// Polls made.
        polls: u64,
    },
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, have } => write!(
                f,
                "the {needed}-byte GetQuote request exceeds the {have}-byte shared buffer"
            ),
            Self::Buffer => f.write_str("copying the GetQuote buffer failed"),
            Self::Request(e) => write!(f, "GetQuote: {e}"),
            Self::TimedOut {
                waited_micros,
                polls,
            } => write!(
                f,
                "the host's quoting service did not answer within {} ms ({polls} polls)",
                waited_micros / 1000
            ),
        }
    }
}

/// The GetQuote buffer in host-visible pages, reached only by copying.
pub trait SharedQuoteBuffer {
    /// Its address as the host sees it (shared bit set).
    fn shared_gpa(&self) -> u64;
    /// Its size in bytes.
    fn size_bytes(&self) -> usize;
    /// Copies `bytes` to the start of the buffer.
    fn copy_in(&mut self, bytes: &[u8]) -> Result<(), QuoteError>;
    /// Copies the start of the buffer into `bytes`.
    fn copy_out(&self, bytes: &mut [u8]) -> Result<(), QuoteError>;
    /// The status field as the host left it now.
    fn status(&self) -> u64;
}

/// Copies `message` (a GetQuote request) into `shared`, asks the host for the quote, waits for
/// the answer within `bounds`, and copies the buffer back into `message`.
pub fn exchange(
    td: &mut impl TdCall,
    shared: &mut impl SharedQuoteBuffer,
    message: &mut [u8],
    now_micros: impl FnMut() -> u64,
    pause: impl FnMut(),
    bounds: WaitBounds,
) -> Result<(), QuoteError> {
    if message.len() > shared.size_bytes() {
        return Err(QuoteError::BufferTooSmall {
            needed: message.len(),
            have: shared.size_bytes(),
        });
    }
    shared.copy_in(message)?;
    request(td, shared.shared_gpa(), shared.size_bytes() as u64)?;
    wait(|| shared.status(), now_micros, pause, bounds)?;
    shared.copy_out(message)
}

/// Asks the host for a quote over the request in the shared buffer at `shared_gpa` (shared
/// bit set) of `len` bytes.
pub fn request(td: &mut impl TdCall, shared_gpa: u64, len: u64) -> Result<(), QuoteError> {
    let mut registers = tdvmcall::get_quote(shared_gpa, len).map_err(QuoteError::Request)?;
    td.call(&mut registers);
    tdvmcall::check(&registers).map_err(QuoteError::Request)
}

/// Polls `status` until it leaves [`STATUS_IN_FLIGHT`], calling `pause` between polls; returns
/// the final status (the caller decodes the buffer).
pub fn wait(
    mut status: impl FnMut() -> u64,
    mut now_micros: impl FnMut() -> u64,
    mut pause: impl FnMut(),
    bounds: WaitBounds,
) -> Result<u64, QuoteError> {
    let start = now_micros();
    let mut polls = 0;
    loop {
        let current = status();
        polls += 1;
        if current != STATUS_IN_FLIGHT {
            return Ok(current);
        }
        let waited_micros = now_micros().saturating_sub(start);
        if waited_micros >= bounds.timeout_micros || polls >= bounds.max_polls {
            return Err(QuoteError::TimedOut {
                waited_micros,
                polls,
            });
        }
        pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec::Vec;
    use core::cell::{Cell, RefCell};
    use ward_attestation::guest::tdx::getquote;
    use ward_attestation::guest::tdx::tdcall::TdcallRegisters;
    use ward_attestation::guest::tdx::tdvmcall::function;

    const BOUNDS: WaitBounds = WaitBounds {
        timeout_micros: 1_000_000,
        max_polls: 50,
    };

    #[test]
    fn returns_once_the_host_answers() {
        let polls = Cell::new(0u64);
        let result = wait(
            || {
                polls.set(polls.get() + 1);
                if polls.get() < 5 { STATUS_IN_FLIGHT } else { 0 }
            },
            || polls.get() * 10,
            || {},
            BOUNDS,
        );
        assert_eq!(result, Ok(0));
        assert_eq!(polls.get(), 5);
        // A failure status ends the wait too; decoding it is the buffer parser's job.
        assert_eq!(
            wait(|| 0x8000_0000_0000_0001, || 0, || {}, BOUNDS),
            Ok(0x8000_0000_0000_0001)
        );
    }

    #[test]
    fn a_silent_host_times_out_by_clock() {
        let clock = Cell::new(0u64);
        let result = wait(
            || STATUS_IN_FLIGHT,
            || clock.get(),
            || clock.set(clock.get() + 300_000),
            BOUNDS,
        );
        assert_eq!(
            result,
            Err(QuoteError::TimedOut {
                waited_micros: 1_200_000,
                polls: 5
            })
        );
    }

    #[test]
    fn a_stopped_clock_still_ends_the_wait() {
        let pauses = Cell::new(0u64);
        let result = wait(
            || STATUS_IN_FLIGHT,
            || 0,
            || pauses.set(pauses.get() + 1),
            BOUNDS,
        );
        assert_eq!(
            result,
            Err(QuoteError::TimedOut {
                waited_micros: 0,
                polls: 50
            })
        );
        assert_eq!(pauses.get(), 49);
    }

    /// A host whose quoting service writes `answer` into the buffer `polls` status reads after
    /// the request (never, with `None`).
    struct AsyncHost {
        buffer: Rc<RefCell<Vec<u8>>>,
        answer: Vec<u8>,
        polls: Option<u32>,
        requests: Vec<TdcallRegisters>,
        /// The buffer's first bytes after the header when the request was made.
        seen_at_request: Vec<u8>,
    }

    impl TdCall for Rc<RefCell<AsyncHost>> {
        fn call(&mut self, registers: &mut TdcallRegisters) {
            let mut host = self.borrow_mut();
            host.requests.push(*registers);
            let seen = host.buffer.borrow()[..32].to_vec();
            host.seen_at_request = seen;
            // Like QEMU, the host marks the request in flight before the TDVMCALL returns.
            host.buffer.borrow_mut()[STATUS_OFFSET..STATUS_OFFSET + 8]
                .copy_from_slice(&STATUS_IN_FLIGHT.to_le_bytes());
            *registers = TdcallRegisters::default();
        }
    }

    struct Pages {
        host: Rc<RefCell<AsyncHost>>,
    }

    impl SharedQuoteBuffer for Pages {
        fn shared_gpa(&self) -> u64 {
            (1 << 47) | 0x80_0000
        }
        fn size_bytes(&self) -> usize {
            self.host.borrow().buffer.borrow().len()
        }
        fn copy_in(&mut self, bytes: &[u8]) -> Result<(), QuoteError> {
            let host = self.host.borrow();
            host.buffer.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
            Ok(())
        }
        fn copy_out(&self, bytes: &mut [u8]) -> Result<(), QuoteError> {
            bytes.copy_from_slice(&self.host.borrow().buffer.borrow()[..bytes.len()]);
            Ok(())
        }
        fn status(&self) -> u64 {
            let mut host = self.host.borrow_mut();
            if !host.requests.is_empty() && host.polls == Some(0) {
                let answer = host.answer.clone();
                host.buffer.borrow_mut()[..answer.len()].copy_from_slice(&answer);
            }
            if let Some(polls) = host.polls.as_mut() {
                *polls = polls.saturating_sub(1);
            }
            let bytes = host.buffer.borrow()[STATUS_OFFSET..STATUS_OFFSET + 8]
                .try_into()
                .unwrap();
            u64::from_le_bytes(bytes)
        }
    }

    fn async_host(polls: Option<u32>) -> (Rc<RefCell<AsyncHost>>, Pages) {
        let mut answer = alloc::vec![0u8; 24 + 5];
        answer[0] = 1; // version
        answer[20..24].copy_from_slice(&5u32.to_le_bytes());
        answer[24..].copy_from_slice(b"quote");
        let host = Rc::new(RefCell::new(AsyncHost {
            buffer: Rc::new(RefCell::new(alloc::vec![0; 4096])),
            answer,
            polls,
            requests: Vec::new(),
            seen_at_request: Vec::new(),
        }));
        let pages = Pages { host: host.clone() };
        (host, pages)
    }

    fn request_message() -> Vec<u8> {
        let mut message = alloc::vec![0u8; 2048];
        getquote::encode_request(&mut message, &[0x81; getquote::TDREPORT_LEN]).unwrap();
        message
    }

    #[test]
    fn exchange_waits_for_the_quoting_service_and_copies_the_answer_back() {
        let (host, mut pages) = async_host(Some(3));
        let mut td = host.clone();
        let mut message = request_message();
        let clock = Cell::new(0);
        let result = exchange(
            &mut td,
            &mut pages,
            &mut message,
            || clock.get(),
            || clock.set(clock.get() + 1),
            BOUNDS,
        );
        assert_eq!(result, Ok(()));
        assert_eq!(getquote::decode_response(&message), Ok(&b"quote"[..]));
        let requests = host.borrow().requests.clone();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            (requests[0].r11, requests[0].r12, requests[0].r13),
            (function::GET_QUOTE, (1 << 47) | 0x80_0000, 4096)
        );
        // The host saw the request: version 1, status 0, the TDREPORT behind the header.
        let seen = host.borrow().seen_at_request.clone();
        assert_eq!(seen[..8], 1u64.to_le_bytes());
        assert_eq!(seen[8..16], [0; 8]);
        assert_eq!(seen[24..32], [0x81; 8]);
        assert_eq!(clock.get(), 3, "three polls in flight, then the answer");
    }

    #[test]
    fn exchange_gives_up_on_a_silent_host_and_checks_sizes_first() {
        let (host, mut pages) = async_host(None);
        let mut td = host.clone();
        let mut message = request_message();
        let result = exchange(&mut td, &mut pages, &mut message, || 0, || {}, BOUNDS);
        assert_eq!(
            result,
            Err(QuoteError::TimedOut {
                waited_micros: 0,
                polls: BOUNDS.max_polls
            })
        );
        let (small_host, mut small_pages) = async_host(Some(0));
        small_host.borrow_mut().buffer = Rc::new(RefCell::new(alloc::vec![0; 1024]));
        let mut td = small_host.clone();
        assert_eq!(
            exchange(&mut td, &mut small_pages, &mut message, || 0, || {}, BOUNDS),
            Err(QuoteError::BufferTooSmall {
                needed: 2048,
                have: 1024
            })
        );
        assert!(small_host.borrow().requests.is_empty(), "nothing asked");
    }

    struct Host {
        r10: u64,
        seen: Option<TdcallRegisters>,
    }

    impl TdCall for Host {
        fn call(&mut self, registers: &mut TdcallRegisters) {
            self.seen = Some(*registers);
            *registers = TdcallRegisters {
                r10: self.r10,
                ..Default::default()
            };
        }
    }

    #[test]
    fn the_request_names_the_shared_buffer() {
        let mut host = Host { r10: 0, seen: None };
        assert_eq!(request(&mut host, (1 << 51) | 0x40_0000, 0x4000), Ok(()));
        let seen = host.seen.unwrap();
        assert_eq!(
            (seen.r11, seen.r12, seen.r13),
            (function::GET_QUOTE, (1 << 51) | 0x40_0000, 0x4000)
        );
        let mut refusing = Host {
            r10: 0x8000_0000_0000_0000,
            seen: None,
        };
        assert_eq!(
            request(&mut refusing, 0x40_0000, 0x4000),
            Err(QuoteError::Request(TdvmcallError::Status(
                0x8000_0000_0000_0000
            )))
        );
        assert!(matches!(
            request(&mut host, 0x40_0800, 0x4000),
            Err(QuoteError::Request(TdvmcallError::BadArgument(_)))
        ));
    }
}
