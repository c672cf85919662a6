# shellcheck shell=bash
# lib.sh: what the two guest back ends share, sourced by scripts/vm/guest-run
# (user-mode-linux) and scripts/vm/qemu-run (QEMU/TCG): option parsing, the
# kernel cache (lock, `apt-get download` + unpack, dmsetup and xfsprogs for
# hosts that lack them), the run folder and its env file, and booting the
# guest under a watchdog with its exit status, timeout and signal handling.
#
# A back end sets, before calling the functions that use them:
#   guest_name   uml | qemu (DEVMAPPER_GUEST in the guest)
#   guest_label  UML | QEMU (in the "exit code" message)
# and may define after_unpack NAME ROOT (runs in the fetch's scratch folder).

me=guest-run
vm_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
project=$(cd "$vm_dir/../.." && pwd -P)
cache=${DEVMAPPER_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devmapper-vm}

# The calling script's header comment, from line 2 to its `set -euo`, is its usage.
usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}
die() {
  echo "$me: $*" >&2
  exit "${status:-1}"
}
as_root() { if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi; }

# Become a child subreaper (re-executing the calling script under perl): when
# the guest dies abruptly (panic, timeout kill) its helper processes are
# orphaned, and in containers whose PID 1 does not reap they would linger as
# <defunct> forever. As subreaper, our bash reaps them itself. perl-base is
# essential in Debian; skip if absent. Call as: become_subreaper "$@"
become_subreaper() {
  if [[ -z ${_GUEST_RUN_REAPER:-} ]] && command -v perl >/dev/null; then
    export _GUEST_RUN_REAPER=1
    # prctl(PR_SET_CHILD_SUBREAPER=36, 1); x86_64 syscall 157. Survives exec.
    exec perl -e 'syscall(157, 36, 1, 0, 0, 0); exec @ARGV or die "exec: $!\n"' -- "$0" "$@"
  fi
  unset _GUEST_RUN_REAPER
}

# parse_args "$@": sets timeout, mem, shell and guest_cmd (the COMMAND and its ARGS).
# shellcheck disable=SC2034 # mem is read by the back end
parse_args() {
  timeout=1200 mem=1G shell=0
  while (($#)); do
    case $1 in
      --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
      --timeout=*) timeout=${1#*=}; shift ;;
      --mem) mem=${2:?--mem needs a value}; shift 2 ;;
      --mem=*) mem=${1#*=}; shift ;;
      --shell) shell=1; shift ;;
      -h | --help) usage ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [[ $timeout =~ ^[0-9]+$ ]] || { status=2 die "--timeout must be whole seconds"; }
  (($# || shell)) || usage
  guest_cmd=("$@")
}

# ---------------------------------------------------------------- kernel cache
# Each part of the cache is unpacked in $cache/.tmp.* and renamed into place,
# so its presence means it is complete; a flock on $cache/.lock keeps two runs
# (of either back end) from fetching at once.

cache_lock() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock -w 900 9 || die "timed out waiting for the cache lock $cache/.lock"
  rm -rf "$cache"/.tmp.* # leftovers of an interrupted fetch (we hold the lock)
}
cache_unlock() { exec 9>&-; }

apt_download() { # PKG... into the current folder
  if ! apt-get download "$@" >download.log 2>&1; then
    # Usually: package lists missing or too old for the archive's current version.
    echo "$me: apt-get download $* failed; running apt-get update" >&2
    as_root apt-get update -qq >&2 || true
    apt-get download "$@" >download.log 2>&1 || {
      cat download.log >&2
      die "cannot download $*"
    }
  fi
}

