// ward_kernel_tdcall(registers: *mut TdcallRegisters): loads RAX, RCX, RDX and R8-R15 from the
// structure (the layout of `ward_attestation::guest::tdx::tdcall::TdcallRegisters`), executes
// TDCALL, and stores the same registers back. The callee-saved registers the TDX module or the
// host may change (TDG.VP.VMCALL exposes R10-R15 to the host) are preserved around it.
.section .text
.global ward_kernel_tdcall
ward_kernel_tdcall:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, [rdi + 0x00]
    mov rcx, [rdi + 0x08]
    mov rdx, [rdi + 0x10]
    mov r8, [rdi + 0x18]
    mov r9, [rdi + 0x20]
    mov r10, [rdi + 0x28]
    mov r11, [rdi + 0x30]
    mov r12, [rdi + 0x38]
    mov r13, [rdi + 0x40]
    mov r14, [rdi + 0x48]
    mov r15, [rdi + 0x50]
    .byte 0x66, 0x0f, 0x01, 0xcc    // TDCALL (not known to every assembler)
    pop rdi
    mov [rdi + 0x00], rax
    mov [rdi + 0x08], rcx
    mov [rdi + 0x10], rdx
    mov [rdi + 0x18], r8
    mov [rdi + 0x20], r9
    mov [rdi + 0x28], r10
    mov [rdi + 0x30], r11
    mov [rdi + 0x38], r12
    mov [rdi + 0x40], r13
    mov [rdi + 0x48], r14
    mov [rdi + 0x50], r15
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
