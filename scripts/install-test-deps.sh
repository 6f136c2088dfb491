#!/usr/bin/env bash
# Installs the real components the tests run against, when they are missing (Debian/Ubuntu).
# Idempotent and quiet when everything is present; `npm test` runs it first.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }

have ssh-keygen || need+=(openssh-client)
have ssh-agent || need+=(openssh-client)
have /usr/sbin/sshd || need+=(openssh-server)
have /usr/bin/chromium || need+=(chromium)
have dbus-run-session || need+=(dbus)
have gnome-keyring-daemon || need+=(gnome-keyring)
# a real PKCS#11 module for the HSM tests (CA keys in a token)
have softhsm2-util || need+=(softhsm2)
# a token that stops answering: p11-kit's server in front of SoftHSM, reached through its client module
have p11-kit || need+=(p11-kit)
compgen -G '/usr/lib/*/pkcs11/p11-kit-client.so' >/dev/null || need+=(p11-kit-modules)
# the PostgreSQL store's tests run Debian's server binaries (initdb, pg_ctl) in a temp dir of their own
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need+=(postgresql)
# the replica tests put HAProxy in front of three CAs
have haproxy || have /usr/sbin/haproxy || need+=(haproxy)
# the Secret Service client used by @napi-rs/keyring talks D-Bus directly; libsecret is not needed

if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "install-test-deps: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "install-test-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  # the tests start their own servers: keep the packages' system services (a PostgreSQL cluster on
  # 5432, haproxy) from being started by the install, unless the machine already has a policy
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 0755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # another apt (a parallel job, unattended-upgrades) may hold the lock for a while: wait for it
  $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# sshd refuses to start without its privilege-separation directory
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; chmod 0755 /run/sshd; else sudo mkdir -p /run/sshd; fi
fi
