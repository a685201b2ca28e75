#!/usr/bin/env bash
# lifeboat.docker's jobs on this machine, with the local inventory (inventories/local):
#
#   bash scripts/lifeboat.sh backup      # back this Docker host up into /var/backups/lifeboat
#   bash scripts/lifeboat.sh restore     # show what a restore of the latest snapshot would do
#   bash scripts/lifeboat.sh restore -e restore_confirm=true   # and do it
#   bash scripts/lifeboat.sh inventory   # the storage-concept document of this Docker host
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
case "$job" in
  backup) playbook=playbooks/backup.yml ;;
  restore) playbook=playbooks/restore.yml ;;
  inventory) playbook=playbooks/inventory_report.yml ;;
  schedule) playbook=playbooks/schedule.yml ;;
  *) echo "usage: bash scripts/lifeboat.sh backup|restore|inventory|schedule [ansible-playbook options]" >&2; exit 2 ;;
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
exec "$top/.venv/bin/ansible-playbook" -i inventories/local "$playbook" "$@"
