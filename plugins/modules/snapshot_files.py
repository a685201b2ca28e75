#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_files
short_description: List the files of a unit in a lifeboat snapshot
version_added: 0.1.0
description:
  - Lists the entries (path, kind, size, mode, owner, modification time, link target) of one unit
    of a snapshot, from the unit's index, without extracting anything. The index is read as a
    stream (decrypted and decompressed on the way, its sha256 checked), so memory does not grow
    with the number of files; the entries returned are the first O(limit) by path.
  - Works on every store and in encrypted repositories given O(encryption_identity).
  - Database dump units have no file index and are refused.
  - See the collection's C(docs/browse.md), and C(bash scripts/lifeboat.sh ls) for a terminal.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.repository
  - lifeboat.docker.browse
  - lifeboat.docker.attributes
attributes:
  diff_mode:
    support: none
    description: Nothing to compare; see M(lifeboat.docker.snapshot_diff).
options:
  snapshot:
    description:
      - A snapshot id, or V(latest) (the newest snapshot, by its time, that holds the data of O(unit),
        of O(host) if given).
    type: str
    default: latest
  paths:
    description:
      - Only these entries, relative to the unit's root as listed (C(app/config.yml)); a directory
        names everything below it; shell wildcards as GNU tar's (C(logs/*.log); C(*) also matches
        C(/)). Empty, or V(.), lists everything.
      - Absolute paths and C(..) components are refused.
    type: list
    elements: str
    default: []
  limit:
    description: Return at most this many entries (the first by path); V(0) returns all.
    type: int
    default: 1000
"""

EXAMPLES = r"""
- name: What the newest snapshot holds of a volume's config directory
  lifeboat.docker.snapshot_files:
    unit: volume:app_data
    paths: [config]
  register: listing

- name: Every log file of a host path in a given snapshot of an encrypted SFTP repository
  lifeboat.docker.snapshot_files:
    repository: sftp://backup@nas.example.org/srv/lifeboat
    encryption_identity: /root/lifeboat-age.txt
    snapshot: 20261122T103000Z-web1-3fa2c1
    unit: path:/srv/app
    paths: ["logs/*.log"]
    limit: 0
"""

RETURN = r"""
snapshot_id:
  description: The snapshot listed.
  returned: success
  type: str
  sample: 20261122T103000Z-web1-3fa2c1
unit:
  description: The unit listed (its id).
  returned: success
  type: str
  sample: volume:app_data
entries:
  description: The matching entries, by path, at most O(limit).
  returned: success
  type: list
  elements: dict
  sample:
    - {path: config/app.yml, kind: f, size: 1234, mode: "0640", uid: 1000, gid: 1000, mtime: 1700000000,
       link_target: null}
  contains:
    path:
      description: Relative to the unit's root (V(.) is the root); bytes that are not UTF-8 appear as surrogate escapes.
      type: str
    kind:
      description: V(f) file, V(d) directory, V(l) symlink, V(p) fifo, V(c)/V(b) devices.
      type: str
    size:
      description: Bytes (files only; 0 otherwise).
      type: int
    mode:
      description: Permission bits, in octal.
      type: str
    uid:
      description: Numeric owner.
      type: int
    gid:
      description: Numeric group.
      type: int
    mtime:
      description: Modification time, seconds since the epoch.
      type: int
    link_target:
      description: What a symlink points to; V(null) for others.
      type: str
matched:
  description: How many entries matched (all of them, also those past O(limit)).
  returned: success
  type: int
matched_bytes:
  description: Bytes of the matching files.
  returned: success
  type: int
truncated:
  description: Whether more entries matched than RV(entries) holds (raise O(limit), or narrow O(paths)).
  returned: success
  type: bool
unmatched:
  description: The O(paths) that matched nothing (the listing fails when all of them do).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import (
    BrowseError,
    Selector,
    Smallest,
    browse_unit,
    entry_dict,
    index_lines,
    parse_line,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError


def main() -> None:
    argument_spec = dict(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        snapshot={"type": "str", "default": "latest"},
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
    result = {"changed": False, "unmatched": []}

    def body() -> None:
        selector = Selector(params["paths"])
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        manifest = repo.resolve(params["snapshot"], unit=params["unit"], host=params["host"])
        unit = browse_unit(manifest, params["unit"])
        result.update(snapshot_id=manifest["id"], unit=unit["id"])
        kept = Smallest(params["limit"])
        total = 0
        for line in index_lines(repo, unit):
            if not line:
                continue
            item = parse_line(line)
            if selector.match(item[0]):
                kept.add(item[0], item)
                total += item[2] if item[1] == "f" else 0
        result["unmatched"] = selector.unmatched()
        if selector.patterns and len(result["unmatched"]) == len(selector.patterns):
            module.fail_json(msg=f"nothing in {unit['id']} of snapshot {manifest['id']} matches "
                                 f"{', '.join(repr(p) for p in result['unmatched'])}: list the unit without paths "
                                 "to see its entries (bash scripts/lifeboat.sh ls SNAPSHOT UNIT)", **result)
        result.update(entries=[entry_dict(item) for item in kept.items()], matched=kept.count, matched_bytes=total,
                      truncated=kept.truncated)

    run(module, body, name="snapshot_files", result=result, ladder=(Failure((BrowseError, RepositoryError, StoreError)),))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
