// Loads the kernel's GDT and reloads every segment register from it.
//   rdi = address of the 10-byte GDTR image (limit, base)
//   rsi = kernel code selector
//   rdx = kernel data selector
.section .text
.global ward_load_gdt
ward_load_gdt:
    lgdt [rdi]
    mov ds, dx
    mov es, dx
    mov ss, dx
    xor eax, eax
    mov fs, ax
    mov gs, ax
    // CS can only change through a far transfer: return to ourselves through the new selector.
    push rsi
    lea rax, [rip + 1f]
    push rax
    retfq
1:
    ret
