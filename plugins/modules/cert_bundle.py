#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cert_bundle
short_description: Bundle certificates and private keys (age-encrypted) and put them back with owners and modes
version_added: 0.1.0
description:
  - "O(state=present): reads O(files) (absolute paths, as RV(lifeboat.docker.cert_info#module:files)
    lists them) into a tar with their owners, modes and mtimes and a manifest of sha256 sums, and
    writes it to O(dest). With O(recipients) the tar goes through C(age) on its way (through a pipe:
    the plain bundle never touches the disk); without, O(dest) is the plain bundle, mode 0600, for a
    caller that encrypts it elsewhere (the cert_safekeeping role vault-encrypts it on the controller
    and removes it)."
  - "O(state=restored): reads the bundle O(src) (decrypted with O(identity) when it is an age file),
    checks every file against its sha256, and writes each one under O(root) atomically with its
    recorded owner and mode; private keys (and Traefik's acme.json) are never written more open than
    0600. Files already equal (content, owner, mode) are left alone."
  - Key material never appears in results, warnings or diffs.
requirements:
  - The C(age) command on the managed host when O(recipients) or an encrypted O(src) is used
    (Debian package C(age); the docker_engine role installs it).
author:
  - lifeboat.docker developers (@lifeboat)
attributes:
  check_mode:
    support: full
    description: Says which files would be bundled or written; writes nothing.
  diff_mode:
    support: none
    description: Nothing is shown of key material, so nothing is compared.
  idempotent:
    support: partial
    description: O(state=restored) is; O(state=present) writes a new bundle every run (age encryption is randomised).
options:
  state:
    description: Make a bundle (V(present)) or put a bundle's files back (V(restored)).
    type: str
    choices: [present, restored]
    default: present
  files:
    description: With O(state=present), the absolute paths of the files to bundle.
    type: list
    elements: path
    default: []
  dest:
    description: With O(state=present), where the bundle is written (mode 0600; parent directories are made 0700).
    type: path
  recipients:
    description: With O(state=present), age public keys (C(age1...)) to encrypt the bundle to.
    type: list
    elements: str
    default: []
  src:
    description: With O(state=restored), the bundle (age-encrypted or plain).
    type: path
  content:
    description:
      - With O(state=restored), the plain bundle itself, base64-encoded, instead of O(src) (the
        cert_safekeeping role passes what it decrypted from the vault file on the controller).
      - Never logged.
    type: str
  identity:
    description: With O(state=restored), the age identity file that decrypts O(src).
    type: path
  root:
    description: With O(state=restored), write the files below this directory instead of C(/) (to inspect them).
    type: path
    default: /
"""

EXAMPLES = r"""
- name: Bundle the certificates found, encrypted to two age recipients
  lifeboat.docker.cert_bundle:
    files: "{{ certs.files }}"
    dest: /var/lib/lifeboat/cert-bundle/certs.tar.age
    recipients: [age1qqq..., age1zzz...]

- name: Put them back
  lifeboat.docker.cert_bundle:
    state: restored
    src: /var/tmp/restore/certs.tar.age
    identity: /root/.config/lifeboat/age.key
"""

RETURN = r"""
files:
  description: The files bundled or restored (paths, owners and modes; never content).
  returned: always
  type: list
  elements: dict
  sample: [{path: /srv/nginx-proxy/certs/example.org.key, uid: 0, gid: 0, mode: "0600", private_key: true, changed: true}]
dest:
  description: With O(state=present), the bundle written.
  returned: state=present
  type: str
encrypted:
  description: Whether the bundle is (O(state=present)) or was (O(state=restored)) age-encrypted.
  returned: always
  type: bool
bytes:
  description: With O(state=present), size of the plain bundle.
  returned: state=present
  type: int
"""

import base64
import os
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._certs.bundle import (
    CertError, age_decrypt, age_encrypt, build_bundle, is_age_file, read_bundle, restore_mode, same_file,
    write_file)
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import write_atomic
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import Failure, check_paths, run


def make(module: AnsibleModule) -> dict:
    params = module.params
    if not params["dest"]:
        module.fail_json(msg="state=present needs dest: the path of the bundle to write")
    missing = [p for p in params["files"] if not os.path.isfile(p)]
    if missing:
        module.fail_json(msg=f"not regular files (or missing): {', '.join(missing)}; give the files cert_info lists")
    data = build_bundle(params["files"], datetime.now(timezone.utc))
    listed = [{"path": p} for p in sorted(set(params["files"]))]
    result = {"changed": True, "files": listed, "dest": params["dest"], "encrypted": bool(params["recipients"]),
              "bytes": len(data)}
    if module.check_mode:
        return result
    if params["recipients"]:
        data = age_encrypt(module.get_bin_path("age", required=True), data, params["recipients"])
    write_atomic(params["dest"], data, 0o600, dir_mode=0o700)
    return result


def restore(module: AnsibleModule) -> dict:
    params = module.params
    src = params["src"]
    encrypted = False
    if params["content"]:
        try:
            data = base64.b64decode(params["content"], validate=True)
        except ValueError:
            module.fail_json(msg="content is not base64: give the bundle base64-encoded")
    elif not src or not os.path.isfile(src):
        module.fail_json(msg=f"state=restored needs src, an existing bundle file, or content; {src!r} is not one")
    elif is_age_file(src):
        encrypted = True
        if not params["identity"]:
            module.fail_json(msg=f"{src} is age-encrypted: give identity, the age identity file it was encrypted to")
        data = age_decrypt(module.get_bin_path("age", required=True), src, params["identity"])
    else:
        with open(src, "rb") as handle:
            data = handle.read()
    manifest, contents = read_bundle(data)
    root = params["root"]
    files = []
    for entry in manifest["files"]:
        target = os.path.join(root, entry["path"].lstrip("/"))
        mode = restore_mode(entry)
        body = contents[entry["path"]]
        changed = not same_file(target, body, entry["uid"], entry["gid"], mode)
        if changed and not module.check_mode:
            write_file(target, body, entry["uid"], entry["gid"], mode)
        files.append({"path": target, "uid": entry["uid"], "gid": entry["gid"], "mode": f"{mode:04o}",
                      "private_key": bool(entry.get("private_key")), "changed": changed})
    return {"changed": any(f["changed"] for f in files), "files": files, "encrypted": encrypted}


LADDER = (Failure(CertError),
          Failure(OSError, lambda exc: f"{exc.filename or 'a file'}: {exc.strerror}; run as root (become)"))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
            "files": {"type": "list", "elements": "path", "default": []},
            "dest": {"type": "path"},
            "recipients": {"type": "list", "elements": "str", "default": []},
            "src": {"type": "path"},
            "content": {"type": "str", "no_log": True},
            "identity": {"type": "path"},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True, mutually_exclusive=[("src", "content")])
    check_paths(module, ("dest", "src", "identity", "root"))
    result = run(module, lambda: make(module) if module.params["state"] == "present" else restore(module),
                 name="cert_bundle", ladder=LADDER)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
