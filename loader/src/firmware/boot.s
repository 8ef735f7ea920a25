# Reset path of the Ward loader: real mode -> protected mode -> long mode -> Rust.
#
# The CPU starts at 0xFFFFFFF0 in real mode with CS.base = 0xFFFF0000, so everything executed
# before the far jump to 32-bit code must live in the image's top 64 KiB (.boot16 and the reset
# vector) and is addressed through CS with 16-bit offsets. Brace operands are constants from
# firmware/boot.rs and layout.rs.

.section .reset_vector, "ax"
.code16
.global reset_vector
reset_vector:
    # Plain VMs and SEV-SNP start here in real mode; TDX starts every vCPU here in flat 32-bit
    # protected mode (TDVF design guide, "TD VCPU initial state": paging off, EBX = GPA width,
    # ESI = vCPU index). The next three instructions encode the same in both modes
    # (0F 20 C0, A8 01, 74 05), so CR0.PE picks the path. Interrupts are off in both reset states.
    mov %cr0, %eax
    test $1, %al
    jz 1f
.code32
    jmp boot32_tdx
.code16
1:  jmp boot16

# Application processors never run loader code: they wait here until the kernel wakes them with
# INIT-SIPI (under SEV-ES the hypervisor starts them here, see the SEV-ES reset block).
.section .ap_park, "ax"
.code16
.global ap_park
ap_park:
    cli
1:  hlt
    jmp 1b

.section .boot16, "ax"
.code16
boot16:
    cli
    cld
    lgdtl %cs:(gdt_descriptor - 0xFFFF0000)
    mov %cr0, %eax
    or $1, %eax                     # CR0.PE: protected mode, paging still off
    mov %eax, %cr0
    ljmpl ${CODE32}, $boot32

.code32
# TDX entry (see reset_vector): only vCPU 0 boots; the others wait. They spin rather than HLT,
# which would raise #VE before any handler exists and kill the TD.
boot32_tdx:
    cli
    cld
    test %esi, %esi
    jnz 1f
    lgdtl gdt_descriptor            # flat segments: the descriptor's linear address
    ljmpl ${CODE32}, $boot32_td
1:  pause
    jmp 1b

# Flat data segments and the boot stack, with the boot facts (boot.rs: BOOT_FACTS) above it.
.macro flat_segments_and_stack
    mov ${DATA}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov ${BOOT_FACTS}, %esp
.endm

# In a TD there is no SEV_STATUS to read (the RDMSR would raise #VE with no handler).
boot32_td:
    flat_segments_and_stack
    xor %ebp, %ebp
    movl $0, ({BOOT_FACTS} + {FACT_C_BIT})
    jmp boot32_common

# Plain VMs and SEV guests. Under SEV-ES/SNP every CPUID raises #VC, and there is no handler
# yet, so SEV_STATUS is read first and decides where CPUID answers come from.
boot32:
    flat_segments_and_stack
    xor %ebp, %ebp                  # "no SEV" for unsupported_cpu, should the probe fault oddly
    call read_sev_status
    mov %eax, %ebp                  # SEV_STATUS[31:0] stays in EBP until long mode
    movl $0, ({BOOT_FACTS} + {FACT_C_BIT})
    test ${SEV_ANY}, %eax
    jz boot32_common
    test ${SEV_SNP}, %eax
    jz sev_without_snp
    call snp_c_bit
    mov %eax, ({BOOT_FACTS} + {FACT_C_BIT})

