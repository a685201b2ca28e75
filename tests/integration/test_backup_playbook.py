"""The main job, as the README gives it: `bash scripts/lifeboat.sh backup`.

It runs against a throw-away engine (fixtures/engine.py) so that it backs up only what this test
made there and stops nothing else on the machine. Its volumes live under that engine's own data
root, which the modules read directly, as they read /var/lib/docker on a real host.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fixtures.engine import ThrowawayEngine

from conftest import ROOT, run_module

BUSYBOX = "lifeboat-test/busybox:latest"
LOOP = 'trap "exit 0" TERM; while :; do sleep 1; done'


@pytest.fixture(scope="module")
def engine():
    with ThrowawayEngine() as eng:
        eng.load_image(BUSYBOX)
        yield eng


def test_main_job_backs_up_the_host_and_prints_a_summary(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_STATE_DIR", str(tmp_path / "state"))
    client = engine.client
    client.volumes.create("appdata")
    writer = client.containers.run(BUSYBOX, ["sh", "-c", f"echo payload > /data/file; {LOOP}"], name="app",
                                   detach=True, network_mode="none", volumes={"appdata": {"bind": "/data", "mode": "rw"}})
    # a data container with an anonymous volume, as `docker create -v /keep` makes it
    client.api.create_container(BUSYBOX, ["true"], name="keeper", volumes=["/keep"],
                                host_config=client.api.create_host_config(network_mode="none"))
    try:
        repo = tmp_path / "repo"
        env = dict(os.environ, ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "lifeboat.sh"), "backup",
             "-e", f"lifeboat_docker_host={engine.url}", "-e", f"lifeboat_repository={repo}"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = proc.stdout
        assert "Snapshot " in out and f" in {repo}" in out
        assert "volume:appdata: stop" in out and "downtime app" in out
        assert "Total: " in out
        writer.reload()
        assert writer.status == "running"

        listing = run_module("snapshot_info", repository=str(repo), verify="restore")
        assert len(listing["snapshots"]) == 1 and listing["problems"] == []
        snap = listing["snapshots"][0]
        assert "volume:appdata" in snap["units"] and snap["complete"]
        anonymous = [u for u in snap["units"] if u.startswith("volume:") and u != "volume:appdata"]
        assert len(anonymous) == 1, snap["units"]
        manifest = json.loads((repo / "snapshots" / f"{snap['id']}.json").read_text())
        assert manifest["tags"] == ["lifeboat"]
    finally:
        for name in ("app", "keeper"):
            try:
                client.containers.get(name).remove(force=True, v=True)
            except Exception:  # noqa: BLE001 - best effort in a throw-away engine
                pass
