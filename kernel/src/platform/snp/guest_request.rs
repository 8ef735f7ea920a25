//! SNP_GUEST_REQUEST through the GHCB (GHCB spec 56421 §4.1.7, exit 0x8000_0011): the sealed
//! request is copied into a shared request page, the hypervisor hands it to the PSP and puts
//! the PSP's sealed answer in a shared response page, which is copied back to private memory.
//! The messages themselves (AES-256-GCM with VMPCK0, sequence numbers) are protected and checked
//! by `ward_attestation::guest::snp::guest_message`; the host sees only ciphertext.

use ward_attestation::guest::provider::TransportError;
use ward_attestation::guest::snp::ghcb::{Ghcb, GhcbError, GhcbMemory};
use ward_attestation::guest::snp::guest_message::MESSAGE_PAGE_SIZE;

/// The hypervisor's "busy, try again" answer (SW_EXITINFO2 bits 63:32): the request was not
/// passed to the PSP, so sending the same sealed bytes again reuses no IV.
const VMM_BUSY: u64 = 2;
/// How often a busy hypervisor is asked again before giving up.
pub const BUSY_RETRIES: usize = 8;

/// The two shared pages of the exchange.
pub trait MessagePages {
    /// Guest-physical address of the request page (C-bit clear).
    fn request_gpa(&self) -> u64;
    /// Guest-physical address of the response page (C-bit clear).
    fn response_gpa(&self) -> u64;
    /// Copies the sealed request into the request page and zeroes the response page.
    fn put_request(&mut self, request: &[u8; MESSAGE_PAGE_SIZE]);
    /// Copies the response page into private memory.
    fn take_response(&self, response: &mut [u8; MESSAGE_PAGE_SIZE]);
}

fn transport_error(what: &str, error: GhcbError) -> TransportError {
    TransportError(alloc::format!("SNP_GUEST_REQUEST {what}: {error}"))
}

