"""The checkout's ansible.cfg, as Ansible itself reads it (scripts/lifeboat.sh and scripts/test.sh
point ANSIBLE_CONFIG at it). Ansible ignores a key it does not know or finds in the wrong section,
so the file's text alone would not show a misspelt setting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def _ansible_config_cli() -> str:
    """The checkout's venv's ansible-config, else the one beside this Python or on PATH (a checkout
    without .venv, with Ansible installed otherwise)."""
    for cli in (ROOT / ".venv" / "bin" / "ansible-config", Path(sys.executable).parent / "ansible-config"):
        if cli.is_file():
            return str(cli)
    found = shutil.which("ansible-config")
    if not found:
        pytest.fail("ansible-config is not installed: run `bash scripts/venv.sh dev` (or install ansible-core)")
    return found


def _changed_settings() -> dict[str, str]:
    cfg = ROOT / "ansible.cfg"
    proc = subprocess.run([_ansible_config_cli(), "dump", "--only-changed", "-c", str(cfg)],
                          capture_output=True, text=True, env=dict(os.environ, ANSIBLE_CONFIG=str(cfg)),
                          cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep and f"({cfg})" in name:  # set by this file, not by the environment
            settings[name.split("(", 1)[0]] = value.strip()
    return settings


def test_controller_polls_every_10_ms():
    # Ansible's default, 0.001, wakes the controller 1,000 times a second while a module runs.
    assert _changed_settings().get("DEFAULT_INTERNAL_POLL_INTERVAL") == "0.01"
