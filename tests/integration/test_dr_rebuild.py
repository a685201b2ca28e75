"""Disaster recovery end to end: back up host A, destroy A, rebuild on a fresh host B, verify.

The "hosts" are throw-away engines (fixtures/engine.py: a separate dockerd with its own data root
in its own network namespace), not machines or systemd containers, so that a case takes a minute,
not ten: A is built and backed up with the real playbooks (backup.yml with include_images, so
that B, whose image store starts empty, gets every image from the snapshot: there is no
registry), then A's engine is stopped and its data root deleted, A's host directories removed;
B is a new, empty engine, rebuilt by playbooks/dr_rebuild.yml (dr_rebuild_install_engine=false:
the engine step is the Molecule scenario's, on real Debian hosts). Both engines share this
machine's file system, so host paths (bind mounts) are restored where A had them, under
temporary directories of the test.

Each case prints the recovery time per step (from the role's JSON report) and checks that a
second run changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading

import pytest
from fixtures.dr_stacks import Aggregator, JobPlatform, TwoApps
from fixtures.engine import ThrowawayEngine
from fixtures.openease import OpenEaseStack

from conftest import ROOT, VENV_BIN, require_tool, run_module


def _playbook(playbook: str, args: dict, state_dir: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               LIFEBOAT_STATE_DIR=state_dir)
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", playbook,
                           "-e", json.dumps(args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout, check=False)


def _recap_changed(output: str) -> int:
    match = re.search(r"localhost\s+:\s+ok=\d+\s+changed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1))


class Case:
    """One "backup A, destroy A, rebuild on B" run, with its repository and report."""

    def __init__(self, tmp_path, name: str) -> None:
        self.tmp = tmp_path
        self.name = name
        self.repo = str(tmp_path / "repo")
        self.state = str(tmp_path / "state")
        os.makedirs(self.state, exist_ok=True)
        self.identity = self.recipient = None

    def with_encryption(self) -> "Case":
        age_keygen = require_tool("age-keygen")
        key = self.tmp / "age.key"
        subprocess.run([age_keygen, "-o", str(key)], check=True, capture_output=True)
        self.identity = key.read_text()
        self.recipient = re.search(r"public key: (age1\S+)", self.identity).group(1)
        return self

    def backup(self, engine: ThrowawayEngine, **extra) -> dict:
        args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": self.repo, "lifeboat_include_images": True,
                "backup_compression_level": 1, **extra}
        if self.recipient:
            args["lifeboat_encryption_recipients"] = [self.recipient]
        proc = _playbook("playbooks/backup.yml", args, self.state)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        listing = run_module("snapshot_info", repository=self.repo)
        return listing["snapshots"][0]

    def rebuild(self, engine: ThrowawayEngine, host: str, **extra) -> tuple[subprocess.CompletedProcess, dict]:
        report_dir = str(self.tmp / "report")
        args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": self.repo, "dr_rebuild_lost_host": host,
                "dr_rebuild_install_engine": False, "dr_rebuild_report_dir": report_dir,
                "dr_rebuild_wait_timeout": 180, **extra}
        if self.identity:
            args["dr_rebuild_encryption_identity_content"] = self.identity
        proc = _playbook("playbooks/dr_rebuild.yml", args, self.state)
        report = {}
        path = os.path.join(report_dir, f"report-{host}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                report = json.load(fh)
        return proc, report

    def rebuild_twice(self, engine: ThrowawayEngine, host: str, **extra) -> dict:
        proc, report = self.rebuild(engine, host, **extra)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        print(f"\nrecovery time of {self.name} (seconds per step):")
        for step in report["steps"]:
            print(f"  {step['step']:<17} {float(step['seconds']):7.1f}")
        print(f"  {'total':<17} {float(report['total_seconds']):7.1f}")
        assert all(s["ok"] for s in report["services"]), report["services"]
        again, report2 = self.rebuild(engine, host, **extra)
        assert again.returncode == 0, again.stdout[-6000:]
        assert _recap_changed(again.stdout) == 0, again.stdout[-6000:]
        assert report2["changed_steps"] == [], report2["changed_steps"]
        runbook = os.path.join(self.tmp / "report", f"runbook-{host}.md")
        with open(runbook, encoding="utf-8") as fh:
            report["runbook"] = fh.read()
        return report


def _host_of(snapshot: dict) -> str:
    return snapshot["host"]


def _no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


@pytest.fixture()
def engines():
    made: list[ThrowawayEngine] = []

    def new(*images: str) -> ThrowawayEngine:
        eng = ThrowawayEngine().start()
        made.append(eng)
        for image in images:
            eng.load_image(image)
        return eng

    yield new
    for eng in made:
        eng.stop()


def test_openease_platform_is_rebuilt_on_a_fresh_host(engines, tmp_path, prefix):
    """openEASE-like platform (fixtures/openease.py), encrypted snapshot: data containers (never
    started) with anonymous volumes, PostgreSQL (dump), the MongoDB stand-in, nginx with its
    certificate directory (a host path), the socket holders, the network."""
    case = Case(tmp_path, "openEASE").with_encryption()
    host_a = engines("lifeboat-test/busybox:latest", "lifeboat-test/postgres:15", "lifeboat-test/nginx:latest")
    stack = OpenEaseStack(host_a.client, prefix).build()
    cert_dir = stack.cert_dir
    try:
        certs = {n: open(os.path.join(cert_dir, n), "rb").read() for n in os.listdir(cert_dir)}
        before = {
            "states": {c.name: c.status for c in host_a.client.containers.list(all=True)},
            "rows": stack.psql("SELECT count(*) FROM episodes").strip(),
            "volumes": sorted(v.name for v in host_a.client.volumes.list()),
        }
        snap = case.backup(host_a)
        assert snap["complete"] and snap["encrypted"]
        stack.teardown()  # removes the certificate directory too: A's disk is gone
        host_a.stop()
        assert not os.path.exists(cert_dir)

        host_b = engines()
        report = case.rebuild_twice(host_b, _host_of(snap))
        client = host_b.client
        states = {c.name: c.status for c in client.containers.list(all=True)}
        assert states == before["states"]
        assert sorted(v.name for v in client.volumes.list()) == before["volumes"]
        assert {n: open(os.path.join(cert_dir, n), "rb").read() for n in os.listdir(cert_dir)} == certs
        stack.client = client
        assert stack.psql("SELECT count(*) FROM episodes").strip() == before["rows"]
        for logical, by_dest in stack.files.items():
            name = stack.containers[logical]
            for dest, files in by_dest.items():
                for rel, data in files.items():
                    bits, _stat = client.api.get_archive(name, f"{dest}/{rel}")
                    import io
                    import tarfile
                    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
                        member = tar.getmembers()[0]
                        assert tar.extractfile(member).read() == data, f"{name}:{dest}/{rel}"
        net = client.networks.get(stack.network)
        assert net.attrs["Labels"] == stack.labels
        _no_secret(json.dumps(report) + report["runbook"], stack.pg_password)
        assert "age -d -i" in report["runbook"]
    finally:
        shutil.rmtree(cert_dir, ignore_errors=True)


def test_measurement_aggregator_is_rebuilt_with_its_stage_directories(engines, tmp_path, prefix):
    """Measurement aggregator (fixtures/dr_stacks.py): stage directories as bind mounts and a
    PostgreSQL metadata database; an unencrypted snapshot, so the database password comes from
    dr_rebuild_environment (as from a vault) and the rebuild stops before changing anything without it."""
    case = Case(tmp_path, "measurement aggregator")
    host_a = engines(*Aggregator.images)
    agg = Aggregator(host_a.client, prefix).build()
    try:
        before = agg.state()
        assert before["files"]["staging"] and before["files"]["reports"]
        snap = case.backup(host_a)
        assert snap["complete"] and not snap["encrypted"]
        host_a.stop()
        agg.forget_host_paths()

        host_b = engines()
        proc, _report = case.rebuild(host_b, _host_of(snap))
        assert proc.returncode != 0
        assert "POSTGRES_PASSWORD" in proc.stdout and "Nothing was changed" in proc.stdout, proc.stdout[-3000:]
        assert host_b.client.containers.list(all=True) == [] and not os.path.exists(agg.root)
        _no_secret(proc.stdout, agg.password)

        report = case.rebuild_twice(host_b, _host_of(snap), dr_rebuild_environment=agg.environment())
        agg.client = host_b.client
        assert agg.state() == before
        agg.run_pass()  # the rebuilt worker works on the restored stages
        assert len(agg.state()["files"]["reports"]) == len(before["files"]["reports"]) + 2
        assert "POSTGRES_PASSWORD" in report["runbook"]
        _no_secret(json.dumps(report) + report["runbook"], agg.password)
    finally:
        agg.cleanup()


def test_job_platform_is_rebuilt_with_sqlite_queue_and_file_store(engines, tmp_path, prefix):
    """Job platform (fixtures/dr_stacks.py): SQLite in a volume, a Redis queue (dump), a worker
    linked to it, a file store with keep_days expiry (mtimes must survive), an internal network."""
    case = Case(tmp_path, "job platform").with_encryption()
    host_a = engines(*JobPlatform.images)
    jobs = JobPlatform(host_a.client, prefix).build()
    before = jobs.state()
    assert len(before["files"]) == 4  # the 9- and 30-day-old uploads expired
    links = host_a.client.api.inspect_container(jobs.worker)["NetworkSettings"]["Networks"][f"{prefix}_jobs"]["Links"]
    assert links == [f"{jobs.queue}:redis"]
    snap = case.backup(host_a)
    assert snap["complete"]
    host_a.stop()

    host_b = engines()
    case.rebuild_twice(host_b, _host_of(snap))
    jobs.client = host_b.client
    assert jobs.state() == before
    jobs.expire()  # nothing more is old enough: the restored mtimes are the originals
    assert jobs.state()["files"] == before["files"]
    net = host_b.client.networks.get(f"{prefix}_jobs")
    assert net.attrs["Internal"] is True
    worker = host_b.client.api.inspect_container(jobs.worker)
    assert worker["NetworkSettings"]["Networks"][f"{prefix}_jobs"]["Links"] == links


def test_two_apps_backed_up_in_parallel_while_one_is_restored(engines, tmp_path, prefix):
    """Two independent apps (web + PostgreSQL each) backed up with parallel groups while a restore
    of app a's site runs at the same time; the locks keep the two apart (neither fails, app a's web
    container runs afterwards); then the host is rebuilt from that snapshot."""
    case = Case(tmp_path, "two apps").with_encryption()
    host_a = engines(*TwoApps.images)
    apps = TwoApps(host_a.client, prefix).build()
    first = case.backup(host_a)
    site_dir = host_a.client.api.inspect_volume(apps.site("a"))["Mountpoint"]
    with open(os.path.join(site_dir, "index.html"), "w", encoding="utf-8") as fh:
        fh.write("<h1>app a, version 2</h1>\n")
    inventory = run_module("data_inventory", docker_host=host_a.url)
    results: dict = {}
    os.environ["LIFEBOAT_STATE_DIR"] = case.state
    try:
        def snapshot():
            results["snapshot"] = run_module("snapshot", docker_host=host_a.url, repository=case.repo,
                                             units=inventory["units"], parallel=2, include_images=True,
                                             encryption_recipients=[case.recipient], compression_level=1)

        def restore():
            results["restore"] = run_module("snapshot_restore", docker_host=host_a.url, repository=case.repo,
                                            snapshot=first["id"], unit=f"volume:{apps.site('a')}", force=True,
                                            encryption_identity=str(tmp_path / "age.key"))

        threads = [threading.Thread(target=snapshot), threading.Thread(target=restore)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del os.environ["LIFEBOAT_STATE_DIR"]
    assert results["snapshot"]["complete"] and results["snapshot"]["groups"] >= 2
    saved = results["snapshot"]["deployment"]
    assert saved["images_saved"] == 0 and saved["images_reused"] == 2, saved  # in the repository already
    assert results["restore"]["unit"] == f"volume:{apps.site('a')}"
    assert host_a.client.containers.get(apps.web("a")).status == "running"
    before = apps.state()
    assert before["a"]["page"] == "<h1>app a</h1>\n"  # the restore of the first snapshot is in place
    host_a.stop()

    host_b = engines()
    snapshot_id = results["snapshot"]["snapshot_id"]
    case.rebuild_twice(host_b, first["host"], dr_rebuild_snapshot=snapshot_id)
    apps.client = host_b.client
    after = apps.state()
    assert after["b"] == before["b"]
    assert after["a"]["rows"] == before["a"]["rows"]
    # the site as the parallel snapshot saw it: before the restore (version 2) or after it, whole
    assert after["a"]["page"] in ("<h1>app a</h1>\n", "<h1>app a, version 2</h1>\n")
