#!/usr/bin/env bash
# Schemathesis (PyPI), the schema-driven fuzzer run against our OpenAPI
# document (tests/tests/schema_fuzz.rs): one virtualenv under
# $HOME/.cache/pika-tools, made once. Prints an `export` line (eval it):
#   eval "$(bash scripts/schemathesis.sh)"
set -euo pipefail
version=4.32.5
venv="$HOME/.cache/pika-tools/schemathesis-$version"
if [[ ! -x "$venv/bin/st" ]]; then
  echo "schemathesis: installing $version (PyPI) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
fi
echo "export PIKA_TEST_SCHEMATHESIS=$venv/bin/st"
