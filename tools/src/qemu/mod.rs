//! Booting Ward images under QEMU, shared by `ward run`, the boot and end-to-end tests and
//! `ward demo`: the accelerator choice (`accel`), the command line (`command`), the per-VM
//! vsock daemon (`vsock`), a running VM with its serial capture and clean-up (`vm`), and what
//! the kernel's exit status means (`outcome`).
//!
//! Every process started here is stopped, and every socket file removed, when the VM ends —
//! normally, on error, on timeout, on Ctrl-C (the caller's cancel flag) and on drop — in the
//! order QEMU, daemon, sockets.

pub mod accel;
pub mod command;
pub mod outcome;
mod process;
pub mod vm;
pub mod vsock;

pub use accel::Accel;
pub use command::{DEFAULT_MEMORY_MIB, VmConfig};
pub use outcome::{KernelExit, Outcome};
pub use vm::{LaunchError, RunReport, RunningVm, SerialLine, SerialSink};
