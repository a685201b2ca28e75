#!/usr/bin/env bash
# lifeboat.docker's jobs on this machine, with the local inventory (inventories/local):
#
#   bash scripts/lifeboat.sh backup      # back this Docker host up into /var/backups/lifeboat
#   bash scripts/lifeboat.sh restore     # show what a restore of the latest snapshot would do
#   bash scripts/lifeboat.sh restore -e restore_confirm=true   # and do it
#   bash scripts/lifeboat.sh inventory   # the storage-concept document of this Docker host
#   bash scripts/lifeboat.sh ls SNAPSHOT UNIT [PATH-or-GLOB...]     # a unit's files in a snapshot
#   bash scripts/lifeboat.sh diff [SNAPSHOT_A] SNAPSHOT_B UNIT       # what changed (A: the previous)
#   bash scripts/lifeboat.sh restore-file SNAPSHOT UNIT PATH [DEST]  # one file (or directory) back
#     SNAPSHOT: an id or latest; DEST: a new directory (default /var/lib/lifeboat/restored/...);
#     nothing is overwritten unless -e browse_force=true. See docs/browse.md.
#   bash scripts/lifeboat.sh schedule    # a systemd timer runs `lifeboat.sh backup` daily at 03:00
#   bash scripts/lifeboat.sh schedule -e schedule_on_calendar='*-*-* 01:30' -e lifeboat_repository=/mnt/backup
#   bash scripts/lifeboat.sh schedule -e schedule_state=absent                   # remove it
#
# schedule: the -e options go to the timer's role (schedule_*) and to every scheduled backup
# (lifeboat_*); keep secrets in inventories/local/group_vars (vault), not on the command line.
# Sets up .venv with the controller's requirements first when needed (scripts/venv.sh).
# Extra arguments go to ansible-playbook, e.g. -e lifeboat_repository=/mnt/backup.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
job=${1:-}
shift || true
usage="usage: bash scripts/lifeboat.sh backup|restore|inventory|schedule [ansible-playbook options]
       bash scripts/lifeboat.sh ls SNAPSHOT UNIT [PATH-or-GLOB...] [ansible-playbook options]
       bash scripts/lifeboat.sh diff [SNAPSHOT_A] SNAPSHOT_B UNIT [ansible-playbook options]
       bash scripts/lifeboat.sh restore-file SNAPSHOT UNIT PATH [DEST] [ansible-playbook options]"
case "$job" in
  backup) playbook=playbooks/backup.yml ;;
  restore) playbook=playbooks/restore.yml ;;
  inventory) playbook=playbooks/inventory_report.yml ;;
  schedule) playbook=playbooks/schedule.yml ;;
  ls | diff | restore-file) playbook=playbooks/browse.yml ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
# Browsing: the words before the first option are the job's; the rest go to ansible-playbook.
words=()
while [ $# -gt 0 ] && [[ $1 != -* ]]; do words+=("$1"); shift; done
browse=()
bad() { echo "lifeboat.sh $job: $1" >&2; echo "$usage" >&2; exit 2; }
# KEY VALUE ... -- PATH ...: one JSON object of extra variables (values as given, spaces included)
vars_json() {
  "$top/.venv/bin/python" -c 'import json, sys
a = sys.argv[1:]; i = a.index("--")
print(json.dumps(dict(zip(a[:i:2], a[1:i:2]), browse_paths=a[i + 1:])))' "$@"
}
case "$job" in
  ls)
    [ ${#words[@]} -ge 2 ] || bad "give SNAPSHOT (an id or latest) and UNIT (e.g. volume:app_data)"
    browse=(browse_job ls browse_snapshot "${words[0]}" browse_unit "${words[1]}" -- "${words[@]:2}") ;;
  diff)
    case ${#words[@]} in
      2) browse=(browse_job diff browse_snapshot "${words[0]}" browse_unit "${words[1]}" --) ;;
      3) browse=(browse_job diff browse_base "${words[0]}" browse_snapshot "${words[1]}" browse_unit "${words[2]}" --) ;;
      *) bad "give [SNAPSHOT_A] SNAPSHOT_B UNIT (without SNAPSHOT_A: the unit's snapshot before SNAPSHOT_B)" ;;
    esac ;;
  restore-file)
    if [ ${#words[@]} -lt 3 ] || [ ${#words[@]} -gt 4 ]; then bad "give SNAPSHOT UNIT PATH [DEST]"; fi
    browse=(browse_job restore_file browse_snapshot "${words[0]}" browse_unit "${words[1]}"
            browse_target "${words[3]:-}" -- "${words[2]}") ;;
  *) [ ${#words[@]} -eq 0 ] || bad "unexpected words: ${words[*]}" ;;
esac
bash "$top/scripts/venv.sh" controller
cd "$top"
export ANSIBLE_CONFIG=$top/ansible.cfg
if [ "$job" = schedule ]; then
  # The timer runs this script's backup job for this checkout, with the same options.
  timer_vars=$("$top/.venv/bin/python" -c 'import json, sys
print(json.dumps({"schedule_command": sys.argv[2:], "schedule_working_directory": sys.argv[1]}))' \
    "$top" bash "$top/scripts/lifeboat.sh" backup "$@")
  set -- -e "$timer_vars" "$@"
fi
if [ "$playbook" != playbooks/browse.yml ]; then
  exec "$top/.venv/bin/ansible-playbook" -i inventories/local "$playbook" "$@"
fi
extra=(-e "$(vars_json "${browse[@]}")")
# The results as tables: ansible-playbook's JSON output, formatted by scripts/browse_print.py.
set +e
ANSIBLE_STDOUT_CALLBACK=ansible.posix.json ANSIBLE_LOAD_CALLBACK_PLUGINS=1 \
  "$top/.venv/bin/ansible-playbook" -i inventories/local "$playbook" "${extra[@]}" "$@" \
  | "$top/.venv/bin/python" "$top/scripts/browse_print.py"
rc=("${PIPESTATUS[@]}")
if [ "${rc[0]}" -ne 0 ] || [ "${rc[1]}" -ne 0 ]; then exit 1; fi
