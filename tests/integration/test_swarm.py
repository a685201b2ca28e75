"""Swarm stacks (issue 9): inventory, backup while the stack runs, restore into the running
stack, and the full rebuild on a fresh engine.

Everything runs in throw-away engines (fixtures/swarm.py): the host's shared engine is never put
into swarm mode. One single-node swarm carries the map stack for the whole module; the tests run
in file order (inventory, backups, the failure cases, restore, rebuild) and each leaves the stack
running its replicas, which the next one checks first.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, VENV_BIN, _ansible_env, run_module
from fixtures.swarm import GEOMETRIES, QUEUES, SERVICES, SETS, STACK, MapStack, SwarmEngine

FULL = {f"{STACK}_{s}": n for s, n in SERVICES.items()}


@pytest.fixture(scope="module")
def env():
    """(swarm engine with the stack filled, stack, state dir, temp dir), removed at the end."""
    tmp = tempfile.mkdtemp(prefix="lbt-swarm-", dir="/tmp")
    state = os.path.join(tmp, "state")
    old_state = os.environ.get("LIFEBOAT_STATE_DIR")
    os.environ["LIFEBOAT_STATE_DIR"] = state
    engine = SwarmEngine()
    stack = None
    try:
        engine.start()
        engine.load_images()
        stack = MapStack(engine).deploy()
        stack.fill()
        yield {"engine": engine, "stack": stack, "state": state, "tmp": tmp}
    finally:
        engine.stop()
        if stack is not None:
            stack.remove()
        subprocess.run(["umount", "-l", os.path.join(tmp, "small")], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        if old_state is None:
            os.environ.pop("LIFEBOAT_STATE_DIR", None)
        else:
            os.environ["LIFEBOAT_STATE_DIR"] = old_state


def journals(state: str) -> list[str]:
    return sorted(glob.glob(os.path.join(state, "journal", "*.json")))


def assert_stack_whole(engine: SwarmEngine) -> None:
    """No service left scaled down, every task running."""
    assert engine.replicas() == FULL, f"a service was left scaled: {engine.replicas()}"
    engine.wait_running(timeout=180)


def inventory(engine: SwarmEngine, **args) -> dict:
    return run_module("data_inventory", docker_host=engine.url, **args)


# --------------------------------------------------------------------------------------------
# inventory
# --------------------------------------------------------------------------------------------
def test_inventory_knows_the_stack(env):
    engine, stack = env["engine"], env["stack"]
    result = inventory(engine)
    swarm = result["swarm"]
    assert swarm["node"]["manager"] is True and swarm["node"]["role"] == "manager"
    by_name = {s["name"]: s for s in swarm["services"]}
    assert set(by_name) == set(FULL)
    for name, replicas in FULL.items():
        svc = by_name[name]
        assert svc["stack"] == STACK and svc["mode"] == "replicated" and svc["replicas"] == replicas
        assert svc["running"] == replicas and len(svc["tasks"]) == replicas
        assert all(t["this_node"] and t["container"] for t in svc["tasks"]), svc["tasks"]
    assert by_name[f"{STACK}_renderer"]["volumes"] == [f"{STACK}_instance-data"]
    assert by_name[f"{STACK}_renderer"]["constraints"] == ["node.role == manager"]
    (maps,) = swarm["stacks"]
    assert maps["name"] == STACK and sorted(maps["services"]) == sorted(FULL)
    assert maps["volumes"] == sorted(f"{STACK}_{v}" for v in ("db-data", "instance-data", "redis-data",
                                                              "traefik-data"))
    assert maps["compose_files"] == [stack.compose]
    assert maps["compose_files_from"] == f"label lifeboat.stack.compose_files on service {STACK}_proxy"

    units = {u["id"]: u for u in result["units"]}
    shared = units[f"volume:{STACK}_instance-data"]
    assert shared["services"] == [f"{STACK}_registrar", f"{STACK}_renderer"]
    assert shared["strategy"] == "pause" and len(shared["containers"]) == 3, shared
    db = units[f"db:{STACK}_db"]
    assert db["strategy"] == "dump" and db["engine"] == "postgres" and db["service"] == f"{STACK}_db"
    assert db["container"].startswith(f"{STACK}_db.1."), db
    redis = units[f"db:{STACK}_redis"]
    assert redis["strategy"] == "dump" and redis["engine"] == "redis"
    assert units[f"volume:{STACK}_db-data"]["strategy"] == "skip"
    assert units[f"volume:{STACK}_traefik-data"]["services"] == [f"{STACK}_proxy"]
    assert units[f"volume:{STACK}_traefik-data"]["confidential"] is True  # traefik / acme.json

    # The policy names the compose files of a stack (stack:NAME) and wins over the label.
    other = os.path.join(env["tmp"], "given-stack.yml")
    with open(other, "w", encoding="utf-8") as fh:
        fh.write("# the same stack, as its operator keeps it\n")
    given = inventory(engine, policy={f"stack:{STACK}": {"compose_files": [other]}})
    assert given["swarm"]["stacks"][0]["compose_files"] == [other]
    assert given["swarm"]["stacks"][0]["compose_files_from"] == f"policy entry 'stack:{STACK}'"
    assert not [f for f in given["findings"] if f["code"] == "policy_unmatched"], given["findings"]
    bad = run_module("data_inventory", expect_fail=True, docker_host=engine.url,
                     policy={f"stack:{STACK}": {"compose_files": ["relative.yml"]}})
    assert "compose_files must be a list of absolute paths" in bad["msg"]


# --------------------------------------------------------------------------------------------
# backup while the stack runs
# --------------------------------------------------------------------------------------------
def test_backup_while_the_stack_runs(env):
    engine, stack = env["engine"], env["stack"]
    assert_stack_whole(engine)
    repo = os.path.join(env["tmp"], "repo")
    plan = inventory(engine, policy={f"volume:{STACK}_instance-data": {"strategy": "stop"}})
    before = {s: engine.task(s.split("_", 1)[1]) for s in FULL}
    t0 = int(time.time()) - 1
    snap = run_module("snapshot", docker_host=engine.url, repository=repo, units=plan["units"],
                      swarm_stacks=plan["swarm"]["stacks"], parallel=1)
    assert snap["complete"] is True, snap["failed_units"]
    assert_stack_whole(engine)
    assert journals(env["state"]) == []
    shared = snap["units"][f"volume:{STACK}_instance-data"]
    # stop on swarm tasks = their services scaled to 0 and back (new tasks), not docker stop
    assert set(shared["downtime"]) == {f"{STACK}_registrar", f"{STACK}_renderer"}, shared
    # ... both asked to scale to 0 before the tasks of either had stopped: services that share a
    # volume stop together, so neither writes to it while the other is already down.
    writers = (f"{STACK}_registrar", f"{STACK}_renderer")
    downs, dies = {}, {}
    for ev in engine.client.events(since=t0, until=int(time.time()) + 1, decode=True):
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        if ev.get("Type") == "service" and attrs.get("name") in writers and attrs.get("replicas.new") == "0":
            downs.setdefault(attrs["name"], ev["timeNano"])
        elif ev.get("Type") == "container" and ev.get("Action") == "die" \
                and attrs.get("com.docker.swarm.service.name") in writers:
            dies.setdefault(attrs["com.docker.swarm.service.name"], ev["timeNano"])
    assert set(downs) == set(writers) == set(dies), (downs, dies)
    assert max(downs.values()) < min(dies.values()), f"scaled one after the other: {downs}, first tasks gone {dies}"
    print(f"\nbackup of the running stack: {snap['units'][f'volume:{STACK}_instance-data']['seconds']} s for the "
          f"shared volume, services scaled to 0 and back for {shared['downtime']} s")
    assert engine.task("registrar") != before[f"{STACK}_registrar"]
    assert engine.task("db") == before[f"{STACK}_db"], "the database was dumped, never stopped"
    assert snap["swarm"]["stacks"] == [STACK] and snap["swarm"]["compose_files"] == 1, snap["swarm"]
    assert snap["swarm"]["problems"] == []

    with open(os.path.join(repo, "snapshots", f"{snap['snapshot_id']}.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    dumped = next(u for u in manifest["units"] if u["id"] == f"db:{STACK}_db")
    parcels = [n for db in dumped["row_counts"].values() for t, n in db.items()
               if t.replace('"', "").endswith(".parcels")]
    assert parcels == [len(GEOMETRIES)], dumped["row_counts"]
    (recorded,) = manifest["swarm"]["stacks"]
    assert recorded["compose"]["from"].startswith("label lifeboat.stack.compose_files")
    (compose,) = recorded["compose"]["files"]
    sha = compose["object"]["sha256"]
    with open(os.path.join(repo, "objects", sha[:2], sha), "rb") as fh:
        assert fh.read() == open(stack.compose, "rb").read()
    specs = {s["short_name"]: s for s in recorded["services"]}
    assert specs["db"]["env_names"] == ["POSTGRES_DB", "POSTGRES_PASSWORD"]
    assert specs["renderer"]["replicas"] == 2 and specs["renderer"]["constraints"] == ["node.role == manager"]
    assert {m["target"] for m in specs["registrar"]["mounts"]} == {"/instances"}
    assert stack.db_password not in json.dumps(manifest["swarm"]["stacks"][0]["services"])
    assert stack.db_password not in json.dumps(snap), "a secret reached the module's result"
    env["snapshot"] = snap["snapshot_id"]
    env["repo"] = repo
    env["instances_v1"] = stack.instances()
    env["proxy_v1"] = stack.proxy_state()


def object_file(repo: str, sha: str) -> str:
    return os.path.join(repo, "objects", sha[:2], sha)


def test_encrypted_snapshot_keeps_the_swarm_objects_for_prune_copy_and_rebuild(env):
    """The record of an encrypted snapshot keeps the compose file's object and nothing else of the
    swarm section; prune keeps that object, copy copies it, a rebuild reads it with the identity."""
    engine = env["engine"]
    assert_stack_whole(engine)
    key = os.path.join(env["tmp"], "age-key.txt")
    subprocess.run(["age-keygen", "-o", key], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", key], check=True, capture_output=True, text=True).stdout.strip()
    repo, copy = os.path.join(env["tmp"], "repo-age"), os.path.join(env["tmp"], "repo-age-copy")
    snap = run_module("snapshot", docker_host=engine.url, repository=repo, volumes=[f"{STACK}_traefik-data"],
                      encryption_recipients=[recipient])
    assert snap["complete"] is True and snap["swarm"]["compose_files"] == 1
    with open(os.path.join(repo, "snapshots", f"{snap['snapshot_id']}.json"), encoding="utf-8") as fh:
        record = json.load(fh)
    (ref,) = record["swarm"]["objects"]
    assert set(record["swarm"]) == {"objects"} and ref["encryption"] == "age"
    assert "docker-stack" not in json.dumps(record) and f"{STACK}_db" not in json.dumps(record)
    pruned = run_module("snapshot_prune", repository=repo, keep_last=1)
    assert snap["snapshot_id"] not in pruned["removed"]
    assert os.path.exists(object_file(repo, ref["sha256"])), "prune removed the stack's compose file"
    run_module("snapshot_copy", repository=repo, target_repository=copy)
    assert os.path.exists(object_file(copy, ref["sha256"])), "copy left the stack's compose file behind"
    plan = run_module("swarm_rebuild", check=True, docker_host=engine.url, repository=copy,
                      encryption_identity=key)
    assert plan["snapshot_id"] == snap["snapshot_id"]
    assert plan["plan"] == [{"stack": STACK, "action": "rebuild", "source": "compose",
                             "volumes": [f"volume:{STACK}_traefik-data"], "dumps": []}]
    no_key = run_module("swarm_rebuild", check=True, expect_fail=True, docker_host=engine.url, repository=copy)
    assert "identity" in no_key["msg"], no_key["msg"]


def test_failed_capture_leaves_no_service_scaled_down(env):
    """A repository on a 2 MiB tmpfs, a 16 MiB file in the shared volume: the capture fails with
    the disk full while the services are at 0; they are scaled back all the same."""
    engine, stack = env["engine"], env["stack"]
    assert_stack_whole(engine)
    small = os.path.join(env["tmp"], "small")
    os.makedirs(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small], check=True)
    stack.write_instances(b"v1", big_mib=16)
    try:
        failed = run_module("snapshot", expect_fail=True, docker_host=engine.url,
                            repository=os.path.join(small, "repo"), volumes=[f"{STACK}_instance-data"],
                            strategy="stop", compression_level=1)
    finally:
        stack.write_instances(b"v1")
        subprocess.run(["umount", small], check=True)
    assert [f["id"] for f in failed["failed_units"]] == [f"volume:{STACK}_instance-data"], failed
    assert "No space left" in failed["failed_units"][0]["error"] or "space" in failed["msg"], failed["msg"]
    assert engine.replicas() == FULL
    assert_stack_whole(engine)
    assert journals(env["state"]) == []


def test_sigkill_while_scaled_down_is_repaired_by_the_next_run(env):
    engine, stack = env["engine"], env["stack"]
    assert_stack_whole(engine)
    repo = os.path.join(env["tmp"], "repo-kill")
    stack.write_instances(b"v1", big_mib=48)  # zstd -19: many seconds, time to kill it
    args = {"docker_host": engine.url, "repository": repo, "volumes": [f"{STACK}_instance-data"],
            "strategy": "stop", "compression_level": 19}
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
           "-m", "lifeboat.docker.snapshot", "-a", json.dumps(args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_ansible_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        entries: list = []
        while time.monotonic() < deadline:
            for path in journals(env["state"]):
                with open(path, encoding="utf-8") as fh:
                    doc = json.load(fh)
                entries = [c for c in doc["containers"] if c["action"] == "scale"]
            if len(entries) == 2 and glob.glob(os.path.join(repo, "tmp", "*.part")) and \
                    engine.replicas()[f"{STACK}_renderer"] == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the capture did not get to its copy with the services scaled down: {entries}")
        assert {e["name"]: e["replicas"] for e in entries} == {f"{STACK}_registrar": 1, f"{STACK}_renderer": 2}
        os.kill(doc["pid"], signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        stack.write_instances(b"v1")
    assert proc.returncode != 0
    assert engine.replicas()[f"{STACK}_registrar"] == 0 and engine.replicas()[f"{STACK}_renderer"] == 0, \
        "the killed run should have left its services at 0"
    time.sleep(2)  # tar and zstd of the killed module end at their next write

    info = run_module("snapshot_info", docker_host=engine.url, repository=env["repo"])
    repaired = {r["container"]: r["result"] for r in info["repaired"]}
    assert repaired == {f"{STACK}_registrar": "scaled back to 1 replica(s)",
                        f"{STACK}_renderer": "scaled back to 2 replica(s)"}, info["repaired"]
    assert journals(env["state"]) == []
    assert_stack_whole(engine)
    again = run_module("snapshot_info", docker_host=engine.url, repository=env["repo"])
    assert again["repaired"] == []


def test_journal_of_another_swarm_is_left_alone(env):
    """A journal entry recorded on another swarm (cluster id) is kept for that swarm's next run."""
    engine = env["engine"]
    jdir = os.path.join(env["state"], "journal")
    os.makedirs(jdir, exist_ok=True)
    path = os.path.join(jdir, "1-deadbeef.json")
    doc = {"pid": 1, "process_start": "0", "operation": "snapshot x", "started": "2026-01-01T00:00:00Z",
           "containers": [{"id": "no-such-service", "name": "other_svc", "action": "scale", "replicas": 3,
                           "cluster": "another-cluster"}]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    try:
        info = run_module("snapshot_info", docker_host=engine.url, repository=env["repo"])
        (entry,) = info["repaired"]
        assert entry["result"].startswith("left for the swarm that recorded it"), entry
        assert os.path.exists(path), "the entry of another swarm was dropped"
    finally:
        os.unlink(path)


# --------------------------------------------------------------------------------------------
# restore one volume into the running stack
# --------------------------------------------------------------------------------------------
def test_restore_one_volume_into_the_running_stack(env):
    engine, stack = env["engine"], env["stack"]
    assert_stack_whole(engine)
    stack.write_instances(b"v2-written-after-the-backup")
    assert stack.instances() != env["instances_v1"]
    result = run_module("snapshot_restore", docker_host=engine.url, repository=env["repo"],
                        snapshot=env["snapshot"], unit=f"volume:{STACK}_instance-data", force=True)
    assert stack.instances() == env["instances_v1"]
    assert set(result["downtime"]) == {f"{STACK}_registrar", f"{STACK}_renderer"}, result
    print(f"\nrestore into the running stack: services at 0 for {result['downtime']} s")
    assert result["previous"].startswith(f"{STACK}_instance-data.pre-restore-")
    assert_stack_whole(engine)
    assert journals(env["state"]) == []
    # the tasks that run now see the restored files
    meta = engine.exec("renderer", "cat", "/instances/instance-3/meta.json")
    assert json.loads(meta)["tag"] == "v1"


def test_the_restore_role_brings_back_redis_with_appendonly_and_checks_services_by_their_tasks(env):
    """restore.yml on the running stack: Redis runs with appendonly on (its AOF, not the RDB, is
    what it loads at start) and is a swarm task that the restore replaces (service scaled to 0 and
    back, a new container name). The queues and sets come back, every service runs its replicas,
    and the play passes; a failed unit would fail it."""
    engine, stack = env["engine"], env["stack"]
    assert_stack_whole(engine)
    engine.redis("RPUSH", "preprocess_queue", "job-after-the-backup")
    engine.redis("DEL", "preprocess-success_set")
    assert engine.queues() != QUEUES
    old_task = engine.task("redis")
    args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": env["repo"], "restore_snapshot": env["snapshot"],
            "restore_units": [f"db:{STACK}_redis"], "restore_confirm": True}
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", "playbooks/restore.yml",
                           "-e", json.dumps(args)], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=dict(_ansible_env(), ANSIBLE_STDOUT_CALLBACK="default"), check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert "appendonly file is rebuilt" in proc.stdout, proc.stdout[-3000:]
    assert engine.queues() == QUEUES and engine.sets() == SETS
    assert engine.task("redis") != old_task, "the restore should have replaced the task (service scaled 0 and back)"
    assert engine.redis("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    assert_stack_whole(engine)
    assert journals(env["state"]) == []


def test_dr_rebuild_brings_the_swarm_host_back_from_the_newest_backup_and_again_changes_nothing(env):
    """playbooks/dr_rebuild.yml on a fresh engine, naming no snapshot: 'latest' is the newest
    complete backup, never the pre-restore snapshot the restore role's test took (which is newer);
    the databases step leaves the swarm tasks' dumps to the swarm step; PostGIS rows, Redis lists
    (appendonly on) and sets, and the shared volume's files come back; a second run changes nothing
    and makes no new volume."""
    stack = env["stack"]
    listing = run_module("snapshot_info", repository=env["repo"])
    newest = listing["snapshots"][0]
    assert "pre-restore" in newest["tags"], "the restore role's test should have left a pre-restore snapshot"
    assert listing["latest"] == env["snapshot"], listing["latest"]
    host = newest["host"]
    want_geometries = stack.engine.geometries()
    report_dir = os.path.join(env["tmp"], "dr-report")
    args = {"lifeboat_repository": env["repo"], "dr_rebuild_lost_host": host, "dr_rebuild_install_engine": False,
            "dr_rebuild_report_dir": report_dir, "dr_rebuild_wait_timeout": 240,
            "dr_rebuild_swarm_advertise_addr": "127.0.0.1",
            "dr_rebuild_swarm_compose_dir": os.path.join(env["tmp"], "dr-stacks")}

    def dr_rebuild(fresh: SwarmEngine) -> tuple[subprocess.CompletedProcess, dict]:
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", "playbooks/dr_rebuild.yml",
                               "-e", json.dumps(dict(args, lifeboat_docker_host=fresh.url))], capture_output=True,
                              text=True, cwd=ROOT, timeout=1500, env=dict(_ansible_env(), ANSIBLE_STDOUT_CALLBACK="default"),
                              check=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        with open(os.path.join(report_dir, f"report-{host}.json"), encoding="utf-8") as fh:
            return proc, json.load(fh)

    with SwarmEngine(init=False) as fresh:
        fresh.load_images()
        _proc, report = dr_rebuild(fresh)
        assert report["snapshot_id"] == env["snapshot"]
        fresh.wait_running()
        fresh.wait_postgres()
        fresh.wait_redis()
        assert fresh.geometries() == want_geometries
        assert fresh.queues() == QUEUES, "Redis lists came back out of order"
        assert fresh.sets() == SETS
        assert fresh.redis("CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
        assert MapStack(fresh).instances() == env["instances_v1"]
        volumes = sorted(v.name for v in fresh.client.volumes.list())
        # the stack's volumes are the swarm step's alone: restored once, nothing kept aside
        assert [v for v in volumes if ".pre-restore-" in v] == [], volumes
        again, report2 = dr_rebuild(fresh)
        assert report2["changed_steps"] == [], report2["changed_steps"]
        assert sorted(v.name for v in fresh.client.volumes.list()) == volumes, "the second run made new volumes"
        assert fresh.queues() == QUEUES and fresh.geometries() == want_geometries
        assert "changed=0" in again.stdout, again.stdout[-3000:]


# --------------------------------------------------------------------------------------------
# the full rebuild on a fresh engine
# --------------------------------------------------------------------------------------------
def test_full_rebuild_on_a_fresh_engine(env):
    stack = env["stack"]
    want_geometries = stack.engine.geometries()
    assert len(want_geometries) == len(GEOMETRIES)
    want_queues, want_sets = stack.engine.queues(), stack.engine.sets()
    assert want_queues == QUEUES and want_sets == SETS
    with SwarmEngine(init=False) as fresh:
        fresh.load_images()
        plan = run_module("swarm_rebuild", check=True, docker_host=fresh.url, repository=env["repo"],
                          snapshot=env["snapshot"])
        assert plan["plan"] == [{"stack": STACK, "action": "rebuild", "source": "compose",
                                 "volumes": [f"volume:{STACK}_instance-data", f"volume:{STACK}_traefik-data"],
                                 "dumps": [f"db:{STACK}_db", f"db:{STACK}_redis"]}]
        compose_dir = os.path.join(env["tmp"], "stacks")
        started = time.monotonic()
        result = run_module("swarm_rebuild", docker_host=fresh.url, repository=env["repo"],
                            snapshot=env["snapshot"], advertise_addr="127.0.0.1", compose_dir=compose_dir,
                            force=True)
        seconds = time.monotonic() - started
        assert result["swarm"] == "initialized"
        (done,) = result["stacks"]
        assert done["source"] == "compose"
        assert [v["unit"] for v in done["volumes"]] == [f"volume:{STACK}_instance-data",
                                                        f"volume:{STACK}_traefik-data"]
        assert {d["unit"]: d["service"] for d in done["dumps"]} == {f"db:{STACK}_db": f"{STACK}_db",
                                                                    f"db:{STACK}_redis": f"{STACK}_redis"}
        assert done["services"] == {n: f"{r}/{r}" for n, r in FULL.items()}
        fresh.wait_running()
        fresh.wait_postgres()
        fresh.wait_redis()
        assert fresh.geometries() == want_geometries
        assert fresh.psql("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").strip()
        assert fresh.queues() == want_queues, "Redis lists came back out of order"
        assert fresh.sets() == want_sets
        rebuilt = MapStack(fresh)
        assert rebuilt.instances() == env["instances_v1"]
        assert rebuilt.proxy_state() == env["proxy_v1"]
        assert stack.db_password not in json.dumps(result)
        print(f"\nrebuild of stack {STACK} on a fresh engine: {seconds:.1f} s")

        # Again from the recorded service specs, as when no compose file was known: the specs name
        # the environment variables, the values must be given.
        fresh.docker("stack", "rm", STACK)
        deadline = time.monotonic() + 120
        while fresh.client.containers.list(filters={"label": f"com.docker.stack.namespace={STACK}"}) or \
                fresh.client.networks.list(names=[f"{STACK}_backend", f"{STACK}_web"]):
            assert time.monotonic() < deadline, "the stack was not removed"
            time.sleep(1)
        missing = run_module("swarm_rebuild", expect_fail=True, docker_host=fresh.url, repository=env["repo"],
                             snapshot=env["snapshot"], source="specs", compose_dir=compose_dir, force=True)
        assert "maps_db: POSTGRES_PASSWORD" in missing["msg"] and "maps_db: POSTGRES_DB" in missing["msg"]
        assert fresh.client.api.services() == [], "nothing may be deployed when values are missing"
        specs = run_module("swarm_rebuild", docker_host=fresh.url, repository=env["repo"], snapshot=env["snapshot"],
                           source="specs", compose_dir=compose_dir, force=True,
                           environment={"db": {"POSTGRES_PASSWORD": "another-" + stack.db_password,
                                               "POSTGRES_DB": "maps"}})
        (again,) = specs["stacks"]
        assert again["source"] == "specs" and again["compose_files"][0].endswith("docker-stack.from-specs.yml")
        assert again["services"] == {n: f"{r}/{r}" for n, r in FULL.items()}
        assert all(v["previous"] for v in again["volumes"]), "the volumes' content was not kept aside"
        fresh.wait_running()
        fresh.wait_postgres()
        fresh.wait_redis()
        assert fresh.geometries() == want_geometries
        assert fresh.queues() == want_queues and fresh.sets() == want_sets
        assert rebuilt.instances() == env["instances_v1"] and rebuilt.proxy_state() == env["proxy_v1"]
        assert stack.db_password not in json.dumps(specs)
        rebuilt.remove()
