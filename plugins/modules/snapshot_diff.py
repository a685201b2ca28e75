#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_diff
short_description: What changed in a unit between two lifeboat snapshots
version_added: 0.1.0
description:
  - Compares the indexes of one unit in two snapshots and says which entries were added, removed
    or changed (kind, size, mode, owner, modification time, link target), without extracting
    anything. Both indexes are read as streams and merged in one pass, so memory does not grow
    with the number of files. File contents are not compared; a file rewritten with the same size
    and time is not seen (the snapshot's own capture works the same way).
  - By default the snapshot O(snapshot) is compared with the unit's previous snapshot (the newest
    older one of the same host holding the unit's data).
  - A directory whose entries changed shows as changed itself (its modification time).
  - Works on every store and in encrypted repositories given O(encryption_identity).
  - Database dump units have no file index and are refused.
  - See the collection's C(docs/browse.md), and C(bash scripts/lifeboat.sh diff) for a terminal.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.repository
  - lifeboat.docker.browse
  - lifeboat.docker.attributes
attributes:
  diff_mode:
    support: none
    description: The comparison is the result itself.
options:
  snapshot:
    description:
      - The newer snapshot, by id, or V(latest) (the newest snapshot, by its time, that holds the data
        of O(unit), of O(host) if given).
    type: str
    default: latest
  base:
    description:
      - The older snapshot, by id, or V(previous) (the newest snapshot older than O(snapshot), of the
        same host, that holds the unit's data).
    type: str
    default: previous
  paths:
    description:
      - Only these entries, relative to the unit's root (see M(lifeboat.docker.snapshot_files)); a
        directory names everything below it; shell wildcards as GNU tar's. Empty compares everything.
    type: list
    elements: str
    default: []
  limit:
    description: Return at most this many entries in each of RV(added), RV(removed) and RV(changed)
      (the first by path); V(0) returns all. RV(counts) always counts all.
    type: int
    default: 1000
"""

EXAMPLES = r"""
- name: What changed in a volume since the snapshot before the newest
  lifeboat.docker.snapshot_diff:
    unit: volume:app_data
  register: changes

- name: Between two given snapshots, in one directory
  lifeboat.docker.snapshot_diff:
    base: 20261120T020000Z-web1-1a2b3c
    snapshot: 20261122T020000Z-web1-3fa2c1
    unit: path:/srv/app
    paths: [config]
"""

RETURN = r"""
snapshot_id:
  description: The newer snapshot.
  returned: success
  type: str
  sample: 20261122T020000Z-web1-3fa2c1
base_id:
  description: The older snapshot.
  returned: success
  type: str
  sample: 20261120T020000Z-web1-1a2b3c
unit:
  description: The unit compared (its id).
  returned: success
  type: str
added:
  description: Entries only in RV(snapshot_id), by path (as M(lifeboat.docker.snapshot_files) lists them).
  returned: success
  type: list
  elements: dict
removed:
  description: Entries only in RV(base_id), by path, as they were there.
  returned: success
  type: list
  elements: dict
changed:
  description: Entries in both that differ, by path, as in RV(snapshot_id), with C(changes) (field -> [old, new]).
  returned: success
  type: list
  elements: dict
  sample: [{path: config/app.yml, kind: f, size: 1300, mode: "0600", uid: 1000, gid: 1000, mtime: 1700000100,
            link_target: null, changes: {size: [1234, 1300], mode: ["0640", "0600"]}}]
counts:
  description: How many entries were added, removed and changed (all of them, also those past O(limit)).
  returned: success
  type: dict
  sample: {added: 3, removed: 1, changed: 2}
truncated:
  description: Whether a list holds fewer entries than RV(counts) says (raise O(limit), or narrow O(paths)).
  returned: success
  type: bool
same_index:
  description: Whether both snapshots hold the very same index (the unit did not change; nothing was read).
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import (
    BrowseError,
    Selector,
    Smallest,
    browse_unit,
    diff_indexes,
    entry_dict,
    index_lines,
    previous_snapshot,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError


def compare(repo, base: dict, newer: dict, wanted: str, selector: Selector, limit: int) -> dict:
    old_unit, new_unit = browse_unit(base, wanted), browse_unit(newer, wanted)
    lists = {name: Smallest(limit) for name in ("added", "removed", "changed")}
    same = mf.content_sha(old_unit["index"]) == mf.content_sha(new_unit["index"])
    if not same:
        changes = diff_indexes(index_lines(repo, old_unit), index_lines(repo, new_unit), selector,
                               names=(f"{old_unit['id']} in {base['id']}", f"{new_unit['id']} in {newer['id']}"))
        for kind, item in changes:
            if kind == "changed":
                _old, new, fields = item
                lists[kind].add(new[0], dict(entry_dict(new), changes=fields))
            else:
                lists[kind].add(item[0], entry_dict(item))
    out = {name: kept.items() for name, kept in lists.items()}
    out.update(unit=new_unit["id"], same_index=same, counts={name: kept.count for name, kept in lists.items()},
               truncated=any(kept.truncated for kept in lists.values()))
    return out


def main() -> None:
    argument_spec = dict(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        snapshot={"type": "str", "default": "latest"},
        base={"type": "str", "default": "previous"},
        host={"type": "str"},
        unit={"type": "str", "required": True},
        paths={"type": "list", "elements": "str", "default": []},
        limit={"type": "int", "default": 1000},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("encryption_identity", "ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    if params["limit"] < 0:
        module.fail_json(msg=f"limit must be 0 (everything) or more, got {params['limit']}")
    result = {"changed": False}

    def body() -> None:
        selector = Selector(params["paths"])
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        newer = repo.resolve(params["snapshot"], unit=params["unit"], host=params["host"])
        unit_id = browse_unit(newer, params["unit"])["id"]
        if params["base"] == "previous":
            base = previous_snapshot(repo, newer, unit_id)
        else:
            base = repo.resolve(params["base"], unit=unit_id, host=params["host"])
        result.update(snapshot_id=newer["id"], base_id=base["id"])
        result.update(compare(repo, base, newer, unit_id, selector, params["limit"]))

    run(module, body, name="snapshot_diff", result=result, ladder=(Failure((BrowseError, RepositoryError, StoreError)),))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
