#!/usr/bin/env bash
# Supply-chain check: advisories, licenses, duplicate/banned crates and sources
# of every dependency, against deny.toml, with cargo-deny. Offline: the RustSec
# advisory database is the snapshot the project ships (shared/advisory-db, see
# its SNAPSHOT.txt), turned into a local git repository that cargo-deny reads;
# nothing is fetched from the network, and a failing check fails this script.
#
#   PIKA_ADVISORY_DB_SNAPSHOT  the snapshot folder (default: shared/advisory-db
#                              of this checkout or next to it)
#   cargo-deny                 on PATH, or in $HOME/.cache/pika-tools/bin
#                              (cargo install --locked --root $HOME/.cache/pika-tools cargo-deny)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export PATH="$HOME/.cache/pika-tools/bin:$PATH"
if ! command -v cargo-deny >/dev/null; then
    echo "deny.sh: cargo-deny not found; install it with:" >&2
    echo "  cargo install --locked --root \$HOME/.cache/pika-tools cargo-deny" >&2
    exit 1
fi

snapshot="${PIKA_ADVISORY_DB_SNAPSHOT:-}"
if [[ -z "$snapshot" ]]; then
    # /work/shared: where the project's shared folder lives on the team's machines
    # (a clone elsewhere, as CI makes, has no ../shared).
    for d in "$root/shared/advisory-db" "$root/../shared/advisory-db" /work/shared/advisory-db; do
        if [[ -f "$d/SNAPSHOT.txt" ]]; then
            snapshot=$d
            break
        fi
    done
fi
if [[ -z "$snapshot" || ! -d "$snapshot/crates" ]]; then
    echo "deny.sh: no advisory database snapshot (shared/advisory-db); set PIKA_ADVISORY_DB_SNAPSHOT" >&2
    exit 1
fi
snapshot=$(cd "$snapshot" && pwd)

# The snapshot's date (SNAPSHOT.txt: "... (YYYY-MM-DD)") becomes the commit and
# fetch time, so deny.toml's maximum-db-staleness measures the snapshot's age,
# not the time this script last ran.
snap_date=$(sed -n 's/.*(\([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)).*/\1/p' "$snapshot/SNAPSHOT.txt" | head -n1)
if [[ -z "$snap_date" ]]; then
    echo "deny.sh: SNAPSHOT.txt has no (YYYY-MM-DD) date" >&2
    exit 1
fi
stamp="${snap_date}T00:00:00Z"

# 1. The snapshot as a one-commit git repository (branch main), rebuilt when the
#    snapshot changes.
cache="$HOME/.cache/pika-advisory-db"
src="$cache/source"
if ! cmp -s "$snapshot/SNAPSHOT.txt" "$cache/SNAPSHOT.txt" || [[ ! -d "$src/.git" ]]; then
    rm -rf "$src" "$cache/SNAPSHOT.txt"
    mkdir -p "$cache"
    cp -R "$snapshot" "$src"
    chmod -R u+w "$src"
    git -C "$src" init -q -b main
    git -C "$src" add -A
    GIT_AUTHOR_DATE="$stamp" GIT_COMMITTER_DATE="$stamp" \
        git -C "$src" -c user.name=pika -c user.email=pika@localhost -c commit.gpgsign=false \
        commit -q -m "$(head -n1 "$snapshot/SNAPSHOT.txt")"
    cp "$snapshot/SNAPSHOT.txt" "$cache/SNAPSHOT.txt"
fi

# 2. cargo-deny keeps its databases under deny.toml's db-path, in a folder it
#    names after db-urls. Let it clone/update that folder itself from the local
#    repository: git rewrites the RustSec URL to it, and only the file transport
#    is allowed, so this cannot reach the network.
db_url="https://github.com/rustsec/advisory-db"
export GIT_CONFIG_COUNT=1
export GIT_CONFIG_KEY_0="url.file://$src.insteadOf"
export GIT_CONFIG_VALUE_0="$db_url"
export GIT_ALLOW_PROTOCOL=file
export GIT_TERMINAL_PROMPT=0
cargo deny --offline --log-level warn fetch db

db_root="$HOME/.cache/pika-advisory-dbs"
found=0
for git_dir in "$db_root"/*/.git; do
    [[ -d "$git_dir" ]] || continue
    if [[ "$(git -C "$git_dir/.." config --get remote.origin.url || true)" == "$db_url" ]]; then
        touch -d "$stamp" "$git_dir/HEAD"
        [[ -f "$git_dir/FETCH_HEAD" ]] && touch -d "$stamp" "$git_dir/FETCH_HEAD"
        found=1
    fi
done
if [[ $found -eq 0 ]]; then
    echo "deny.sh: cargo-deny did not put the advisory database under $db_root (deny.toml db-path)" >&2
    exit 1
fi
unset GIT_CONFIG_COUNT GIT_CONFIG_KEY_0 GIT_CONFIG_VALUE_0

age_days=$(( ($(date -u +%s) - $(date -u -d "$stamp" +%s)) / 86400 ))
echo "deny.sh: $(cargo deny --version), advisory-db snapshot of $snap_date ($age_days days old)"

# 3. The check itself, offline (no crate, database or std-replacement fetches).
#    It reads the dependency graph from `cargo metadata`, which needs every
#    locked crate in cargo's registry cache: on a fresh machine nothing is
#    there yet, so fetch them first (a no-op once the cache holds them).
cargo fetch --locked --quiet
cargo deny --offline --locked check --show-stats
