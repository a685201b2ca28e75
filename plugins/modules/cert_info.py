#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cert_info
short_description: Find TLS certificates and private keys on a Docker host and say when they expire
version_added: 0.1.0
description:
  - Looks under O(paths) (directories are walked; files ending in C(.pem), C(.crt), C(.cer), C(.cert),
    C(.key), C(.chain), named C(cert*), C(privkey*), C(fullchain*), C(chain*), or C(acme.json)) for
    PEM certificates and private keys, and reads Traefik's C(acme.json) (base64 certificates and keys
    per resolver).
  - For each certificate it reports the subject, the subject alternative names, the issuer, the
    expiry (not after), the days left, and which private key found belongs to it (by comparing public
    keys); for each key whether a certificate found belongs to it.
  - A certificate that expires in fewer than O(warn_days) days (or has expired) is also an Ansible
    warning. So are private keys others can read.
  - Private key material never leaves the host's openssl processes (it goes to them through stdin);
    results carry paths, owners, modes and certificate fields only.
requirements:
  - The C(openssl) command on the managed host (Debian package C(openssl)).
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.attributes.info
options:
  paths:
    description:
      - Files and directories to look in. Those that do not exist are listed in RV(missing).
    type: list
    elements: path
    required: true
  warn_days:
    description: Warn about certificates that expire in fewer days than this.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Find the certificates of nginx-proxy and Let's Encrypt
  lifeboat.docker.cert_info:
    paths: [/srv/nginx-proxy/certs, /etc/letsencrypt]
    warn_days: 21
  register: certs

- name: Show what expires soon
  ansible.builtin.debug:
    msg: "{{ certs.certificates | selectattr('expiring') | map(attribute='path') | list }}"
"""

RETURN = r"""
certificates:
  description: Every certificate found (intermediate certificates of a chain too, with RV(certificates[].leaf=false)).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /srv/nginx-proxy/certs/example.org.crt
      leaf: true
      subject: CN=example.org
      sans: ["DNS:example.org", "DNS:www.example.org"]
      issuer: CN=R11,O=Let's Encrypt,C=US
      not_after: "2027-01-20T10:00:00Z"
      days_left: 59
      expired: false
      expiring: false
      fingerprint: "AB:CD:..."
      key: /srv/nginx-proxy/certs/example.org.key
      key_matches: true
      uid: 0
      gid: 0
      mode: "0644"
  contains:
    path:
      description: The file (for acme.json, C(PATH#RESOLVER[N])).
      type: str
    leaf:
      description: The first certificate of its file (the others are its chain).
      type: bool
    subject:
      description: Subject (RFC 2253).
      type: str
    sans:
      description: Subject alternative names, as openssl prints them (C(DNS:NAME), C(IP Address:ADDR)).
      type: list
      elements: str
    issuer:
      description: Issuer (RFC 2253).
      type: str
    not_after:
      description: End of validity (UTC).
      type: str
    days_left:
      description: Whole days until it expires (negative once expired).
      type: int
    expired:
      description: Whether it has expired.
      type: bool
    expiring:
      description: Whether it expires in fewer than O(warn_days) days.
      type: bool
    fingerprint:
      description: SHA-256 fingerprint.
      type: str
    key:
      description: The private key found whose public key matches, or V(null).
      type: str
    key_matches:
      description: Whether a matching private key was found.
      type: bool
keys:
  description: Every private key found, with C(path), C(uid), C(gid), C(mode) and C(matches_certificate); never its content.
  returned: always
  type: list
  elements: dict
  sample: [{path: /srv/nginx-proxy/certs/example.org.key, uid: 0, gid: 0, mode: "0600", matches_certificate: true}]
files:
  description: The files that hold certificates or keys (what a bundle of them must contain).
  returned: always
  type: list
  elements: str
missing:
  description: Paths of O(paths) that do not exist.
  returned: always
  type: list
  elements: str
problems:
  description: Files that could not be read or are unsafe (keys others can read), each with C(path) and C(problem).
  returned: always
  type: list
  elements: dict
"""

from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._certs.bundle import OpenSSL, scan
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import run


def main() -> None:
    module = AnsibleModule(
        argument_spec={"paths": {"type": "list", "elements": "path", "required": True},
                       "warn_days": {"type": "int", "default": 30}},
        supports_check_mode=True)
    openssl = module.get_bin_path("openssl")
    if not openssl:
        module.fail_json(msg="the openssl command is not installed on this host: apt-get install openssl")
    result = run(module, lambda: scan(module.params["paths"], OpenSSL(openssl), datetime.now(timezone.utc),
                                      module.params["warn_days"]), name="cert_info")
    for cert in result["certificates"]:
        if cert["expired"]:
            module.warn(f"certificate {cert['path']} ({cert['subject']}) expired on {cert['not_after']}: renew it")
        elif cert["expiring"] and cert["leaf"]:
            module.warn(f"certificate {cert['path']} ({cert['subject']}) expires in {cert['days_left']} days "
                        f"({cert['not_after']}): renew it")
    for problem in result["problems"]:
        module.warn(f"{problem['path']}: {problem['problem']}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
