#!/usr/bin/env bash
# Builds smallstep's real step-ca 0.19.0 and step CLI 0.15.16 for the interop tests
# (npm run test:interop), offline from Debian bookworm: the Go toolchain and the libraries come
# from Debian's binary packages, the two programs' own trees from Debian's source packages.
# No Go module proxy, no download from anywhere else.
#
#   out:  ${SSHCA_INTEROP_DIR:-<repo>/.cache/interop}/bin/{step-ca,step}
#
# Idempotent and silent when up to date: a stamp records what the binaries were built from (this
# script, its patch, the Debian package versions); when it matches, nothing runs, not even go.
# Safe to run from two processes at once (a lock). Needs root, or sudo, only to install packages.
#
# Why the changes to smallstep's code (each is also marked where it is made):
#   - Debian's -dev packages leave out cmd/ (debian/rules DH_GOLANG_EXCLUDES), and the cli's -dev
#     package ships only part of the tree: both trees come from the source packages' orig tarballs.
#   - Debian leaves out the cloud KMS/CAS back-ends (their SDKs are not packaged): their blank
#     imports are dropped from both main.go files. Nothing the interop tests use needs them.
#   - `step certificate inspect|lint` need certinfo/zcrypto/zlint (not packaged): removed, with a
#     small certinfo stand-in for what `step certificate install` still calls.
#   - `step ca init` (cli 0.15) calls the pki API of certificates 0.18; Debian pairs it with 0.19,
#     whose pki.New takes options: step/cli-ca-init-pki019.patch ports those few lines.
set -euo pipefail
# nothing under the checkout may be writable by group or others: `sshca config --host` refuses to
# install root services from a package directory that another user could change
umask 022

CA_VERSION=0.19.0
CA_DEB=0.19.0-1
CLI_VERSION=0.15.16
CLI_DEB=0.15.16+ds-3

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${SSHCA_INTEROP_DIR:-$REPO/.cache/interop}
PATCH=$REPO/scripts/step/cli-ca-init-pki019.patch
PKGS=(golang-go golang-github-smallstep-certificates-dev golang-github-smallstep-cli-dev
      golang-github-pquerna-otp-dev golang-github-smallstep-truststore-dev
      golang-sslmate-src-go-pkcs12-dev)

say() { echo "build-step: $*" >&2; }
die() { say "$*"; exit 1; }

mkdir -p "$OUT/bin"
exec 9>"$OUT/.lock"
flock 9

installed_versions() {
  dpkg-query -W -f='${Package}=${Version} ${db:Status-Status}\n' "${PKGS[@]}" 2>/dev/null || true
}
stamp_of() {
  { sha256sum "$0" "$PATCH" | awk '{print $1}'; installed_versions; } | sha256sum | awk '{print $1}'
}

# Up to date? Then nothing to say and nothing to do.
if [ -x "$OUT/bin/step-ca" ] && [ -x "$OUT/bin/step" ] && [ -f "$OUT/stamp" ] \
   && [ "$(cat "$OUT/stamp")" = "$(stamp_of)" ]; then
  exit 0
fi

# 1. Debian binary packages: Go 1.19 and the libraries both programs are built against ----------
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
    SUDO=sudo
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || export PATH=/usr/lib/go/bin:$PATH

# 2. Debian source packages: only their orig tarballs, through a private apt state so the
#    system's sources and lists are left as they are -----------------------------------------
SRC=$OUT/src
CA_TGZ=$SRC/golang-github-smallstep-certificates_${CA_VERSION}.orig.tar.gz
CLI_TGZ=$SRC/golang-github-smallstep-cli_${CLI_VERSION}+ds.orig.tar.gz
if [ ! -s "$CA_TGZ" ] || [ ! -s "$CLI_TGZ" ]; then
  say "fetching the Debian source packages of step-ca $CA_VERSION and step $CLI_VERSION"
  mkdir -p "$SRC" "$OUT/apt/sources" "$OUT/apt/lists/partial"
  archive=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$archive" ] || archive=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$archive" ] || die "cannot tell which Debian archive apt uses"
  cat >"$OUT/apt/sources/src.sources" <<EOF
Types: deb-src
URIs: $archive
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_src=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$OUT/apt/sources"
           -o "Dir::State::Lists=$OUT/apt/lists")
  apt-get "${apt_src[@]}" update -qq
  # --download-only, and failures tolerated: only the orig tarballs are needed, and the cli's
  # .debian.tar.xz is not always on the mirror. Checked just below.
  (cd "$SRC" && apt-get "${apt_src[@]}" source --download-only \
      "golang-github-smallstep-certificates=$CA_DEB" "golang-github-smallstep-cli=$CLI_DEB" \
      >/dev/null 2>&1) || true
  [ -s "$CA_TGZ" ] && [ -s "$CLI_TGZ" ] || die "could not download the source packages"
  # apt leaves its lists owned by its sandbox user (_apt): not needed any more, and a file in the
  # checkout that root does not own makes `sshca config --host` refuse to install units from it
  rm -rf "$OUT/apt"
