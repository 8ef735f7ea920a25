# TDX entry points of the loader (firmware/tdx.rs).

.section .text.tdx, "ax"
.code64

# ward_tdcall(regs: *mut TdcallRegisters): loads RAX, RCX, RDX, R8-R15 from the structure,
# executes TDCALL, and stores them back. Callee-saved registers are preserved around it.
.global ward_tdcall
ward_tdcall:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    mov 0x00(%rdi), %rax
    mov 0x08(%rdi), %rcx
    mov 0x10(%rdi), %rdx
    mov 0x18(%rdi), %r8
    mov 0x20(%rdi), %r9
    mov 0x28(%rdi), %r10
    mov 0x30(%rdi), %r11
    mov 0x38(%rdi), %r12
    mov 0x40(%rdi), %r13
    mov 0x48(%rdi), %r14
    mov 0x50(%rdi), %r15
    .byte 0x66, 0x0f, 0x01, 0xcc    # tdcall
    pop %rdi
    mov %rax, 0x00(%rdi)
    mov %rcx, 0x08(%rdi)
    mov %rdx, 0x10(%rdi)
    mov %r8, 0x18(%rdi)
    mov %r9, 0x20(%rdi)
    mov %r10, 0x28(%rdi)
    mov %r11, 0x30(%rdi)
    mov %r12, 0x38(%rdi)
    mov %r13, 0x40(%rdi)
    mov %r14, 0x48(%rdi)
    mov %r15, 0x50(%rdi)
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

# #VE (vector 20, no error code). Saves the general registers as a VeFrame (RAX at the lowest
# address) and the extended state (XSAVE: the interrupted code may hold live vector registers,
# and the Rust handler is compiled with AVX), calls ward_loader_ve(frame), restores, returns.
# The CPU aligned RSP to 16 before pushing its 5-quadword frame; 15 pushes make it 16-aligned
# again for the call.
.global ward_ve_entry
ward_ve_entry:
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    mov $-1, %eax
    mov $-1, %edx
    mov ${xsave_area}, %ecx         # absolute: the loader's RAM is more than 2 GiB from its code
    xsave64 (%rcx)
    mov %rsp, %rdi
    cld
    call {handler}
    mov $-1, %eax
    mov $-1, %edx
    mov ${xsave_area}, %ecx
    xrstor64 (%rcx)
    pop %rax
    pop %rbx
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    iretq
