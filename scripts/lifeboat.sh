#!/usr/bin/env bash
# lifeboat.docker's jobs on this machine, with the local inventory (inventories/local):
#
#   bash scripts/lifeboat.sh backup      # back this Docker host up into /var/backups/lifeboat
#   bash scripts/lifeboat.sh restore     # show what a restore of the latest snapshot would do
#   bash scripts/lifeboat.sh restore -e restore_confirm=true   # and do it
#   bash scripts/lifeboat.sh inventory   # the storage-concept document of this Docker host
#
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
  *) echo "usage: bash scripts/lifeboat.sh backup|restore|inventory [ansible-playbook options]" >&2; exit 2 ;;
esac
bash "$top/scripts/venv.sh" controller
cd "$top"
export ANSIBLE_CONFIG=$top/ansible.cfg
exec "$top/.venv/bin/ansible-playbook" -i inventories/local "$playbook" "$@"
