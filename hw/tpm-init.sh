#!/usr/bin/env bash
# Sets up a TPM-backed PKCS#11 token for ztedge (tpm2-pkcs11, tpm2_ptool).
# Idempotent: an existing token with the label is left alone.
#
#   hw/tpm-init.sh --dir DIR [...]            a real TPM through /dev/tpmrm0
#   hw/tpm-init.sh --swtpm DIR [--port P]     a software TPM (swtpm) for tests and CI
#   hw/tpm-init.sh --swtpm DIR --stop         stops that swtpm
#
# Run `--help` for details.
set -euo pipefail
umask 077

prog=${0##*/}
. "$(dirname "$(readlink -f "$0")")/lib.sh"

usage() {
  cat <<EOF
Usage: $prog --dir DIR [options]               (real TPM, /dev/tpmrm0)
       $prog --swtpm DIR [--port P] [options]  (software TPM on 127.0.0.1)
       $prog --swtpm DIR --stop

Sets up a tpm2-pkcs11 token for ztedge with tpm2_ptool, idempotently.

Real TPM: needs /dev/tpmrm0 (the kernel resource manager, so no tpm2-abrmd) and
read/write access to it (usually: be in group tss). The token store (an SQLite
file holding TPM-wrapped key blobs) goes to DIR/store.

--swtpm DIR: for tests and CI. Makes a TPM state in DIR/state (first run only),
starts 'swtpm socket' on 127.0.0.1:P (commands) and 127.0.0.1:P+1 (control),
and leaves it running (pid file DIR/swtpm.pid, port in DIR/swtpm.port). For the
provisioning only, it runs a private D-Bus session bus and tpm2-abrmd in front
of swtpm (tpm2_ptool leaks transient objects without a resource manager) and
stops both afterwards; at run time the PKCS#11 module talks to swtpm directly.
swtpm takes one client at a time.

Options:
  --dir DIR           state directory for a real TPM (env ZTEDGE_TPM_DIR)
  --swtpm DIR         use a software TPM kept in DIR (env ZTEDGE_SWTPM_DIR)
  --port P            swtpm command port, P+1 is the control port (env ZTEDGE_SWTPM_PORT;
                      default: the port recorded in DIR/swtpm.port, else 23321)
  --stop              stop the swtpm of --swtpm DIR (nothing else)
  --store STORE       tpm2-pkcs11 store directory (default DIR/store)
  --label LABEL       token label (env ZTEDGE_TOKEN_LABEL; default ztedge).
                      Letters, digits, '.', '_' and '-', at most 32 characters.
  --pin-file FILE     user PIN file (env ZTEDGE_PIN_FILE; default DIR/user.pin).
                      If it does not exist, a random PIN is written to it (mode 0600).
  --so-pin-file FILE  security officer PIN file (env ZTEDGE_SO_PIN_FILE; default
                      DIR/so.pin), same rules.
  -h, --help          this help.

At the end it prints the environment the PKCS#11 module needs, and the key URI:
  export TPM2_PKCS11_STORE=...
  export TPM2_PKCS11_TCTI=...
  export TPM2_PKCS11_LOG_LEVEL=0
  pkcs11:token=LABEL;object=device-key?module-path=...&pin-source=file:PINFILE

Needs tpm2_ptool (libtpm2-pkcs11-tools), tpm2-tools and libtpm2-pkcs11-1; with
--swtpm also swtpm, swtpm-tools, tpm2-abrmd, libtss2-tcti-tabrmd0,
libtss2-tcti-swtpm0 and dbus.
EOF
}

dir=${ZTEDGE_TPM_DIR:-}
swtpm_dir=${ZTEDGE_SWTPM_DIR:-}
port=${ZTEDGE_SWTPM_PORT:-}
stop=0
store=
label=${ZTEDGE_TOKEN_LABEL:-ztedge}
pin_file=${ZTEDGE_PIN_FILE:-}
so_pin_file=${ZTEDGE_SO_PIN_FILE:-}

while [ $# -gt 0 ]; do
  case $1 in
    --dir) need_arg "$@"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --swtpm) need_arg "$@"; swtpm_dir=$2; shift 2 ;;
    --swtpm=*) swtpm_dir=${1#*=}; shift ;;
    --port) need_arg "$@"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --stop) stop=1; shift ;;
    --store) need_arg "$@"; store=$2; shift 2 ;;
    --store=*) store=${1#*=}; shift ;;
    --label) need_arg "$@"; label=$2; shift 2 ;;
    --label=*) label=${1#*=}; shift ;;
    --pin-file) need_arg "$@"; pin_file=$2; shift 2 ;;
    --pin-file=*) pin_file=${1#*=}; shift ;;
    --so-pin-file) need_arg "$@"; so_pin_file=$2; shift 2 ;;
    --so-pin-file=*) so_pin_file=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[ -z "$dir" ] || [ -z "$swtpm_dir" ] || die "give either --dir (real TPM) or --swtpm (software TPM), not both"
