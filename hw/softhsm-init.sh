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

die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

dir=${ZTEDGE_SOFTHSM_DIR:-}
label=${ZTEDGE_TOKEN_LABEL:-ztedge}
pin_file=${ZTEDGE_PIN_FILE:-}
so_pin_file=${ZTEDGE_SO_PIN_FILE:-}

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
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

# RFC 7512 percent-encoding for a query value: keeps unreserved characters and '/' ':'.
pct() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [A-Za-z0-9._~/:-]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  printf '%s' "$out"
}

# Prints "export NAME=VALUE" with VALUE quoted for the shell only when needed.
print_export() {
  local v=$2
  if [[ $v =~ ^[A-Za-z0-9_./:,=+@%-]*$ ]]; then
    printf 'export %s=%s\n' "$1" "$v"
  else
    printf "export %s='%s'\n" "$1" "${v//\'/\'\\\'\'}"
  fi
}

abspath() { # prints an absolute path for $1 without requiring it to exist
  case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
pin_file=$(abspath "${pin_file:-$dir/user.pin}")
so_pin_file=$(abspath "${so_pin_file:-$dir/so.pin}")
conf=$dir/softhsm2.conf
tokendir=$dir/tokens

# PIN files: one line, no blanks. src/keys/pkcs11.ts strips one trailing newline.
read_pin() { # FILE -> prints the PIN
  local f=$1 pin lines
  [ -r "$f" ] || die "cannot read PIN file $f"
  lines=$(wc -l <"$f")
  pin=$(head -n 1 "$f")
  [ "$lines" -le 1 ] || die "PIN file $f must hold exactly one line"
  [[ $pin =~ ^[[:graph:]]{4,255}$ ]] || die "PIN in $f must be 4-255 printable characters without blanks"
  echo "$pin"
}
make_pin_file() { # FILE: writes a random 16-hex-digit PIN, mode 0600, unless it exists
  local f=$1 tmp
  [ -e "$f" ] && return 0
  mkdir -p "$(dirname "$f")"
  tmp=$(mktemp "$f.XXXXXX")
  chmod 0600 "$tmp"
  od -An -tx1 -N8 /dev/urandom | tr -d ' \n' >"$tmp"
  echo >>"$tmp"
  mv -f "$tmp" "$f"
  say "wrote a new random PIN to $f (mode 0600)"
}
check_mode() { # warn when a PIN file is readable by group or others
  local f=$1 mode
  mode=$(stat -c %a "$f")
  case $mode in *00) ;; *) say "warning: PIN file $f has mode $mode; chmod 600 it" ;; esac
}

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
  read_pin "$pin_file" >/dev/null
  say "token '$label' exists already in $tokendir; nothing to do"
else
  make_pin_file "$pin_file"
  make_pin_file "$so_pin_file"
  pin=$(read_pin "$pin_file")
  so_pin=$(read_pin "$so_pin_file")
  out=$(softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" 2>&1) \
    || die "softhsm2-util --init-token failed: $out"
  token_exists || die "token '$label' not found after init: $out"
  say "initialised token '$label' in $tokendir"
fi
check_mode "$pin_file"

print_export SOFTHSM2_CONF "$conf"
echo "pkcs11:token=$label;object=device-key?module-path=$(pct "$module")&pin-source=file:$(pct "$pin_file")"
