#!/usr/bin/env bash
# Sets up a SoftHSM2 token for ztedge in a private directory. Idempotent: if a
# token with the label exists already, nothing is changed.
#
#   hw/softhsm-init.sh --dir DIR [--label LABEL] [--pin-file FILE] [--so-pin-file FILE]
#
# Writes DIR/softhsm2.conf and keeps the tokens in DIR/tokens, so the system
# store (/var/lib/softhsm) is never touched. Run `--help` for details.
set -euo pipefail
umask 077

prog=${0##*/}
. "$(dirname "$(readlink -f "$0")")/lib.sh"

usage() {
  cat <<EOF
Usage: $prog --dir DIR [--label LABEL] [--pin-file FILE] [--so-pin-file FILE]

Sets up a SoftHSM2 token for ztedge, idempotently.

  --dir DIR           token directory (env ZTEDGE_SOFTHSM_DIR). Writes DIR/softhsm2.conf
                      (if missing) and keeps the token store in DIR/tokens, so the
                      system store /var/lib/softhsm is untouched.
  --label LABEL       token label (env ZTEDGE_TOKEN_LABEL; default ztedge).
                      Letters, digits, '.', '_' and '-', at most 32 characters.
  --pin-file FILE     user PIN file (env ZTEDGE_PIN_FILE; default DIR/user.pin).
                      If it does not exist, a random PIN is written to it (mode 0600).
  --so-pin-file FILE  security officer PIN file (env ZTEDGE_SO_PIN_FILE; default
                      DIR/so.pin), same rules.
  -h, --help          this help.

If a token with LABEL exists already, nothing is changed. The token is found by
its label, never by slot number (SoftHSM renumbers slots on init).

At the end it prints the environment to export and the key URI for ztedge:
  export SOFTHSM2_CONF=DIR/softhsm2.conf
  pkcs11:token=LABEL;object=device-key?module-path=...&pin-source=file:PINFILE

Needs softhsm2-util (Debian/Ubuntu: apt-get install softhsm2).
EOF
}

dir=${ZTEDGE_SOFTHSM_DIR:-}
label=${ZTEDGE_TOKEN_LABEL:-ztedge}
pin_file=${ZTEDGE_PIN_FILE:-}
so_pin_file=${ZTEDGE_SO_PIN_FILE:-}

while [ $# -gt 0 ]; do
  case $1 in
    --dir) need_arg "$@"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
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

[ -n "$dir" ] || die "--dir DIR is required (see --help)"
[[ $label =~ ^[A-Za-z0-9._-]{1,32}$ ]] || die "invalid label '$label': use 1-32 letters, digits, '.', '_' or '-'"

command -v softhsm2-util >/dev/null 2>&1 \
  || die "softhsm2-util not found. Install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2)"

# The module: Debian ships /usr/lib/softhsm/libsofthsm2.so (a symlink into the
# multiarch directory); other layouts have only /usr/lib/<triplet>/softhsm/.
find_module() {
  local m
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so /usr/lib64/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -e "$m" ]; then echo "$m"; return 0; fi
  done
  return 1
}
module=$(find_module) || die "libsofthsm2.so not found (looked in /usr/lib/softhsm and /usr/lib/*/softhsm). Install SoftHSM2 (apt-get install softhsm2)"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
pin_file=$(abspath "${pin_file:-$dir/user.pin}")
so_pin_file=$(abspath "${so_pin_file:-$dir/so.pin}")
conf=$dir/softhsm2.conf
tokendir=$dir/tokens

mkdir -p "$tokendir"
chmod 0700 "$tokendir"
if [ ! -e "$conf" ]; then
  cat >"$conf" <<EOF
# Written by ztedge hw/softhsm-init.sh: a private token store.
directories.tokendir = $tokendir/
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
EOF
  say "wrote $conf"
fi
export SOFTHSM2_CONF=$conf

# Token labels, one a line (SoftHSM pads them with blanks).
token_exists() {
  local out
  out=$(softhsm2-util --show-slots 2>&1) || die "softhsm2-util --show-slots failed (SOFTHSM2_CONF=$conf): $out"
  printf '%s\n' "$out" | sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' | sed 's/[[:space:]]*$//' | grep -Fxq -- "$label"
}

if token_exists; then
  [ -e "$pin_file" ] || die "token '$label' exists in $tokendir but the PIN file $pin_file does not; point --pin-file at the PIN it was made with"
  read_pin "$pin_file" 255 >/dev/null
  say "token '$label' exists already in $tokendir; nothing to do"
else
  make_pin_file "$pin_file"
  make_pin_file "$so_pin_file"
  pin=$(read_pin "$pin_file" 255)
  so_pin=$(read_pin "$so_pin_file" 255)
  out=$(softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" 2>&1) \
    || die "softhsm2-util --init-token failed: $out"
  token_exists || die "token '$label' not found after init: $out"
  say "initialised token '$label' in $tokendir"
fi
check_mode "$pin_file"

print_export SOFTHSM2_CONF "$conf"
echo "pkcs11:token=$label;object=device-key?module-path=$(pct "$module")&pin-source=file:$(pct "$pin_file")"
