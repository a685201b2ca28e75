# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by every module that talks to the Docker engine."""

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The engine's API address, as C(unix:///PATH) or C(tcp://HOST:PORT).
      - If not set, the value of the E(DOCKER_HOST) environment variable is used, and without it
        the local socket C(unix:///var/run/docker.sock).
    type: str
    aliases: [docker_url]
  timeout:
    description:
      - Seconds to wait for an answer from the engine's API.
      - If not set, E(DOCKER_TIMEOUT) is used, else 60.
    type: int
requirements:
  - Docker SDK for Python >= 5.0 (Debian 12's C(python3-docker) or C(pip install docker)) on the
    managed host.
notes:
  - The modules talk to the engine on the managed host, so that host needs the Docker SDK for Python.
"""
