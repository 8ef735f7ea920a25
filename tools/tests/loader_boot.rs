//! Boots the real loader firmware under QEMU with a small generated kernel that checks the
//! hand-over contract from the inside: BootInfo magic, version and kernel entry in `rdi`, a SysV
//! aligned stack, a non-empty memory map, AVX usable, its data segment writable. The kernel
//! engineer's boot tests cover the real kernel; this one pins the loader's side.

use iced_x86::code_asm::*;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use ward_bootinfo::{BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo};
use ward_loader::elf::test_elf::{Segment, build};
use ward_loader::layout::KERNEL_VIRTUAL_BASE;
use ward_tools::image::build::{BuildOptions, KernelSource, build_image, find_workspace};

const DATA: u64 = KERNEL_VIRTUAL_BASE + 0x1000;
/// isa-debug-exit values the test kernel writes: QEMU exits with `(value << 1) | 1`.
const EXIT_OK: u32 = 0x21;
const EXIT_BAD: u32 = 0x22;
const LOADER_FAILURE_STATUS: i32 = (0x10 << 1) | 1;

fn test_kernel() -> Vec<u8> {
    let code = assemble_kernel().expect("assembling the test kernel");
    build(
        KERNEL_VIRTUAL_BASE,
        &[
            Segment::load(5, KERNEL_VIRTUAL_BASE, &code, 0),
            Segment::load(6, DATA, &[0; 64], 0x1000),
        ],
    )
}

fn assemble_kernel() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut entry = a.create_label();
    let mut print = a.create_label();
    let mut exit_bad = a.create_label();
    let checks = ["magic", "version", "entry", "stack alignment", "memory map"];
    let mut failures: Vec<CodeLabel> = checks.iter().map(|_| a.create_label()).collect();
    let mut messages: Vec<CodeLabel> = checks.iter().map(|_| a.create_label()).collect();
    let mut ok_message = a.create_label();

    let entry_offset = std::mem::offset_of!(BootInfo, kernel) as i32 + 16;
    let map_count_offset = std::mem::offset_of!(BootInfo, memory_map) as i32;
    a.set_label(&mut entry)?;
    a.mov(rax, qword_ptr(rdi))?;
    a.mov(rbx, BOOT_INFO_MAGIC)?;
    a.cmp(rax, rbx)?;
    a.jne(failures[0])?;
    a.cmp(dword_ptr(rdi + 8), BOOT_INFO_VERSION as i32)?;
    a.jne(failures[1])?;
    a.lea(rax, ptr(entry))?;
    a.cmp(rax, qword_ptr(rdi + entry_offset))?;
    a.jne(failures[2])?;
    a.mov(rax, rsp)?;
    a.and(rax, 0xF)?;
    a.cmp(rax, 8)?; // a `call` pushed the return address onto a 16-byte aligned stack
    a.jne(failures[3])?;
    a.cmp(dword_ptr(rdi + map_count_offset), 0)?;
    a.je(failures[4])?;
    // AVX state is on and the data segment is writable: store a ymm register into it.
    a.vpcmpeqd(ymm0, ymm0, ymm0)?;
    a.mov(rax, DATA)?;
    a.vmovdqu(ymmword_ptr(rax), ymm0)?;
    a.lea(rsi, ptr(ok_message))?;
    a.call(print)?;
    a.mov(edx, 0xF4u32)?;
    a.mov(eax, EXIT_OK)?;
    a.out(dx, eax)?;
    a.hlt()?;

    for (failure, message) in failures.iter_mut().zip(&messages) {
        a.set_label(failure)?;
        a.lea(rsi, ptr(*message))?;
        a.jmp(exit_bad)?;
    }
    a.set_label(&mut exit_bad)?;
    a.call(print)?;
    a.mov(edx, 0xF4u32)?;
    a.mov(eax, EXIT_BAD)?;
    a.out(dx, eax)?;
    a.hlt()?;

    let mut print_loop = a.create_label();
    let mut print_done = a.create_label();
    a.set_label(&mut print)?;
    a.mov(edx, 0x3F8u32)?;
    a.set_label(&mut print_loop)?;
    a.lodsb()?;
    a.test(al, al)?;
    a.je(print_done)?;
    a.out(dx, al)?;
    a.jmp(print_loop)?;
    a.set_label(&mut print_done)?;
    a.ret()?;

    a.set_label(&mut ok_message)?;
    a.db(b"test kernel: hand-over ok\n\0")?;
    for (message, check) in messages.iter_mut().zip(checks) {
        a.set_label(message)?;
        a.db(format!("test kernel: bad hand-over: {check}\n\0").as_bytes())?;
    }
    a.assemble(KERNEL_VIRTUAL_BASE)
}

