#!/usr/bin/env bash
# test/golden/fs-superblocks/make.sh: makes small file systems in files with mke2fs and mkfs.xfs
# (nothing of this project) and stores here, for each, its first 2048 bytes (NAME.head: the xfs
# superblock at 0, the ext superblock at 1024) and what blkid says of the whole file (blkid.txt,
# one line per file: NAME TYPE=... LABEL=... UUID=...), the oracle of test/unit/fs-probe.test.ts.
# Needs no root, only mke2fs, mkfs.xfs and blkid on PATH, e.g. in the project's guest:
#   scripts/vm/guest-run -- test/golden/fs-superblocks/make.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
work=$(mktemp -d /tmp/fs-superblocks.XXXXXX)
trap 'rm -rf "$work"' EXIT
export PATH=$PATH:/usr/sbin:/sbin

make_fs() { # NAME SIZE COMMAND...
  local name=$1 size=$2
  shift 2
  truncate -s "$size" "$work/$name"
  "$@" "$work/$name" >/dev/null 2>&1 || { echo "$name: $* failed" >&2; exit 1; }
  head -c 2048 "$work/$name" >"$here/$name.head"
  printf '%s %s\n' "$name" "$(blkid -p -o export -s TYPE -s LABEL -s UUID "$work/$name" | grep -v '^DEVNAME=' | sort | tr '\n' ' ' | sed 's/ $//')" >>"$here/blkid.txt"
}

rm -f "$here"/*.head "$here/blkid.txt"
u=0f4e2a9c-3b1d-4c5e-8a7f-
make_fs ext2 8M mke2fs -q -F -t ext2 -L lbl-ext2 -U "${u}000000000002"
make_fs ext3 8M mke2fs -q -F -t ext3 -L lbl-ext3 -U "${u}000000000003"
make_fs ext4 16M mke2fs -q -F -t ext4 -L lbl-ext4 -U "${u}000000000004"
make_fs ext4-4k 64M mke2fs -q -F -t ext4 -b 4096 -L sixteen-chars-ab -U "${u}000000000044"
make_fs ext4-nojournal 16M mke2fs -q -F -t ext4 -O ^has_journal -U "${u}000000000040"
make_fs ext3-extents 16M mke2fs -q -F -t ext3 -O extents -U "${u}000000000034"
make_fs jbd 8M mke2fs -q -F -O journal_dev -b 1024 -U "${u}00000000000a"
make_fs xfs 300M mkfs.xfs -q -f -L lbl-xfs -m uuid="${u}0000000000f5"
make_fs xfs-4k-sect 300M mkfs.xfs -q -f -s size=4096 -L twelve-chars -m uuid="${u}0000000000f4"
{ mke2fs -V 2>&1 | sed -n 1p; mkfs.xfs -V; blkid -V; } >"$here/versions.txt"
