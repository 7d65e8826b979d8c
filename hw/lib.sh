# shellcheck shell=bash
# Shell helpers shared by the hw/ set-up scripts (softhsm-init.sh, tpm-init.sh).
# Sourced, not run:
#   prog=${0##*/}
#   . "$(dirname "$(readlink -f "$0")")/lib.sh"
# The caller sets `prog` first and keeps its own `set -euo pipefail` and umask.

die() { echo "$prog: error: $*" >&2; exit 1; }
say() { echo "$prog: $*" >&2; }

# OPTION VALUE...: dies unless OPTION is followed by a non-empty value.
need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

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

# RFC 7512 percent-encoding for a query value: keeps unreserved characters and '/' ':'.
pct() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [A-Za-z0-9._~/:-]) out+=$c ;; *) printf -v c '%%%02X' "'$c"; out+=$c ;; esac
  done
  printf '%s' "$out"
}

# PIN files: one line, no blanks. src/keys/pkcs11.ts strips one trailing newline.
read_pin() { # FILE [MAX]: prints the PIN, 4 to MAX (default 128) printable characters
  local f=$1 max=${2:-128} pin lines
  [ -r "$f" ] || die "cannot read PIN file $f"
  lines=$(wc -l <"$f")
  pin=$(head -n 1 "$f")
  [ "$lines" -le 1 ] || die "PIN file $f must hold exactly one line"
  [[ $pin =~ ^[[:graph:]]{4,$max}$ ]] || die "PIN in $f must be 4-$max printable characters without blanks"
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
check_mode() { # FILE: warns when a PIN file is readable by group or others
  local f=$1 mode
  mode=$(stat -c %a "$f")
  case $mode in *00) ;; *) say "warning: PIN file $f has mode $mode; chmod 600 it" ;; esac
}
