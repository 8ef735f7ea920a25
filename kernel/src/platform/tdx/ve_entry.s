// #VE entry (vector 20, no error code), on the virtualization IST stack. Unlike the reporting
// stubs in arch/exceptions.s this one returns: it saves the general registers as a `VeFrame`
// (`GeneralRegisters`, RAX at the lowest address, then the CPU's RIP, CS, RFLAGS, RSP, SS),
// saves the extended state with XSAVE (the interrupted code may hold live vector registers and
// the Rust handler is compiled with AVX), calls the handler, restores both and returns with
// IRETQ to RIP as the handler advanced it.
.section .text
.global ward_ve_entry
ward_ve_entry:
    push r15
    push r14
    push r13
    push r12
    push r11
    push r10
    push r9
    push r8
    push rbp
    push rdi
    push rsi
    push rdx
    push rcx
    push rbx
    push rax
    mov rbp, rsp                    // the VeFrame; RBP survives the call (callee-saved)
    sub rsp, {xsave_bytes}
    and rsp, -64                    // XSAVE needs a 64-byte aligned area
    // XRSTOR faults unless the XSAVE header's bytes after XSTATE_BV are zero; XSAVE writes
    // only XSTATE_BV, and this stack holds whatever the last user left.
    xor eax, eax
    mov [rsp + 512], rax
    mov [rsp + 520], rax
    mov [rsp + 528], rax
    mov [rsp + 536], rax
    mov [rsp + 544], rax
    mov [rsp + 552], rax
    mov [rsp + 560], rax
    mov [rsp + 568], rax
    mov eax, -1
    mov edx, -1
    xsave64 [rsp]
    mov rdi, rbp
    cld
    call {handler}
    mov eax, -1
    mov edx, -1
    xrstor64 [rsp]
    mov rsp, rbp
    pop rax
    pop rbx
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    pop rbp
    pop r8
    pop r9
    pop r10
    pop r11
    pop r12
    pop r13
    pop r14
    pop r15
    iretq
