"""Runbook drill: the Markdown runbook of a rebuild ("Rebuilding HOST by hand") works when a person
runs its shell blocks in order, as written.

Host A is a throw-away engine (fixtures/engine.py) with a small self-hosted app
(fixtures/dr_stacks.py, SelfHostedApp): PostgreSQL with its password in its environment and a
table of known size, a busybox web server on the same user-defined network, a named volume with
the site's files, and one bind-mounted config FILE (mode 0640, read-only in the web container).
It is backed up with the real backup playbook, as test_dr_rebuild's Case.backup does (encrypted
to an age key, include_images: there is no registry, the empty engine B loads the images from the
snapshot). Then A is destroyed (its engine stopped, its data root and host directories removed).

Engine B is a new, empty throw-away engine. The module lifeboat.docker.rebuild (step plan)
against B returns the runbook; the test runs every ```sh block of it verbatim, in order, in ONE
`bash -e -o pipefail` process (a person pastes them into one root shell: variables and functions
of an earlier block are used by later ones), with DOCKER_HOST pointing at B, KEY (which the
runbook lets the operator set) pointing at the test's age key, and stdin closed (no prompt can be
answered). The ONE block left out is that of "## 1. Engine and tools": it installs Docker with
apt-get and starts it with systemctl; engine B stands in for that engine (this machine is no
fresh Debian host, and the test must not install or start the system's engine). Nothing else is
edited, answered or done by hand: what the drill needs beyond the runbook is a defect of the
runbook (plugins/module_utils/_rebuild/plan.py), not of the test.

Then B is checked as the role's verify does: every container the snapshot recorded as running
runs, the table's row count equals A's, the volume's files are equal, the config file is back as a
regular file with its content and mode 0640 (and the web container reads it), and the database
password appears nowhere in the runbook.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fixtures.dr_stacks import SelfHostedApp
# engines is a fixture: importing it makes pytest use it here
from test_dr_rebuild import Case, engines  # noqa: F401 pylint: disable=unused-import

from conftest import run_module

# The ERR trap bash reads before the script (BASH_ENV): names the line of the command that failed,
# so a failure points at the runbook block without changing a block.
_TRAP = 'trap \'echo "drill: the command at line $LINENO of the runbook script failed (exit $?)" >&2\' ERR\n'


def sh_blocks(markdown: str) -> list[tuple[str, str]]:
    """(section heading, code) of every ```sh block of MARKDOWN, in order."""
    blocks, section, code = [], "", None
    for line in markdown.splitlines():
        if code is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif line.strip() == "```sh":
                code = []
        elif line.strip() == "```":
            blocks.append((section, "\n".join(code) + "\n"))
            code = None
        else:
            code.append(line)
    assert code is None, "the runbook has a ```sh block that is never closed"
    return blocks


@pytest.fixture()
def workdir():
    """The repository, the age key, the state directory and A's host directories (the bind-mounted
    config file among them) live here; removed at the end whatever happened. The runbook and the
    drill's output stay in tmp_path for a look after a failure."""
    path = Path(tempfile.mkdtemp(prefix="lbt-drill-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_runbook_rebuilds_the_host_when_its_blocks_run_in_order(engines, workdir, tmp_path, prefix):
    """Back up A, destroy it, run the runbook's ```sh blocks on the empty engine B, check B.

    Left out: the one block of "## 1. Engine and tools" (apt-get install docker.io ..., systemctl
    enable --now docker). It installs and starts the engine, and engine B, a throw-away dockerd
    that DOCKER_HOST points at, stands in for it: this machine is not a fresh Debian host, and the
    test must not install packages or touch the system's engine. Every other block runs verbatim."""
    started = time.monotonic()
    case = Case(workdir, "runbook drill").with_encryption()
    key = workdir / "age.key"
    host_a = engines(*SelfHostedApp.images)
    app = SelfHostedApp(host_a.client, prefix, str(workdir / "site")).build()
    before = app.state()
    assert before["rows"] == str(SelfHostedApp.ROWS) and len(before["files"]) >= 3
    running = sorted(c.name for c in host_a.client.containers.list())
    assert running == sorted([app.db, app.web])

    snap = case.backup(host_a)
    assert snap["complete"] and snap["encrypted"], snap
    host_a.stop()  # A's engine and data root are gone
    app.forget_host_paths()  # and its host directories: the config file with its directory
    assert not os.path.exists(app.config)

    host_b = engines()
    plan = run_module("rebuild", docker_host=host_b.url, repository=case.repo, host=snap["host"],
                      encryption_identity=str(key), step="plan")
    text = plan["runbook"]
    (tmp_path / "runbook.md").write_text(text, encoding="utf-8")
    assert app.password not in text

    blocks = sh_blocks(text)
    left_out = [code for section, code in blocks if section.startswith("1. ")]
    assert len(left_out) == 1 and "apt-get install" in left_out[0] and "systemctl" in left_out[0], left_out
    script = "".join(code for section, code in blocks if not section.startswith("1. "))
    assert app.password not in script
    script_path = tmp_path / "runbook.sh"
    script_path.write_text(script, encoding="utf-8")
    trap_path = tmp_path / "trap.sh"
    trap_path.write_text(_TRAP, encoding="utf-8")
    env = dict(os.environ, DOCKER_HOST=host_b.url, KEY=str(key), BASH_ENV=str(trap_path))
    env.pop("DOCKER_CONTEXT", None)
    drill_started = time.monotonic()
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", str(script_path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600, check=False)
    drill_seconds = time.monotonic() - drill_started
    (tmp_path / "runbook.out").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr, encoding="utf-8")
    failed_at = ""
    match = re.search(r"at line (\d+) of the runbook script", proc.stderr)
    if match:
        failed_at = script.splitlines()[int(match.group(1)) - 1]
    assert proc.returncode == 0, (f"the runbook failed (exit {proc.returncode}) at: {failed_at}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-4000:]}\n"
                                  f"runbook: {tmp_path / 'runbook.md'}")
    assert app.password not in proc.stdout + proc.stderr

    # As the role's verify checks: what ran on A runs on B (healthy where it has a healthcheck) ...
    client = host_b.client
    deadline = time.monotonic() + 120
    while True:
        states = {}
        for c in client.containers.list(all=True):
            health = (c.attrs["State"].get("Health") or {}).get("Status")
            states[c.name] = (c.status, health)
        waiting = [n for n in running if states.get(n, ("missing",))[0] != "running"
                   or states[n][1] not in (None, "healthy")]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not waiting, states
    # ... and the data is what A had.
    app.client = client
    after = app.state()
    assert after["rows"] == before["rows"]
    assert after["files"] == before["files"]
    st = os.lstat(app.config)
    assert stat.S_ISREG(st.st_mode), "the config file came back as something else than a regular file"
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert after["config"] == before["config"] == SelfHostedApp.CONFIG
    assert app.served() == before["files"]["index.html"]
    assert app.config_in_web() == SelfHostedApp.CONFIG
    print(f"\nrunbook drill: {len(blocks) - 1} blocks run in {drill_seconds:.1f} s; "
          f"whole case {time.monotonic() - started:.1f} s")
