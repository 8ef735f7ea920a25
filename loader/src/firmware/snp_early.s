# The boot path's SEV-SNP decisions that need no privileged instruction (32-bit, paging off or
# identity-mapped): the CPUID page lookup and the C-bit check. Shared by the firmware (boot.rs
# appends this to boot.s) and a host test that runs it in compatibility mode
# (ward_loader::cpu_baseline tests). The includer defines `snp_terminate` and
# `snp_terminate_protocol`, where refusals go; brace operands are constants.
.code32

# EAX = the C-bit position, from the hypervisor's SEV information response in EDX:EAX and the
# validated CPUID page. In the order ghcb_msr::decode_sev_info and snp::detect check: the
# response must answer the request (GHCBInfo 0x001) and its protocol range include version 2
# (else snp_terminate_protocol); the page's leaf 0x8000001F EBX[5:0] must lie in [32, 63] and
# equal the hypervisor's C-bit (bits 31:24); every other refusal goes to snp_terminate.
snp_checked_c_bit:
    push %ebx
    push %ecx
    push %esi
    mov %eax, %ebx
    and $0xFFF, %ebx
    cmp ${GHCB_SEV_INFO_RESPONSE}, %ebx
    jne snp_terminate
    mov %edx, %ebx
    and $0xFFFF, %ebx               # lowest protocol version
    cmp ${GHCB_PROTOCOL_VERSION}, %ebx
    ja snp_terminate_protocol
    shr $16, %edx                   # highest protocol version
    cmp ${GHCB_PROTOCOL_VERSION}, %edx
    jb snp_terminate_protocol
    shr $24, %eax                   # the hypervisor's C-bit position
    mov %eax, %esi
    mov $0x8000001F, %eax
    xor %ecx, %ecx
    call cpuid_page_lookup
    and $0x3F, %ebx
    cmp $32, %ebx
    jb snp_terminate
    cmp %ebx, %esi
    jne snp_terminate
    mov %esi, %eax
    pop %esi
    pop %ecx
    pop %ebx
    ret

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
