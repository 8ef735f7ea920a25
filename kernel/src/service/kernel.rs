//! The service on the machine: the [`io`](super::io) traits over the kernel's virtio devices
//! and the TSC, the DRBG, the evidence provider, and the loop that never returns.

use super::io::{Clock, Disk, SocketError, Sockets};
use super::serve::{SERVICE_PORT, Service, ServiceParams};
use crate::arch::tsc;
use crate::drivers::virtio::blk::BlockDevice;
use crate::drivers::virtio::pci::transport::PciTransport;
use crate::drivers::virtio::vsock::{ConnectionId, Vsock, VsockError};
use crate::drivers::virtio::{Devices, KernelPool};
use crate::mm::heap;
use crate::platform::Platform;
use crate::report::Hex;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use log::{error, info};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use ward_attestation::config::Config;
use ward_attestation::protocol::{Evidence, EvidenceProvider, SimulatedAttester};
use ward_bootinfo::{BootInfo, MeasurementKind, PlatformKind};
use ward_inference::kernels::Kernels;
use ward_inference::parallel::{Executor, Serial};

/// Every started CPU, or the boot CPU alone when SMP start-up did not run.
fn executor() -> &'static dyn Executor {
    match crate::arch::smp::pool::get() {
        Some(pool) => pool,
        None => &Serial,
    }
}

struct VsockSockets(Vsock<KernelPool, PciTransport>);

impl Sockets for VsockSockets {
    type Id = ConnectionId;

    fn poll(&mut self) -> Result<(), SocketError> {
        self.0
            .poll()
            .map_err(|e| SocketError::Device(e.to_string()))
    }

    fn accept(&mut self) -> Option<ConnectionId> {
        self.0.accept()
    }

    fn recv(&mut self, id: ConnectionId, buffer: &mut [u8]) -> Result<usize, SocketError> {
        self.0.recv(id, buffer).map_err(socket_error)
    }

    fn send(&mut self, id: ConnectionId, data: &[u8]) -> Result<usize, SocketError> {
        self.0.send(id, data).map_err(socket_error)
    }

    fn close(&mut self, id: ConnectionId) {
        // Already gone is fine: the peer may have reset it first.
        let _ = self.0.close(id);
    }
}

fn socket_error(error: VsockError) -> SocketError {
    match error {
        VsockError::NotConnected | VsockError::Closed(_) => SocketError::Closed,
        other => SocketError::Device(other.to_string()),
    }
}

struct BlockDisk(BlockDevice<KernelPool, PciTransport>);

impl Disk for BlockDisk {
    fn capacity_bytes(&self) -> u64 {
        self.0.capacity_bytes()
    }

    fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), String> {
        self.0.read(sector, buffer).map_err(|e| e.to_string())
    }
}

struct TscClock;

impl Clock for TscClock {
    fn now_micros(&self) -> u64 {
        tsc::micros_since_start()
    }

    fn now_nanos(&self) -> u64 {
        let hz = u128::from(tsc::frequency().max(1));
        (u128::from(tsc::rdtsc()) * 1_000_000_000 / hz) as u64
    }
}

/// The session's evidence: simulated on native, the platform's hardware evidence (SNP report,
/// TDX quote) on a confidential platform.
enum Attester<'a> {
    Simulated(Box<SimulatedAttester>),
    Platform(&'a dyn Platform),
}

impl EvidenceProvider for Attester<'_> {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<Evidence, String> {
        match self {
            Self::Simulated(attester) => attester.evidence(report_data),
            Self::Platform(platform) => match platform.evidence(report_data) {
                Ok(crate::platform::Evidence::Platform(evidence)) => Ok(evidence),
                Ok(crate::platform::Evidence::Simulated { .. }) => Err(alloc::format!(
                    "the {} platform offered simulated evidence",
                    platform.name()
                )),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

/// Records the verified model's digest with the platform (TDX: RTMR 2).
fn record_model(sha384: &[u8; 48]) -> Result<(), String> {
    match crate::boot::PLATFORM.get() {
        Some(platform) => platform.record_model(sha384).map_err(|e| e.to_string()),
        None => Err(String::from("no platform")),
    }
}

/// What the service needs from the boot.
pub struct Boot<'a> {
    /// The loader's hand-over (measurement log).
    pub info: &'a BootInfo,
    /// The deployment configuration's exact bytes.
    pub config_bytes: &'a [u8],
    /// The same, parsed.
    pub config: Config,
}

/// Why the service could not start.
pub fn start_error(what: &str) -> ! {
    error!("service: {what}");
    crate::exit::exit(crate::exit::ExitCode::SetupFailed)
}

/// Runs the service forever. Only a failure of the vsock device ends it (with an error exit).
pub fn run(devices: Devices, boot: Boot<'_>, platform: &dyn Platform) -> ! {
    let Some(mut vsock) = devices.vsock else {
        start_error("no virtio-vsock device: nothing to serve on")
    };
    if let Err(e) = vsock.listen(SERVICE_PORT) {
        start_error(&alloc::format!("listening on port {SERVICE_PORT}: {e}"));
    }
    let mut seed = match platform.random_seed() {
        Ok(seed) => seed,
        Err(e) => start_error(&alloc::format!("no randomness: {e}")),
    };
    let mut rng = ChaCha20Rng::from_seed(seed);
    seed.fill(0);

    let measurement = |kind| {
        boot.info
            .measurements
            .find(kind)
            .map_or([0u8; 48], |m| m.sha384)
    };
    let image = measurement(MeasurementKind::FirmwareImage);
    let kernel = measurement(MeasurementKind::KernelElf);
    let mut build_id = [0u8; 32];
    build_id.copy_from_slice(&kernel[..32]);
    let (evidence, evidence_name) = match platform.kind() {
        PlatformKind::Native => (
            Attester::Simulated(Box::new(SimulatedAttester::new(
                &mut rng,
                image,
                boot.config_bytes,
            ))),
            "simulated evidence",
        ),
        PlatformKind::Snp => (Attester::Platform(platform), "SEV-SNP reports"),
        PlatformKind::Tdx => (Attester::Platform(platform), "TDX quotes"),
    };

    let (_, free) = heap::usage();
    let free = free as u64;
    let params = ServiceParams {
        build_id,
        config_bytes: boot.config_bytes.to_vec(),
        config: boot.config,
        kernels: Kernels::detect(),
        executor: executor(),
        max_plaintext: free / 2,
        record_model,
        free_memory: || heap::usage().1 as u64,
    };
    info!(
        "service: listening on vsock port {SERVICE_PORT} ({evidence_name}, measurement {}, kernels {}, engine on {} CPUs), no model loaded until a key is released",
        Hex(&image),
        params.kernels.level().name(),
        params.executor.workers()
    );
    let disk: Option<Box<dyn Disk>> = devices
        .block
        .map(|block| Box::new(BlockDisk(block)) as Box<dyn Disk>);
    let mut service = Service::new(VsockSockets(vsock), disk, TscClock, evidence, rng, params);
    loop {
        if let Err(e) = service.run_once() {
            start_error(&alloc::format!("vsock failed: {e}"));
        }
    }
}
