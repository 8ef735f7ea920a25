//! `ward build`: compiles the kernel and the loader for `targets/x86_64-ward.json`, checks the
//! kernel for vector code, packs the image and writes `target/ward/{ward.img,kernel.elf}`.
//!
//! The bare-metal builds need `-Zbuild-std` on the stable toolchain, so `RUSTC_BOOTSTRAP=1` is set
//! for those child `cargo` invocations only. Each build has its own target directory because
//! their RUSTFLAGS differ (the loader runs just below 4 GiB and needs the large code model and
//! static relocation), which would otherwise make cargo rebuild `core` every time.
//! Paths are remapped so that nothing of the build machine ends up in the image.

use super::pack::{self, PackError};
use super::vector_check::{self, VectorCheckError, VectorCount};
use sha2::{Digest, Sha384};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Ward's hard-float target, relative to the workspace.
pub const TARGET_SPEC: &str = "targets/x86_64-ward.json";
/// The stock soft-float target, used only to demonstrate that the vector check catches it
/// (`soft_float_probe`).
pub const SOFT_FLOAT_TARGET: &str = "x86_64-unknown-none";
/// Kernel package and binary.
pub const KERNEL_PACKAGE: &str = "ward-kernel";
/// Loader package and binary.
pub const LOADER_PACKAGE: &str = "ward-loader";

