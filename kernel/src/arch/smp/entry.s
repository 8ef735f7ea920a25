// Kernel-side entry of an application processor, reached from the trampoline (or, on
// platforms that start APs in long mode, directly) with:
//   rdi = argument for ap_main, rdx = the kernel's CR3, rsp = this CPU's kernel stack top,
//   paging on with tables that map the kernel's upper half (this code and the stack).
.section .text
.global ward_ap_long_mode
ward_ap_long_mode:
    mov cr3, rdx
    fninit
    xor ebp, ebp
    and rsp, -16
    call {ap_main}
    ud2

// The pool's wake-up IPI: acknowledge and return (the worker loop re-checks the board).
// x2APIC: EOI is MSR 0x80b; xAPIC: a write to the EOI register, whose address the kernel stored (XAPIC_EOI_REGISTER).
.global ward_ap_wake_x2apic
ward_ap_wake_x2apic:
    push rax
    push rcx
    push rdx
    mov ecx, 0x80b
    xor eax, eax
    xor edx, edx
    wrmsr
    pop rdx
    pop rcx
    pop rax
    iretq

.global ward_ap_wake_xapic
ward_ap_wake_xapic:
    push rax
    mov rax, qword ptr [rip + {eoi}]
    mov dword ptr [rax], 0
    pop rax
    iretq

// Spurious interrupts need no EOI.
.global ward_ap_spurious
ward_ap_spurious:
    iretq
