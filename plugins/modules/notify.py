#!/usr/bin/python
# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: notify
short_description: Send a notification through Apprise URLs and ping a dead-man switch
version_added: 0.1.0
description:
  - Sends a title and a body to each Apprise URL of O(urls) (e-mail with C(mailto://) and C(mailtos://),
    C(ntfy://), C(slack://), C(matrix://), C(gotify://), C(json://) webhooks and the other services
    Apprise knows), each on its own, so that one broken target is named and the others still get it.
  - Pings a healthchecks.io-style dead-man switch (O(ping_url)) with a plain HTTP request, with
    O(ping_body) as the ping's body when given.
  - URLs carry credentials; they are never returned or printed as given (only scheme and host name),
    and errors are cleaned of them.
  - "The role lifeboat.docker.backup runs it on the controller (C(delegate_to: localhost)): a host that
    is down cannot report itself, and the URLs stay on the controller."
requirements:
  - apprise (Python library; Debian package C(apprise), PyPI C(apprise)) where the module runs, for O(urls)
author:
  - lifeboat.docker developers (@lifeboat)
extends_documentation_fragment:
  - lifeboat.docker.attributes.no_diff
attributes:
  check_mode:
    support: full
    description: Sends and pings nothing; reports what it would send to.
  idempotent:
    support: none
    description: Every run sends.
options:
  urls:
    description: Apprise URLs to send to (keep them in a vault; they are never shown).
    type: list
    elements: str
    default: []
  title:
    description: The notification's title (an e-mail's subject).
    type: str
    default: lifeboat
  body:
    description: The notification's text.
    type: str
    default: ""
  ping_url:
    description:
      - A dead-man switch URL to request (healthchecks.io, Uptime Kuma push, Cronitor, ...), such as
        C(https://hc-ping.com/UUID/start), C(https://hc-ping.com/UUID) or C(https://hc-ping.com/UUID/fail).
    type: str
  ping_body:
    description: Sent with the ping (as a POST body); empty sends a plain GET.
    type: str
    default: ""
  timeout:
    description: Seconds to wait for a ping's answer.
    type: int
    default: 10
"""

EXAMPLES = r"""
- name: Tell the team that the backup failed, and ping the dead-man switch
  lifeboat.docker.notify:
    urls: "{{ lifeboat_notify_urls }}"
    title: "lifeboat: backup of {{ inventory_hostname }} failed"
    body: "{{ summary }}"
    ping_url: "https://hc-ping.com/{{ vault_hc_uuid }}/fail"
    ping_body: "{{ summary }}"
  delegate_to: localhost
  register: sent
  failed_when: false
"""

RETURN = r"""
sent:
  description: One entry per URL of O(urls), then one for O(ping_url), in that order.
  returned: always
  type: list
  elements: dict
  sample:
    - {target: "mailto://smtp.example.org/***", ok: true, error: ""}
    - {target: "https://hc-ping.com/***", ok: false, error: "the ping failed: timed out"}
  contains:
    target:
      description: The URL with its credentials masked (scheme and host name).
      type: str
    ok:
      description: Whether it was delivered.
      type: bool
    error:
      description: Why not (cleaned of the URL's secrets).
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lifeboat.docker.plugins.module_utils._notify import send as _notify
from ansible_collections.lifeboat.docker.plugins.module_utils._common.runner import run


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "urls": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "title": {"type": "str", "default": "lifeboat"},
            "body": {"type": "str", "default": ""},
            "ping_url": {"type": "str", "no_log": True},
            "ping_body": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    params = module.params
    urls = [u for u in params["urls"] if u and u.strip()]
    ping_url = (params["ping_url"] or "").strip()
    if module.check_mode:
        targets = [_notify.mask(u) for u in urls] + ([_notify.mask(ping_url)] if ping_url else [])
        module.exit_json(changed=False, sent=[{"target": t, "ok": True, "error": "check mode: not sent"} for t in targets])

    def body() -> list:
        sent = _notify.send(urls, params["title"], params["body"]) if urls else []
        if ping_url:
            sent.append(_notify.ping(ping_url, params["ping_body"], params["timeout"]))
        return sent

    sent = run(module, body, name="notify")
    failed = _notify.failures(sent)
    if failed:
        module.fail_json(msg=f"{len(failed)} of {len(sent)} notifications failed: " + "; ".join(failed)
                         + ". Check the URL (in your vault) and that the service answers from the controller.",
                         sent=sent, changed=bool(len(failed) < len(sent)))
    module.exit_json(changed=bool(sent), sent=sent)


if __name__ == "__main__":
    main()
