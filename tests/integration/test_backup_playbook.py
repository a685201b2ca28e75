"""The main job, as the README gives it: `bash scripts/lifeboat.sh backup`, and the backup role behind it.

It runs against a throw-away engine (fixtures/engine.py) so that it backs up only what this test
made there and stops nothing else on the machine. Its volumes live under that engine's own data
root, which the modules read directly, as they read /var/lib/docker on a real host. A unit is made to
fail with a pre hook that exits 3 (a real failure of the snapshot module, not a mock).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from fixtures.engine import ThrowawayEngine

from conftest import ROOT, VENV_BIN, run_module

BUSYBOX = "lifeboat-test/busybox:latest"
LOOP = 'trap "exit 0" TERM; while :; do sleep 1; done'


@pytest.fixture(scope="module")
def engine():
    with ThrowawayEngine() as eng:
        eng.load_image(BUSYBOX)
        yield eng


def _remove(client, *names):
    for name in names:
        try:
            client.containers.get(name).remove(force=True, v=True)
        except Exception:  # noqa: BLE001 - best effort in a throw-away engine
            pass


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
        # one aligned line per unit: id, strategy, size, stored, ratio, seconds, downtime
        assert re.search(r"^\s*volume:appdata +stop +\d+ B +\d+ B +[\d.]+x +[\d.]+ +app [\d.]+ s$", out, re.M), out
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
        _remove(client, "app", "keeper")


def _writer(client, name, volume, labels=None):
    return client.containers.run(BUSYBOX, ["sh", "-c", f"echo {name} > /data/{name}; {LOOP}"], name=name,
                                 detach=True, network_mode="none", labels=labels or {},
                                 volumes={volume: {"bind": "/data", "mode": "rw"}})


def _playbook(playbook, engine, tmp_path, args, *extra):
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               LIFEBOAT_STATE_DIR=str(tmp_path / "state"))
    args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": str(tmp_path / "repo"), **args}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", playbook,
                           "-e", json.dumps(args), *extra],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)


def _backup(engine, tmp_path, *extra):
    return _playbook("playbooks/backup.yml", engine, tmp_path,
                     {"lifeboat_retention": {"keep_last": 1}, "backup_metrics_file": str(tmp_path / "lifeboat.prom"),
                      "backup_report_file": str(tmp_path / "report.json")}, *extra)


def _metric(text, name, unit=None):
    label = f',unit="{unit}"' if unit else ""
    match = re.search(rf'^lifeboat_backup_{name}{{repository="[^"]*"{label}}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


def test_failed_unit_fails_the_play_after_the_others_and_reports(engine, tmp_path):
    client = engine.client
    for volume in ("appdata", "workdata"):
        client.volumes.create(volume)
    app = _writer(client, "app", "appdata")
    worker = _writer(client, "worker", "workdata")
    repo = tmp_path / "repo"
    try:
        first = _backup(engine, tmp_path)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        prom = (tmp_path / "lifeboat.prom").read_text()
        t1 = _metric(prom, "unit_last_success_timestamp_seconds", "volume:workdata")
        assert t1 and _metric(prom, "success") == 1 and _metric(prom, "unit_bytes", "volume:appdata") > 0
        assert "# TYPE lifeboat_backup_unit_duration_seconds gauge" in prom

        # The worker's pre hook now fails: its unit fails, the app's unit is still captured.
        worker.remove(force=True)
        worker = _writer(client, "worker", "workdata", labels={"lifeboat.pre": "exit 3"})
        second = _backup(engine, tmp_path)
        out = second.stdout
        assert second.returncode != 0, out[-3000:]
        assert re.search(r"^\s*volume:workdata +FAILED", out, re.M), out[-3000:]
        assert re.search(r"^\s*volume:appdata +stop ", out, re.M), out[-3000:]
        assert "The backup of localhost is not complete: unit volume:workdata failed" in out
        for container in (app, worker):
            container.reload()
            assert container.status == "running", container.name
        prom = (tmp_path / "lifeboat.prom").read_text()
        assert _metric(prom, "unit_success", "volume:workdata") == 0
        assert _metric(prom, "unit_last_success_timestamp_seconds", "volume:workdata") == t1
        assert _metric(prom, "unit_last_success_timestamp_seconds", "volume:appdata") > t1
        assert _metric(prom, "success") == 0 and _metric(prom, "failed_units") == 1
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["complete"] is False and report["failed_units"][0]["id"] == "volume:workdata"
        assert report["units"]["volume:appdata"]["strategy"] == "stop"
        assert any("volume:workdata" in p for p in report["problems"])
        assert f"Every other unit was captured (snapshot {report['snapshot_id']})" in out

        # Only the failing unit asked for: nothing was captured, and the message says so.
        only = _backup(engine, tmp_path, "-e", '{"backup_units": ["volume:workdata"]}')
        assert only.returncode != 0, only.stdout[-3000:]
        assert "No unit was captured and no snapshot was written" in only.stdout, only.stdout[-3000:]
        assert "Every other unit" not in only.stdout

        # Fixed: the third run is complete, and keep_last 1 forgets the two earlier snapshots.
        worker.remove(force=True)
        worker = _writer(client, "worker", "workdata")
        third = _backup(engine, tmp_path)
        assert third.returncode == 0, third.stdout[-3000:]
        assert "Pruned: 2 snapshots forgotten" in third.stdout, third.stdout[-3000:]
        listing = run_module("snapshot_info", repository=str(repo))
        assert len(listing["snapshots"]) == 1 and listing["snapshots"][0]["complete"]
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["complete"] is True and len(report["pruned"]) == 2
        assert report["totals"]["captured"] == 2 and report["totals"]["failed"] == 0
    finally:
        _remove(client, "app", "worker")


def test_backup_units_must_exist(engine, tmp_path):
    proc = _backup(engine, tmp_path, "-e", '{"backup_units": ["volume:nosuch"]}')
    assert proc.returncode != 0
    assert "backup_units names units this host does not have: volume:nosuch" in proc.stdout


def _volume_files(client, volume):
    out = client.containers.run(BUSYBOX, ["sh", "-c", "cd /v && find . -type f | sort | xargs -r cat"],
                                remove=True, network_mode="none", volumes={volume: {"bind": "/v", "mode": "ro"}})
    return out.decode()


def test_restore_shows_the_plan_then_restores_with_confirm(engine, tmp_path):
    client = engine.client
    client.volumes.create("shop", labels={"com.example.tier": "gold"})
    shop = _writer(client, "shopapp", "shop")
    try:
        assert _backup(engine, tmp_path).returncode == 0
        # the data is damaged after the backup
        shop.exec_run(["sh", "-c", "rm /data/shopapp; echo damaged > /data/other"])
        before = _volume_files(client, "shop")
        assert "shopapp" not in before

        shown = _playbook("playbooks/restore.yml", engine, tmp_path, {"restore_units": ["volume:shop"]})
        assert shown.returncode == 0, shown.stdout[-3000:]
        assert "would restore" in shown.stdout
        assert "volume:shop -> volume shop: not empty: REPLACED (the current content is kept aside); " \
               "stops shopapp for the swap" in shown.stdout, shown.stdout[-3000:]
        assert "run again with -e restore_confirm=true" in shown.stdout
        assert _volume_files(client, "shop") == before  # nothing changed

        # into another volume first (a new one: created with the recorded labels), then in place
        done = _playbook("playbooks/restore.yml", engine, tmp_path,
                         {"restore_units": ["volume:shop"], "restore_targets": {"volume:shop": "shop_check"},
                          "restore_confirm": True})
        assert done.returncode == 0, done.stdout[-3000:]
        assert _volume_files(client, "shop_check") == "shopapp\n"
        assert client.volumes.get("shop_check").attrs["Labels"] == {"com.example.tier": "gold"}

        done = _playbook("playbooks/restore.yml", engine, tmp_path,
                         {"restore_units": ["volume:shop"], "restore_confirm": True, "restore_snapshot": "2999-01-01"})
        assert done.returncode == 0, done.stdout[-3000:]
        assert re.search(r"volume:shop -> volume shop: 1 files, 8 B, verified; previous content kept at "
                         r"shop\.pre-restore-\S+; downtime shopapp", done.stdout), done.stdout[-3000:]
        assert _volume_files(client, "shop") == "shopapp\n"
        shop.reload()
        assert shop.status == "running"

        missing = _playbook("playbooks/restore.yml", engine, tmp_path, {"restore_snapshot": "2000-01-01"})
        assert missing.returncode != 0 and "matching restore_snapshot=2000-01-01" in missing.stdout

        # A unit that fails (its object damaged in the repository after the backup) fails the
        # play, after the other unit was restored; a second run fails again.
        client.volumes.create("shopcache")
        cache = _writer(client, "shopcache", "shopcache")
        assert _backup(engine, tmp_path).returncode == 0
        latest = run_module("snapshot_info", repository=str(tmp_path / "repo"))["latest"]
        manifest = json.loads((tmp_path / "repo" / "snapshots" / f"{latest}.json").read_text())
        sha = next(u for u in manifest["units"] if u["id"] == "volume:shopcache")["object"]["sha256"]
        damaged = tmp_path / "repo" / "objects" / sha[:2] / sha
        damaged.write_bytes(damaged.read_bytes()[:-8] + b"damaged!")
        shop.exec_run(["sh", "-c", "echo damaged again > /data/shopapp"])
        for _run in range(2):
            done = _playbook("playbooks/restore.yml", engine, tmp_path,
                             {"restore_units": ["volume:shop", "volume:shopcache"], "restore_confirm": True})
            assert done.returncode != 0, done.stdout[-3000:]
            assert "The restore of localhost is not complete: volume:shopcache: " in done.stdout, done.stdout[-3000:]
            assert "damaged" in done.stdout
            assert _volume_files(client, "shop") == "shopapp\n"  # the other unit was restored
            for container in (shop, cache):
                container.reload()
                assert container.status == "running", container.name
    finally:
        _remove(client, "shopapp", "shopcache")
        for volume in client.volumes.list():
            if volume.name.startswith("shop"):
                volume.remove(force=True)
