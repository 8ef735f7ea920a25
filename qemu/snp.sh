#!/usr/bin/env bash
# Boots a Ward image as an AMD SEV-SNP guest. NOT RUN on the development machines (no SNP
# hardware, QEMU 7.2): written against QEMU >= 9.1's `sev-snp-guest` object and checked only for
# syntax and for the HOST_DATA it computes (attestation/tests/launch_profiles.rs).
#
#   qemu/snp.sh IMAGE CONFIG [DISK]
#
#   IMAGE   firmware image from `ward build` (QEMU measures it as the OVMF-style -bios; the
#           expected MEASUREMENT is `ward measure snp --image IMAGE --vcpus $SMP --vcpu-type $CPU`)
#   CONFIG  deployment configuration (docs/config.md); its SHA-256 becomes HOST_DATA, which the
#           enclave checks against its own report before serving and clients check in theirs
#   DISK    sealed model disk (optional), attached read-only as modern virtio-blk
#
# Environment: MEMORY (MiB, default 2048), SMP (default 1), CPU (vCPU model, default EPYC-v4; it
# is part of the measurement through the VMSA), CBITPOS (default 51) and REDUCED_PHYS_BITS
# (default 1) as the host CPU reports them, POLICY (default 0x30000: SMT allowed, no debug, no
# migration agent), QEMU (binary, default qemu-system-x86_64), VSOCK_CID (default 3: attaches
# vhost-vsock-pci, which needs the host's vhost-vsock module), DRY_RUN=1 prints the command line
# one argument per line instead of running it.
set -euo pipefail

usage() { echo "usage: $0 IMAGE CONFIG [DISK]" >&2; exit 2; }
[ $# -ge 2 ] || usage
image=$1
config=$2
disk=${3:-}
memory=${MEMORY:-2048}
smp=${SMP:-1}
cpu=${CPU:-EPYC-v4}
qemu=${QEMU:-qemu-system-x86_64}

[ -f "$image" ] || { echo "snp.sh: no image at $image" >&2; exit 2; }
[ -f "$config" ] || { echo "snp.sh: no configuration at $config" >&2; exit 2; }

# HOST_DATA: the 32-byte SHA-256 of the configuration file, base64-encoded as QEMU expects.
host_data=$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha256(open(sys.argv[1], "rb").read()).digest()).decode())' "$config")

escape() { printf '%s' "${1//,/,,}"; }

args=(
    -machine "q35,confidential-guest-support=sev0,memory-backend=ram1"
    -object "memory-backend-memfd,id=ram1,size=${memory}M,share=true,prealloc=false"
    -object "sev-snp-guest,id=sev0,cbitpos=${CBITPOS:-51},reduced-phys-bits=${REDUCED_PHYS_BITS:-1},policy=${POLICY:-0x30000},host-data=$host_data"
    -accel kvm -cpu "$cpu" -smp "$smp" -m "${memory}M"
    -nodefaults -display none -no-reboot -serial stdio
    -device isa-debug-exit,iobase=0xf4,iosize=4
    -bios "$(escape "$image")"
    -fw_cfg "name=opt/ward/config,file=$(escape "$config")"
    -device "vhost-vsock-pci,guest-cid=${VSOCK_CID:-3},disable-legacy=on,iommu_platform=on"
)
if [ -n "$disk" ]; then
    args+=(-drive "file=$(escape "$disk"),if=none,format=raw,id=disk0,readonly=on"
        -device virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on)
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%s\n' "$qemu" "${args[@]}"
    exit 0
fi

# sev-snp-guest exists from QEMU 9.1 on; older versions would fail with a less clear message.
version=$("$qemu" --version | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
read -r major minor <<<"${version:-0 0}"
if [ "$major" -lt 9 ] || { [ "$major" -eq 9 ] && [ "$minor" -lt 1 ]; }; then
    echo "snp.sh: $qemu is version $major.$minor; SEV-SNP guests need QEMU >= 9.1" >&2
    exit 2
fi
exec "$qemu" "${args[@]}"
