//! Reading and verifying the sealed model (DESIGN §10, docs/sealed-model.md): the header is
//! read and authenticated under the released key, the version checked against the configured
//! minimum, then every chunk is read, authenticated and decrypted into one private buffer
//! allocated once at the length the authenticated header states. The plaintext is returned
//! only after the last chunk authenticated and the SHA-384 of the whole matched; on any failure
//! the buffer is wiped and dropped (it is a `Zeroizing`), so nothing partly verified survives.

use super::io::{Disk, SECTOR_SIZE};
use super::memory::InsufficientMemory;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use ward_attestation::sealed::{
    CHUNKS_OFFSET, HEADER_LEN, ModelKey, SealedError, Unsealer, VerifiedModel,
};
use zeroize::Zeroizing;

/// Why the sealed model did not load. The text is what the session reports after
/// "model not loaded: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// No virtio disk was found at boot.
    NoDisk,
    /// The disk is smaller than the image it claims to hold.
    DiskTooSmall { needed: u64, capacity: u64 },
    /// The disk failed to read.
    Disk(String),
    /// The sealed format refused it: header tag, version below the minimum, a chunk that does
    /// not authenticate, the plaintext digest.
    Sealed(SealedError),
    /// The plaintext would not fit the memory set aside for it.
    TooLarge { len: u64, max: u64 },
    /// Memory for the buffers could not be allocated.
    OutOfMemory { bytes: u64 },
    /// The slots (KV caches, batch scratch) would not fit the memory left beside the weights.
    Memory(InsufficientMemory),
    /// The verified plaintext is not a model the engine runs (GGUF, tokenizer, template,
    /// tensors); the part and its message.
    Model { part: &'static str, message: String },
    /// The platform could not record the model's digest (TDX RTMR extension).
    Measurement(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDisk => f.write_str("no model disk (virtio-blk) attached"),
            Self::DiskTooSmall { needed, capacity } => write!(
                f,
                "the disk holds {capacity} bytes but the sealed image needs {needed}"
            ),
            Self::Disk(why) => write!(f, "disk read failed: {why}"),
            Self::Sealed(error) => write!(f, "{error}"),
            Self::TooLarge { len, max } => write!(
                f,
                "the model's {len} bytes exceed the {max} bytes of memory available for it"
            ),
            Self::OutOfMemory { bytes } => write!(f, "cannot allocate {bytes} bytes"),
            Self::Memory(shortfall) => write!(f, "{shortfall}"),
            Self::Model { part, message } => write!(f, "{part}: {message}"),
            Self::Measurement(why) => write!(f, "recording the model's digest failed: {why}"),
        }
    }
}

impl From<SealedError> for LoadError {
    fn from(error: SealedError) -> Self {
        Self::Sealed(error)
    }
}

/// A verified model's plaintext, wiped when dropped.
pub struct Plaintext {
    /// The GGUF bytes.
    pub bytes: Zeroizing<Vec<u8>>,
    /// What the sealed header said, now verified.
    pub model: VerifiedModel,
}

fn allocate(len: usize) -> Result<Zeroizing<Vec<u8>>, LoadError> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| LoadError::OutOfMemory { bytes: len as u64 })?;
    Ok(Zeroizing::new(buffer))
}

