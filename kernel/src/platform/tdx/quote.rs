//! Getting a quote from the host (GHCI "TDG.VP.VMCALL<GetQuote>"): the TD puts the request (a
//! TDREPORT, `ward_attestation::guest::tdx::getquote`) in a shared buffer and makes the
//! TDVMCALL; the host's quoting service answers asynchronously by filling in the buffer and
//! changing its status field from "in flight". The TD polls that field.
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
    use core::cell::Cell;
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
