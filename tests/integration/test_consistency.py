"""Integration tests of consistent captures (issue 5): pause, hooks, stop/start order, locks and
parallel units, on the real engine.

Every module runs through real Ansible (conftest.run_module, or as a background process where
two runs must overlap or one must be killed). Every name carries the test's prefix, the `lab`
fixture removes what a test made, and each test has its own LIFEBOAT_STATE_DIR (journals and
lock files), so nothing mixes with other runs on this host.

Timing is read from clocks that cannot lie about order: hooks append `/proc/uptime` (the host's
monotonic clock, not namespaced) to a log file on a host directory bind-mounted at /log in the
containers; the engine's own State.StartedAt / FinishedAt and its event stream (die, start,
pause, unpause) say when it stopped and started what.

Database dumps (strategy dump) are covered elsewhere.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import docker_cli, run_module
from fixtures.lab import Lab as BaseLab
from fixtures.lab import Background, alive, children_of, descends_from, open_lab, proc_start, wait_for

BUSYBOX = "lifeboat-test/busybox:latest"
# busybox's sleep as PID 1 ignores SIGTERM: trap it, so `docker stop` takes a second, not 30.
STOPPABLE = 'trap "exit 0" TERM; while :; do sleep 1; done'
# A writer: appends to its volume five times a second until stopped.
WRITER = 'trap "exit 0" TERM; n=0; while :; do n=$((n+1)); echo "$n" >> /data/counter; usleep 200000; done'


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------
def capturing(directory: str, level: int) -> bool:
    """Whether a capture of directory runs: its `tar --create`, or a `zstd -LEVEL` compressing
    (zstd reads ahead, so tar may be done long before zstd). The object's fsync and rename come
    after the containers run again, so a temporary object file alone does not say."""
    want, flag = directory.encode(), f"-{level}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        name = os.path.basename(argv[0]) if argv else b""
        if (name == b"tar" and b"--create" in argv and want in argv) or (name == b"zstd" and flag in argv):
            return True
    return False


# --------------------------------------------------------------------------------------------
# the lab: what a test makes, and removes again
# --------------------------------------------------------------------------------------------
class Lab(BaseLab):
    """The shared lab, with a log directory the hooks write their stamps to, and the time it
    began (for the engine's events)."""

    def __init__(self, client, prefix: str) -> None:
        super().__init__(client, prefix)
        self.log_dir = self.tmpdir("log")  # bind-mounted at /log: hooks write their stamps here
        self.t0 = int(time.time()) - 1

    # -- making things -------------------------------------------------------------------------
    def volume(self, suffix: str) -> str:  # type: ignore[override]
        """The name of a new, empty local volume."""
        name = self.name(suffix)
        self.client.volumes.create(name=name, driver="local")
        return name

    def container(self, suffix: str, volumes: list[str], labels: dict[str, str] | None = None,  # pylint: disable=arguments-renamed
                  extra: list[str] | None = None, script: str = STOPPABLE) -> str:
        """A running busybox container with VOLUMES (NAME or NAME:/target; the first at /data)
        and the log directory at /log."""
        name = self.name(suffix)
        self.containers.append(name)
        args = ["run", "-d", "--name", name, "-v", f"{self.log_dir}:/log"]
        for i, vol in enumerate(volumes):
            args += ["-v", vol if ":" in vol else f"{vol}:{'/data' if i == 0 else f'/data{i}'}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        args += list(extra or [])
        docker_cli(*args, BUSYBOX, "sh", "-c", script)
        return name

    # -- looking -------------------------------------------------------------------------------
    def inspect(self, container: str) -> dict:
        return self.client.api.inspect_container(container)["State"]

    def status(self, container: str) -> str:
        return self.inspect(container)["Status"]

    def stamps(self) -> list[tuple[float, str, str]]:
        """(uptime, container, what) lines the hooks wrote, in order of time."""
        path = os.path.join(self.log_dir, "events")
        if not os.path.exists(path):
            return []
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                up, who, what = line.split()
                out.append((float(up), who, what))
        return sorted(out)

    def events(self, names: list[str], actions: tuple[str, ...]) -> list[tuple[int, str, str]]:
        """(timeNano, container, action) the engine reported for NAMES since the lab began."""
        until = int(time.time()) + 1
        out = []
        for ev in self.client.events(since=self.t0, until=until, decode=True, filters={"type": "container"}):
            who = (ev.get("Actor") or {}).get("Attributes", {}).get("name")
            if who in names and ev.get("Action") in actions:
                out.append((ev["timeNano"], who, ev["Action"]))
        return sorted(out)

    def lock_holder(self, lock_name: str) -> dict | None:
        """The holder info written into a lock file of this lab's state dir, or None (free)."""
        import re

        readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", lock_name)[:80]
        for path in glob.glob(os.path.join(self.state_dir, "locks", f"{readable}.*.lock")):
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                if text.strip():
                    return json.loads(text)
            except (OSError, ValueError):
                continue
        return None


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def stamp(who: str, what: str) -> str:
    """Shell: append '<host uptime> WHO WHAT' to /log/events."""
    return f'read u r </proc/uptime; echo "$u {who} {what}" >>/log/events'


def engine_time(text: str) -> int:
    """An engine timestamp (RFC 3339, up to 9 fraction digits) as integer nanoseconds."""
    head, _dot, frac = text.rstrip("Z").partition(".")
    secs = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(secs.timestamp()) * 10**9 + int((frac + "000000000")[:9])


def random_file(path: str, mib: int) -> None:
    with open(path, "wb") as fh:
        for _mib in range(mib):
            fh.write(os.urandom(1 << 20))  # zstd -19 takes ~0.3 s per MiB of this


def manifests(repo: str) -> list[str]:
    return sorted(glob.glob(os.path.join(repo, "snapshots", "*.json")))


def read_manifest(repo: str, snapshot_id: str) -> dict:
    with open(os.path.join(repo, "snapshots", f"{snapshot_id}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def processes_in(container: str) -> str:
    """`ps` of a running container: its command lines."""
    return docker_cli("exec", container, "ps", "-o", "pid,args")


def intervals(stamps, begin: str, end: str) -> dict[str, tuple[float, float]]:
    """{container: (time of BEGIN, time of END)} from hook stamps (one pair per container)."""
    out: dict[str, list[float]] = {}
    for up, who, what in stamps:
        if what == begin:
            out.setdefault(who, [None, None])[0] = up
        elif what == end:
            out.setdefault(who, [None, None])[1] = up
    return {k: (v[0], v[1]) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# 1. pause
# --------------------------------------------------------------------------------------------
def test_pause_pauses_during_the_capture_and_unpauses(lab):
    vol = lab.volume("paused")
    vol_dir = lab.volume_dir(vol)
    random_file(os.path.join(vol_dir, "media.bin"), 8)
    app = lab.container("writer", [vol], script=WRITER)
    repo = lab.repo()
    wait_for("the writer to write", lambda: os.path.exists(os.path.join(vol_dir, "counter")), 10)
    started_before = lab.inspect(app)["StartedAt"]

    samples: list[tuple[str, bool]] = []  # (status, the capture runs)
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            before = capturing(vol_dir, 19)
            status = lab.status(app)  # read while the capture ran, when it ran before and after
            samples.append((status, before and capturing(vol_dir, 19)))
            time.sleep(0.03)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = run_module("snapshot", repository=repo, volumes=[vol], strategy="pause", compression_level=19)
    finally:
        stop.set()
        poller.join(5)

    unit = result["units"][f"volume:{vol}"]
    assert result["complete"] is True and unit["strategy"] == "pause"
    assert ("paused", True) in samples, f"never saw {app} paused while its volume was captured: {sorted(set(samples))}"
    assert all(status == "paused" for status, writing in samples if writing), \
        f"{app} ran while its volume was being captured: {sorted(set(samples))}"
    state = lab.inspect(app)
    assert state["Status"] == "running" and state["Paused"] is False, state
    assert state["StartedAt"] == started_before, "pause must not restart the container"
    assert unit["downtime"].get(app, 0) > 0, unit
    events = [a for _t, _n, a in lab.events([app], ("pause", "unpause", "die", "start"))]
    assert events[-2:] == ["pause", "unpause"] and "die" not in events, events
    man = read_manifest(repo, result["snapshot_id"])
    [entry] = man["units"]
    assert entry["quiesced"] and entry["quiesced"][0]["action"] == "pause", entry["quiesced"]
    assert lab.journals() == []


def test_sigkill_while_paused_is_repaired_by_the_next_run(lab):
    vol = lab.volume("paused")
    vol_dir = lab.volume_dir(vol)
    random_file(os.path.join(vol_dir, "media.bin"), 48)
    app = lab.container("writer", [vol], script=WRITER)
    repo = lab.repo()
    run = Background(lab, "snapshot", repository=repo, volumes=[vol], strategy="pause", compression_level=19)
    try:
        journal = wait_for("the journal", lab.journals, 60)[0]
        with open(journal, encoding="utf-8") as fh:
            pid = json.load(fh)["pid"]
        assert descends_from(pid, run.proc.pid), f"journal pid {pid} is not the module started here"
        wait_for(f"{app} to be paused", lambda: lab.status(app) == "paused", 30)
        wait_for("the capture to start", lambda: glob.glob(os.path.join(repo, "tmp", f"{pid}-*.part")), 30)
        helpers = [(child, proc_start(child)) for child in children_of(pid)]  # tar and zstd
        lab.pids.extend(helpers)
        assert alive(pid) and manifests(repo) == [], "the capture ended before the test could kill it"
        os.kill(pid, signal.SIGKILL)
    finally:
        run.wait_killed()
    for helper, started in helpers:  # they would die of SIGPIPE at their next write; don't wait
        if started is not None and proc_start(helper) == started:
            os.kill(helper, signal.SIGKILL)
    assert run.proc.returncode != 0
    assert lab.status(app) == "paused", "the killed run should have left the container paused"

    info = run_module("snapshot_info", repository=repo)
    repaired = [r for r in info["repaired"] if r["container"] == app]
    assert repaired and repaired[0]["result"] == "unpaused" and repaired[0]["action"] == "pause", info["repaired"]
    assert info["changed"] is True
    state = lab.inspect(app)
    assert state["Status"] == "running" and state["Paused"] is False
    assert lab.journals() == [], "the journal was not cleared"
    counter = os.path.join(vol_dir, "counter")
    size = os.path.getsize(counter)
    wait_for("the writer to write again", lambda: os.path.getsize(counter) > size, 10)


# --------------------------------------------------------------------------------------------
# 2. stop / start order
# --------------------------------------------------------------------------------------------
def compose_labels(project: str, service: str, depends_on: str | None = None) -> dict[str, str]:
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": service,
              "com.docker.compose.oneoff": "False", "com.docker.compose.container-number": "1"}
    if depends_on:
        labels["com.docker.compose.depends_on"] = f"{depends_on}:service_started:false"
    return labels


def test_a_depends_on_chain_stops_dependents_first_and_starts_them_last(lab):
    vol = lab.volume("shared")
    project = lab.name("proj")
    # Names sort app < db < web: name order would be wrong both ways.
    db = lab.container("db", [vol], compose_labels(project, "db"))
    app = lab.container("app", [vol], compose_labels(project, "app", "db"))
    web = lab.container("web", [vol], compose_labels(project, "web", "app"))
    repo = lab.repo()
    before = {n: lab.inspect(n)["StartedAt"] for n in (db, app, web)}

    inv = run_module("data_inventory", include_sizes=False)
    [planned] = [u for u in inv["units"] if u["id"] == f"volume:{vol}"]
    assert planned["strategy"] == "stop" and planned["containers"] == [web, app, db], planned

    result = run_module("snapshot", repository=repo, volumes=[vol])
    unit = result["units"][f"volume:{vol}"]
    assert result["complete"] is True and set(unit["downtime"]) == {db, app, web}, unit

    state = {n: lab.inspect(n) for n in (db, app, web)}
    for n in (db, app, web):
        assert state[n]["Status"] == "running" and state[n]["StartedAt"] != before[n], f"{n} was not stopped: {state[n]}"
    finished = {n: engine_time(state[n]["FinishedAt"]) for n in state}
    started = {n: engine_time(state[n]["StartedAt"]) for n in state}
    assert finished[web] < finished[app] < finished[db], f"stop order wrong: {finished}"
    assert max(finished.values()) < min(started.values()), "a container started before all were stopped"
    assert started[db] < started[app] < started[web], f"start order wrong: {started}"
    seq = [(n, a) for _t, n, a in lab.events([db, app, web], ("die", "start")) if _t > min(engine_time(b) for b in before.values())]
    assert seq[-6:] == [(web, "die"), (app, "die"), (db, "die"), (db, "start"), (app, "start"), (web, "start")], seq


# --------------------------------------------------------------------------------------------
# 3. a container that does not start again
# --------------------------------------------------------------------------------------------
def test_a_container_that_cannot_start_again_fails_its_unit_after_the_others_started(lab):
    vol = lab.volume("data")
    vol_dir = lab.volume_dir(vol)
    random_file(os.path.join(vol_dir, "blob.bin"), 1)
    other = lab.volume("other")
    parent = lab.tmpdir("binds")
    needed = os.path.join(parent, "needed")
    os.mkdir(needed)
    # lifeboat.order: first starts first. Stop order: last, bad, first; start: first, bad, last.
    first = lab.container("first", [vol], {"lifeboat.order": "1"})
    # bad's pre hook removes the host directory it bind-mounts (through a bind of its parent):
    # it runs on, but the engine refuses to start it again.
    bad = lab.container("bad", [vol], {"lifeboat.order": "2", "lifeboat.pre": "rm -rf /parent/needed"},
                        extra=["--mount", f"type=bind,src={parent},dst=/parent",
                               "--mount", f"type=bind,src={needed},dst=/needed"])
    last = lab.container("last", [vol], {"lifeboat.order": "3"})
    bystander = lab.container("bystander", [other])
    repo = lab.repo()
    before = {n: lab.inspect(n)["StartedAt"] for n in (first, bad, last, bystander)}

    result = run_module("snapshot", repository=repo, volumes=[vol, other], parallel=1, expect_fail=True)
    assert not os.path.exists(needed), "the pre hook did not remove the bind source"
    [failure] = result["failed_units"]
    assert failure["id"] == f"volume:{vol}", result["failed_units"]
    assert bad in failure["error"] and "did not start again" in failure["error"], failure
    assert "bind source path does not exist" in failure["error"], failure
    assert first not in failure["error"] and last not in failure["error"], failure
    assert f"volume:{vol}" in result["msg"] and bad in result["msg"], result["msg"]
    assert result["units"][f"volume:{vol}"]["failed"] is True

    states = {n: lab.inspect(n) for n in (first, bad, last, bystander)}
    assert states[bad]["Status"] == "exited", states[bad]
    for n in (first, last):
        assert states[n]["Status"] == "running" and states[n]["StartedAt"] != before[n], f"{n}: {states[n]}"
    # `last` is started after `bad` failed to start: one failure does not stop the others.
    assert engine_time(states[first]["StartedAt"]) < engine_time(states[last]["StartedAt"])
    # the other unit was captured: the snapshot is there, listed as incomplete
    assert result["snapshot_id"] and result["complete"] is False
    man = read_manifest(repo, result["snapshot_id"])
    assert [u["id"] for u in man["units"]] == [f"volume:{other}"] and man["complete"] is False
    assert man["failed"][0]["id"] == f"volume:{vol}"
    assert states[bystander]["Status"] == "running"
    # bad stays in the journal: the next lifeboat run tries to start it again (and says so), and
    # only forgets it once it runs (started by hand) or is gone.
    [journal] = lab.journals()
    with open(journal, encoding="utf-8") as fh:
        assert [c["name"] for c in json.load(fh)["containers"]] == [bad]
    again = run_module("snapshot_info", repository=repo)
    assert [r["container"] for r in again["repaired"]] == [bad] and again["repaired"][0]["result"].startswith("failed")
    assert len(lab.journals()) == 1
    subprocess.run(["docker", "rm", "-f", bad], check=True, capture_output=True)
    gone = run_module("snapshot_info", repository=repo)
    assert gone["repaired"][0]["result"].startswith("gone") and lab.journals() == []


# --------------------------------------------------------------------------------------------
# 4. hooks
# --------------------------------------------------------------------------------------------
def test_failing_and_timed_out_hooks_and_post_hooks_that_still_run(lab):
    vfail = lab.volume("fail")
    vcont = lab.volume("cont")
    vslow = lab.volume("slow")
    failing = lab.container("failing", [vfail], {"lifeboat.pre": "echo broken >&2; exit 3",
                                                 "lifeboat.post": stamp("failing", "post"),
                                                 "lifeboat.on_error": "fail"})
    tolerant = lab.container("tolerant", [vcont], {"lifeboat.pre": "exit 3",
                                                   "lifeboat.post": stamp("tolerant", "post"),
                                                   "lifeboat.on_error": "continue"})
    # A compound command: the shell forks `sleep`, which must die with it.
    slow = lab.container("slow", [vslow], {"lifeboat.pre": f"{stamp('slow', 'pre')}; sleep 60; echo late",
                                           "lifeboat.post": stamp("slow", "post"),
                                           "lifeboat.hook_timeout": "2"})
    repo = lab.repo()
    before = {n: lab.inspect(n)["StartedAt"] for n in (failing, tolerant, slow)}

    began = time.monotonic()
    result = run_module("snapshot", repository=repo, volumes=[vfail, vcont, vslow], parallel=3, expect_fail=True)
    took = time.monotonic() - began
    assert took < 25, f"a 2 s hook timeout made the run take {took:.1f} s"

    failed = {f["id"]: f["error"] for f in result["failed_units"]}
    assert set(failed) == {f"volume:{vfail}", f"volume:{vslow}"}, failed
    assert "pre hook" in failed[f"volume:{vfail}"] and "exited 3" in failed[f"volume:{vfail}"], failed
    assert "broken" in failed[f"volume:{vfail}"], "the hook's output should say why"
    assert "timed out after 2 s" in failed[f"volume:{vslow}"], failed

    # on_error fail: not captured (never stopped), post hook ran, still running
    ufail = result["units"][f"volume:{vfail}"]
    assert ufail["failed"] is True
    assert [(h["phase"], h["exit_code"]) for h in ufail["hooks"]] == [("pre", 3), ("post", 0)], ufail["hooks"]
    # on_error continue: captured, the hook's failure reported
    ucont = result["units"][f"volume:{vcont}"]
    assert not ucont.get("failed") and ucont["sha256"], ucont
    [pre] = [h for h in ucont["hooks"] if h["phase"] == "pre"]
    assert pre["exit_code"] == 3 and pre["error"] == "exited 3" and pre["on_error"] == "continue", pre
    # timeout: killed within seconds, post hook ran, no sleep left behind
    uslow = result["units"][f"volume:{vslow}"]
    [pre] = [h for h in uslow["hooks"] if h["phase"] == "pre"]
    assert pre["timed_out"] is True and pre["seconds"] < 6, pre
    assert "sleep 60" not in processes_in(slow), f"the timed-out hook left a process behind:\n{processes_in(slow)}"

    posts = {who for _u, who, what in lab.stamps() if what == "post"}
    assert posts == {"failing", "tolerant", "slow"}, lab.stamps()
    states = {n: lab.inspect(n) for n in (failing, tolerant, slow)}
    assert all(s["Status"] == "running" for s in states.values()), states
    assert states[failing]["StartedAt"] == before[failing], "a unit whose pre hook failed was stopped anyway"
    assert states[slow]["StartedAt"] == before[slow], "a unit whose pre hook timed out was stopped anyway"
    assert states[tolerant]["StartedAt"] != before[tolerant], "the captured unit was not stopped"

    man = read_manifest(repo, result["snapshot_id"])
    assert [u["id"] for u in man["units"]] == [f"volume:{vcont}"] and man["complete"] is False
    assert [h["exit_code"] for h in man["units"][0]["hooks"] if h["phase"] == "pre"] == [3]
    assert lab.journals() == []


def test_policy_hooks_from_data_inventory_run_around_the_capture(lab):
    vol = lab.volume("pol")
    app = lab.container("app", [vol])
    repo = lab.repo()
    before = lab.inspect(app)["StartedAt"]
    policy = {vol: {"strategy": "stop", "pre": stamp("app", "policy-pre"), "post": stamp("app", "policy-post"),
                    "hook_timeout": 20, "on_error": "fail"}}
    inv = run_module("data_inventory", policy=policy, undeclared="ignore", include_sizes=False)
    [unit] = [u for u in inv["units"] if u["id"] == f"volume:{vol}"]
    assert unit["hooks"]["pre"] == policy[vol]["pre"] and unit["containers"] == [app], unit

    result = run_module("snapshot", repository=repo, units=[unit])
    got = result["units"][f"volume:{vol}"]
    assert result["complete"] is True
    assert [(h["phase"], h["source"], h["exit_code"]) for h in got["hooks"]] == \
        [("pre", "policy", 0), ("post", "policy", 0)], got["hooks"]
    assert [what for _u, _who, what in lab.stamps()] == ["policy-pre", "policy-post"], lab.stamps()
    state = lab.inspect(app)
    assert state["Status"] == "running" and state["StartedAt"] != before

    # a failing policy hook fails the unit the same way
    unit["hooks"]["pre"] = "exit 4"
    result = run_module("snapshot", repository=repo, units=[unit], expect_fail=True)
    assert "exited 4" in result["failed_units"][0]["error"], result["failed_units"]
    assert [w for _u, _who, w in lab.stamps()][-1] == "policy-post", "the post hook did not run after a failed pre"
    assert lab.status(app) == "running"


# --------------------------------------------------------------------------------------------
# 5. locks between runs
# --------------------------------------------------------------------------------------------
def gated_hook(who: str) -> dict[str, str]:
    """A pre hook that stamps, waits while /log/hold-WHO exists, sleeps 2 s and stamps again."""
    return {"lifeboat.pre": f"{stamp(who, 'begin')}; while [ -f /log/hold-{who} ]; do usleep 100000; done; "
                            f"sleep 2; {stamp(who, 'end')}",
            "lifeboat.hook_timeout": "120"}


def test_two_runs_on_one_unit_wait_for_each_other_or_fail_naming_the_holder(lab):
    vol = lab.volume("locked")
    app = lab.container("app", [vol], gated_hook("app"))
    repo = lab.repo()
    lock = f"unit:volume:{vol}"

    # Two at once with a long lock_timeout: both succeed, one after the other.
    runs = [Background(lab, "snapshot", repository=repo, volumes=[vol], lock_timeout=60) for _run in range(2)]
    results = [r.result() for r in runs]
    waits = sorted(r["units"][f"volume:{vol}"]["lock_wait"] for r in results)
    assert all(r["complete"] for r in results)
    assert waits[0] < 1.5 and waits[1] > 1.5, f"one run should have waited for the other: lock_wait {waits}"
    begins = [u for u, _who, what in lab.stamps() if what == "begin"]
    ends = [u for u, _who, what in lab.stamps() if what == "end"]
    assert len(begins) == 2 and ends[0] < begins[1], f"the two pre hooks overlapped: {lab.stamps()}"
    assert lab.lock_holder(lock) is None, "a released lock still names a holder"

    # A holder that does not let go, and lock_timeout 1: a snapshot and a restore fail naming it.
    hold = os.path.join(lab.log_dir, "hold-app")
    open(hold, "w").close()
    holder = Background(lab, "snapshot", repository=repo, volumes=[vol], lock_timeout=60)
    try:
        info = wait_for("the holder to take the lock", lambda: lab.lock_holder(lock), 60)
        assert descends_from(info["pid"], holder.proc.pid), f"lock holder {info} is not the run started here"
        assert info["operation"].startswith("snapshot ")
        began = time.monotonic()
        busy = run_module("snapshot", repository=repo, volumes=[vol], lock_timeout=1, expect_fail=True)
        [failure] = busy["failed_units"]
        for part in (f"process {info['pid']}", info["operation"], info["since"], "lock_timeout"):
            assert part in failure["error"], f"{part!r} missing from: {failure['error']}"
        assert busy["snapshot_id"] is None
        restore = run_module("snapshot_restore", repository=repo, unit=f"volume:{vol}", force=True,
                             lock_timeout=1, expect_fail=True)
        for part in (f"process {info['pid']}", info["operation"]):
            assert part in restore["msg"], f"{part!r} missing from: {restore['msg']}"
        assert "was not touched" in restore["msg"]
        assert lab.lock_holder(lock) == info and alive(info["pid"]), "the holder lost its lock meanwhile"
        assert time.monotonic() - began < 30
        # A restore with a long lock_timeout waits for the holder, then runs.
        waiter = Background(lab, "snapshot_restore", repository=repo, unit=f"volume:{vol}", force=True,
                            lock_timeout=60)
        time.sleep(3)
        assert waiter.proc.poll() is None, "the restore did not wait for the snapshot holding the unit"
    finally:
        os.unlink(hold)
    held = holder.result()
    assert held["complete"] is True
    restored = waiter.result()
    assert waiter.ended >= holder.ended - 0.5 and restored["snapshot_id"], restored
    assert lab.status(app) == "running"


def test_a_killed_holder_releases_its_lock_at_once(lab):
    vol = lab.volume("locked")
    app = lab.container("app", [vol], gated_hook("app"))
    repo = lab.repo()
    lock = f"unit:volume:{vol}"
    hold = os.path.join(lab.log_dir, "hold-app")
    open(hold, "w").close()
    holder = Background(lab, "snapshot", repository=repo, volumes=[vol], lock_timeout=60)
    try:
        info = wait_for("the holder to take the lock", lambda: lab.lock_holder(lock), 60)
        assert descends_from(info["pid"], holder.proc.pid)
        os.kill(info["pid"], signal.SIGKILL)
    finally:
        holder.wait_killed()
        os.unlink(hold)
    assert not alive(info["pid"])
    assert lab.lock_holder(lock) == info, "the dead holder's name stays in the file: only flock counts"
    result = run_module("snapshot", repository=repo, volumes=[vol], lock_timeout=1)
    assert result["complete"] is True and result["units"][f"volume:{vol}"]["lock_wait"] < 0.5
    assert lab.status(app) == "running"


def test_runs_on_different_units_proceed_at_the_same_time(lab):
    vol1 = lab.volume("one")
    vol2 = lab.volume("two")
    lab.container("one", [vol1], gated_hook("one"))
    lab.container("two", [vol2], gated_hook("two"))
    repo = lab.repo()
    holds = [os.path.join(lab.log_dir, f"hold-{who}") for who in ("one", "two")]
    for hold in holds:
        open(hold, "w").close()
    runs = [Background(lab, "snapshot", repository=repo, volumes=[v], lock_timeout=60) for v in (vol1, vol2)]
    try:
        # Both pre hooks begin while neither can end: each run holds its unit's lock at once.
        wait_for("both runs to be inside their pre hooks",
                 lambda: {who for _u, who, what in lab.stamps() if what == "begin"} == {"one", "two"}, 60)
        assert not [s for s in lab.stamps() if s[2] == "end"]
        assert lab.lock_holder(f"unit:volume:{vol1}")["pid"] != lab.lock_holder(f"unit:volume:{vol2}")["pid"]
    finally:
        for hold in holds:
            os.unlink(hold)
    results = [r.result() for r in runs]
    assert all(r["complete"] for r in results)
    assert all(r["units"][f"volume:{v}"]["lock_wait"] < 0.5 for r, v in zip(results, (vol1, vol2)))
    spans = intervals(lab.stamps(), "begin", "end")
    assert max(b for b, _e in spans.values()) < min(e for _b, e in spans.values()), \
        f"the two runs' pre hooks did not overlap: {spans}"
    assert len({r["snapshot_id"] for r in results}) == 2


# --------------------------------------------------------------------------------------------
# 6. parallel units within one run
# --------------------------------------------------------------------------------------------
def test_parallel_captures_independent_units_at_once_and_shared_ones_in_turn(lab):
    vol1 = lab.volume("one")
    vol2 = lab.volume("two")
    lab.container("one", [vol1], {"lifeboat.pre": f"{stamp('one', 'begin')}; sleep 3; {stamp('one', 'end')}"})
    lab.container("two", [vol2], {"lifeboat.pre": f"{stamp('two', 'begin')}; sleep 3; {stamp('two', 'end')}",
                                  "lifeboat.post": stamp("two", "post")})
    repo = lab.repo()
    result = run_module("snapshot", repository=repo, volumes=[vol1, vol2], parallel=2)
    assert result["complete"] is True and result["groups"] == 2
    spans = intervals(lab.stamps(), "begin", "end")
    assert max(b for b, _e in spans.values()) < min(e for _b, e in spans.values()), \
        f"parallel: 2 did not run the two units' hooks at once: {spans}"
    whole = max(e for _b, e in spans.values()) - min(b for b, _e in spans.values())
    assert whole < 5, f"two 3 s hooks took {whole:.1f} s with parallel: 2"

    # One container writing to two volumes: its units are one group, captured in turn.
    open(os.path.join(lab.log_dir, "events"), "w").close()
    sa = lab.volume("sa")
    sb = lab.volume("sb")
    shared_hooks = {"lifeboat.pre": f"{stamp('shared', 'begin')}; sleep 1; {stamp('shared', 'end')}",
                    "lifeboat.post": stamp("shared", "post")}
    shared = lab.container("shared", [sa, sb], shared_hooks)
    t_before = time.time_ns()
    result = run_module("snapshot", repository=repo, volumes=[sa, sb], parallel=2)
    assert result["complete"] is True and result["groups"] == 1
    assert [what for _u, _who, what in lab.stamps()] == ["begin", "end", "post", "begin", "end", "post"], \
        f"the two units of one container were captured at the same time: {lab.stamps()}"
    seq = [a for t, _n, a in lab.events([shared], ("die", "start")) if t >= t_before]
    assert seq == ["die", "start", "die", "start"], f"{shared} should stop once per unit, in turn: {seq}"
    assert lab.status(shared) == "running"
