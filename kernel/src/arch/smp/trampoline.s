// Application-processor start-up trampoline: copied to a page below 1 MiB (TRAMPOLINE_PAGE), where a
// start-up IPI starts the AP in real mode with CS = page >> 4, IP = 0. It goes 16 -> 32 ->
// 64 bit and jumps into the kernel with the boot CPU's control registers and XCR0.
//
// The page holds code, then at DATA the parameters the boot CPU wrote (trampoline.rs):
// a GDT (null, 32-bit code 0x08, data 0x10, 64-bit code 0x18) and its GDTR, the "alive" flag,
// the temporary CR3, CR0, CR4, the kernel's CR3, the 64-bit entry, the stack top, the
// argument and XCR0. The temporary page tables map this page read+execute at its own address
// (so the instruction after enabling paging can be fetched) and share the kernel's upper half,
// where the entry stub (entry.s) switches to the kernel's own tables. Nothing here writes to
// memory after paging is on: the page is not writable there (W^X holds in the temporary
// tables too).
//
// Assembled as data (the kernel never executes it in place); only offsets from the start
// matter.
.section .rodata.ward_ap_trampoline, "a"
.global ward_ap_trampoline_start
.global ward_ap_trampoline_end
ward_ap_trampoline_start:
.code16
    cli
    cld
    mov ax, cs
    mov ds, ax
    // Tell the boot CPU the start-up IPI arrived (real mode: no paging, the page is RAM).
    mov dword ptr [{alive}], 1
    lgdt [{gdtr}]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    // ljmpd 0x08:(page + offset of 1f)
    .byte 0x66, 0xea
    .long {page} + (1f - ward_ap_trampoline_start)
    .word 0x08

.code32
1:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    // PAE, then the temporary tables, then EFER.LME | EFER.NXE (the upper half uses NX bits).
    mov eax, cr4
    or eax, 0x20
    mov cr4, eax
    mov eax, dword ptr [{page} + {temp_cr3}]
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x900
    wrmsr
    // The boot CPU's CR0: PG and PE (long mode becomes active), WP, NE, MP, caches on.
    mov eax, dword ptr [{page} + {cr0}]
    mov cr0, eax
    // ljmp 0x18:(page + offset of 2f)
    .byte 0xea
    .long {page} + (2f - ward_ap_trampoline_start)
    .word 0x18

.code64
2:
    // The boot CPU's full CR4 (OSFXSR, OSXMMEXCPT, OSXSAVE, ...), then its XCR0, so the SIMD
    // state this CPU may use is exactly the boot CPU's.
    mov rax, qword ptr [{page} + {cr4}]
    mov cr4, rax
    test eax, 0x40000
    jz 3f
    mov eax, dword ptr [{page} + {xcr0}]
    mov edx, dword ptr [{page} + {xcr0} + 4]
    xor ecx, ecx
    xsetbv
3:
    mov rdi, qword ptr [{page} + {argument}]
    mov rdx, qword ptr [{page} + {kernel_cr3}]
    mov rsp, qword ptr [{page} + {stack}]
    mov rax, qword ptr [{page} + {entry}]
    jmp rax
ward_ap_trampoline_end:
