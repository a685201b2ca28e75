"""Integration tests: lifeboat modules run through real Ansible against the real Docker engine.

`run_module("data_inventory", check=False, **args)` runs `ansible localhost -m
lifeboat.docker.NAME` with the JSON stdout callback and returns the module's result dict, so a
test sees exactly what a playbook would. The engine and images come from the test bench
(tests/testbed/setup.sh), which scripts/test.sh runs first.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Tests that read a repository directly import the collection from .venv/collections (linked to
# this checkout by scripts/venv.sh), as the unit tests do.
COLLECTIONS = ROOT / ".venv" / "collections"
if COLLECTIONS.is_dir() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
VENV_BIN = Path(sys.executable).parent
# The modules' TMPDIR: Ansible unpacks each module into a payload directory there, which a module
# killed on purpose (the SIGKILL tests) leaves behind; the session removes it all at its end.
MODULE_TMP = tempfile.mkdtemp(prefix="lbt-modtmp-", dir="/tmp")


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
    shutil.rmtree(MODULE_TMP, ignore_errors=True)


def _ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TMPDIR=MODULE_TMP,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )
    return env


def run_module(name: str, *, check: bool = False, diff: bool = False, expect_fail: bool = False,
               **args) -> dict:
    """Run lifeboat.docker.NAME on localhost with ARGS; return its result.

    Fails the test when the module failed, unless expect_fail is set (then the result of the
    failure is returned, with result["failed"] true).
    """
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
           "-m", f"lifeboat.docker.{name}"]
    if args:  # ansible-core 2.19 takes '-a {}' for raw parameters, which modules refuse
        cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ansible_env(), cwd=ROOT,
                          timeout=1800, check=False)
    try:
        doc = json.loads(proc.stdout)
        result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        pytest.fail(f"ansible gave no JSON result (rc={proc.returncode})\n"
                    f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    failed = bool(result.get("failed"))
    if failed and not expect_fail:
        pytest.fail(f"lifeboat.docker.{name} failed: {result.get('msg')}\n"
                    f"{result.get('exception', '')[-3000:]}")
    if expect_fail and not failed:
        pytest.fail(f"lifeboat.docker.{name} was expected to fail but returned: "
                    f"{json.dumps(result)[:3000]}")
    return result


@pytest.fixture(scope="session")
def docker_client():
    import docker

    client = docker.from_env()
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"no Docker engine answers ({exc}); run: bash tests/testbed/setup.sh")
    return client


@pytest.fixture()
def prefix() -> str:
    """A random name prefix, so tests' containers and volumes never collide."""
    return "lbt" + secrets.token_hex(3)


def docker_cli(*args: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run bash tests/testbed/setup.sh")
    return path