[ "$stop" = 0 ] || [ -n "$swtpm_dir" ] || die "--stop needs --swtpm DIR"
if [ -n "$port" ]; then
  [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65534 ] || die "--port must be a number from 1024 to 65534 (P and P+1 are used)"
fi
[[ $label =~ ^[A-Za-z0-9._-]{1,32}$ ]] || die "invalid label '$label': use 1-32 letters, digits, '.', '_' or '-'"

# A process counts as alive unless it is gone or a zombie (exited, not yet reaped).
alive() {
  local pid=$1 stat
  [ -r "/proc/$pid/stat" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}
# Stops PID (TERM, then KILL after ~5 s) and waits until it is gone.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do alive "$pid" || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do alive "$pid" || return 0; sleep 0.05; done
  die "process $pid does not stop"
}

# ---------------------------------------------------------------- swtpm
swtpm_state= swtpm_pidfile= swtpm_portfile=
if [ -n "$swtpm_dir" ]; then
  mkdir -p "$swtpm_dir"
  swtpm_dir=$(cd "$swtpm_dir" && pwd -P)
  swtpm_state=$swtpm_dir/state
  swtpm_pidfile=$swtpm_dir/swtpm.pid
  swtpm_portfile=$swtpm_dir/swtpm.port
fi

# Prints the pid of the swtpm that serves DIR/state, if it runs.
swtpm_running_pid() {
  local pid args
  [ -s "$swtpm_pidfile" ] || return 1
  pid=$(tr -dc 0-9 <"$swtpm_pidfile")
  [ -n "$pid" ] && alive "$pid" || return 1
  # Guard against pid reuse: it must be swtpm, serving this state directory.
  args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case $(printf '%s\n' "$args" | head -n 1) in swtpm|*/swtpm) ;; *) return 1 ;; esac
  printf '%s\n' "$args" | grep -Fxq -- "dir=$swtpm_state" || return 1
  echo "$pid"
}

if [ "$stop" = 1 ]; then
  if pid=$(swtpm_running_pid); then
    stop_pid "$pid"
    say "stopped swtpm (pid $pid)"
  else
    say "swtpm of $swtpm_dir is not running"
  fi
  rm -f "$swtpm_pidfile"
  exit 0
fi

# ---------------------------------------------------------------- tools
# tpm2-abrmd lives in /usr/sbin, which may not be on a user's PATH.
if ! command -v tpm2-abrmd >/dev/null 2>&1 && [ -x /usr/sbin/tpm2-abrmd ]; then PATH=$PATH:/usr/sbin; fi
missing=()
for c in tpm2_ptool tpm2_getrandom; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
if [ -n "$swtpm_dir" ]; then
  for c in swtpm swtpm_setup tpm2-abrmd dbus-daemon; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
fi
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]}. On Debian/Ubuntu: apt-get install libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools$([ -z "$swtpm_dir" ] || echo ' swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtss2-tcti-swtpm0 dbus')"

module=
for m in /usr/lib/*/pkcs11/libtpm2_pkcs11.so /usr/lib/pkcs11/libtpm2_pkcs11.so /usr/lib64/pkcs11/libtpm2_pkcs11.so /usr/local/lib/pkcs11/libtpm2_pkcs11.so; do
  if [ -e "$m" ]; then module=$m; break; fi
done
[ -n "$module" ] || die "libtpm2_pkcs11.so not found (looked in /usr/lib/*/pkcs11). Install it: apt-get install libtpm2-pkcs11-1"

