//! The per-VM `vhost-device-vsock` daemon (DESIGN §7): it serves the guest's vsock device over a
//! vhost-user socket and maps guest ports to Unix sockets (hybrid vsock: connect to
//! [`VsockDaemon::uds_path`], send `CONNECT <port>\n`, wait for `OK <port>\n`).

use super::command::GUEST_CID;
use super::process::terminate;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long the daemon gets to create its socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it gets to exit after SIGTERM (it takes about 2 s).
const STOP_GRACE: Duration = Duration::from_secs(4);

/// A running daemon and the socket files it owns.
pub struct VsockDaemon {
    child: Option<Child>,
    vhost_socket: PathBuf,
    uds_path: PathBuf,
    log: PathBuf,
}

impl VsockDaemon {
    /// The daemon binary: `$WARD_VHOST_DEVICE_VSOCK`, else `vhost-device-vsock` on `PATH`,
    /// else `~/.cargo/bin/vhost-device-vsock`.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("WARD_VHOST_DEVICE_VSOCK") {
            return path.into();
        }
        let on_path = std::env::var_os("PATH").map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("vhost-device-vsock"))
                .find(|f| f.exists())
        });
        if let Some(found) = on_path.flatten() {
            return found;
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        cargo_home.map_or_else(
            || "vhost-device-vsock".into(),
            |h| h.join("bin/vhost-device-vsock"),
        )
    }

    /// Starts the daemon with its sockets in `dir` and waits until the vhost-user socket exists.
    pub fn start(dir: &Path) -> io::Result<Self> {
        let vhost_socket = dir.join("vhost.sock");
        let uds_path = dir.join("vm.vsock");
        let log = dir.join("vhost-device-vsock.log");
        for stale in [&vhost_socket, &uds_path] {
            if stale.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists (another VM running here?)",
                        stale.display()
                    ),
                ));
            }
        }
        let binary = Self::binary();
        let spec = format!(
            "guest-cid={GUEST_CID},socket={},uds-path={}",
            vhost_socket.display(),
            uds_path.display()
        );
        let child = Command::new(&binary)
            .arg("--vm")
            .arg(spec)
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(&log)?)
            // Own process group: a terminal's Ctrl-C reaches only `ward`, which then stops the
            // VM in order.
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e} (install it with `cargo install vhost-device-vsock --version 0.3.0 --locked`)", binary.display())))?;
        let mut daemon = Self {
            child: Some(child),
            vhost_socket,
            uds_path,
            log,
        };
        let deadline = Instant::now() + SOCKET_TIMEOUT;
        while !daemon.vhost_socket.exists() {
            let exited = daemon
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
                daemon.stop();
                return Err(io::Error::other(format!(
                    "vhost-device-vsock did not create its socket: {}",
                    log.trim()
                )));
            }
            sleep(Duration::from_millis(10));
        }
        Ok(daemon)
    }

    /// The vhost-user socket QEMU connects to.
    pub fn vhost_socket(&self) -> &Path {
        &self.vhost_socket
    }

    /// The host side of the guest's vsock: connect here and send `CONNECT <port>\n`.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// Stops the daemon and removes its socket files. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, STOP_GRACE);
        }
        for file in [&self.vhost_socket, &self.uds_path, &self.log] {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for VsockDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
