#!/usr/bin/env bash
# ansible-test sanity, which must run from a path ending in ansible_collections/lifeboat/docker
# (a copy, not a symlink). Copies the working tree (less .venv and other ignored files) to
# build/sanity/ansible_collections/lifeboat/docker and runs there.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$top/build/sanity/ansible_collections/lifeboat/docker
rm -rf "$dest" && mkdir -p "$dest"
# Tracked and untracked-but-not-ignored files: exactly what a commit would hold.
# (Deleted-but-tracked files are skipped: only what exists is copied.)
(cd "$top" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
   [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done) \
  | (cd "$top" && xargs -0 cp --parents -P -t "$dest"/)
# ansible-test wants a git tree or none; a fresh one keeps it from looking at ours.
(cd "$dest" && git init -q && git add -A >/dev/null)
# Its own virtualenv: --requirements installs each sanity test's pinned tools, which must not
# disturb the development venv (ansible-lint pins some of the same packages). ansible-test's
# --venv mode cannot be used here: it downloads a pip bootstrap from a host we cannot reach.
venv=$top/build/venv-sanity
core=$(grep -E '^ansible-core==' "$top/requirements/controller.txt")
have=$("$venv/bin/python" -m pip show ansible-core 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$have" != "${core#ansible-core==}" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$core"
fi
# The pip bootstrap ansible-test would download: our stand-in (see the script's docstring).
pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" \
  "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -n1)
[ -n "$pip_version" ] || { echo "cannot find ansible-test's pip version" >&2; exit 1; }
mkdir -p ~/.ansible/test/cache
cp "$top/scripts/ansible_test_get_pip.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
cd "$dest"
exec "$venv/bin/python" "$venv/bin/ansible-test" sanity --color no --python 3.11 --requirements "$@"
