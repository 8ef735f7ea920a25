# Shared by qemu/snp.sh and qemu/tdx.sh (sourced, not run): the parts of a confidential launch
# that do not depend on the platform. The caller sets image, config, disk, memory, smp and qemu
# and fills the array `args` with its machine, memory backend, guest object, accelerator and CPU.

# QEMU's option syntax doubles commas inside a value.
escape() { printf '%s' "${1//,/,,}"; }

# Appends the devices every Ward guest has: serial, exit port, the image as -bios, the
# configuration through fw_cfg, vhost-vsock and, when given, the sealed model disk.
append_ward_devices() {
    args+=(
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
}

# With DRY_RUN=1 prints the command line one argument per line; otherwise refuses a QEMU older
# than MAJOR.MINOR (older ones lack the guest object and would fail with a less clear message)
# and runs it.
launch() {
    local profile=$1 needed_major=$2 needed_minor=$3 what=$4
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%s\n' "$qemu" "${args[@]}"
        exit 0
    fi
    local version major minor
    version=$("$qemu" --version | sed -n 's/^QEMU emulator version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    read -r major minor <<<"${version:-0 0}"
    if [ "$major" -lt "$needed_major" ] ||
        { [ "$major" -eq "$needed_major" ] && [ "$minor" -lt "$needed_minor" ]; }; then
        echo "$profile: $qemu is version $major.$minor; $what need QEMU >= $needed_major.$needed_minor" >&2
        exit 2
    fi
    exec "$qemu" "${args[@]}"
}