tcti_lib() { # NAME: is libtss2-tcti-NAME.so.0 installed?
  local f
  for f in /usr/lib/*/libtss2-tcti-"$1".so.0 /usr/lib/libtss2-tcti-"$1".so.0 /usr/lib64/libtss2-tcti-"$1".so.0 /usr/local/lib/libtss2-tcti-"$1".so.0; do
    [ -e "$f" ] && return 0
  done
  return 1
}

# ---------------------------------------------------------------- paths
if [ -n "$swtpm_dir" ]; then
  base=$swtpm_dir
else
  [ -n "$dir" ] || die "give --dir DIR for a real TPM, or --swtpm DIR for a software TPM (see --help)"
  [ -e /dev/tpmrm0 ] || die "no /dev/tpmrm0 (kernel TPM resource manager) on this machine; for tests use --swtpm DIR"
  [ -r /dev/tpmrm0 ] && [ -w /dev/tpmrm0 ] || die "no read/write access to /dev/tpmrm0; add this user to its group ($(stat -c %G /dev/tpmrm0)) or run as root"
  tcti_lib device || die "libtss2-tcti-device.so.0 not found: apt-get install libtss2-tcti-device0"
  mkdir -p "$dir"
  base=$(cd "$dir" && pwd -P)
fi
store=$(abspath "${store:-$base/store}")
pin_file=$(abspath "${pin_file:-$base/user.pin}")
so_pin_file=$(abspath "${so_pin_file:-$base/so.pin}")
mkdir -p "$store"

# Primary object ids and token labels in the store: these read only the SQLite
# store, not the TPM.
primary_ids() {
  tpm2_ptool listprimaries --path "$store" 2>/dev/null | sed -n 's/^[-[:space:]]*id:[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p'
}
token_exists() {
  local id
  for id in $(primary_ids); do
    tpm2_ptool listtokens --pid "$id" --path "$store" 2>/dev/null \
      | sed -n 's/^[-[:space:]]*label:[[:space:]]*//p' | sed 's/[[:space:]]*$//' | grep -Fxq -- "$label" && return 0
  done
  return 1
}

# ---------------------------------------------------------------- the TPM
if [ -n "$swtpm_dir" ]; then
  if pid=$(swtpm_running_pid); then
    running_port=$(tr -dc 0-9 <"$swtpm_portfile" 2>/dev/null || true)
    [ -n "$running_port" ] || die "swtpm runs (pid $pid) but $swtpm_portfile is missing; stop it with: $prog --swtpm $swtpm_dir --stop"
    [ -z "$port" ] || [ "$port" = "$running_port" ] \
      || die "swtpm of $swtpm_dir runs already on port $running_port, not $port; stop it first: $prog --swtpm $swtpm_dir --stop"
    port=$running_port
    say "swtpm runs already (pid $pid, 127.0.0.1:$port)"
  else
    rm -f "$swtpm_pidfile"
    if [ -z "$port" ] && [ -s "$swtpm_portfile" ]; then port=$(tr -dc 0-9 <"$swtpm_portfile"); fi
    port=${port:-23321}
    if [ ! -e "$swtpm_state/tpm2-00.permall" ]; then
      # First run: manufacture the TPM, with an EK but no EK certificate (that
      # would need the CA in /var/lib/swtpm-localca).
      mkdir -p "$swtpm_state"
      out=$(swtpm_setup --tpm2 --tpm-state "$swtpm_state" --createek --overwrite 2>&1) \
        || die "swtpm_setup failed: $out"
      say "made a new TPM state in $swtpm_state"
    fi
    out=$(swtpm socket --tpm2 --tpmstate dir="$swtpm_state" \
      --server type=tcp,port="$port",bindaddr=127.0.0.1 \
      --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
      --flags not-need-init,startup-clear --pid file="$swtpm_pidfile" --daemon 2>&1) || {
        case $out in
          *"in use"*) echo "$prog: error: port $port or $((port + 1)) on 127.0.0.1 is in use; pick another with --port ($out)" >&2; exit 3 ;;
          *) die "swtpm did not start: $out" ;;
        esac
      }
    echo "$port" >"$swtpm_portfile"
    pid=$(swtpm_running_pid) || die "swtpm started but its pid file $swtpm_pidfile names no running swtpm"
    say "started swtpm (pid $pid, 127.0.0.1:$port, control :$((port + 1)))"
  fi
  tcti_lib swtpm || die "libtss2-tcti-swtpm.so.0 not found: apt-get install libtss2-tcti-swtpm0"
  runtime_tcti="swtpm:host=127.0.0.1,port=$port"
else
  runtime_tcti="device:/dev/tpmrm0"
fi

