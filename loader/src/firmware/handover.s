# ward_handover(entry: rdi, boot_info: rsi, stack_top: rdx) -> !
# Moves to the hand-over stack and calls the kernel's `extern "sysv64" fn(&BootInfo) -> !` with
# the BootInfo address in rdi. The kernel never returns; if it did, the CPU halts.
.section .text.ward_handover, "ax"
.code64
.global ward_handover
ward_handover:
    cli
    mov %rdi, %rax
    mov %rsi, %rdi
    mov %rdx, %rsp
    xor %ebp, %ebp
    call *%rax
1:  hlt
    jmp 1b
