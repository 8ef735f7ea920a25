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
    ljmpl ${CODE32}, $boot32
1:  pause
    jmp 1b

boot32:
    mov ${DATA}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov ${STACK_TOP}, %esp

    # The loader and kernel are compiled for x86-64-v3 + AES + PCLMULQDQ: refuse to run on a CPU
    # without them rather than die on the first vector instruction.
    xor %eax, %eax
    cpuid
    mov $missing_leaf_0xd, %esi
    cmp $0xD, %eax                  # leaf 0xD (XSAVE state) must exist
    jb unsupported_cpu
    mov $1, %eax
    cpuid
    mov $missing_leaf_1, %esi
    and ${LEAF1_ECX}, %ecx
    cmp ${LEAF1_ECX}, %ecx
    jne unsupported_cpu
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov $missing_leaf_7, %esi
    and ${LEAF7_EBX}, %ebx
    cmp ${LEAF7_EBX}, %ebx
    jne unsupported_cpu
    mov $0x80000000, %eax
    cpuid
    mov $missing_extended, %esi
    cmp $0x80000001, %eax
    jb unsupported_cpu
    mov $0x80000001, %eax
    cpuid
    mov $missing_extended, %esi
    and ${EXT1_ECX}, %ecx
    cmp ${EXT1_ECX}, %ecx
    jne unsupported_cpu
    and ${EXT1_EDX}, %edx
    cmp ${EXT1_EDX}, %edx
    jne unsupported_cpu

    # Boot page tables: identity-map [0, 4 GiB) with 2 MiB pages (PML4[0] -> PDPT, PDPT[0..4] ->
    # four page directories). Enough to run the Rust loader, which builds the real tables.
    mov ${BOOT_PML4}, %edi
    mov $(({BOOT_TABLES_END} - {BOOT_PML4}) / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $({BOOT_PDPT} + 3), ({BOOT_PML4})
    movl $({BOOT_PD0} + 0x0000 + 3), ({BOOT_PDPT})
    movl $({BOOT_PD0} + 0x1000 + 3), ({BOOT_PDPT} + 8)
    movl $({BOOT_PD0} + 0x2000 + 3), ({BOOT_PDPT} + 16)
    movl $({BOOT_PD0} + 0x3000 + 3), ({BOOT_PDPT} + 24)
    mov ${BOOT_PD0}, %edi
    mov $0x83, %eax                 # PRESENT | WRITABLE | HUGE_PAGE, physical address 0
    mov $2048, %ecx
1:  mov %eax, (%edi)
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

# Prints "ward loader: unsupported CPU: " and the message at %esi, then stops.
unsupported_cpu:
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
    mov ${STACK_TOP}, %esp

    # SSE: CR0.EM off, CR0.TS off, CR0.MP and CR0.NE on; CR4.OSFXSR, OSXMMEXCPT and OSXSAVE.
    mov %cr0, %rax
    and $~0xC, %rax
    or $0x22, %rax
    mov %rax, %cr0
    mov %cr4, %rax
    or $0x40600, %rax
    mov %rax, %cr4

    # XCR0: x87 | SSE | AVX always (checked above), plus opmask | ZMM_Hi256 | Hi16_ZMM when the
    # CPU has AVX-512F and supports all three state components.
    mov $0xD, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, %esi                  # supported XCR0 bits [31:0]
    mov ${XCR0_AVX}, %edi
    mov %edi, %eax
    and %esi, %eax
    cmp %edi, %eax
    jne unsupported_cpu_64
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    bt $16, %ebx                    # AVX512F
    jnc 1f
    mov %esi, %eax
    and ${XCR0_AVX512}, %eax
    cmp ${XCR0_AVX512}, %eax
    jne 1f
    or ${XCR0_AVX512}, %edi
1:  mov %edi, %eax
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
    call {loader_main}              # rsp is 16-byte aligned here, as the SysV ABI wants
2:  hlt
    jmp 2b

unsupported_cpu_64:
    lea unsupported_cpu_prefix(%rip), %rsi
    call print64
    lea missing_xcr0(%rip), %rsi
    call print64
    mov ${EXIT_PORT}, %dx
    mov ${EXIT_FAILURE}, %eax
    outl %eax, %dx
1:  hlt
    jmp 1b

print64:
    mov $0x3F8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  ret

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
