//! Enclave addresses: `vsock://CID:PORT` and `unix://PATH:PORT`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where an enclave listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A kernel vsock endpoint (host with the `vhost-vsock` module).
    Vsock { cid: u32, port: u32 },
    /// A hybrid-vsock Unix socket (vhost-device-vsock) and the guest port behind it.
    HybridUnix { path: PathBuf, port: u32 },
}

/// An address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError(String);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad address `{}`: expected vsock://CID:PORT or unix://PATH:PORT",
            self.0
        )
    }
}

impl std::error::Error for AddressError {}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(text.to_string());
        // The port follows the last colon, so a Unix path may itself contain colons.
        let split = |rest: &str| -> Result<(String, u32), AddressError> {
            let (head, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            let port = port.parse::<u32>().map_err(|_| bad())?;
            if head.is_empty() {
                return Err(bad());
            }
            Ok((head.to_string(), port))
        };
        if let Some(rest) = text.strip_prefix("vsock://") {
            let (cid, port) = split(rest)?;
            let cid = cid.parse::<u32>().map_err(|_| bad())?;
            Ok(Self::Vsock { cid, port })
        } else if let Some(rest) = text.strip_prefix("unix://") {
            let (path, port) = split(rest)?;
            Ok(Self::HybridUnix {
                path: PathBuf::from(path),
                port,
            })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Self::HybridUnix { path, port } => write!(f, "unix://{}:{port}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            "vsock://3:5000".parse(),
            Ok(Address::Vsock { cid: 3, port: 5000 })
        );
        assert_eq!(
            "unix:///tmp/a:b/vm.vsock:5000".parse(),
            Ok(Address::HybridUnix {
                path: "/tmp/a:b/vm.vsock".into(),
                port: 5000
            })
        );
        let a: Address = "unix://vm.vsock:7".parse().unwrap();
        assert_eq!(a.to_string(), "unix://vm.vsock:7");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "vsock://3",
            "vsock://x:1",
            "vsock://3:99999999999",
            "unix://:5",
            "tcp://1:2",
            "unix:///p:",
        ] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }
}
