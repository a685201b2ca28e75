#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_info
short_description: List and verify the snapshots of a lifeboat repository
version_added: 0.1.0
description:
  - "Lists the snapshots of a repository (only those whose manifest was written: a snapshot
    without its manifest does not exist), newest first, with filters."
  - O(verify=checksum) reads every object of the listed snapshots and checks its sha256.
    O(verify=restore) also extracts each unit into a scratch directory, through the same checks as
    a restore, and compares files, sizes, modes and owners with the unit's index; a database dump
    is decompressed completely and its size compared with the manifest.
  - A problem is reported for the snapshot and unit it concerns (RV(snapshots[].problems)); the
    listing itself does not fail.
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.docker
  - lifeboat.docker.repository
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Reads only (the restart of containers left stopped by a killed run is skipped).
  idempotent:
    support: full
    description: Lists and reads only.
options:
  encryption_identity:
    description:
      - The age identity file (private key, on the Docker host) that decrypts encrypted snapshots
        (see O(lifeboat.docker.snapshot#module:encryption_recipients)). Needed for encrypted
        snapshots only; without it, or with one that is not among a snapshot's recipients, the
        module reports the problem (the listing works without it).
      - In roles it comes from vault; the role writes it to a 0600 file on the host and removes it after.
    type: path
  host:
    description: Only snapshots of this host.
    type: str
  unit:
    description: Only snapshots holding this unit (an id, a volume name or a host path).
    type: str
  tag:
    description: Only snapshots with this tag.
    type: str
  newest:
    description: Only the newest N snapshots (after the other filters).
    type: int
  verify:
    description: How deeply to check the listed snapshots.
    type: str
    choices: [none, checksum, restore]
    default: none
  scratch_dir:
    description: Where O(verify=restore) extracts (a temporary directory is made inside and removed).
    type: path
    default: /var/tmp
"""

EXAMPLES = r"""
- name: The five newest snapshots of this host
  lifeboat.docker.snapshot_info:
    host: "{{ inventory_hostname }}"
    newest: 5
  register: snaps

- name: Check every object of the newest snapshot
  lifeboat.docker.snapshot_info:
    newest: 1
    verify: checksum
  register: check
  failed_when: check.problems | length > 0
"""

RETURN = r"""
snapshots:
  description: Snapshots, newest first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 20261122T103000Z-web1-3fa2c1
      time: "2026-11-22T10:30:00.000000Z"
      host: web1
      tags: [nightly]
      complete: true
      units: ["volume:app_uploads", "path:/srv/exports"]
      bytes: 52428800
      stored_bytes: 10485760
      files: 1200
      problems: []
  contains:
    id:
      description: Snapshot id.
      type: str
    time:
      description: When the snapshot started (UTC, ISO 8601).
      type: str
    host:
      description: Host the snapshot was taken of.
      type: str
    tags:
      description: Tags.
      type: list
      elements: str
    complete:
      description: Whether every unit asked for was captured.
      type: bool
    units:
      description: Ids of the units the snapshot records, those in RV(snapshots[].skipped) included.
      type: list
      elements: str
    skipped:
      description:
        - Units the snapshot records without data (strategy V(skip), e.g. the data directory of a
          database that was dumped instead), each with the reason the plan gave.
        - Restoring one of them fails; there is nothing to restore.
        - In an encrypted repository the reason is null, because its readable record keeps no reasons.
      type: list
      elements: dict
      sample: [{id: "volume:pg_data", reason: "data directory of db:pg, captured by its dump"}]
    failed:
      description:
        - Units that were asked for but failed, each with its error. Such a snapshot is not
          complete (RV(snapshots[].complete) is false); its other units are usable.
        - In an encrypted repository the error is null, because its readable record keeps no errors.
      type: list
      elements: dict
      sample: [{id: "volume:uploads", error: "the repository's filesystem is full (/backup)"}]
    bytes:
      description: Apparent size of the captured data.
      type: int
    stored_bytes:
      description: Size of the snapshot's data objects in the repository (shared objects counted).
      type: int
    files:
      description: Regular files captured.
      type: int
    problems:
      description: What verification found, per unit (empty when all is well or nothing was verified).
      type: list
      elements: dict
      sample: [{unit: "volume:app_uploads", problem: "object 9f86... is damaged: its bytes hash to 1b4f..."}]
problems:
  description:
    - All problems found, each with its snapshot and unit; damaged manifests too (unreadable, or with fields
      of the wrong type), which are left out of RV(snapshots) and of RV(latest).
  returned: always
  type: list
  elements: dict
latest:
  description:
    - The id of the snapshot V(latest) means in every lifeboat module, for the filters O(host) and O(unit)
      given (O(tag) and O(newest) do not change it), or V(null) when there is none.
    - "That is: the newest snapshot by its recorded time that is complete (with O(unit): that holds the
      unit's data), never a pre-restore snapshot taken by a restore."
  returned: always
  type: str
  sample: 20261122T103000Z-web1-3fa2c1
repaired:
  description:
    - Containers an earlier, killed run had left stopped, started again now.
    - Staging directories a killed restore left behind, removed now (with C(staging) instead of C(container)).
  returned: always
  type: list
  elements: dict
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError, hash_stream
from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import DumpError, object_chunks
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import (
    DOCKER_COMMON_ARGS,
    DockerException,
    client_for,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import IDENTITY_ARGS, REPOSITORY_ARGS, store_options
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository, RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import RestoreError, extract_verified
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import UnsafeArchive


def check_objects(repo, unit: dict, seen: dict, refs: tuple = ("object", "index")) -> list[str]:
    problems = []
    for ref in refs:
        info = unit.get(ref) or {}
        sha = info.get("sha256")
        if not sha:
            continue
        if sha not in seen:
            if not repo.has_object(sha):
                seen[sha] = f"{ref} {sha} is missing from the repository"
            else:
                with repo.open_object(sha) as fh:
                    actual, size = hash_stream(fh)
                if actual != sha:
                    seen[sha] = f"{ref} {sha} is damaged: its bytes hash to {actual}"
                elif info.get("size") is not None and size != info["size"]:
                    seen[sha] = f"{ref} {sha} has {size} bytes, the manifest says {info['size']}"
                else:
                    seen[sha] = None
        if seen[sha]:
            problems.append(seen[sha])
    return problems


def verify_snapshot(repo, man: dict, depth: str, scratch_dir: str, seen: dict) -> list[tuple]:
    """(unit id or None, problem) of one snapshot: checksums of every object it names (also the
    encrypted manifest, without any key), and with depth restore a trial extraction of each unit
    (an encrypted snapshot needs the identity for that)."""
    out: list[tuple] = []
    sealed = (man.get("encryption") or {}).get("manifest")
    if sealed:
        out += [(None, p) for p in check_objects(repo, {"manifest": sealed}, seen, ("manifest",))]
    units = man["units"]
    if depth == "restore" and sealed and not out:
        try:
            units = repo.load_manifest(man["id"], full=True)["units"]
        except (RepositoryError, StoreError, mf.FormatError) as exc:
            return out + [(None, f"not verified by restore: {exc}")]
    for unit in units:
        if not unit.get("object"):
            continue
        found = check_objects(repo, unit, seen)
        if not found and depth == "restore":
            found = check_restore(repo, unit, scratch_dir)
        out += [(unit["id"], p) for p in found]
    return out


def check_restore(repo, unit: dict, scratch_dir: str) -> list[str]:
    if unit.get("kind") == "database":  # a dump: it must decompress completely, and not be empty
        try:
            size = sum(len(chunk) for chunk in object_chunks(repo, unit["object"]))
        except (DumpError, StoreError) as exc:
            return [str(exc)]
        if unit.get("bytes") is not None and size != unit["bytes"]:
            return [f"the dump decompresses to {size} bytes, the manifest says {unit['bytes']}"]
        return []
    scratch = tempfile.mkdtemp(prefix="lifeboat-verify-", dir=scratch_dir)
    try:
        target = os.path.join(scratch, "tree")
        os.mkdir(target, 0o700)
        extract_verified(repo, unit, target, verify=True, allow_devices=True)
    except (RestoreError, ArchiveError, UnsafeArchive, StoreError) as exc:
        return [str(exc)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return []


def main() -> None:
    argument_spec = dict(DOCKER_COMMON_ARGS)
    argument_spec.update(REPOSITORY_ARGS)
    argument_spec.update(IDENTITY_ARGS)
    argument_spec.update(
        host={"type": "str"},
        unit={"type": "str"},
        tag={"type": "str"},
        newest={"type": "int"},
        verify={"type": "str", "choices": ["none", "checksum", "restore"], "default": "none"},
        scratch_dir={"type": "path", "default": "/var/tmp"},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    check_paths(module, ("scratch_dir", "encryption_identity", "ssh_identity_file", "ssh_known_hosts_file", "rclone_config"))
    if params["newest"] is not None and params["newest"] < 1:
        module.fail_json(msg=f"newest must be 1 or more, got {params['newest']}")
    result = {"changed": False, "snapshots": [], "problems": [], "repaired": [], "latest": None}
    scratch = params["scratch_dir"]
    if params["verify"] == "restore" and (not os.path.isabs(scratch) or not os.path.isdir(scratch)):
        module.fail_json(msg=f"scratch_dir {scratch} is not an existing directory (given as an absolute path): create "
                             "it, or give another with room for the largest unit", **result)

    def body() -> None:
        result["changed"] = any(r.get("result") in ("started", "unpaused", "removed") for r in result["repaired"])
        repo = Repository.open(params["repository"], options=store_options(params),
                               identity=params["encryption_identity"])
        good, bad = repo.manifests()
        latest = mf.pick_latest(good, host=params["host"], unit=params["unit"])
        result["latest"] = latest["id"] if latest else None
        for item in bad:
            result["problems"].append({"snapshot": item["id"], "unit": None, "problem": item["problem"]})
        seen: dict = {}
        for man in mf.select(good, host=params["host"], unit=params["unit"], tag=params["tag"],
                             newest=params["newest"]):
            entry = mf.summary(man)
            entry["complete"] = bool(man.get("complete", True))
            entry["problems"] = []
            if params["verify"] != "none":
                for unit, problem in verify_snapshot(repo, man, params["verify"], params["scratch_dir"], seen):
                    entry["problems"].append({"unit": unit, "problem": problem})
                    result["problems"].append({"snapshot": man["id"], "unit": unit, "problem": problem})
            result["snapshots"].append(entry)

    run(module, body, name="snapshot_info", result=result, repair=lambda: client_for(module),
        ladder=(Failure((RepositoryError, StoreError)), Failure(DockerException, lambda exc: f"the Docker engine failed a request: {exc}")))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
