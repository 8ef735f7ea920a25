//! Ward's attestation library: evidence formats, launch measurements, verification, the sealed
//! model format and the attested session protocol. `no_std` + `alloc`, tested on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;
#[cfg(feature = "verify")]
extern crate std;

pub mod config;
pub mod evidence;
pub mod guest;
pub mod keyrelease;
pub mod measure;
pub mod protocol;
pub mod sealed;
#[cfg(feature = "verify")]
pub mod verify;
