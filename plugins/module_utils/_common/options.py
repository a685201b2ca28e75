# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The repository options every snapshot module takes, and opening a repository from them.

Store credentials have environment fallbacks as in the AWS tools; they are no_log and never
appear in results or messages.
"""

from __future__ import annotations

from typing import Any

from ansible.module_utils.basic import env_fallback

REPOSITORY_ARGS: dict[str, dict[str, Any]] = {
    "repository": {"type": "str", "default": "/var/backups/lifeboat"},
    # S3-compatible stores
    "endpoint_url": {"type": "str", "fallback": (env_fallback, ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])},
    "access_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_ACCESS_KEY_ID"])},
    "secret_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_SECRET_ACCESS_KEY"])},
    "session_token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["AWS_SESSION_TOKEN"])},
    "region": {"type": "str", "fallback": (env_fallback, ["AWS_REGION", "AWS_DEFAULT_REGION"])},
    # SFTP stores (OpenSSH)
    "ssh_identity_file": {"type": "path"},
    "ssh_known_hosts_file": {"type": "path"},
    # rclone stores
    "rclone_config": {"type": "path", "fallback": (env_fallback, ["RCLONE_CONFIG"])},
    # every store: uploads no faster than this (bytes a second, or with K/M/G: 512K, 10M)
    "upload_limit": {"type": "str"},
}

STORE_OPTION_NAMES = tuple(k for k in REPOSITORY_ARGS if k != "repository")


def store_options(params: dict[str, Any]) -> dict[str, Any]:
    """The store settings among a module's parameters (None where not given)."""
    return {name: params.get(name) for name in STORE_OPTION_NAMES}


ENCRYPT_ARGS: dict[str, dict[str, Any]] = {
    "encryption_recipients": {"type": "list", "elements": "str", "default": []},
}
IDENTITY_ARGS: dict[str, dict[str, Any]] = {
    "encryption_identity": {"type": "path"},
}


def relative_paths(params: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """A message naming the path options among NAMES that were given as relative paths, or None.

    A module runs in a temporary directory that Ansible removes afterwards: a relative path would
    be read or written there and be gone."""
    bad = [f"{name}={params[name]!r}" for name in names if params.get(name) and not str(params[name]).startswith("/")]
    if not bad:
        return None
    return (f"{', '.join(bad)}: give absolute paths on the host (e.g. /var/lib/lifeboat/...); a relative path "
            "would be taken inside the module's temporary directory, which is removed when the task ends")
