// Kernel entry, called by the loader as `extern "sysv64" fn(boot_info: *const BootInfo) -> !`
// with rdi = BootInfo's identity-mapped physical address, interrupts off, on a loader stack.
// The loader's stack alignment is not trusted: realign before the first Rust call.
.section .text.entry, "ax"
.global _start
_start:
    cli
    cld
    and rsp, -16
    xor ebp, ebp
    call {entry}
    ud2

// Moves to a new stack and calls a function that never returns.
//   rdi = argument passed through, rsi = new stack top (16-byte aligned), rdx = function
.section .text
.global ward_switch_stack
ward_switch_stack:
    mov rsp, rsi
    xor ebp, ebp
    call rdx
    ud2