# ---------------------------------------------------------------- the token
bus_dir= dbus_pid= abrmd_pid=
cleanup() {
  [ -z "$abrmd_pid" ] || stop_pid "$abrmd_pid" || true
  [ -z "$abrmd_pid" ] || wait "$abrmd_pid" 2>/dev/null || true
  [ -z "$dbus_pid" ] || stop_pid "$dbus_pid" || true
  [ -z "$bus_dir" ] || rm -rf "$bus_dir"
  abrmd_pid= dbus_pid= bus_dir=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private session bus and tpm2-abrmd in front of swtpm, for tpm2_ptool only.
start_abrmd() {
  local i out
  tcti_lib tabrmd || die "libtss2-tcti-tabrmd.so.0 not found: apt-get install libtss2-tcti-tabrmd0"
  # A short path of its own: unix socket paths are limited to 107 bytes.
  bus_dir=$(mktemp -d "${TMPDIR:-/tmp}/ztedge-bus.XXXXXX")
  out=$(dbus-daemon --session --address="unix:path=$bus_dir/bus" --fork --print-pid --nopidfile 2>&1) \
    || die "dbus-daemon did not start: $out"
  dbus_pid=$(printf '%s\n' "$out" | head -n 1 | tr -dc 0-9)
  [ -n "$dbus_pid" ] || die "dbus-daemon printed no pid: $out"
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$bus_dir/bus"
  tpm2-abrmd --session --allow-root --flush-all --tcti="swtpm:host=127.0.0.1,port=$port" >"$bus_dir/abrmd.log" 2>&1 &
  abrmd_pid=$!
  export TPM2TOOLS_TCTI="tabrmd:bus_type=session" TPM2_PKCS11_TCTI="tabrmd:bus_type=session"
  for ((i = 0; i < 100; i++)); do
    if tpm2_getrandom --hex 4 >/dev/null 2>&1; then return 0; fi
    alive "$abrmd_pid" || die "tpm2-abrmd exited: $(tail -n 5 "$bus_dir/abrmd.log")"
    sleep 0.1
  done
  die "tpm2-abrmd did not answer in 10 s (is another client holding swtpm on 127.0.0.1:$port?): $(tail -n 5 "$bus_dir/abrmd.log")"
}

if token_exists; then
  [ -e "$pin_file" ] || die "token '$label' exists in $store but the PIN file $pin_file does not; point --pin-file at the PIN it was made with"
  read_pin "$pin_file" >/dev/null
  say "token '$label' exists already in $store; nothing to do"
else
  make_pin_file "$pin_file"
  make_pin_file "$so_pin_file"
  pin=$(read_pin "$pin_file")
  so_pin=$(read_pin "$so_pin_file")
  if [ -n "$swtpm_dir" ]; then
    start_abrmd
  else
    export TPM2TOOLS_TCTI=$runtime_tcti TPM2_PKCS11_TCTI=$runtime_tcti
  fi
  export TPM2_PKCS11_STORE=$store
  pid1=$(primary_ids | head -n 1)
  if [ -z "$pid1" ]; then
    out=$(tpm2_ptool init --path "$store" 2>&1) || die "tpm2_ptool init failed: $out"
    # init prints "action: Created" and "id: N"; ask the store only if it did not.
    pid1=$(printf '%s\n' "$out" | sed -n 's/^id:[[:space:]]*\([0-9][0-9]*\)[[:space:]]*$/\1/p' | head -n 1)
    [ -n "$pid1" ] || pid1=$(primary_ids | head -n 1)
    [ -n "$pid1" ] || die "tpm2_ptool init made no primary object: $out"
  fi
  out=$(tpm2_ptool addtoken --pid="$pid1" --label="$label" --userpin="$pin" --sopin="$so_pin" --path "$store" 2>&1) \
    || die "tpm2_ptool addtoken failed: $out"
  cleanup
  token_exists || die "token '$label' not found in $store after addtoken: $out"
  say "made token '$label' in $store (primary object $pid1)"
fi
check_mode "$pin_file"

print_export TPM2_PKCS11_STORE "$store"
print_export TPM2_PKCS11_TCTI "$runtime_tcti"
print_export TPM2_PKCS11_LOG_LEVEL 0
echo "pkcs11:token=$label;object=device-key?module-path=$(pct "$module")&pin-source=file:$(pct "$pin_file")"
if [ -n "$swtpm_dir" ]; then
  echo "# swtpm keeps running: pid file $swtpm_pidfile; stop it with: $prog --swtpm $swtpm_dir --stop"
fi
