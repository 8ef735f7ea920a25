// #VC (vector 29) entry. The CPU has switched to the virtualization-exception IST stack and
// pushed SS, RSP, RFLAGS, CS, RIP and the error code (the exit code). Unlike the fatal
// exception stubs this one returns: it saves every general-purpose register (the handler
// writes results into them), saves the vector and x87 state with XSAVE (the interrupted code
// may hold live values in any of them, and the Rust handler may use them), calls the handler
// with the frame, restores everything and resumes with IRETQ.
//
// XSAVE area: 4096 bytes, 64-byte aligned, components 0-7 (x87, SSE, AVX, MPX, AVX-512 opmask
// and ZMM): at most 2688 bytes in the standard format. Its 64-byte header must be zero before
// XSAVE because XRSTOR refuses reserved header bytes that are set.
.section .text
.global ward_vc_entry
ward_vc_entry:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    cld
    mov rbx, rsp                // the frame (rbx survives the call)
    sub rsp, 4096
    and rsp, -64
    xor eax, eax
    mov [rsp + 512], rax
    mov [rsp + 520], rax
    mov [rsp + 528], rax
    mov [rsp + 536], rax
    mov [rsp + 544], rax
    mov [rsp + 552], rax
    mov [rsp + 560], rax
    mov [rsp + 568], rax
    mov eax, 0xff
    xor edx, edx
    xsave64 [rsp]
    mov rdi, rbx
    call {handler}
    mov eax, 0xff
    xor edx, edx
    xrstor64 [rsp]
    mov rsp, rbx
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 8                  // the error code
    iretq