/// Why the build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No workspace with the Ward target spec was found.
    #[error("cannot find the Ward workspace (a directory with {TARGET_SPEC}) from {0}")]
    NoWorkspace(PathBuf),
    /// Running a command failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// cargo reported failure.
    #[error("building {0} failed (cargo's messages are above)")]
    Cargo(&'static str),
    /// cargo built nothing we recognise.
    #[error("cargo produced no executable for {0}")]
    NoArtifact(&'static str),
    /// The kernel failed the vector check.
    #[error("{0}")]
    VectorCheck(#[from] VectorCheckError),
    /// Packing failed.
    #[error("packing the image: {0}")]
    Pack(#[from] PackError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// Where the kernel comes from.
#[derive(Clone, Debug)]
pub enum KernelSource {
    /// Build `ward-kernel` for the Ward target.
    Build,
    /// Pack this ELF as it is.
    Prebuilt(PathBuf),
}

/// What to build and where to put it.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The workspace root.
    pub workspace: PathBuf,
    /// Output directory (`target/ward` by default).
    pub out_dir: PathBuf,
    /// The kernel to pack.
    pub kernel: KernelSource,
}

impl BuildOptions {
    /// Defaults for `workspace`: build the kernel, write to `target/ward`.
    pub fn new(workspace: PathBuf) -> Self {
        let out_dir = workspace.join("target").join("ward");
        Self {
            workspace,
            out_dir,
            kernel: KernelSource::Build,
        }
    }
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// The firmware image.
    pub image_path: PathBuf,
    /// The copy of the kernel ELF (with symbols, for debugging).
    pub kernel_path: PathBuf,
    /// The image's size in bytes.
    pub size: u64,
    /// SHA-384 of the image, as the loader measures it.
    pub sha384: [u8; 48],
    /// The kernel's vector-instruction counts.
    pub vectors: VectorCount,
}

/// The workspace containing `start` (or its ancestors), recognised by the target spec; falls back
/// to the workspace this tool was compiled in.
pub fn find_workspace(start: &Path) -> Result<PathBuf, BuildError> {
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    start
        .ancestors()
        .map(Path::to_path_buf)
        .chain(compiled_in)
        .find(|dir| dir.join(TARGET_SPEC).is_file())
        .ok_or_else(|| BuildError::NoWorkspace(start.to_path_buf()))
}

/// Builds `package`'s binary of the same name in release mode for the Ward target and returns
/// the executable.
pub fn cargo_build(
    workspace: &Path,
    package: &'static str,
    target_dir: &Path,
    extra_rustflags: &[&str],
) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", package, "--bin", package])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", rustflags(workspace, extra_rustflags)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
        .args(["--target", TARGET_SPEC])
        .args([
            "-Zbuild-std=core,alloc",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .arg("-Zjson-target-spec")
        .env("RUSTC_BOOTSTRAP", "1");
    let output = command
        .output()
        .map_err(io(format!("running cargo for {package}")))?;
    if !output.status.success() {
        return Err(BuildError::Cargo(package));
    }
    executable_from_messages(&output.stdout, package).ok_or(BuildError::NoArtifact(package))
}

/// Remaps the workspace, cargo's registry and the Rust sources to fixed names, so that panic
/// locations and debug info carry no paths of the build machine.
fn rustflags(workspace: &Path, extra: &[&str]) -> Result<String, BuildError> {
    let mut flags: Vec<String> = extra.iter().map(|f| f.to_string()).collect();
    flags.push(format!("--remap-path-prefix={}=/ward", workspace.display()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(cargo_home) = cargo_home {
        flags.push(format!(
            "--remap-path-prefix={}=/cargo",
            cargo_home.display()
        ));
    }
    let sysroot = Command::new("rustc")
        .current_dir(workspace)
        .args(["--print", "sysroot"])
        .output()
        .map_err(io("running rustc --print sysroot"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if !sysroot.is_empty() {
        flags.push(format!("--remap-path-prefix={sysroot}=/rust"));
    }
    Ok(flags.join(" "))
}

/// The `executable` of the `compiler-artifact` message for binary `name`.
fn executable_from_messages(stdout: &[u8], name: &str) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
}

/// Builds the loader firmware ELF.
pub fn build_loader(workspace: &Path) -> Result<PathBuf, BuildError> {
    let target_dir = workspace.join("target").join("ward").join("loader-build");
    cargo_build(
        workspace,
        LOADER_PACKAGE,
        &target_dir,
        &["-Crelocation-model=static", "-Ccode-model=large"],
    )
}

/// Builds the kernel ELF.
pub fn build_kernel(workspace: &Path) -> Result<PathBuf, BuildError> {
    let target_dir = workspace.join("target").join("ward").join("kernel-build");
    cargo_build(workspace, KERNEL_PACKAGE, &target_dir, &[])
}

/// Runs the whole build: kernel (unless prebuilt), vector check, loader, pack, write.
pub fn build_image(options: &BuildOptions) -> Result<BuiltImage, BuildError> {
    let kernel_path = match &options.kernel {
        KernelSource::Build => build_kernel(&options.workspace)?,
        KernelSource::Prebuilt(path) => path.clone(),
    };
    let kernel = std::fs::read(&kernel_path)
        .map_err(io(format!("reading kernel ELF {}", kernel_path.display())))?;
    let vectors = vector_check::check(&kernel)?;
    let loader_path = build_loader(&options.workspace)?;
    let loader = std::fs::read(&loader_path)
        .map_err(io(format!("reading loader ELF {}", loader_path.display())))?;
    let image = pack::pack(&loader, &kernel)?;

    let out = &options.out_dir;
    std::fs::create_dir_all(out).map_err(io(format!("creating {}", out.display())))?;
    let image_path = out.join("ward.img");
    let kernel_copy = out.join("kernel.elf");
    std::fs::write(&image_path, &image).map_err(io(format!("writing {}", image_path.display())))?;
    std::fs::write(&kernel_copy, &kernel)
        .map_err(io(format!("writing {}", kernel_copy.display())))?;
    Ok(BuiltImage {
        image_path,
        kernel_path: kernel_copy,
        size: image.len() as u64,
        sha384: Sha384::digest(&image).into(),
        vectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_bin_artifact_from_cargo_messages() {
        let messages = br#"{"reason":"compiler-artifact","target":{"name":"log","kind":["lib"]},"executable":null}
not json at all
{"reason":"compiler-artifact","target":{"name":"ward-kernel","kind":["bin"]},"executable":"/t/ward-kernel"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages, "ward-kernel"),
            Some(PathBuf::from("/t/ward-kernel"))
        );
        assert_eq!(executable_from_messages(messages, "ward-loader"), None);
    }

    #[test]
    fn finds_this_workspace() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = find_workspace(here).unwrap();
        assert!(workspace.join(TARGET_SPEC).is_file());
        assert_eq!(workspace, here.parent().unwrap());
    }
}
