//! Opening the byte stream to an enclave: AF_VSOCK, or a hybrid-vsock Unix socket with the
//! `CONNECT <port>\n` / `OK <port>\n` exchange (../shared/PLUMBING.md facts: the CONNECT line
//! must be one write, bytes sent with it are dropped, and a guest port nobody listens on closes
//! the socket without a reply).

use super::Address;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A connected stream to an enclave.
#[derive(Debug)]
pub enum Stream {
    Vsock(File),
    Unix(UnixStream),
}

impl Stream {
    /// Limits how long one read may block (a dead enclave must not hang the client forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.set_read_timeout(timeout),
            Self::Vsock(f) => set_socket_timeout(f, libc::SO_RCVTIMEO, timeout),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Vsock(f) => f.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Vsock(f) => f.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Vsock(f) => f.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// Connects to `address`; `timeout` bounds the connection set-up.
pub fn connect(address: &Address, timeout: Duration) -> io::Result<Stream> {
    match address {
        Address::Vsock { cid, port } => connect_vsock(*cid, *port, timeout).map(Stream::Vsock),
        Address::HybridUnix { path, port } => {
            connect_hybrid(path, *port, timeout).map(Stream::Unix)
        }
    }
}

fn set_socket_timeout(
    socket: &File,
    option: libc::c_int,
    timeout: Option<Duration>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = match timeout {
        Some(t) => libc::timeval {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        },
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: the fd is an open socket owned by `socket`; `tv` is a valid timeval whose size is
    // passed alongside it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn connect_vsock(cid: u32, port: u32, timeout: Duration) -> io::Result<File> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created socket that nothing else owns.
    let socket = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    set_socket_timeout(&socket, libc::SO_SNDTIMEO, Some(timeout))?;
    set_socket_timeout(&socket, libc::SO_RCVTIMEO, Some(timeout))?;
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value before the fields are set.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = cid;
    // SAFETY: `addr` is a valid sockaddr_vm and its exact size is passed; `fd` is open.
    let rc = unsafe {
        libc::connect(
            fd,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Longest reply line accepted from the hybrid-vsock daemon.
const MAX_REPLY_LINE: usize = 64;

fn connect_hybrid(path: &Path, port: u32, timeout: Duration) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let line = format!("CONNECT {port}\n");
    // One write: the daemon closes the socket on a split CONNECT line.
    let written = stream.write(line.as_bytes())?;
    if written != line.len() {
        return Err(io::Error::other(
            "the CONNECT line was not sent in one write",
        ));
    }
    // Byte by byte, so no byte of the protocol after the reply is consumed here.
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nothing listens on guest port {port} (closed without a reply)"),
                ));
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if reply.len() < MAX_REPLY_LINE => reply.push(byte[0]),
            Ok(_) => return Err(io::Error::other("hybrid-vsock reply line too long")),
            Err(e) => return Err(e),
        }
    }
    let reply = String::from_utf8_lossy(&reply);
    if !reply.starts_with("OK ") {
        return Err(io::Error::other(format!(
            "hybrid-vsock daemon answered `{reply}`"
        )));
    }
    Ok(stream)
}