/// One exchange: `exit` makes the VMGEXIT with `ghcb` prepared. A busy hypervisor is asked
/// again (at most [`BUSY_RETRIES`] times, calling `wait` in between); any other failure is
/// returned, and the caller's message channel then wipes VMPCK0.
pub fn exchange<M: GhcbMemory>(
    ghcb: &mut Ghcb<M>,
    pages: &mut impl MessagePages,
    request: &[u8; MESSAGE_PAGE_SIZE],
    response: &mut [u8; MESSAGE_PAGE_SIZE],
    mut exit: impl FnMut(&mut Ghcb<M>),
    mut wait: impl FnMut(),
) -> Result<(), TransportError> {
    pages.put_request(request);
    for attempt in 0..=BUSY_RETRIES {
        ghcb.prepare_guest_request(pages.request_gpa(), pages.response_gpa());
        exit(ghcb);
        match ghcb.guest_request_result() {
            Ok(()) => {
                pages.take_response(response);
                return Ok(());
            }
            Err(GhcbError::Hypervisor { info2 }) if info2 >> 32 == VMM_BUSY => {
                if attempt < BUSY_RETRIES {
                    wait();
                }
            }
            Err(error) => return Err(transport_error("failed", error)),
        }
    }
    Err(TransportError(alloc::format!(
        "SNP_GUEST_REQUEST: hypervisor still busy after {BUSY_RETRIES} retries"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::rc::Rc;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::cell::RefCell;
    use ward_attestation::guest::provider::SnpEvidence;
    use ward_attestation::guest::provider::{GuestRequestTransport, PlatformEvidenceError};
    use ward_attestation::guest::snp::ghcb::{Field, exit_code};
    use ward_attestation::guest::snp::guest_message::GuestMessageError;

    /// A GHCB page in ordinary memory, shared between the guest side and the test's hypervisor.
    #[derive(Clone)]
    struct Page(Rc<RefCell<Vec<u8>>>);

    impl GhcbMemory for Page {
        fn read_u64(&self, offset: usize) -> u64 {
            u64::from_le_bytes(self.0.borrow()[offset..offset + 8].try_into().unwrap())
        }
        fn write_u64(&mut self, offset: usize, value: u64) {
            self.0.borrow_mut()[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        fn read_u8(&self, offset: usize) -> u8 {
            self.0.borrow()[offset]
        }
        fn write_u8(&mut self, offset: usize, value: u8) {
            self.0.borrow_mut()[offset] = value;
        }
    }

    struct Pages {
        request: Vec<u8>,
        response: Rc<RefCell<Vec<u8>>>,
    }

    impl MessagePages for Pages {
        fn request_gpa(&self) -> u64 {
            0x40_0000
        }
        fn response_gpa(&self) -> u64 {
            0x40_1000
        }
        fn put_request(&mut self, request: &[u8; MESSAGE_PAGE_SIZE]) {
            self.request.copy_from_slice(request);
            self.response.borrow_mut().fill(0);
        }
        fn take_response(&self, response: &mut [u8; MESSAGE_PAGE_SIZE]) {
            response.copy_from_slice(&self.response.borrow());
        }
    }

    /// The hypervisor's side of one exit: checks the request, answers with `info2`, and on
    /// success writes `answer` into the response page.
    fn hypervisor(ghcb: &mut Ghcb<Page>, response: &Rc<RefCell<Vec<u8>>>, info2: u64, answer: u8) {
        assert_eq!(
            ghcb.get(Field::SW_EXIT_CODE),
            Ok(exit_code::SNP_GUEST_REQUEST)
        );
        assert_eq!(ghcb.get(Field::SW_EXIT_INFO_1), Ok(0x40_0000));
        assert_eq!(ghcb.get(Field::SW_EXIT_INFO_2), Ok(0x40_1000));
        ghcb.begin();
        ghcb.set(Field::SW_EXIT_INFO_1, 0);
        ghcb.set(Field::SW_EXIT_INFO_2, info2);
        if info2 == 0 {
            response.borrow_mut().fill(answer);
        }
    }

    fn setup() -> (Ghcb<Page>, Pages, Rc<RefCell<Vec<u8>>>) {
        let response = Rc::new(RefCell::new(vec![0xAA; MESSAGE_PAGE_SIZE]));
        let pages = Pages {
            request: vec![0; MESSAGE_PAGE_SIZE],
            response: response.clone(),
        };
        let ghcb = Ghcb::new(Page(Rc::new(RefCell::new(vec![0; 4096]))), 0x3F_F000);
        (ghcb, pages, response)
    }

    /// What one `exchange` of the request `[0x5C; …]` did.
    struct Outcome {
        result: Result<(), TransportError>,
        response: [u8; MESSAGE_PAGE_SIZE],
        request_page: Vec<u8>,
        exits: usize,
        waits: usize,
    }

    /// One `exchange` whose hypervisor answers its `n`-th exit (from 1) with status
    /// `status(n)` and, on success, a response page full of `answer`.
    fn exchange_with(status: impl Fn(usize) -> u64, answer: u8) -> Outcome {
        let (mut ghcb, mut pages, shared) = setup();
        let mut response = [0; MESSAGE_PAGE_SIZE];
        let (mut exits, mut waits) = (0, 0);
        let result = exchange(
            &mut ghcb,
            &mut pages,
            &[0x5C; MESSAGE_PAGE_SIZE],
            &mut response,
            |g| {
                exits += 1;
                hypervisor(g, &shared, status(exits), answer)
            },
            || waits += 1,
        );
        Outcome {
            result,
            response,
            request_page: pages.request,
            exits,
            waits,
        }
    }

    #[test]
    fn request_and_response_cross_the_shared_pages() {
        let outcome = exchange_with(|_| 0, 0x77);
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(outcome.exits, 1);
        assert_eq!(outcome.request_page, [0x5C; MESSAGE_PAGE_SIZE]);
        assert_eq!(outcome.response, [0x77; MESSAGE_PAGE_SIZE]);
    }

    #[test]
    fn busy_is_retried_and_errors_are_reported() {
        let outcome = exchange_with(|n| if n < 3 { VMM_BUSY << 32 } else { 0 }, 9);
        assert_eq!(outcome.result, Ok(()));
        assert_eq!((outcome.exits, outcome.waits), (3, 2));
        assert_eq!(outcome.response[0], 9);

        let outcome = exchange_with(|_| VMM_BUSY << 32, 0);
        let error = outcome.result.unwrap_err();
        assert_eq!(outcome.exits, BUSY_RETRIES + 1);
        assert!(error.0.contains("still busy"), "{}", error.0);

        // A firmware error (bits 31:0) is not retried.
        let outcome = exchange_with(|_| 0x16, 0);
        let error = outcome.result.unwrap_err();
        assert_eq!(outcome.exits, 1);
        assert!(error.0.contains("0x16"), "{}", error.0);

        // The hypervisor forgets to mark its status valid.
        let (mut ghcb, mut pages, _) = setup();
        let error = exchange(
            &mut ghcb,
            &mut pages,
            &[1; MESSAGE_PAGE_SIZE],
            &mut [0; MESSAGE_PAGE_SIZE],
            |g| g.begin(),
            || {},
        )
        .unwrap_err();
        assert!(error.0.contains("not marked valid"), "{}", error.0);
    }

    /// The transport the kernel builds, with the test's hypervisor behind it.
    struct Transport {
        ghcb: Ghcb<Page>,
        pages: Pages,
        shared: Rc<RefCell<Vec<u8>>>,
    }

    impl GuestRequestTransport for Transport {
        fn exchange(
            &mut self,
            request: &[u8; MESSAGE_PAGE_SIZE],
            response: &mut [u8; MESSAGE_PAGE_SIZE],
        ) -> Result<(), TransportError> {
            let shared = self.shared.clone();
            exchange(
                &mut self.ghcb,
                &mut self.pages,
                request,
                response,
                |g| hypervisor(g, &shared, 0, 0x42),
                || {},
            )
        }
    }

    #[test]
    fn a_forged_response_is_refused_and_the_key_wiped() {
        let (ghcb, pages, shared) = setup();
        let mut evidence = SnpEvidence::new(
            [7; 32],
            Transport {
                ghcb,
                pages,
                shared,
            },
        );
        // The "PSP" answer is the host's forgery: it does not authenticate under VMPCK0.
        assert!(matches!(
            evidence.report(&[1; 64]),
            Err(PlatformEvidenceError::Message(_))
        ));
        assert_eq!(
            evidence.report(&[1; 64]).unwrap_err(),
            PlatformEvidenceError::Message(GuestMessageError::KeyWiped)
        );
    }
}