/// Reads, authenticates and decrypts the sealed model on `disk` with `key`, refusing versions
/// below `min_version` and plaintexts larger than `max_plaintext` bytes.
pub fn unseal_from_disk(
    disk: &mut dyn Disk,
    key: &ModelKey,
    min_version: u64,
    max_plaintext: u64,
) -> Result<Plaintext, LoadError> {
    let capacity = disk.capacity_bytes();
    if capacity < CHUNKS_OFFSET {
        return Err(LoadError::DiskTooSmall {
            needed: CHUNKS_OFFSET,
            capacity,
        });
    }
    let mut first = [0u8; SECTOR_SIZE];
    disk.read(0, &mut first).map_err(LoadError::Disk)?;
    let mut unsealer = Unsealer::new(key, &first[..HEADER_LEN], min_version)?;
    let header = unsealer.header().clone();
    if header.image_len() > capacity {
        return Err(LoadError::DiskTooSmall {
            needed: header.image_len(),
            capacity,
        });
    }
    if header.plaintext_len > max_plaintext {
        return Err(LoadError::TooLarge {
            len: header.plaintext_len,
            max: max_plaintext,
        });
    }
    // Bounded by `max_plaintext`, itself a fraction of the heap, so it fits a usize.
    let mut plaintext = allocate(header.plaintext_len as usize)?;
    let chunk_capacity = (header.chunk_size as usize).next_multiple_of(SECTOR_SIZE);
    let mut chunk = allocate(chunk_capacity)?;
    chunk.resize(chunk_capacity, 0);
    while let Some(location) = unsealer.next_chunk() {
        let sectors_len = location.len.next_multiple_of(SECTOR_SIZE);
        let buffer =
            chunk
                .get_mut(..sectors_len)
                .ok_or(LoadError::Sealed(SealedError::ChunkLength {
                    index: location.index,
                    expected: chunk_capacity,
                    got: sectors_len,
                }))?;
        disk.read(location.offset / SECTOR_SIZE as u64, buffer)
            .map_err(LoadError::Disk)?;
        let n = unsealer.open_chunk_in_place(&mut buffer[..location.len])?;
        plaintext.extend_from_slice(&buffer[..n]);
    }
    let model = unsealer.finish()?;
    Ok(Plaintext {
        bytes: plaintext,
        model,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ward_attestation::sealed::seal_image;

    /// A disk in memory.
    pub struct MemoryDisk(pub Vec<u8>);

    impl Disk for MemoryDisk {
        fn capacity_bytes(&self) -> u64 {
            self.0.len() as u64
        }

        fn read(&mut self, sector: u64, buffer: &mut [u8]) -> Result<(), String> {
            let start = sector as usize * SECTOR_SIZE;
            let source = self
                .0
                .get(start..start + buffer.len())
                .ok_or_else(|| String::from("read past the end"))?;
            buffer.copy_from_slice(source);
            Ok(())
        }
    }

    fn plaintext() -> Vec<u8> {
        (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn sealed(version: u64) -> (ModelKey, Vec<u8>) {
        let key = ModelKey::from_bytes([7; 32]);
        let image = seal_image(&key, "test-model", version, 4096, [1; 7], &plaintext()).unwrap();
        (key, image)
    }

    #[test]
    fn unseals_a_good_image() {
        let (key, image) = sealed(3);
        let out = unseal_from_disk(&mut MemoryDisk(image), &key, 3, 1 << 20).unwrap();
        assert_eq!(*out.bytes, plaintext());
        assert_eq!(out.model.model_version, 3);
        assert_eq!(out.model.model_id.as_str(), "test-model");
    }

    #[test]
    fn refuses_tampering_wrong_key_rollback_and_size() {
        let (key, image) = sealed(3);
        let reason = |mut disk: MemoryDisk, key: &ModelKey, min: u64, max: u64| {
            unseal_from_disk(&mut disk, key, min, max)
                .err()
                .map(|e| alloc::format!("{e}"))
                .expect("refused")
        };
        let mut header_flip = image.clone();
        header_flip[40] ^= 1;
        assert!(!reason(MemoryDisk(header_flip), &key, 0, 1 << 20).is_empty());
        let mut chunk_flip = image.clone();
        chunk_flip[4096 + 4096 * 2 + 100] ^= 1;
        let chunk = unseal_from_disk(&mut MemoryDisk(chunk_flip), &key, 0, 1 << 20).err();
        assert!(matches!(
            chunk,
            Some(LoadError::Sealed(SealedError::ChunkAuthentication {
                index: 2
            }))
        ));
        let wrong = ModelKey::from_bytes([8; 32]);
        assert!(matches!(
            unseal_from_disk(&mut MemoryDisk(image.clone()), &wrong, 0, 1 << 20),
            Err(LoadError::Sealed(_))
        ));
        assert!(matches!(
            unseal_from_disk(&mut MemoryDisk(image.clone()), &key, 4, 1 << 20),
            Err(LoadError::Sealed(SealedError::VersionBelowMinimum {
                version: 3,
                minimum: 4
            }))
        ));
        assert!(matches!(
            unseal_from_disk(&mut MemoryDisk(image.clone()), &key, 0, 1000),
            Err(LoadError::TooLarge { .. })
        ));
        let truncated = image[..image.len() - 4096].to_vec();
        assert!(matches!(
            unseal_from_disk(&mut MemoryDisk(truncated), &key, 0, 1 << 20),
            Err(LoadError::DiskTooSmall { .. })
        ));
        assert!(matches!(
            unseal_from_disk(&mut MemoryDisk(vec![0; 100]), &key, 0, 1 << 20),
            Err(LoadError::DiskTooSmall { .. })
        ));
    }
}
