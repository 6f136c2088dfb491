#!/usr/bin/env bash
# The GitHub Action's one step (action.yml runs it with the inputs in INPUT_* variables, never
# pasted into the script): install sshca, bootstrap the CA by its fingerprint, `sshca config` (unless
# ssh-config: false), log in with the job's OIDC token, and leave SSH_AUTH_SOCK, SSHCA_HOME and PATH
# for the job's later steps.
# test/integration/action.test.ts runs it with a faked runner environment.
set -euo pipefail

fail() { echo "::error title=sshca::$*" >&2; exit 1; }
for v in GITHUB_ENV GITHUB_OUTPUT GITHUB_PATH RUNNER_TEMP; do
  [ -n "${!v:-}" ] || fail "$v is not set: this script runs as a GitHub Actions step (action.yml)"
done
CA_URL=${INPUT_CA_URL:-}
FINGERPRINT=${INPUT_FINGERPRINT:-}
CONTEXT=${INPUT_CONTEXT:-ci}
INSTALL=${INPUT_INSTALL:-npm}
[ -n "$CA_URL" ] || fail "the ca-url input is required"
[ -n "$FINGERPRINT" ] || fail "the fingerprint input is required (the CA's root SHA-256: how the runner knows it reached your CA)"
case "$CA_URL" in https://*) ;; *) fail "ca-url must be https:// (got $CA_URL)" ;; esac

# 1. sshca on PATH, for this step and the next ones
case "$INSTALL" in
  npm)
    version=${INPUT_VERSION:-}
    if [ -z "$version" ]; then
      # the version of the action itself: uses: …/sshca@v1.2.3 installs sshca 1.2.3
      version=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' "${GITHUB_ACTION_PATH:-$(dirname "$0")/..}/package.json" | head -1)
    fi
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || fail "version must be an exact sshca version such as 1.2.3 (got '$version')"
    command -v npm >/dev/null || fail "install: npm needs Node.js 22 or 24 on the runner (actions/setup-node), or use install: executable"
    prefix="$RUNNER_TEMP/sshca-npm"
    npm install -g --prefix "$prefix" --no-audit --no-fund "sshca@$version" >&2
    bin_dir="$prefix/bin"
    ;;
  executable)
    url=${INPUT_EXECUTABLE_URL:-}
    sum=${INPUT_EXECUTABLE_SHA256:-}
    [ -n "$url" ] && [ -n "$sum" ] || fail "install: executable needs executable-url and executable-sha256"
    [[ "$url" == https://* ]] || fail "executable-url must be https://"
    [[ "$sum" =~ ^[0-9a-fA-F]{64}$ ]] || fail "executable-sha256 must be 64 hex digits"
    bin_dir="$RUNNER_TEMP/sshca-bin"
    mkdir -p "$bin_dir"
    curl -fsSL --proto '=https' --tlsv1.2 -o "$bin_dir/sshca.download" "$url" || fail "could not download $url"
    echo "${sum,,}  $bin_dir/sshca.download" | sha256sum -c --quiet - >/dev/null 2>&1 || { rm -f "$bin_dir/sshca.download"; fail "the executable from $url does not have the SHA-256 executable-sha256 names: not run"; }
    chmod 0755 "$bin_dir/sshca.download"
    mv "$bin_dir/sshca.download" "$bin_dir/sshca"
    ;;
  none)
    bin_dir=""
    command -v sshca >/dev/null || fail "install: none, and there is no sshca on PATH"
    ;;
  *) fail "install must be npm, executable or none (got $INSTALL)" ;;
esac
if [ -n "$bin_dir" ]; then
  export PATH="$bin_dir:$PATH"
  echo "$bin_dir" >> "$GITHUB_PATH"
fi
sshca --version >&2

# 2. a home of this job's own (a self-hosted runner keeps ~ between jobs), and an agent
export SSHCA_HOME="$RUNNER_TEMP/sshca-home"
echo "SSHCA_HOME=$SSHCA_HOME" >> "$GITHUB_ENV"
if [ -z "${SSH_AUTH_SOCK:-}" ]; then
  eval "$(ssh-agent -s -a "$RUNNER_TEMP/sshca-agent.$$.sock")" >/dev/null
  echo "SSH_AGENT_PID=$SSH_AGENT_PID" >> "$GITHUB_ENV"
fi
echo "SSH_AUTH_SOCK=$SSH_AUTH_SOCK" >> "$GITHUB_ENV"

# 3. trust the CA by its fingerprint, then sign in with the job's OIDC token
sshca bootstrap --ca-url "$CA_URL" --fingerprint "$FINGERPRINT" --context "$CONTEXT" --force >&2
# ssh trusts the hosts' certificates (@cert-authority in ~/.ssh/known_hosts) and refuses revoked ones
case "${INPUT_SSH_CONFIG:-true}" in
  true)
    config=(config --context "$CONTEXT")
    [ -z "${INPUT_HOST_PATTERN:-}" ] || config+=(--pattern "$INPUT_HOST_PATTERN")
    sshca "${config[@]}" >&2
    ;;
  false) ;;
  *) fail "ssh-config must be true or false (got $INPUT_SSH_CONFIG)" ;;
esac
args=(login --github-actions --context "$CONTEXT" --json)
[ -z "${INPUT_PROVISIONER:-}" ] || args+=(--provisioner "$INPUT_PROVISIONER")
[ -z "${INPUT_AUDIENCE:-}" ] || args+=(--audience "$INPUT_AUDIENCE")
result=$(sshca "${args[@]}")

# 4. outputs, read from sshca's JSON (jq is on GitHub's runners; node or python3 otherwise)
field() { # principals (joined with ",") or a field of the certificate
  if command -v jq >/dev/null; then
    if [ "$1" = principals ]; then jq -r '.certificate.principals | join(",")'; else jq -r --arg k "$1" '.certificate[$k]'; fi
  elif command -v node >/dev/null; then
    node -e 'const c = JSON.parse(require("fs").readFileSync(0, "utf8")).certificate; const k = process.argv[1]; console.log(k === "principals" ? c.principals.join(",") : c[k])' "$1"
  else
    python3 -c 'import json, sys; c = json.load(sys.stdin)["certificate"]; k = sys.argv[1]; print(",".join(c["principals"]) if k == "principals" else c[k])' "$1"
  fi <<<"$result"
}
declare -A out=(
  [principals]="$(field principals)"
  [expires]="$(field validBefore)"
  [key-id]="$(field keyId)"
  [serial]="$(field serial)"
)
for k in principals expires key-id serial; do
  # a value with a line break could write outputs of its own choosing
  [[ "${out[$k]}" != *$'\n'* && "${out[$k]}" != *$'\r'* ]] || fail "the certificate's $k holds a line break: not written to the outputs"
  echo "$k=${out[$k]}" >> "$GITHUB_OUTPUT"
done
echo "sshca: certificate for ${out[principals]} until ${out[expires]} in the agent at $SSH_AUTH_SOCK" >&2
