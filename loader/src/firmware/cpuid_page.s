# The boot path's CPUID page lookup (32-bit, paging off or identity-mapped), shared by the
# firmware (boot.rs appends it to boot.s) and a host test that runs it in compatibility mode
# (ward_loader::cpu_baseline tests). The includer defines `snp_terminate`, where a page with
# more entries than the firmware allows goes; brace operands are constants.
.code32
# EAX..EDX = the CPUID page's entry for leaf EAX (and sub-leaf ECX for the indexed leaves 7 and
# 0xD), or zeros when the page has none: a leaf the PSP did not vouch for counts as absent, and
# is never asked of the hypervisor. Entries are 48 bytes from offset 16: EAX_IN, ECX_IN,
# XCR0_IN, XSS_IN, then EAX, EBX, ECX, EDX. The XCR0/XSS inputs only change leaf 0xD's sizes,
# which the boot path does not use.
cpuid_page_lookup:
    push %esi
    push %edi
    mov ${SNP_CPUID_PAGE}, %esi
    mov (%esi), %edi                # entry count
    cmp ${CPUID_PAGE_MAX_ENTRIES}, %edi
    ja snp_terminate
    add $16, %esi
1:  test %edi, %edi
    jz 4f
    cmp (%esi), %eax
    jne 3f
    cmp $7, %eax
    je 2f
    cmp $0xD, %eax
    jne 5f
2:  cmp 4(%esi), %ecx
    je 5f
3:  add $48, %esi
    dec %edi
    jmp 1b
4:  xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    pop %edi
    pop %esi
    ret
5:  mov 24(%esi), %eax
    mov 28(%esi), %ebx
    mov 32(%esi), %ecx
    mov 36(%esi), %edx
    pop %edi
    pop %esi
    ret
