//! A scriptable fake virtio device for host tests: a `Transport` whose queues live in the test
//! pool (device addresses equal virtual addresses there), so the fake can read the driver's
//! descriptor chains and write used entries — including hostile ones (wrong ids, lengths that
//! do not fit, completions that never come).

use super::pci::transport::{TransportFault, VirtioTransport};
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// What the device does with one descriptor chain.
pub enum Completion {
    /// Leave it in the ring (the device is slow, or dead).
    Pending,
    /// Complete it: write `data` into the chain's writable buffers, report `used_len` (default:
    /// bytes written) under `used_id` (default: the chain's head).
    Done {
        data: Vec<u8>,
        used_len: Option<u32>,
        used_id: Option<u32>,
    },
}

impl Completion {
    /// Writes `data`, honest length and id.
    pub fn write(data: Vec<u8>) -> Self {
        Self::Done {
            data,
            used_len: None,
            used_id: None,
        }
    }
}

type Responder = Box<dyn FnMut(u16, &[u8], usize) -> Completion>;

#[derive(Default, Clone, Copy)]
struct Queue {
    max_size: u32,
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    enabled: bool,
    next_avail: u16,
    used_idx: u16,
}

/// The device's side, shared between the test and the transport.
pub struct FakeState {
    /// Offered feature bits.
    pub offered: u64,
    /// What the driver accepted.
    pub accepted: u64,
    /// Clear FEATURES_OK when the driver sets it.
    pub refuse_features: bool,
    status: u8,
    /// Device configuration space.
    pub config: Vec<u8>,
    /// The generation changes on every read (a device that never settles).
    pub unstable_generation: bool,
    generation: Cell<u32>,
    queues: Vec<Queue>,
    /// Called on notify for each available chain, with the queue, its readable bytes and the
    /// size of its writable buffers.
    pub responder: Option<Responder>,
}

impl FakeState {
    /// A device with `queues` queues of at most `max_size` entries.
    pub fn new(offered: u64, config: Vec<u8>, queues: usize, max_size: u32) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            offered,
            accepted: 0,
            refuse_features: false,
            status: 0,
            config,
            unstable_generation: false,
            generation: Cell::new(0),
            queues: vec![
                Queue {
                    max_size,
                    ..Queue::default()
                };
                queues
            ],
            responder: None,
        }))
    }

    /// The device status the driver last wrote (0 = reset).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Completes chains of `queue` with the responder until it says `Pending`.
    fn process(&mut self, queue: u16) {
        let Some(mut responder) = self.responder.take() else {
            return;
        };
        while let Some(head) = self.peek_avail(queue) {
            let (readable, writable) = self.chain(queue, head);
            let room = writable.iter().map(|&(_, len)| len as usize).sum();
            match responder(queue, &readable, room) {
                Completion::Pending => break,
                Completion::Done {
                    data,
                    used_len,
                    used_id,
                } => {
                    self.complete(queue, &data, used_len, used_id);
                }
            }
        }
        self.responder = Some(responder);
    }

    fn peek_avail(&self, queue: u16) -> Option<u16> {
        let q = self.queues.get(usize::from(queue))?;
        if !q.enabled {
            return None;
        }
        // SAFETY: test-pool addresses are virtual addresses of live pool pages (the queue's
        // driver area, allocated by the driver under test).
        let idx = unsafe { ((q.driver + 2) as *const u16).read_volatile() };
        if idx == q.next_avail {
            return None;
        }
        let slot = u64::from(q.next_avail % q.size);
        // SAFETY: as above; `slot < size`.
        Some(unsafe { ((q.driver + 4 + 2 * slot) as *const u16).read_volatile() })
    }

    /// The chain at `head`: its readable bytes and its writable buffers.
    fn chain(&self, queue: u16, head: u16) -> (Vec<u8>, Vec<(u64, u32)>) {
        let q = self.queues[usize::from(queue)];
        let mut readable = Vec::new();
        let mut writable = Vec::new();
        let mut index = head;
        for _ in 0..q.size {
            let at = q.desc + 16 * u64::from(index % q.size);
            // SAFETY: the descriptor table is live pool memory; buffers it names are bounce
            // pages of the test pool.
            let (addr, len, flags, next) = unsafe {
                (
                    (at as *const u64).read_volatile(),
                    ((at + 8) as *const u32).read_volatile(),
                    ((at + 12) as *const u16).read_volatile(),
                    ((at + 14) as *const u16).read_volatile(),
                )
            };
            if flags & 2 != 0 {
                writable.push((addr, len));
            } else {
                // SAFETY: as above.
                readable.extend_from_slice(unsafe {
                    core::slice::from_raw_parts(addr as *const u8, len as usize)
                });
            }
            if flags & 1 == 0 {
                break;
            }
            index = next;
        }
        (readable, writable)
    }

    /// Completes the next available chain of `queue`.
    pub fn complete(
        &mut self,
        queue: u16,
        data: &[u8],
        used_len: Option<u32>,
        used_id: Option<u32>,
    ) -> bool {
        let Some(head) = self.peek_avail(queue) else {
            return false;
        };
        let (_, writable) = self.chain(queue, head);
        let mut rest = data;
        for (addr, len) in writable {
            let n = rest.len().min(len as usize);
            // SAFETY: a writable bounce buffer of at least `len` bytes in the test pool.
            unsafe { core::ptr::copy_nonoverlapping(rest.as_ptr(), addr as *mut u8, n) };
            rest = &rest[n..];
        }
        let q = &mut self.queues[usize::from(queue)];
        let slot = u64::from(q.used_idx % q.size);
        let element = q.device + 4 + 8 * slot;
        // SAFETY: the used ring is live pool memory of the queue's size.
        unsafe {
            (element as *mut u32).write_volatile(used_id.unwrap_or(u32::from(head)));
            ((element + 4) as *mut u32)
                .write_volatile(used_len.unwrap_or((data.len() - rest.len()) as u32));
        }
        q.used_idx = q.used_idx.wrapping_add(1);
        q.next_avail = q.next_avail.wrapping_add(1);
        // SAFETY: as above.
        unsafe { ((q.device + 2) as *mut u16).write_volatile(q.used_idx) };
        true
    }
}

