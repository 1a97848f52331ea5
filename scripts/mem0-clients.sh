#!/usr/bin/env bash
# Mem0's own clients, for the compatibility tests (tests/tests/mem0_clients.rs):
# one virtualenv per mem0ai version under $HOME/.cache/pika-tools/mem0, made
# once from PyPI, and the npm client in a node_modules folder beside them
# (from the npm registry). Prints `export` lines for the test (eval them), e.g.
#   eval "$(bash scripts/mem0-clients.sh)"
set -euo pipefail
root="$HOME/.cache/pika-tools/mem0"
mkdir -p "$root"
for version in 2.2.1 1.0.11 0.1.118; do
  venv="$root/py-$version"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import mem0" 2>/dev/null; then
    echo "mem0-clients: installing mem0ai $version (PyPI) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "mem0ai==$version" >&2
  fi
  # PIKA_TEST_MEM0_PY_2_2_1 and so on.
  var="PIKA_TEST_MEM0_PY_${version//./_}"
  echo "export $var=$venv/bin/python"
done
npm_version=3.3.1
npm_dir="$root/npm-$npm_version"
if [[ ! -f "$npm_dir/node_modules/mem0ai/package.json" ]] \
    || ! grep -q "\"version\": \"$npm_version\"" "$npm_dir/node_modules/mem0ai/package.json"; then
  echo "mem0-clients: installing npm mem0ai $npm_version into $npm_dir" >&2
  rm -rf "$npm_dir"
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm init -y >/dev/null && npm install --no-audit --no-fund --ignore-scripts "mem0ai@$npm_version" >&2)
fi
echo "export PIKA_TEST_MEM0_NPM_${npm_version//./_}=$npm_dir/node_modules"
