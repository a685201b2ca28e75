#!/usr/bin/env bash
# Creates or updates the project's virtual environment in .venv from requirements/.
#   bash scripts/venv.sh            # controller + development tools
#   bash scripts/venv.sh controller # only what playbooks need
# Idempotent: does nothing when .venv already matches the requirement files.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
set_name=${1:-dev}
req=$top/requirements/$set_name.txt
[ -f "$req" ] || { echo "unknown requirement set '$set_name': use 'dev' or 'controller'" >&2; exit 2; }
venv=$top/.venv
stamp=$venv/.lifeboat-requirements
link_collection() {
  # ansible.cfg looks for collections in .venv/collections: link this checkout there as
  # lifeboat.docker, so playbooks, roles and molecule use the working tree.
  mkdir -p "$venv/collections/ansible_collections/lifeboat"
  ln -sfn "$top" "$venv/collections/ansible_collections/lifeboat/docker"
}
want=$(cat "$top"/requirements/*.txt | sha256sum | cut -c1-16)-$set_name
if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || [ "$(cat "$stamp")" = "${want%-*}-dev" ]; }; then
  link_collection
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    echo "python3 -m venv failed: install Debian's python3-venv (apt-get install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
link_collection
echo "$want" > "$stamp"
echo "virtual environment ready: $venv ($set_name)" >&2
