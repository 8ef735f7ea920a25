// CPU exception entry stubs (vectors 0-31). Each pushes a zero error code where the CPU
// pushes none, then its vector, so every exception reaches the common path with the same frame
// layout (`ExceptionFrame` in exceptions.rs). The handler reports and stops the machine; it
// never returns, so the stubs never IRETQ.
.section .text
.macro EXCEPTION_STUB vector, cpu_pushes_error
ward_exception_stub_\vector:
    .if \cpu_pushes_error == 0
    push 0
    .endif
    push \vector
    jmp ward_exception_common
.endm

EXCEPTION_STUB 0, 0
EXCEPTION_STUB 1, 0
EXCEPTION_STUB 2, 0
EXCEPTION_STUB 3, 0
EXCEPTION_STUB 4, 0
EXCEPTION_STUB 5, 0
EXCEPTION_STUB 6, 0
EXCEPTION_STUB 7, 0
EXCEPTION_STUB 8, 1
EXCEPTION_STUB 9, 0
EXCEPTION_STUB 10, 1
EXCEPTION_STUB 11, 1
EXCEPTION_STUB 12, 1
EXCEPTION_STUB 13, 1
EXCEPTION_STUB 14, 1
EXCEPTION_STUB 15, 0
EXCEPTION_STUB 16, 0
EXCEPTION_STUB 17, 1
EXCEPTION_STUB 18, 0
EXCEPTION_STUB 19, 0
EXCEPTION_STUB 20, 0
EXCEPTION_STUB 21, 1
EXCEPTION_STUB 22, 0
EXCEPTION_STUB 23, 0
EXCEPTION_STUB 24, 0
EXCEPTION_STUB 25, 0
EXCEPTION_STUB 26, 0
EXCEPTION_STUB 27, 0
EXCEPTION_STUB 28, 0
EXCEPTION_STUB 29, 1
EXCEPTION_STUB 30, 1
EXCEPTION_STUB 31, 0

ward_exception_common:
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
    mov rdi, rsp
    and rsp, -16
    call {handler}
    ud2

// The stubs' addresses, indexed by vector, for the IDT.
.section .rodata
.balign 8
.global ward_exception_stubs
ward_exception_stubs:
    .quad ward_exception_stub_0
    .quad ward_exception_stub_1
    .quad ward_exception_stub_2
    .quad ward_exception_stub_3
    .quad ward_exception_stub_4
    .quad ward_exception_stub_5
    .quad ward_exception_stub_6
    .quad ward_exception_stub_7
    .quad ward_exception_stub_8
    .quad ward_exception_stub_9
    .quad ward_exception_stub_10
    .quad ward_exception_stub_11
    .quad ward_exception_stub_12
    .quad ward_exception_stub_13
    .quad ward_exception_stub_14
    .quad ward_exception_stub_15
    .quad ward_exception_stub_16
    .quad ward_exception_stub_17
    .quad ward_exception_stub_18
    .quad ward_exception_stub_19
    .quad ward_exception_stub_20
    .quad ward_exception_stub_21
    .quad ward_exception_stub_22
    .quad ward_exception_stub_23
    .quad ward_exception_stub_24
    .quad ward_exception_stub_25
    .quad ward_exception_stub_26
    .quad ward_exception_stub_27
    .quad ward_exception_stub_28
    .quad ward_exception_stub_29
    .quad ward_exception_stub_30
    .quad ward_exception_stub_31
