//! A running Ward VM: QEMU (plus the vsock daemon when asked), its serial console captured line
//! by line with the time since QEMU started, and a clean-up that always runs.

use super::command::VmConfig;
use super::outcome::Outcome;
use super::process::terminate;
use super::vsock::VsockDaemon;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant};

/// How long QEMU gets to exit after SIGTERM.
const QEMU_STOP_GRACE: Duration = Duration::from_secs(2);

/// Where the serial console's bytes go, besides the captured lines.
#[derive(Clone, Debug)]
pub enum SerialSink {
    /// Echo to this process's standard output as they arrive.
    Stdout,
    /// Write to a file.
    File(PathBuf),
    /// Only capture.
    Discard,
}

/// One line of serial output.
#[derive(Clone, Debug)]
pub struct SerialLine {
    /// Time from QEMU's start to the line's end arriving.
    pub at: Duration,
    /// The text, without the line end.
    pub text: String,
}

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// An input file is missing.
    #[error("{what} {} does not exist", path.display())]
    MissingFile {
        /// Which input.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The runtime directory or the serial file could not be created.
    #[error("preparing {}: {source}", path.display())]
    Prepare {
        /// What was being created.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The vsock daemon failed.
    #[error("vsock: {0}")]
    Vsock(io::Error),
    /// QEMU could not be started.
    #[error("starting {}: {source}", qemu.display())]
    Qemu {
        /// The binary.
        qemu: PathBuf,
        /// The error.
        source: io::Error,
    },
}

#[derive(Default)]
struct Capture {
    lines: Mutex<Vec<SerialLine>>,
    arrived: Condvar,
}

/// A VM that is running (or has just ended).
pub struct RunningVm {
    qemu: Option<Child>,
    daemon: Option<VsockDaemon>,
    /// A directory this VM created and removes at the end.
    owned_dir: Option<PathBuf>,
    uds_path: Option<PathBuf>,
    started: Instant,
    capture: Arc<Capture>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How a run ended and what it printed.
#[derive(Debug)]
pub struct RunReport {
    /// The outcome.
    pub outcome: Outcome,
    /// Every serial line.
    pub serial: Vec<SerialLine>,
    /// What QEMU printed on standard error.
    pub stderr: String,
    /// Wall time from QEMU's start to its end.
    pub elapsed: Duration,
}

impl RunReport {
    /// The serial output as one string.
    pub fn serial_text(&self) -> String {
        self.serial
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect()
    }

    /// The first serial line containing `needle`.
    pub fn line_containing(&self, needle: &str) -> Option<&SerialLine> {
        self.serial.iter().find(|l| l.text.contains(needle))
    }
}

fn unique_runtime_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("ward-vm-{}-{nanos:09}", std::process::id()))
}

