#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, only when
# missing, so `npm test` works on a fresh machine. Needs root (or sudo) for apt.
#   openssl, curl                      PKI and HTTP checks
#   softhsm2, opensc                   SoftHSM2 token, pkcs11-tool      (hw/softhsm-init.sh)
#   swtpm, swtpm-tools, tpm2-tools,    software TPM and tpm2-pkcs11     (hw/tpm-init.sh --swtpm)
#   libtpm2-pkcs11-1, libtpm2-pkcs11-tools, tpm2-abrmd, dbus,
#   libtss2-tcti-tabrmd0, libtss2-tcti-swtpm0
#   mosquitto, mosquitto-clients       MQTT broker and clients behind a hosted service
#   iproute2, iputils-ping, procps,    tun mode in network namespaces: ip, ping, sysctl,
#   bind9-dnsutils, iperf3, nftables   dig, a 200 MB transfer, loss and reordering (nft)
#   make, g++, python3                 node-gyp builds the TUN addon (src/native) at npm install
set -euo pipefail
need=()
has() { command -v "$1" >/dev/null 2>&1; }
# true if any of the given paths (globs) exists
exists() { local p; for p in "$@"; do [ -e "$p" ] && return 0; done; return 1; }

has openssl || need+=(openssl)
has curl || need+=(curl)
has softhsm2-util || need+=(softhsm2)
has pkcs11-tool || need+=(opensc)
has swtpm || need+=(swtpm)
has swtpm_setup || need+=(swtpm-tools)
has tpm2_getrandom || need+=(tpm2-tools)
has tpm2_ptool || need+=(libtpm2-pkcs11-tools)
# tpm2-abrmd is in /usr/sbin, not always on PATH
has tpm2-abrmd || [ -x /usr/sbin/tpm2-abrmd ] || need+=(tpm2-abrmd)
has dbus-daemon || need+=(dbus)
has mosquitto || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
has mosquitto_pub || need+=(mosquitto-clients)
has ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
has ping || need+=(iputils-ping)
has sysctl || [ -x /usr/sbin/sysctl ] || [ -x /sbin/sysctl ] || need+=(procps)
has dig || need+=(bind9-dnsutils)
has iperf3 || need+=(iperf3)
has nft || [ -x /usr/sbin/nft ] || need+=(nftables)
has tc || [ -x /usr/sbin/tc ] || [ -x /sbin/tc ] || need+=(iproute2)
has make || need+=(make)
has g++ || need+=(g++)
has python3 || need+=(python3)
exists /usr/lib/*/pkcs11/libtpm2_pkcs11.so /usr/lib/pkcs11/libtpm2_pkcs11.so || need+=(libtpm2-pkcs11-1)
exists /usr/lib/*/libtss2-tcti-tabrmd.so.0 /usr/lib/libtss2-tcti-tabrmd.so.0 || need+=(libtss2-tcti-tabrmd0)
exists /usr/lib/*/libtss2-tcti-swtpm.so.0 /usr/lib/libtss2-tcti-swtpm.so.0 || need+=(libtss2-tcti-swtpm0)

if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  if ! has apt-get; then
    echo "test-deps: no apt-get here; install the equivalents of: ${need[*]}" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# The TUN addon is an optional dependency: `npm install` skips it silently when no compiler was
# there. Build it now that one is (tun-mode tests need it); a failure here is shown, not hidden.
if [ ! -f src/native/build/Release/ztedge_tun.node ]; then
  echo "test-deps: building the TUN addon (src/native)"
  npm rebuild @ztedge/tun >/dev/null || { echo "test-deps: the TUN addon did not build (see above)" >&2; exit 1; }
fi