boot32_common:
    mov %ebp, ({BOOT_FACTS} + {FACT_SEV_STATUS})
    movl $0, ({BOOT_FACTS} + {FACT_SEV_STATUS} + 4)

    # The loader and kernel are compiled for x86-64-v3 + AES + PCLMULQDQ: refuse to run on a CPU
    # without them rather than die on the first vector instruction (cpu_baseline.rs decides the
    # same from the same constants).
    xor %eax, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_leaf_0xd, %esi
    cmp $0xD, %eax                  # leaf 0xD (XSAVE state) must exist
    jb unsupported_cpu
    mov $1, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_leaf_1, %esi
    and ${LEAF1_ECX}, %ecx
    cmp ${LEAF1_ECX}, %ecx
    jne unsupported_cpu
    mov $7, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_leaf_7, %esi
    and ${LEAF7_EBX}, %ebx
    cmp ${LEAF7_EBX}, %ebx
    jne unsupported_cpu
    mov $0x80000000, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_extended, %esi
    cmp $0x80000001, %eax
    jb unsupported_cpu
    mov $0x80000001, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_extended, %esi
    and ${EXT1_ECX}, %ecx
    cmp ${EXT1_ECX}, %ecx
    jne unsupported_cpu
    and ${EXT1_EDX}, %edx
    cmp ${EXT1_EDX}, %edx
    jne unsupported_cpu

    # XCR0 for long mode: x87 | SSE | AVX always, plus opmask | ZMM_Hi256 | Hi16_ZMM when the CPU
    # has AVX-512F and supports all three state components.
    mov $0xD, %eax
    xor %ecx, %ecx
    call early_cpuid
    mov $missing_xcr0, %esi
    mov %eax, %edx                  # supported XCR0 bits [31:0]
    and ${XCR0_AVX}, %eax
    cmp ${XCR0_AVX}, %eax
    jne unsupported_cpu
    push %edx
    mov $7, %eax
    xor %ecx, %ecx
    call early_cpuid
    pop %edx
    mov ${XCR0_AVX}, %eax
    test ${AVX512F}, %ebx
    jz 1f
    and ${XCR0_AVX512}, %edx
    cmp ${XCR0_AVX512}, %edx
    jne 1f
    or ${XCR0_AVX512}, %eax
1:  mov %eax, ({BOOT_FACTS} + {FACT_XCR0})

    # Boot page tables: identity-map [0, 4 GiB) with 2 MiB pages (PML4[0] -> PDPT, PDPT[0..4] ->
    # four page directories). Enough to run the Rust loader, which builds the real tables. Under
    # SNP every entry carries the C-bit (bits 63:32 in EDX; zero elsewhere): all the loader
    # touches before its own tables is private, and it does no MMIO.
    xor %edx, %edx
    mov ({BOOT_FACTS} + {FACT_C_BIT}), %ecx
    test %ecx, %ecx
    jz 1f
    sub $32, %ecx
    mov $1, %edx
    shl %cl, %edx
