#!/usr/bin/env bash
# promtool (from Debian's `prometheus` package, unpacked, not installed as a
# service) into the persistent tools folder, for the alert-rule tests
# (tests/tests/alerts.rs). Prints the variable the tests read:
#   eval "$(bash scripts/promtool.sh)"
set -euo pipefail
tools="${PIKA_TOOLS_DIR:-$HOME/.cache/pika-tools}"
bin="$tools/bin/promtool"
if [[ ! -x "$bin" ]]; then
  echo "promtool: fetching Debian's prometheus package" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) \
    || { apt-get update -qq >/dev/null 2>&1 && (cd "$work" && apt-get download prometheus >/dev/null 2>&1); }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$tools/bin"
  cp "$work/x/usr/bin/promtool" "$bin"
fi
"$bin" --version >/dev/null
echo "export PIKA_PROMTOOL=$bin"
