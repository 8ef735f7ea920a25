//! `ward seal --gguf M.gguf --out disk.img --key-out model.key --model-version N [--model-id ID]`:
//! encrypts a GGUF model into a raw virtio disk image in the sealed format
//! (docs/sealed-model.md). The fresh 32-byte model key goes to `--key-out`, created with mode
//! 0600 and never overwritten without `--force`; it is never printed.

use super::CommandError;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha384};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ward_attestation::sealed::{
    CHUNKS_OFFSET, DEFAULT_CHUNK_SIZE, MODEL_KEY_LEN, ModelKey, NONCE_PREFIX_LEN, SealParams,
    Sealer, TAG_LEN,
};

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model to seal.
    #[arg(long)]
    gguf: PathBuf,
    /// Where to write the sealed disk image (raw, a whole number of 512-byte sectors).
    #[arg(long)]
    out: PathBuf,
    /// Where to write the new model key (32 raw bytes, mode 0600).
    #[arg(long)]
    key_out: PathBuf,
    /// The model version (anti-rollback: enclaves refuse versions below their minimum).
    #[arg(long)]
    model_version: u64,
    /// Model id written in the header (default: the GGUF file name without extension).
    #[arg(long)]
    model_id: Option<String>,
    /// On-disk chunk size in bytes (a multiple of 512, 4096 ..= 16 MiB).
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    chunk_size: u32,
    /// Replace existing output and key files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode, CommandError> {
    let model_id = match &args.model_id {
        Some(id) => id.clone(),
        None => args
            .gguf
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("cannot derive a model id from the file name; pass --model-id")?
            .to_string(),
    };
    let (plaintext_len, plaintext_sha384) = hash_gguf(&args.gguf)?;

    let mut key_bytes = [0u8; MODEL_KEY_LEN];
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    getrandom::fill(&mut key_bytes).map_err(|e| format!("OS random source: {e}"))?;
    getrandom::fill(&mut nonce_prefix).map_err(|e| format!("OS random source: {e}"))?;
    let key = ModelKey::from_bytes(key_bytes);
    key_bytes.fill(0);

    let params = SealParams {
        model_id: &model_id,
        model_version: args.model_version,
        plaintext_len,
        plaintext_sha384,
        chunk_size: args.chunk_size,
        nonce_prefix,
    };
    let sealer = Sealer::new(&key, &params).map_err(|e| format!("sealing: {e}"))?;

    // Both outputs are opened before any work so an existing file stops us early; on failure
    // neither a partial image nor a key for a missing image is left behind.
    let mut key_file = create_output(&args.key_out, args.force, 0o600)?;
    let image = match create_output(&args.out, args.force, 0o644) {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(&args.key_out);
            return Err(e);
        }
    };
    let written = write_image(&args.gguf, image, sealer).and_then(|header| {
        key_file.write_all(key.as_bytes())?;
        key_file.sync_all()?;
        Ok(header)
    });
    let header = match written {
        Ok(header) => header,
        Err(e) => {
            let _ = std::fs::remove_file(&args.out);
            let _ = std::fs::remove_file(&args.key_out);
            return Err(e);
        }
    };

    println!("sealed {} -> {}", args.gguf.display(), args.out.display());
    println!("model id:         {}", header.model_id.as_str());
    println!("model version:    {}", header.model_version);
    println!("plaintext length: {} bytes", header.plaintext_len);
    println!(
        "plaintext SHA-384: {}",
        hex::encode(header.plaintext_sha384)
    );
    println!(
        "chunks:           {} x {} bytes on disk",
        header.chunk_count(),
        header.chunk_size
    );
    println!("image length:     {} bytes", header.image_len());
    println!(
        "model key:        written to {} (mode 0600)",
        args.key_out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:9} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// First pass: the header needs the plaintext SHA-384 before any chunk is written.
fn hash_gguf(path: &Path) -> Result<(u64, [u8; 48]), CommandError> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|_| format!("{}: too short to be a GGUF file", path.display()))?;
    if &magic != b"GGUF" {
        return Err(format!("{}: not a GGUF file (bad magic)", path.display()).into());
    }
    reader.seek(SeekFrom::Start(0))?;
    let bar = progress(len, "hashing");
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok((total, hasher.finalize().into()))
}

/// Creates an output file exclusively (O_EXCL); with `force`, an existing file is removed first
/// so the new one gets `mode` rather than the old file's permissions.
fn create_output(path: &Path, force: bool, mode: u32) -> Result<File, CommandError> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", path.display()).into()),
        }
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} already exists (use --force to replace it)",
                    path.display()
                )
                .into()
            } else {
                format!("creating {}: {e}", path.display()).into()
            }
        })
}

/// Second pass: header, then every chunk sealed in order, then sector padding.
fn write_image(
    gguf: &Path,
    image: File,
    mut sealer: Sealer,
) -> Result<ward_attestation::sealed::SealedHeader, CommandError> {
    let header = sealer.header().clone();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(gguf)?);
    let mut out = BufWriter::with_capacity(1 << 20, image);
    out.write_all(sealer.header_bytes())?;
    out.write_all(&vec![
        0u8;
        CHUNKS_OFFSET as usize - sealer.header_bytes().len()
    ])?;
    let bar = progress(header.plaintext_len, "sealing");
    let mut buf = vec![0u8; header.chunk_size as usize];
    let mut written = CHUNKS_OFFSET;
    let mut rehash = Sha384::new();
    while let Some(len) = sealer.next_chunk_plaintext_len() {
        reader
            .read_exact(&mut buf[..len])
            .map_err(|e| format!("{} changed while sealing: {e}", gguf.display()))?;
        rehash.update(&buf[..len]);
        let chunk = &mut buf[..len + TAG_LEN];
        sealer.seal_chunk_in_place(chunk)?;
        out.write_all(chunk)?;
        written += chunk.len() as u64;
        bar.inc(len as u64);
    }
    let mut extra = [0u8; 1];
    let digest: [u8; 48] = rehash.finalize().into();
    if reader.read(&mut extra)? != 0 || digest != header.plaintext_sha384 {
        return Err(format!("{} changed while sealing", gguf.display()).into());
    }
    out.write_all(&vec![0u8; (header.image_len() - written) as usize])?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    bar.finish_and_clear();
    Ok(header)
}