/// The transport half, owned by the driver under test.
pub struct FakeTransport {
    /// Shared with the test.
    pub state: Rc<RefCell<FakeState>>,
    /// The device type reported.
    pub device_type: DeviceType,
}

impl VirtioTransport for FakeTransport {
    fn fault(&self) -> Option<TransportFault> {
        None
    }
}

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        self.state.borrow().offered
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.state.borrow_mut().accepted = driver_features;
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        let state = self.state.borrow();
        state
            .queues
            .get(usize::from(queue))
            .map_or(0, |q| q.max_size)
    }

    fn notify(&mut self, queue: u16) {
        self.state.borrow_mut().process(queue);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.state.borrow().status.into())
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut state = self.state.borrow_mut();
        let mut bits = status.bits() as u8;
        if state.refuse_features {
            bits &= !(DeviceStatus::FEATURES_OK.bits() as u8);
        }
        state.status = bits;
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let mut state = self.state.borrow_mut();
        let q = &mut state.queues[usize::from(queue)];
        q.size = size as u16;
        q.desc = descriptors;
        q.driver = driver_area;
        q.device = device_area;
        q.enabled = true;
    }

    fn queue_unset(&mut self, _queue: u16) {}

    fn queue_used(&mut self, queue: u16) -> bool {
        self.state
            .borrow()
            .queues
            .get(usize::from(queue))
            .is_none_or(|q| q.enabled)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }

    fn read_config_generation(&self) -> u32 {
        let state = self.state.borrow();
        let generation = state.generation.get();
        if state.unstable_generation {
            state.generation.set(generation + 1);
        }
        generation
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let state = self.state.borrow();
        let bytes = state
            .config
            .get(offset..offset + core::mem::size_of::<T>())
            .ok_or(Error::ConfigSpaceTooSmall)?;
        T::read_from_bytes(bytes).map_err(|_| Error::InvalidParam)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), Error> {
        Err(Error::Unsupported)
    }

    fn read_consistent<T>(&self, f: impl Fn() -> Result<T, Error>) -> Result<T, Error> {
        // The same bounded retry as the real transport.
        for _ in 0..8 {
            let before = self.read_config_generation();
            let result = f();
            if self.read_config_generation() == before {
                return result;
            }
        }
        Err(Error::IoError)
    }
}