/// The image with the test kernel, built once for all tests in this file.
fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let workspace = find_workspace(&std::env::current_dir().unwrap()).unwrap();
        let out_dir = workspace
            .join("target")
            .join("ward")
            .join("loader-boot-test");
        std::fs::create_dir_all(&out_dir).unwrap();
        let kernel_path = out_dir.join("test-kernel.elf");
        std::fs::write(&kernel_path, test_kernel()).unwrap();
        let options = BuildOptions {
            workspace,
            out_dir,
            kernel: KernelSource::Prebuilt(kernel_path),
        };
        build_image(&options)
            .expect("building the loader and packing the image")
            .image_path
    })
}

struct Boot {
    status: Option<i32>,
    serial: String,
    elapsed: Duration,
}

fn boot(cpu: &str, extra_args: &[&str]) -> Boot {
    let image = image();
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine", "q35", "-accel", "tcg", "-cpu", cpu, "-m", "512M",
        ])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
        .arg("-bios")
        .arg(image)
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let mut serial = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut serial)
        .unwrap();
    Boot {
        status,
        serial,
        elapsed,
    }
}

#[test]
fn loader_hands_over_to_the_kernel_with_the_agreed_contract() {
    let boot = boot("max", &["-fw_cfg", "name=opt/ward/config,string=x"]);
    println!("{}\n(booted in {:?})", boot.serial, boot.elapsed);
    assert!(
        boot.serial.contains("test kernel: hand-over ok"),
        "{}",
        boot.serial
    );
    assert_eq!(boot.status, Some(((EXIT_OK << 1) | 1) as i32));
    for expected in [
        "sha384 image",
        "sha384 kernel",
        "sha384 config",
        "handing over",
    ] {
        assert!(boot.serial.contains(expected), "missing {expected:?}");
    }
    // SHA-384 of the one-byte configuration "x".
    assert!(boot.serial.contains(
        "sha384 config d752c2c51fba0e29aa190570a9d4253e44077a058d3297fa3a5630d5bd012622f97c28acae\
         d313b5c83bb990caa7da85"
    ));
    // Reset vector to kernel entry, QEMU start-up included.
    assert!(
        boot.elapsed < Duration::from_secs(5),
        "boot took {:?}",
        boot.elapsed
    );
}

#[test]
fn loader_refuses_an_oversized_configuration() {
    let workspace = find_workspace(&std::env::current_dir().unwrap()).unwrap();
    let big = workspace
        .join("target")
        .join("ward")
        .join("loader-boot-test")
        .join("big-config");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::write(&big, vec![b'a'; 70_000]).unwrap();
    let boot = boot(
        "max",
        &[
            "-fw_cfg",
            &format!("name=opt/ward/config,file={}", big.display()),
        ],
    );
    assert!(
        boot.serial
            .contains("opt/ward/config is 70000 bytes; the limit is 65536 bytes"),
        "{}",
        boot.serial
    );
    assert!(
        !boot.serial.contains("test kernel"),
        "the kernel must not run"
    );
    assert_eq!(boot.status, Some(LOADER_FAILURE_STATUS));
}

#[test]
fn loader_refuses_a_cpu_below_the_baseline() {
    // qemu64 has no AVX: the loader must stop before the first Rust (AVX2-compiled) instruction.
    let boot = boot("qemu64", &[]);
    assert!(
        boot.serial
            .contains("ward loader: unsupported CPU, cannot boot: CPUID.1:ECX lacks"),
        "{}",
        boot.serial
    );
    assert!(
        !boot.serial.contains("[loader]"),
        "Rust code must not have run"
    );
    assert_eq!(boot.status, Some(LOADER_FAILURE_STATUS));
}
