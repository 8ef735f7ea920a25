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

# shellcheck source=qemu/confidential-common.sh
source "$(dirname "$0")/confidential-common.sh"

args=(
    -machine "q35,confidential-guest-support=sev0,memory-backend=ram1"
    -object "memory-backend-memfd,id=ram1,size=${memory}M,share=true,prealloc=false"
    -object "sev-snp-guest,id=sev0,cbitpos=${CBITPOS:-51},reduced-phys-bits=${REDUCED_PHYS_BITS:-1},policy=${POLICY:-0x30000},host-data=$host_data"
    -accel kvm -cpu "$cpu" -smp "$smp" -m "${memory}M"
)
append_ward_devices

launch snp.sh 9 1 "SEV-SNP guests"