fetch_unpack() { # NAME PKG...: download PKGs and unpack them into $cache/NAME
  local name=$1
  shift
  local tmp
  tmp=$(mktemp -d "$cache/.tmp.$name.XXXXXX")
  echo "$me: fetching $* into $cache/$name (first run only)" >&2
  (
    cd "$tmp" || exit
    apt_download "$@"
    mkdir root
    for deb in ./*.deb; do
      dpkg-deb -x "$deb" root
      echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>root/.packages
    done
    if declare -F after_unpack >/dev/null; then after_unpack "$name" root; fi
  )
  mv -T "$tmp/root" "$cache/$name"
  rm -rf "$tmp"
}

# dmsetup is the tests' independent oracle: use the host's (the guest sees
# the host's root) or else a cached copy of Debian's.
need_cached_dmsetup() {
  [[ -n ${DEVMAPPER_VM_FETCH_DMSETUP:-} ]] && return 0
  ! [[ -x /usr/sbin/dmsetup || -x /sbin/dmsetup ]] && ! command -v dmsetup >/dev/null
}

# mkfs.xfs for the xfs tests: the host's, or else Debian's xfsprogs plus the
# two libraries its binaries need that a minimal host lacks (ldd mkfs.xfs:
# libinih, liburcu; libblkid/libuuid are essential and always there).
need_cached_xfsprogs() {
  [[ -n ${DEVMAPPER_VM_FETCH_XFSPROGS:-} ]] && return 0
  ! [[ -x /usr/sbin/mkfs.xfs || -x /sbin/mkfs.xfs ]] && ! command -v mkfs.xfs >/dev/null
}

# thin_dump for the crash tests, an oracle of the thin ids a live pool holds (read through a
# metadata snapshot): the host's, or else Debian's thin-provisioning-tools plus libaio1 (its
# other libraries, libexpat1 and the C++ runtime, are on every host that has node).
need_cached_thin_tools() {
  [[ -n ${DEVMAPPER_VM_FETCH_THIN_TOOLS:-} ]] && return 0
  ! [[ -x /usr/sbin/thin_dump || -x /sbin/thin_dump ]] && ! command -v thin_dump >/dev/null
}

# containerd and ctr for the tests that run a real containerd against the snapshotter: the host's,
# or else Debian's containerd package (static Go binaries but for libc; runc, its other dependency,
# is only for running containers and not fetched).
need_cached_containerd() {
  [[ -n ${DEVMAPPER_VM_FETCH_CONTAINERD:-} ]] && return 0
  ! command -v containerd >/dev/null || ! command -v ctr >/dev/null
}

fetch_host_tools() { # under the cache lock: dmsetup, xfsprogs, thin_dump and containerd when the host lacks them
  if need_cached_dmsetup && [[ ! -d $cache/dmsetup ]]; then
    fetch_unpack dmsetup dmsetup libdevmapper1.02.1
  fi
  if need_cached_xfsprogs && [[ ! -d $cache/xfsprogs ]]; then
    fetch_unpack xfsprogs xfsprogs libinih1 liburcu8
  fi
  if need_cached_thin_tools && [[ ! -d $cache/thin-tools ]]; then
    fetch_unpack thin-tools thin-provisioning-tools libaio1
  fi
  if need_cached_containerd && [[ ! -d $cache/containerd ]]; then
    fetch_unpack containerd containerd
  fi
  # containerd's snapshotter suite, a Go test binary built here (the guest has no network and
  # compiles slowly); on a failed build only test/kernel/containerd-suite.test.ts fails.
  "$project/scripts/containerd/go" build-test "$project/test/containerd/suite" "$project/.vm/containerd-suite.test" ||
    rm -f "$project/.vm/containerd-suite.test"
}

# ---------------------------------------------------------------- run folder
# The guest writes its status (and dmesg) into $run after mounting the
# project read-write. make_run_folder sets run, cwd and guest_path (the host's
# PATH, with wrappers in $run/bin for the cached tools first).
guest_pid=
cleanup_paths=()
cleanup() {
  if [[ -n $guest_pid ]]; then kill -KILL -- "-$guest_pid" 2>/dev/null || true; fi
  if [[ -n ${watchdog:-} ]]; then kill "$watchdog" 2>/dev/null || true; fi
  if ((shell)) && [[ -t 0 ]]; then stty sane 2>/dev/null || true; fi
  # Keep the last guest's kernel log for debugging (dm errors land there).
  if [[ -s ${run:-}/dmesg ]]; then mv -f "$run/dmesg" "$project/.vm/last-dmesg.txt" || true; fi
  rm -rf ${run:+"$run"} "${cleanup_paths[@]}"
}

wrap() { # BIN LIBROOT: a wrapper in $run/bin that runs BIN with LIBROOT's libraries
  mkdir -p "$run/bin"
  # shellcheck disable=SC2016 # "$@" is for the wrapper to expand
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%q exec %q "$@"\n' \
    "$2/lib/x86_64-linux-gnu:$2/usr/lib/x86_64-linux-gnu" "$1" >"$run/bin/${1##*/}"
  chmod +x "$run/bin/${1##*/}"
}