fi

export GO111MODULE=off GOCACHE=${GOCACHE:-$OUT/gocache}
# go_build DIR GOPATH OUT VERSION: cgo's zstd warnings are noise; real errors still show.
go_build() {
  local log rc=0
  log=$(cd "$1" && GOPATH="$2:/usr/share/gocode" nice -n 10 \
        go build -trimpath -ldflags "-X main.Version=$4" -o "$3.new" . 2>&1) || rc=$?
  grep -vE 'zstd|cgo-gcc-prolog|^ +[0-9]* \||^ +\||^$' <<<"$log" >&2 || true
  [ $rc -eq 0 ] || return $rc
  mv -f "$3.new" "$3"
}

# 3. step-ca: Debian's library, the command's main.go from the orig tarball ----------------------
t0=$SECONDS
CA_MAIN=$OUT/gopath-ca/src/sshca-interop/step-ca
mkdir -p "$CA_MAIN"
tar -xzf "$CA_TGZ" -O "golang-github-smallstep-certificates-$CA_VERSION/cmd/step-ca/main.go" \
  | sed -E '/smallstep\/certificates\/(kms\/azurekms|kms\/cloudkms|cas\/cloudcas|cas\/vaultcas)"/d' \
  >"$CA_MAIN/main.go"
say "building step-ca $CA_VERSION"
go_build "$CA_MAIN" "$OUT/gopath-ca" "$OUT/bin/step-ca" "$CA_VERSION-debian" || die "step-ca did not build"

# 4. step CLI: the orig tarball, Debian's patched files over it, our changes --------------------
GP_CLI=$OUT/gopath-cli
CLI=$GP_CLI/src/github.com/smallstep/cli
prepared="$CLI_DEB $(sha256sum "$0" "$PATCH" | awk '{print $1}' | tr '\n' ' ')"
if [ "$(cat "$CLI/.sshca-prepared" 2>/dev/null || true)" != "$prepared" ]; then
  say "preparing the step $CLI_VERSION tree"
  rm -rf "$CLI" && mkdir -p "$CLI"
  tar -xzf "$CLI_TGZ" -C "$CLI" --strip-components=1 --no-same-owner --no-same-permissions
  cp -r --preserve=timestamps /usr/share/gocode/src/github.com/smallstep/cli/. "$CLI/"
  rm -f "$CLI"/command/certificate/{inspect,lint,inspect_test}.go
  sed -i -E '/^\t+(inspectCommand|lintCommand)\(\),$/d' "$CLI/command/certificate/certificate.go"
  sed -i -E '/smallstep\/certificates\/cas\/cloudcas"/d' "$CLI/cmd/step/main.go"
  patch -d "$CLI" -p1 -s <"$PATCH"
  mkdir -p "$GP_CLI/src/github.com/smallstep/certinfo"
  cat >"$GP_CLI/src/github.com/smallstep/certinfo/certinfo.go" <<'EOF'
// Package certinfo stands in for github.com/smallstep/certinfo (not in Debian) with the one
// function `step certificate install` calls. Written by sshca's scripts/build-step.sh.
package certinfo

import (
	"crypto/x509"
	"fmt"
)

// CertificateShortText summarizes cert in a few lines.
func CertificateShortText(cert *x509.Certificate) (string, error) {
	return fmt.Sprintf("X.509v3 Certificate\n  Serial Number: %s\n  Subject: %s\n  Issuer: %s\n  Valid from: %s\n          to: %s\n",
		cert.SerialNumber, cert.Subject, cert.Issuer, cert.NotBefore.UTC(), cert.NotAfter.UTC()), nil
}
EOF
  echo "$prepared" >"$CLI/.sshca-prepared"
fi
say "building step $CLI_VERSION"
go_build "$CLI/cmd/step" "$GP_CLI" "$OUT/bin/step" "$CLI_VERSION-debian" || die "step did not build"

"$OUT/bin/step-ca" version >/dev/null && "$OUT/bin/step" version >/dev/null \
  || die "the binaries were built but do not run"
stamp_of >"$OUT/stamp"
say "built $OUT/bin/step-ca and $OUT/bin/step in $((SECONDS - t0)) s"