impl RunningVm {
    /// Starts the vsock daemon (if asked) and QEMU.
    pub fn launch(config: &VmConfig, sink: SerialSink) -> Result<Self, LaunchError> {
        let inputs = [
            ("image", Some(&config.image)),
            ("configuration", config.config.as_ref()),
            ("disk", config.disk.as_ref()),
        ];
        for (what, path) in inputs {
            if let Some(path) = path.filter(|p| !p.exists()) {
                return Err(LaunchError::MissingFile {
                    what,
                    path: path.clone(),
                });
            }
        }
        let mut vm = Self {
            qemu: None,
            daemon: None,
            owned_dir: None,
            uds_path: None,
            started: Instant::now(),
            capture: Arc::default(),
            stderr: Arc::default(),
            readers: Vec::new(),
        };
        if config.vsock {
            let dir = match &config.vsock_dir {
                Some(dir) => dir.clone(),
                None => {
                    let dir = unique_runtime_dir();
                    vm.owned_dir = Some(dir.clone());
                    dir
                }
            };
            create_private_dir(&dir).map_err(|source| LaunchError::Prepare {
                path: dir.clone(),
                source,
            })?;
            let daemon = VsockDaemon::start(&dir).map_err(LaunchError::Vsock)?;
            vm.uds_path = Some(daemon.uds_path().to_path_buf());
            vm.daemon = Some(daemon);
        }
        let sink_writer: Box<dyn Write + Send> = match &sink {
            SerialSink::Stdout => Box::new(io::stdout()),
            SerialSink::File(path) => {
                Box::new(File::create(path).map_err(|source| LaunchError::Prepare {
                    path: path.clone(),
                    source,
                })?)
            }
            SerialSink::Discard => Box::new(io::sink()),
        };
        let args = config.qemu_args(vm.daemon.as_ref().map(VsockDaemon::vhost_socket));
        vm.started = Instant::now();
        let mut child = Command::new(&config.qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| LaunchError::Qemu {
                qemu: config.qemu.clone(),
                source,
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        vm.qemu = Some(child);
        if let Some(stdout) = stdout {
            let (capture, started) = (Arc::clone(&vm.capture), vm.started);
            vm.readers.push(thread::spawn(move || {
                read_serial(stdout, sink_writer, &capture, started)
            }));
        }
        if let Some(stderr) = stderr {
            let collected = Arc::clone(&vm.stderr);
            let echo = !matches!(sink, SerialSink::Discard);
            vm.readers
                .push(thread::spawn(move || read_stderr(stderr, &collected, echo)));
        }
        Ok(vm)
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The host side of the guest's vsock (`CONNECT <port>\n` protocol), when attached.
    pub fn uds_path(&self) -> Option<&Path> {
        self.uds_path.as_deref()
    }

    /// The serial lines so far.
    pub fn serial_lines(&self) -> Vec<SerialLine> {
        self.capture
            .lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Waits until a serial line contains `needle`, QEMU exits, or `timeout` passes.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<SerialLine> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.capture.lines.lock().ok()?;
        loop {
            if let Some(line) = lines.iter().find(|l| l.text.contains(needle)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let exited = self
                .qemu
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                drop(lines);
                self.join_readers();
                return self
                    .serial_lines()
                    .into_iter()
                    .find(|l| l.text.contains(needle));
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            lines = self.capture.arrived.wait_timeout(lines, slice).ok()?.0;
        }
    }

    /// Waits for QEMU to end — or for `timeout`, or for `cancel` to be set (Ctrl-C) — then
    /// stops everything and reports.
    pub fn wait(mut self, timeout: Option<Duration>, cancel: &AtomicBool) -> RunReport {
        let deadline = timeout.map(|t| self.started + t);
        let outcome = loop {
            let Some(qemu) = self.qemu.as_mut() else {
                break Outcome::Qemu(1);
            };
            match qemu.try_wait() {
                Ok(Some(status)) => break Outcome::from_exit_status(status),
                Ok(None) => {}
                Err(_) => break Outcome::Qemu(1),
            }
            if cancel.load(Ordering::SeqCst) {
                break Outcome::Interrupted;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Outcome::TimedOut;
            }
            sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        self.shutdown();
        RunReport {
            outcome,
            serial: self.serial_lines(),
            stderr: self.stderr.lock().map(|s| s.clone()).unwrap_or_default(),
            elapsed,
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Stops QEMU, then the daemon, then removes the socket files and the runtime directory.
    /// Idempotent; also run on drop.
    pub fn shutdown(&mut self) {
        if let Some(mut qemu) = self.qemu.take() {
            terminate(&mut qemu, QEMU_STOP_GRACE);
        }
        self.join_readers();
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
        if let Some(dir) = self.owned_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn read_serial(
    mut stdout: ChildStdout,
    mut sink: Box<dyn Write + Send>,
    capture: &Capture,
    started: Instant,
) {
    let mut buffer = [0u8; 4096];
    let mut partial: Vec<u8> = Vec::new();
    let push_line = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        if let Ok(mut lines) = capture.lines.lock() {
            lines.push(SerialLine {
                at: started.elapsed(),
                text,
            });
        }
        capture.arrived.notify_all();
    };
    loop {
        let count = match stdout.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        let _ = sink.write_all(&buffer[..count]);
        let _ = sink.flush();
        for &byte in &buffer[..count] {
            if byte == b'\n' {
                push_line(&partial);
                partial.clear();
            } else {
                partial.push(byte);
            }
        }
    }
    if !partial.is_empty() {
        push_line(&partial);
    }
}

fn read_stderr(mut stderr: ChildStderr, collected: &Mutex<String>, echo: bool) {
    let mut buffer = [0u8; 4096];
    while let Ok(count) = stderr.read(&mut buffer) {
        if count == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buffer[..count]);
        if echo {
            eprint!("{text}");
        }
        if let Ok(mut collected) = collected.lock() {
            collected.push_str(&text);
        }
    }
}