make_run_folder() {
  mkdir -p "$project/.vm"
  run=$(mktemp -d "$project/.vm/run.XXXXXX")
  trap cleanup EXIT

  case $PWD/ in
    "$project"/*) cwd=$PWD ;;
    *) cwd=$project ;;
  esac

  guest_path=$PATH:/usr/local/sbin:/usr/sbin:/sbin
  local d b bin=
  if need_cached_dmsetup; then
    # The cached dmsetup needs its own libdevmapper: wrap it rather than set
    # LD_LIBRARY_PATH for everything in the guest.
    d=$cache/dmsetup
    for b in "$d"/usr/sbin/dmsetup "$d"/sbin/dmsetup; do [[ -x $b ]] && bin=$b && break; done
    [[ -n $bin ]] || die "no dmsetup binary in $d (delete it to fetch again)"
    wrap "$bin" "$d"
  fi
  if need_cached_xfsprogs; then
    # Same for xfsprogs: one wrapper per program, each with the cached libraries.
    d=$cache/xfsprogs
    [[ -x $d/sbin/mkfs.xfs || -x $d/usr/sbin/mkfs.xfs ]] || die "no mkfs.xfs in $d (delete it to fetch again)"
    for b in "$d"/sbin/* "$d"/usr/sbin/*; do
      if [[ -f $b && -x $b ]]; then wrap "$b" "$d"; fi
    done
  fi
  if need_cached_thin_tools; then
    # The programs are symlinks to pdata_tools, which dispatches on its argv[0]'s base name:
    # each wrapper execs the symlink, so the name survives.
    d=$cache/thin-tools
    [[ -x $d/usr/sbin/thin_dump ]] || die "no thin_dump in $d (delete it to fetch again)"
    for b in "$d"/usr/sbin/thin_*; do
      if [[ -x $b ]]; then wrap "$b" "$d"; fi
    done
  fi
  if need_cached_containerd; then
    d=$cache/containerd
    [[ -x $d/usr/bin/containerd && -x $d/usr/bin/ctr ]] || die "no containerd or ctr in $d (delete it to fetch again)"
    for b in "$d"/usr/bin/containerd "$d"/usr/bin/ctr; do wrap "$b" "$d"; done
  fi
  if [[ -d $run/bin ]]; then guest_path=$run/bin:$guest_path; fi
}

cache_in_tmpfs() { # the guest's /tmp and /run are its own: the cache must be mounted there
  case $cache/ in /tmp/* | /run/* | /dev/shm/*) return 0 ;; esac
  return 1
}

write_env() { # KVER: the guest's env file lines every back end needs (stdout)
  printf 'project=%q\n' "$project"
  printf 'cwd=%q\n' "$cwd"
  printf 'shell=%q\n' "$shell"
  if [[ -t 1 ]]; then echo stdout_tty=1; else echo stdout_tty=0; fi
  printf 'export PATH=%q\n' "$guest_path"
  printf 'export DEVMAPPER_GUEST=%s DEVMAPPER_GUEST_KERNEL_VERSION=%q\n' "${guest_name:?}" "$1"
  # Pass through the variables a test run cares about.
  local name
  while IFS= read -r name; do
    case $name in
      DEVMAPPER_GUEST | DEVMAPPER_GUEST_KERNEL_VERSION) ;;
      DEVMAPPER_* | VITEST* | CI | GITHUB_ACTIONS | TERM | COLORTERM | NO_COLOR | FORCE_COLOR | LANG | LC_* | TZ | DEBUG | NODE_OPTIONS | NODE_ENV)
        printf 'export %s=%q\n' "$name" "${!name}" ;;
    esac
  done < <(compgen -e)
  printf 'cmd=('
  ((${#guest_cmd[@]})) && printf '%q ' "${guest_cmd[@]}"
  printf ')\n'
}

# ---------------------------------------------------------------- boot
# shellcheck disable=SC2317 # called from the traps that run_guest sets
on_signal() {
  signalled=$1
  kill -KILL -- "-$guest_pid" 2>/dev/null || true
}

# run_guest KERNEL-DESCRIPTION PROGRAM ARGS...: starts the guest in its own
# process group, waits for it under the watchdog and exits with the command's
# status (124 timeout, 125 no status, 128+N on a signal). Never returns.
run_guest() {
  local kernel=$1
  shift
  local start end
  start=$EPOCHREALTIME
  if ((shell)); then
    # Explicit <&0: bash gives background jobs /dev/null as stdin otherwise.
    setsid "$@" <&0 &
  else
    setsid "$@" </dev/null &
  fi
  # A background job of a non-interactive bash is not a group leader, so setsid
  # execs without forking: $! is the guest and leads its own process group,
  # which holds every helper process it starts. Kill the group, never just the pid.
  guest_pid=$!

  # Watchdog: kill the whole group after $timeout seconds. Its output goes to
  # /dev/null so a leftover sleep never holds a caller's pipe open.
  (
    exec >/dev/null 2>&1
    sleep "$timeout" &
    s=$!
    trap 'kill $s; exit 0' TERM
    wait $s
    : >"$run/timed-out"
    kill -KILL -- "-$guest_pid"
  ) &
  watchdog=$!

  signalled=
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM
  trap 'on_signal 129' HUP

  local rc=0
  while :; do
    # (stderr: hide bash's "Killed" job notice; the reason is reported below)
    if wait "$guest_pid" 2>/dev/null; then rc=0; else rc=$?; fi
    # wait returns >128 early when a trapped signal arrives; loop until the guest is gone.
    kill -0 "$guest_pid" 2>/dev/null || break
  done
  end=$EPOCHREALTIME
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  # Sweep the group: helpers normally exit with the guest, but not after a
  # panic or SIGKILL. Then wait until they are gone (we reap them as subreaper).
  kill -KILL -- "-$guest_pid" 2>/dev/null || true
  for _ in $(seq 50); do pgrep -g "$guest_pid" >/dev/null || break; sleep 0.1; done
  guest_pid=

  if ((shell)) && [[ -t 0 ]]; then stty sane 2>/dev/null || true; fi
  local elapsed
  elapsed=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
  if [[ -s $run/status ]]; then
    echo "$me: boot-to-poweroff $elapsed s (kernel $kernel)" >&2
  else
    echo "$me: guest killed or died after $elapsed s (kernel $kernel)" >&2
  fi

  if [[ -n $signalled ]]; then
    status=$signalled die "interrupted; guest killed"
  elif [[ -e $run/timed-out ]]; then
    status=124 die "timed out after $timeout s; guest killed"
  elif [[ -s $run/status ]]; then
    exit "$(cat "$run/status")"
  else
    status=125 die "the guest ended without reporting an exit status (kernel panic or init failure, see above; ${guest_label:?} exit code $rc)"
  fi
}
