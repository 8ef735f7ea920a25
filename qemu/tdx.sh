#!/usr/bin/env bash
# Boots a Ward image as an Intel TDX trust domain. NOT RUN on the development machines (no TDX
# hardware, QEMU 7.2): written against QEMU >= 10.1's `tdx-guest` object and checked only for
# syntax and for the MRCONFIGID it computes (attestation/tests/launch_profiles.rs).
#
#   qemu/tdx.sh IMAGE CONFIG [DISK]
#
#   IMAGE   firmware image from `ward build` (its TDVF metadata makes the whole image the
#           measured BFV; the expected MRTD is `ward measure tdx --image IMAGE`)
#   CONFIG  deployment configuration (docs/config.md); its SHA-384 becomes MRCONFIGID, which the
#           enclave checks against its own TDREPORT before serving and clients check in quotes
#   DISK    sealed model disk (optional), attached read-only as modern virtio-blk
#
# Environment: MEMORY (MiB, default 2048), SMP (default 1), QGS (the host's quote generation
# service socket, default /var/run/tdx-qgs/qgs.socket: GetQuote goes there), QEMU (binary,
# default qemu-system-x86_64), VSOCK_CID (default 3: vhost-vsock-pci, needs the host's
# vhost-vsock module), DRY_RUN=1 prints the command line one argument per line instead.
set -euo pipefail

usage() { echo "usage: $0 IMAGE CONFIG [DISK]" >&2; exit 2; }
[ $# -ge 2 ] || usage
image=$1
config=$2
disk=${3:-}
memory=${MEMORY:-2048}
smp=${SMP:-1}
qemu=${QEMU:-qemu-system-x86_64}
qgs=${QGS:-/var/run/tdx-qgs/qgs.socket}

[ -f "$image" ] || { echo "tdx.sh: no image at $image" >&2; exit 2; }
[ -f "$config" ] || { echo "tdx.sh: no configuration at $config" >&2; exit 2; }

# MRCONFIGID: the 48-byte SHA-384 of the configuration file, base64-encoded as QEMU expects.
mrconfigid=$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha384(open(sys.argv[1], "rb").read()).digest()).decode())' "$config")

# shellcheck source=qemu/confidential-common.sh
source "$(dirname "$0")/confidential-common.sh"

# The quote-generation socket is a SocketAddress, which only the JSON form of -object takes.
# sept-ve-disable: an EPT violation on private memory must not reach the guest as #VE (the host
# could otherwise remove private pages and have the guest handle it).
tdx_object=$(python3 -c 'import json, sys; print(json.dumps({"qom-type": "tdx-guest", "id": "tdx0", "sept-ve-disable": True, "mrconfigid": sys.argv[1], "quote-generation-socket": {"type": "unix", "path": sys.argv[2]}}, separators=(",", ":")))' "$mrconfigid" "$qgs")

args=(
    -machine "q35,kernel-irqchip=split,confidential-guest-support=tdx0,memory-backend=ram1"
    -object "memory-backend-memfd,id=ram1,size=${memory}M,share=true,prealloc=false"
    -object "$tdx_object"
    -accel kvm -cpu host -smp "$smp" -m "${memory}M"
)
append_ward_devices

launch tdx.sh 10 1 "TDX guests"
