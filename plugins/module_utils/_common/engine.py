# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The one place that connects to the Docker engine.

Every lifeboat module that talks to the engine takes the same connection options
(docker_host, timeout, with DOCKER_HOST / DOCKER_TIMEOUT fallbacks) and gets its client here,
so that a missing SDK or an unreachable engine fails the same, clear way everywhere.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

try:
    import docker  # type: ignore[import-not-found]
    from docker.errors import DockerException  # type: ignore[import-not-found]

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - depends on the target host
    docker = None
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):  # type: ignore[no-redef]
        """Stand-in so that except clauses still parse without the SDK."""


DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_TIMEOUT = 60
MIN_SDK_VERSION = (5, 0)

DOCKER_COMMON_ARGS: dict[str, dict[str, Any]] = {
    "docker_host": {"type": "str", "aliases": ["docker_url"]},
    "timeout": {"type": "int"},
}


class EngineUnreachable(Exception):
    """The engine did not answer: the message names the address tried and what to check."""


def connection_settings(params: dict[str, Any], environ: dict[str, str] | None = None) -> tuple[str, int]:
    """Resolve (base_url, timeout) from module options, then the environment, then defaults."""
    env = os.environ if environ is None else environ
    base_url = params.get("docker_host") or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    timeout = params.get("timeout")
    if timeout is None:
        raw = env.get("DOCKER_TIMEOUT")
        try:
            timeout = int(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise ValueError(f"DOCKER_TIMEOUT={raw!r} is not a whole number of seconds") from None
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    return base_url, timeout


def unreachable_hint(base_url: str) -> str:
    """What to check when nothing answers at base_url."""
    if base_url.startswith("unix://"):
        path = base_url[len("unix://"):]
        if not os.path.exists(path):
            return (f"the socket {path} does not exist: is the Docker engine installed and running "
                    "(systemctl status docker), or is DOCKER_HOST / docker_host pointing elsewhere?")
        return (f"the socket {path} exists but the engine did not answer: is dockerd running, "
                "and may this user use the socket (root or the docker group)?")
    return (f"nothing answered at {base_url}: check that the engine listens there, that the "
            "address and port are right, and that no firewall is in the way")


def sdk_version_ok(version: str) -> bool:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= MIN_SDK_VERSION


def connect(params: dict[str, Any]):
    """A docker.DockerClient that has answered a ping, or EngineUnreachable.

    The caller must have checked HAS_DOCKER (see require_sdk).
    """
    base_url, timeout = connection_settings(params)
    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout, version="auto")
        client.ping()
    except DockerException as exc:
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {base_url}: {exc}; {unreachable_hint(base_url)}"
        ) from exc
    except Exception as exc:  # requests' connection errors and friends
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {base_url}: {exc}; {unreachable_hint(base_url)}"
        ) from exc
    return client


def require_sdk(module) -> None:
    """Fail the AnsibleModule clearly when the Docker SDK for Python is missing or too old."""
    from ansible.module_utils.basic import missing_required_lib

    if not HAS_DOCKER:
        module.fail_json(
            msg=missing_required_lib("docker (Docker SDK for Python >= 5.0; Debian: python3-docker)"),
            exception=DOCKER_IMPORT_ERROR,
        )
    if not sdk_version_ok(docker.__version__):
        module.fail_json(
            msg=(f"the Docker SDK for Python on this host is {docker.__version__}; lifeboat.docker "
                 "needs >= 5.0: upgrade python3-docker or `pip install 'docker>=5'`")
        )


def client_for(module):
    """require_sdk + connect, turning errors into fail_json."""
    require_sdk(module)
    try:
        return connect(module.params)
    except (EngineUnreachable, ValueError) as exc:
        module.fail_json(msg=str(exc))
    return None  # unreachable: fail_json exits