1:  mov ${BOOT_PML4}, %edi
    mov $(({BOOT_TABLES_END} - {BOOT_PML4}) / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $({BOOT_PDPT} + 3), ({BOOT_PML4})
    mov %edx, ({BOOT_PML4} + 4)
    movl $({BOOT_PD0} + 0x0000 + 3), ({BOOT_PDPT})
    mov %edx, ({BOOT_PDPT} + 4)
    movl $({BOOT_PD0} + 0x1000 + 3), ({BOOT_PDPT} + 8)
    mov %edx, ({BOOT_PDPT} + 12)
    movl $({BOOT_PD0} + 0x2000 + 3), ({BOOT_PDPT} + 16)
    mov %edx, ({BOOT_PDPT} + 20)
    movl $({BOOT_PD0} + 0x3000 + 3), ({BOOT_PDPT} + 24)
    mov %edx, ({BOOT_PDPT} + 28)
    mov ${BOOT_PD0}, %edi
    mov $0x83, %eax                 # PRESENT | WRITABLE | HUGE_PAGE, physical address 0
    mov $2048, %ecx
1:  mov %eax, (%edi)
    mov %edx, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 1b

    mov ${BOOT_PML4}, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                  # CR4.PAE
    mov %eax, %cr4
    mov $0xC0000080, %ecx           # EFER
    rdmsr
    or $0x900, %eax                 # EFER.LME | EFER.NXE
    wrmsr
    mov %cr0, %eax
    or $0x80010000, %eax            # CR0.PG | CR0.WP
    mov %eax, %cr0
    ljmpl ${CODE64}, $boot64

# EDX:EAX = SEV_STATUS, or 0 where the MSR does not exist. RDMSR of an MSR the CPU lacks raises
# #GP (Intel, AMD before SEV); QEMU's TCG reads 0. So the RDMSR runs under a one-gate IDT whose
# #GP handler skips it and reports 0 ("no SEV"). Under SEV-ES/SNP the MSR exists, is readable
# without a #VC, and the handler never runs. The IDT lives on the stack for this call only;
# afterwards an empty IDT makes any exception shut the VM down, as with no IDT at all.
read_sev_status:
    push %edi
    sub $(14 * 8), %esp             # gates 0..=13
    mov %esp, %edi
    mov $(14 * 2), %ecx
    xor %eax, %eax
    rep stosl
    mov $sev_status_gp, %eax
    mov %eax, %edx
    and $0xFFFF, %eax
    or $({CODE32} << 16), %eax
    mov %eax, (13 * 8)(%esp)        # offset[15:0], selector
    and $0xFFFF0000, %edx
    or $0x8E00, %edx                # present, DPL 0, 32-bit interrupt gate, offset[31:16]
    mov %edx, (13 * 8 + 4)(%esp)
    push %esp                       # IDTR: base (the gates), then limit
    pushw $(14 * 8 - 1)
    lidtl (%esp)
    add $6, %esp
    mov ${MSR_SEV_STATUS}, %ecx
sev_status_rdmsr:
    rdmsr
sev_status_read:
    lidtl empty_idt_descriptor
    add $(14 * 8), %esp
    pop %edi
    ret

# #GP during read_sev_status: only the RDMSR may fault; report 0 and continue after it. The
# handler drops the exception frame and jumps rather than IRETs: nothing in the frame needs
# restoring (same CS, interrupts already off), and software virtualization such as kvm_pvm
# cannot emulate a 32-bit IRET.
sev_status_gp:
    cmpl $sev_status_rdmsr, 4(%esp) # EIP, above the error code
    jne 1f
    add $16, %esp                   # error code, EIP, CS, EFLAGS
    xor %eax, %eax
    xor %edx, %edx
    jmp sev_status_read
1:  mov $unexpected_gp, %esi
    jmp unsupported_cpu

# EAX = the C-bit position: asks the hypervisor (GHCB MSR protocol SEV information request)
# and checks its answer against the validated CPUID page in snp_checked_c_bit (snp_early.s);
# attestation::guest::snp::detect makes the same decision again in Rust.
snp_c_bit:
    mov ${MSR_GHCB}, %ecx
    mov ${GHCB_SEV_INFO_REQUEST}, %eax
    xor %edx, %edx
    wrmsr
    .byte 0xF3, 0x0F, 0x01, 0xD9    # VMGEXIT
    rdmsr
    jmp snp_checked_c_bit

# SEV without SNP is refused (no memory integrity). Under SEV-ES port I/O would raise #VC, so
# the guest asks the hypervisor to terminate it; under plain SEV it can still say why.
sev_without_snp:
    test ${SEV_ES}, %ebp
    jnz snp_terminate_unsupported
    mov $sev_refused, %esi
    jmp unsupported_cpu

# GHCB MSR protocol termination request, reason set 0 (GHCB spec 56421 §4.1.13): 0 general,
# 1 protocol range unsupported, 2 SEV-SNP unsupported.
snp_terminate_protocol:
    mov $(0x100 | (1 << 16)), %eax
    jmp 1f
snp_terminate_unsupported:
    mov $(0x100 | (2 << 16)), %eax
    jmp 1f
snp_terminate:
    mov $0x100, %eax
1:  mov ${MSR_GHCB}, %ecx
    xor %edx, %edx
    wrmsr
    .byte 0xF3, 0x0F, 0x01, 0xD9    # VMGEXIT
2:  hlt
    jmp 2b

# CPUID(EAX, ECX) for the boot path: the instruction on a plain VM or in a TD, the validated
# CPUID page under SNP (EBP holds SEV_STATUS[31:0]).
early_cpuid:
    test ${SEV_SNP}, %ebp
    jnz cpuid_page_lookup
    cpuid
    ret

# cpuid_page_lookup is in snp_early.s (host-tested in 32-bit mode).

# Prints "ward loader: unsupported CPU: " and the message at %esi, then stops. Under SNP the
# serial port is out of reach (port I/O raises #VC): terminate instead.
unsupported_cpu:
    test ${SEV_SNP}, %ebp
    jnz snp_terminate
    mov %esi, %ebx
    mov $unsupported_cpu_prefix, %esi
    call print32
    mov %ebx, %esi
    call print32
    mov ${EXIT_PORT}, %dx
    mov ${EXIT_FAILURE}, %eax
    outl %eax, %dx
1:  hlt
    jmp 1b

print32:
    mov $0x3F8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  ret

.code64
boot64:
    mov ${DATA}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov ${BOOT_FACTS}, %esp

    # SSE: CR0.EM off, CR0.TS off, CR0.MP and CR0.NE on; CR4.OSFXSR, OSXMMEXCPT and OSXSAVE.
    mov %cr0, %rax
    and $~0xC, %rax
    or $0x22, %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $0x40600, %rax
    mov %rax, %cr4

    # XCR0 as decided in 32-bit mode.
    mov ({BOOT_FACTS} + {FACT_XCR0}), %eax
    xor %edx, %edx
    xor %ecx, %ecx
    xsetbv

    # .data from its ROM copy into RAM, .bss zeroed.
    mov $__data_rom_start, %esi
    mov $__data_start, %edi
    mov $__data_end, %ecx
    sub %edi, %ecx
    rep movsb
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    xor %ebp, %ebp
    mov ({BOOT_FACTS} + {FACT_SEV_STATUS}), %rdi
    mov ({BOOT_FACTS} + {FACT_C_BIT}), %esi
    call {loader_main}              # rsp is 16-byte aligned here, as the SysV ABI wants
2:  hlt
    jmp 2b

# The loader and kernel need x86-64-v3 + AES + PCLMULQDQ + NX and the AVX state enabled.
unsupported_cpu_prefix:
    .asciz "ward loader: unsupported CPU, cannot boot: "
missing_leaf_0xd:
    .asciz "no CPUID leaf 0xD (XSAVE state)\r\n"
missing_leaf_1:
    .asciz "CPUID.1:ECX lacks one of SSE3 PCLMULQDQ SSSE3 FMA SSE4.1 SSE4.2 MOVBE POPCNT AES XSAVE AVX F16C\r\n"
missing_leaf_7:
    .asciz "CPUID.7:EBX lacks one of BMI1 AVX2 BMI2\r\n"
missing_extended:
    .asciz "CPUID.80000001 lacks one of LZCNT NX LM\r\n"
missing_xcr0:
    .asciz "XCR0 cannot hold x87|SSE|AVX state\r\n"
unexpected_gp:
    .asciz "general-protection fault while reading SEV_STATUS\r\n"
sev_refused:
    .asciz "SEV without SEV-SNP (no memory integrity) is refused\r\n"

# An IDT that holds no gate.
.balign 8
empty_idt_descriptor:
    .word 0
    .long 0

# Flat descriptors; the kernel installs its own GDT.
.balign 8
gdt:
    .quad 0                         # null
    .quad 0x00CF9B000000FFFF        # CODE32: base 0, limit 4 GiB, 32-bit, execute/read
    .quad 0x00CF93000000FFFF        # DATA:   base 0, limit 4 GiB, read/write
    .quad 0x00AF9B000000FFFF        # CODE64: long mode, execute/read
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt
