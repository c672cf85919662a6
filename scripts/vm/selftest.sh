#!/usr/bin/env bash
# selftest.sh: smoke check of the kernel-test guest, by hand or in CI:
#   scripts/vm/selftest.sh
# Boots the guest (scripts/vm/guest-run) and, with dmsetup only, proves that
# the modules, devtmpfs, loop, dm-linear, dm-thin, dm-zero and ext4 all work:
# a linear device over a loop device, a thin-pool with a thin device, mkfs.ext4
# + mount + write + umount, a snapshot, `dmsetup status`, then teardown.
# Exit status 0 = all good.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# The guest part. Runs as root in the guest, /tmp is its own tmpfs.
read -r -d '' guest_script <<'EOF' || true
set -euo pipefail
export DM_DISABLE_UDEV=1          # no udev: dmsetup makes /dev/mapper nodes itself
t0=$(date +%s%N)
step() { printf '  %-40s %5d ms\n' "$1" $(( ($(date +%s%N) - t0) / 1000000 )); }
trap 'echo "selftest: FAILED at line $LINENO" >&2' ERR

echo "guest: kernel $(uname -r), DEVMAPPER_GUEST=$DEVMAPPER_GUEST"
test -c /dev/mapper/control
grep -q device-mapper /proc/misc
dmsetup version | sed 's/^/  /'
for t in linear thin-pool thin zero; do dmsetup targets | grep -q "^$t " || { echo "missing target $t"; exit 1; }; done
step "modules and /dev/mapper/control"

# Backing files on tmpfs (tmpfs refuses O_DIRECT, so no --direct-io here).
truncate -s 64M /tmp/data.img; truncate -s 8M /tmp/meta.img; truncate -s 16M /tmp/lin.img
data=$(losetup -f --show /tmp/data.img)
meta=$(losetup -f --show /tmp/meta.img)
lin=$(losetup -f --show /tmp/lin.img)
step "loop devices $data $meta $lin"

# Linear over a loop device.
dmsetup create st-linear --table "0 $((16 * 2048)) linear $lin 0"
test -b /dev/mapper/st-linear
dmsetup table st-linear | sed 's/^/  /'
step "linear device"

# Thin pool (zeroed metadata start is required) + one thin volume.
dd if=/dev/zero of="$meta" bs=4096 count=1 status=none
dmsetup create st-pool --table "0 $((64 * 2048)) thin-pool $meta $data 128 0"
dmsetup message st-pool 0 "create_thin 0"
dmsetup create st-thin --table "0 $((128 * 2048)) thin /dev/mapper/st-pool 0"
step "thin-pool + thin device"

mkfs.ext4 -q -F /dev/mapper/st-thin
mkdir -p /tmp/mnt
mount -t ext4 /dev/mapper/st-thin /tmp/mnt
echo "hello from the guest" >/tmp/mnt/hello.txt
dd if=/dev/urandom of=/tmp/mnt/blob bs=1M count=4 status=none
sync
umount /tmp/mnt
step "mkfs.ext4, mount, write, umount"

# Snapshot of the thin device (suspend the origin around create_snap).
dmsetup suspend st-thin
dmsetup message st-pool 0 "create_snap 1 0"
dmsetup resume st-thin
dmsetup create st-snap --table "0 $((128 * 2048)) thin /dev/mapper/st-pool 1"
mount -t ext4 -o ro /dev/mapper/st-snap /tmp/mnt
grep -q "hello from the guest" /tmp/mnt/hello.txt
umount /tmp/mnt
step "snapshot reads back the file"

dmsetup create st-zero --table "0 2048 zero"
test "$(head -c 4096 /dev/mapper/st-zero | tr -d '\0' | wc -c)" = 0
step "zero target"

dmsetup status | sort | sed 's/^/  /'
used=$(dmsetup status st-pool | awk '{split($6, a, "/"); print a[1]}')
test "$used" -gt 0 || { echo "thin-pool reports no used data blocks"; exit 1; }
step "status (pool data blocks used: $used)"

dmsetup remove st-zero st-snap st-thin
dmsetup message st-pool 0 "delete 1"
dmsetup message st-pool 0 "delete 0"
dmsetup remove st-pool st-linear
losetup -d "$data" "$meta" "$lin"
test -z "$(dmsetup ls | grep -v 'No devices found' || true)"
test -z "$(ls /dev/mapper | grep -v '^control$' || true)"
step "teardown"
echo "selftest: guest part OK"
EOF

start=$EPOCHREALTIME
"$here/guest-run" --timeout 300 -- bash -c "$guest_script"
end=$EPOCHREALTIME
awk -v s="$start" -v e="$end" 'BEGIN { printf "selftest: PASS, %.2f s wall in total\n", e - s }'
