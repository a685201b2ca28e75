"""Verify the docker_engine role on each Molecule platform (collected by pytest-testinfra).

Each host is a systemd Debian container with its own nested Docker engine: the test loads
an image built on the test bench into that engine and runs a container with it.
"""

from __future__ import annotations

import subprocess

import pytest

# The data path, faithful captures, SQLite, and the clients of the sftp:// and rclone:// stores.
TOOLS = ["tar", "zstd", "age", "setfacl", "getfattr", "sqlite3", "ssh", "rclone"]


def test_docker_service_running_and_enabled(host):
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_engine_answers(host):
    out = host.check_output("docker version --format '{{.Server.Version}}'")
    assert out and out[0].isdigit()


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_installed(host, tool):
    assert host.exists(tool), f"{tool} missing on the target"


def test_python_docker_sdk(host):
    version = host.check_output("python3 -c 'import docker; print(docker.__version__)'")
    assert int(version.split(".")[0]) >= 5


def test_python_boto3_for_s3_repositories(host):
    version = host.check_output("python3 -c 'import boto3; print(boto3.__version__)'")
    assert int(version.split(".")[0]) >= 1


def test_nested_engine_runs_a_container(host):
    """Load the bench's busybox into the nested engine, then run it there."""
    name = host.backend.get_hostname()
    saved = subprocess.run(
        ["docker", "save", "lifeboat-test/busybox:latest"], check=True, capture_output=True
    ).stdout
    subprocess.run(
        ["docker", "exec", "-i", name, "docker", "load"], input=saved, check=True, capture_output=True
    )
    out = host.check_output(
        "docker run --rm --network none lifeboat-test/busybox:latest sh -c 'echo hello from $(uname -s)'"
    )
    assert out == "hello from Linux"
