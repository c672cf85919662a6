#!/usr/bin/env bash
# test/golden/thin-metadata/make.sh: builds small dm-thin pools with the kernel (dmsetup, losetup,
# dd, blkdiscard; nothing of this project), removes them, and stores here for each pool:
#   NAME.meta.gz         the metadata file, unused blocks (count 0 in its metadata space map) zeroed
#   NAME.thin_dump.xml   thin_dump of it        NAME.thin_ls.txt  thin_ls of it (THIN_LS_FIELDS)
#   NAME.held.*          the same through the held metadata snapshot (thin_dump/thin_ls -m), if any
# The tools read the zeroed image, after checking that they print the same as for the original and
# that thin_check passes. Run it as root on a kernel with dm-thin, e.g. in the project's guest:
#   scripts/vm/guest-run --timeout 900 -- test/golden/thin-metadata/make.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
export DM_DISABLE_UDEV=1
prefix=dmtest-golden
work=$(mktemp -d /tmp/dmtest-golden.XXXXXX)
# Thin devices of 64 MiB; 64 KiB data blocks (the smallest: the most mappings per byte written).
thin_sectors=131072
block_sectors=128
fields=DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,TRANSACTION,CREATE_TIME,SNAP_TIME

cleanup() {
  local name loop
  for name in $(dmsetup ls 2>/dev/null | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}' | sort -r); do
    dmsetup remove --force "$name" >/dev/null 2>&1 || true
  done
  for loop in $(losetup -a | awk -F: -v w="$work/" 'index($0, w) {print $1}'); do
    losetup -d "$loop" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

pool=''      # the current pool's dm name
meta=''      # its metadata file
meta_loop='' # and its loop device: the tools open with O_DIRECT, which tmpfs files refuse

new_pool() { # NAME META_MIB DATA_MIB
  local name=$1 data_loop
  meta=$work/$name.meta
  truncate -s "${2}M" "$meta"
  truncate -s "${3}M" "$work/$name.data"
  meta_loop=$(losetup -f --show "$meta")
  data_loop=$(losetup -f --show "$work/$name.data")
  pool=$prefix-$name
  dmsetup create "$pool" --table \
    "0 $(($3 * 2048)) thin-pool $meta_loop $data_loop $block_sectors 0 1 skip_block_zeroing"
}

msg() { dmsetup message "$pool" 0 "$*"; }

dev() { echo "/dev/mapper/$pool-t$1"; }

activate() { # ID
  [[ -e $(dev "$1") ]] || dmsetup create "$pool-t$1" --table "0 $thin_sectors thin /dev/mapper/$pool $1"
}

deactivate() { # ID
  if [[ -e $(dev "$1") ]]; then dmsetup remove "$pool-t$1"; fi
}

write() { # ID FIRST_BLOCK COUNT: whole data blocks, O_DIRECT
  activate "$1"
  dd if=/dev/zero of="$(dev "$1")" bs=$((block_sectors * 512)) seek="$2" count="$3" oflag=direct status=none
}

write_every_other() { # ID FIRST_BLOCK COUNT
  local b
  for ((b = $2; b < $2 + 2 * $3; b += 2)); do write "$1" "$b" 1; done
}

discard() { # ID FIRST_BLOCK COUNT
  activate "$1"
  blkdiscard -o $(($2 * block_sectors * 512)) -l $(($3 * block_sectors * 512)) "$(dev "$1")"
}

snapshot() { # ID ORIGIN: an active origin is suspended around create_snap
  if [[ -e $(dev "$2") ]]; then
    dmsetup suspend "$pool-t$2"
    msg create_snap "$1" "$2"
    dmsetup resume "$pool-t$2"
  else
    msg create_snap "$1" "$2"
  fi
}

# Removes the pool (its last commit), zeroes what is unused, checks and stores it with the tools'
# output. HELD=1: a metadata snapshot is held; its view is stored too.
store() { # NAME
  local name=$1 held=${HELD:-0} zeroed=$work/$1.zeroed tool name_t zeroed_loop
  for name_t in $(dmsetup ls | awk -v p="$pool-t" 'index($1, p) == 1 {print $1}'); do dmsetup remove "$name_t"; done
  dmsetup remove "$pool"
  cp "$meta" "$zeroed"
  echo "$name: $(node "$here/zero-unused.mjs" "$zeroed") metadata blocks"
  zeroed_loop=$(losetup -f --show -r "$zeroed")
  thin_check -q "$zeroed_loop"
  run_tools() { # FILE SUFFIX [-m]
    thin_dump "${@:3}" "$1" >"$work/$name$2.thin_dump.xml"
    thin_ls "${@:3}" --no-headers -o "$fields" "$1" >"$work/$name$2.thin_ls.txt"
  }
  run_tools "$meta_loop" .orig
  run_tools "$zeroed_loop" ''
  if ((held)); then
    run_tools "$meta_loop" .orig.held -m
    run_tools "$zeroed_loop" .held -m
  fi
  for tool in thin_dump.xml thin_ls.txt; do
    cmp "$work/$name.orig.$tool" "$work/$name.$tool"
    cp "$work/$name.$tool" "$here/"
    if ((held)); then
      cmp "$work/$name.orig.held.$tool" "$work/$name.held.$tool"
      cp "$work/$name.held.$tool" "$here/"
    fi
  done
  gzip -9 -n -c "$zeroed" >"$here/$name.meta.gz"
  echo "$name: $(wc -c <"$here/$name.meta.gz") bytes gzipped"
}

# chain: a snapshot chain five deep with writes at each level, a second branch, the origin deleted
# under its snapshots, discards of shared and exclusive ranges, transaction ids set along the way.
new_pool chain 2 128
msg create_thin 1
write 1 0 64
for id in 2 3 4 5; do
  snapshot "$id" $((id - 1))
  write "$id" $((id * 8)) 12
  write "$id" $((id * 100)) 5
  msg set_transaction_id $((id - 2)) $((id - 1))
done
deactivate 3
snapshot 6 3
snapshot 7 1
write_every_other 1 0 16
discard 2 8 16
discard 5 500 3
write 6 30 10
deactivate 1
msg delete 1
msg create_thin 9
write 9 0 20
deactivate 9
msg delete 9
store chain

# many: 300 thins (the details and top-level mapping trees get internal nodes), a few written, one
# with 812 mappings (runs and single blocks: an internal node in its own tree) and its snapshot.
new_pool many 4 128
for ((i = 0; i < 300; i++)); do msg create_thin $((i * 3 + 1)); done
for id in 1 121 241 361 481 601; do
  write "$id" 0 3
  deactivate "$id"
done
write 898 0 600
write_every_other 898 601 212
snapshot 100000 898
for ((b = 0; b < 600; b += 37)); do write 898 "$b" 1; done
msg set_transaction_id 0 42
store many

# held: a metadata snapshot reserved and kept through later writes, a new thin and the pool's removal.
new_pool held 2 64
msg create_thin 1
write 1 0 40
snapshot 2 1
msg reserve_metadata_snap
write 1 20 60
msg create_thin 3
write 3 0 5
discard 2 0 10
HELD=1 store held
