#!/usr/bin/env bash
# Boots a Ward image as a plain (non-confidential) QEMU guest: the same command line `ward run`
# builds (tools/src/qemu/command.rs), written out for operators.
#
#   qemu/native.sh [IMAGE] [CONFIG] [DISK]
#
#   IMAGE   firmware image from `ward build` (default target/ward/ward.img)
#   CONFIG  deployment configuration, docs/config.md (optional; passed as fw_cfg opt/ward/config)
#   DISK    sealed model disk, attached read-only as modern virtio-blk (optional)
#
# Environment: MEMORY (MiB, default 1024), SMP (default 1), ACCEL (kvm|tcg; default kvm only
# when kvm_amd/kvm_intel is loaded — /dev/kvm alone may be a slow software backend), VSOCK=1 to
# attach virtio-vsock through a per-VM vhost-device-vsock daemon (sockets in VSOCK_DIR, default
# a temporary directory; the host side is $VSOCK_DIR/vm.vsock, protocol `CONNECT <port>\n`).
#
# Exit status is QEMU's: the kernel writes a code to isa-debug-exit (port 0xf4) and QEMU exits
# with (code << 1) | 1: 33 = success, 35 panic, 37 CPU exception, 39 boot info refused,
# 41 configuration refused, 43 set-up failed; anything else (0 = triple fault or reset) means
# the kernel did not report. `ward run` maps 33 to 0.
set -euo pipefail

image=${1:-target/ward/ward.img}
config=${2:-}
disk=${3:-}
memory=${MEMORY:-1024}
smp=${SMP:-1}

if [ -z "${ACCEL:-}" ]; then
    if [ -e /sys/module/kvm_amd ] || [ -e /sys/module/kvm_intel ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case $ACCEL in
    kvm) accel=(-accel kvm -cpu host) ;;
    tcg) accel=(-accel tcg,thread=multi -cpu max) ;;
    *) echo "ACCEL must be kvm or tcg" >&2; exit 2 ;;
esac

# QEMU option lists use ',' as separator: a comma in a path is written ',,'.
escape() { printf '%s' "${1//,/,,}"; }

args=(
    -machine q35,memory-backend=mem
    # Shared memfd RAM: vhost-user (vsock) needs it; used always so the layout never changes.
    -object "memory-backend-memfd,id=mem,size=${memory}M,share=on"
    -m "${memory}M" -smp "$smp" "${accel[@]}"
    -nodefaults -display none -no-reboot
    -serial stdio
    -device isa-debug-exit,iobase=0xf4,iosize=4
    -bios "$image"
)
[ -n "$config" ] && args+=(-fw_cfg "name=opt/ward/config,file=$(escape "$config")")
if [ -n "$disk" ]; then
    args+=(-drive "file=$(escape "$disk"),if=none,format=raw,id=disk0,readonly=on"
        -device virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=on)
fi

daemon_pid=
cleanup() {
    # Order matters: QEMU first (already gone when we get here), then the daemon, then sockets.
    if [ -n "$daemon_pid" ]; then
        kill "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        rm -f "$vsock_dir/vhost.sock" "$vsock_dir/vm.vsock"
        [ -n "${own_dir:-}" ] && rmdir "$vsock_dir" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ "${VSOCK:-0}" = 1 ]; then
    if [ -n "${VSOCK_DIR:-}" ]; then vsock_dir=$VSOCK_DIR; mkdir -p "$vsock_dir"; else vsock_dir=$(mktemp -d); own_dir=1; fi
    vhost-device-vsock --vm "guest-cid=3,socket=$vsock_dir/vhost.sock,uds-path=$vsock_dir/vm.vsock" &
    daemon_pid=$!
    for _ in $(seq 500); do [ -S "$vsock_dir/vhost.sock" ] && break; sleep 0.01; done
    [ -S "$vsock_dir/vhost.sock" ] || { echo "vhost-device-vsock did not start" >&2; exit 1; }
    echo "vsock host side: $vsock_dir/vm.vsock" >&2
    args+=(-chardev "socket,id=vsock0,path=$(escape "$vsock_dir/vhost.sock")"
        -device vhost-user-vsock-pci,chardev=vsock0,disable-legacy=on,iommu_platform=on)
fi

status=0
qemu-system-x86_64 "${args[@]}" </dev/null || status=$?
exit "$status"
