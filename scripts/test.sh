#!/usr/bin/env bash
# Every check of lifeboat.docker, in one command (this is what .ci/run calls):
#
#   bash scripts/test.sh                  # all steps
#   bash scripts/test.sh unit integration # only these steps
#
# Steps: testbed venv lint changelog build sanity unit integration molecule.
# Run as root on Debian 12: the testbed step installs packages, starts dockerd when no engine
# answers and builds the local test images (tests/testbed/setup.sh); each step is idempotent.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
all_steps=(testbed venv lint changelog build sanity unit integration molecule)
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=("${all_steps[@]}")
for s in "${steps[@]}"; do
  [[ " ${all_steps[*]} " == *" $s "* ]] || { echo "unknown step '$s'; steps: ${all_steps[*]}" >&2; exit 2; }
done

export PATH=$top/.venv/bin:$PATH
export ANSIBLE_CONFIG=$top/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$top/.venv/collections
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 NO_COLOR=1

step_testbed() { bash tests/testbed/setup.sh; }
step_venv() { bash scripts/venv.sh dev; }
# ansible-lint resolves lifeboat.docker from ~/.ansible/collections before ANSIBLE_COLLECTIONS_PATH,
# and Molecule installs a copy of the collection there: a later lint would check new roles and
# modules against that older copy. It runs with a home of its own, so it sees this checkout only.
step_lint() {
  local home=$top/build/lint-home
  rm -rf "$home" && mkdir -p "$home"
  HOME=$home ansible-lint --offline
}
step_changelog() { antsibull-changelog lint; }
step_build() {
  local out=$top/build/dist tarball
  rm -rf "$out" "$top/build/install" && mkdir -p "$out"
  ansible-galaxy collection build --force --output-path "$out" >/dev/null || return 1
  tarball=$(ls "$out"/lifeboat-docker-*.tar.gz)
  if tar -tzf "$tarball" | grep -E '^(tests|bench|molecule|scripts|\.ci|\.venv)(/|$)'; then
    echo "the collection tarball ships test, bench or CI files (listed above): fix build_ignore in galaxy.yml" >&2
    return 1
  fi
  ansible-galaxy collection install --offline -p "$top/build/install" "$tarball" >/dev/null || return 1
  echo "built and installed $(basename "$tarball") ($(tar -tzf "$tarball" | wc -l) entries)"
}
step_sanity() { bash scripts/sanity.sh; }
step_unit() { pytest -q -p no:cacheprovider tests/unit; }
# --durations: where the time goes, in the CI log (the suite must stay well under 45 minutes).
# Three workers, one test file each at a time (pytest-xdist --dist loadfile: a file's module
# fixtures are made once, its tests keep their order). Most of a test's time is spent waiting
# on engines, servers and databases; tests that act on a whole engine use throw-away engines
# (tests/integration/fixtures/engine.py) and names are prefixed per test, so files do not meet.
step_integration() {
  pytest -q -p no:cacheprovider -n 3 --dist loadfile --durations=30 tests/integration
}
# Scenarios run two at a time (each waits mostly on apt, image loads and nested engines; their
# platforms and networks have names of their own), the longest first; each one's output is
# printed whole when it ends. Molecule takes the collection from this checkout (prerun: false).
molecule_lanes=2
step_molecule() {
  local logs=$top/build/molecule scenario rc=0 running=0
  rm -rf "$logs" && mkdir -p "$logs"
  # longest first: the lanes then end at about the same time
  local order=(swarm_rebuild dr_rebuild backup_restore cert_safekeeping docker_engine) all=()
  for scenario in "${order[@]}"; do [ -f "molecule/$scenario/molecule.yml" ] && all+=("$scenario"); done
  for scenario in molecule/*/molecule.yml; do
    scenario=$(basename "$(dirname "$scenario")")
    [[ " ${all[*]} " == *" $scenario "* ]] || all+=("$scenario")
  done
  for scenario in "${all[@]}"; do
    while [ "$running" -ge "$molecule_lanes" ]; do
      wait -n || true
      running=$(jobs -rp | wc -l)
    done
    echo "--- molecule test -s $scenario (started $(date +%T))"
    ( t0=$(date +%s); molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1
      echo "$? $(( $(date +%s) - t0 ))" >"$logs/$scenario.rc" ) &
    running=$(jobs -rp | wc -l)
  done
  wait
  local status seconds
  for scenario in "${all[@]}"; do
    read -r status seconds <"$logs/$scenario.rc" || status=1
    cat "$logs/$scenario.log"
    if [ "$status" = 0 ]; then
      echo "=== molecule $scenario passed in ${seconds}s"
    else
      echo "=== molecule $scenario FAILED (exit $status, ${seconds:-?}s): its log is above"
      rc=1
    fi
  done
  return $rc
}

declare -A result seconds
failed=0
for s in "${steps[@]}"; do
  echo "=== $s"
  start=$(date +%s)
  if "step_$s"; then result[$s]=passed; else result[$s]=FAILED; failed=$((failed + 1)); fi
  seconds[$s]=$(( $(date +%s) - start ))
  # Without a test bench or tools nothing after makes sense.
  if [ "${result[$s]}" = FAILED ] && { [ "$s" = testbed ] || [ "$s" = venv ]; }; then
    echo "step $s failed: stopping here" >&2
    break
  fi
done

echo
echo "=== summary"
passed=0
for s in "${steps[@]}"; do
  [ -n "${result[$s]:-}" ] || continue
  printf '%-12s %-7s %5ss\n' "$s" "${result[$s]}" "${seconds[$s]}"
  [ "${result[$s]}" = passed ] && passed=$((passed + 1))
done
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
