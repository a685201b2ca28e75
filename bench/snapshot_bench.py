#!/usr/bin/env python
"""Speed and memory of lifeboat.docker.snapshot / snapshot_restore against the plain tools.

    .venv/bin/python bench/snapshot_bench.py                 # scale 1 (412 MiB), memory also at 3
    .venv/bin/python bench/snapshot_bench.py --scale 0.2 --mem-scale 0.6 --runs 1   # quick try

Builds a reproducible data set (seeded RNG) in a Docker volume: database-like 8 KiB pages, random
"media", text logs and ~30,000 small files in nested directories. Then, page cache warm, each
timed thing RUNS times (median reported), the compared commands alternating:

  A  `tar -cf - . | zstd -T0 -3 > FILE` in the volume's directory (the reference);
  B  `ansible localhost -m lifeboat.docker.snapshot` into a fresh repository each time: the whole
     command and the unit's own `seconds`;
  C  the classic `docker run --rm -v VOL:/data -v OUT:/backup IMAGE tar czf /backup/x.tgz -C /data .`
     (in the same turns as A and B);
  D  `snapshot_restore` into a new volume (the module's `seconds`) against
     `zstd -d < OBJECT | tar -x -C EMPTYDIR` of the same object (EMPTYDIR: a new volume's);
  E  an unchanged re-snapshot into the same repository (module `seconds`, bytes_read must be 0)
     against restic's unchanged second `restic backup` of the same tree;
  F  peak memory (VmHWM) of the module's own Python process, for snapshot, unchanged
     re-snapshot and restore, at --scale and at --mem-scale.

A timed run during which the rest of the machine used much CPU is run again (--retries); the
table shows what the kept runs saw. Prints a table of timings and one of goals (ratio, goal,
met). Nothing is deleted before the end (this ext4 is slow to create files where many were just
deleted: see bench/README.md). It works in a throw-away dockerd of its own (data root in the work
directory), so that other containers on the machine neither slow nor stall the modules' engine
inventory; --real-engine uses the host's. Everything it creates (the engine, volumes and
containers prefixed `lbs…` and labelled org.lifeboat-test.bench, one work directory) is removed at
the end, also on failure, Ctrl-C or SIGTERM. Run as root with the test bench up (dockerd,
lifeboat-test/debian-base:12, restic, zstd: tests/testbed/setup.sh) and the venv (scripts/venv.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
VENV_BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / ".venv" / "collections"
MODULES = ROOT / "plugins" / "modules"
LABEL = "org.lifeboat-test.bench"
CLASSIC_IMAGE = "lifeboat-test/debian-base:12"
MIB = 1 << 20

# A timed run is "disturbed" when the rest of the machine (or the hypervisor, as steal) used more
# CPU than DISTURBED_S + DISTURBED_SHARE x the run's time meanwhile, plus ALLOWANCE: for C, the
# engine's own work to start and remove a container (dockerd, containerd, runc: not in the
# container's cgroup).
DISTURBED_S = 0.3
DISTURBED_SHARE = 0.03
ALLOWANCE = {"C": 1.5}

# Goals of issue 4 ("Speed").
GOAL_SNAPSHOT = 1.15     # B_unit / A <=
GOAL_CLASSIC = 8.0       # C / B >=
GOAL_RESTORE = 1.15      # D_module / D_reference <=
GOAL_UNCHANGED = 0.25    # E_module / restic <
GOAL_MEMORY_MB = 150.0   # peak < (MB = 10^6 bytes)
FLAT_TOLERANCE = 1.10    # "flat": peak at the larger size <= 1.10 x peak at the smaller

# Runs the module file itself (no AnsiballZ) and writes its own peak RSS when it ends: VmHWM of
# its own address space. Not getrusage(RUSAGE_SELF).ru_maxrss: Linux folds the high-water mark of
# the address space a process had before execve (here the forking bench, tens of MB) into it.
LAUNCHER = r'''
import json, runpy, sys
module_file, args_file, report = sys.argv[1:4]
sys.argv = [module_file, args_file]
code = 0
try:
    runpy.run_path(module_file, run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(report, "w") as fh:
        json.dump({"vmhwm_kib": hwm}, fh)
sys.exit(code)
'''


class BenchError(Exception):
    pass


def sh(cmd: list[str] | str, *, cwd: str | Path | None = None, env: dict | None = None,
       check: bool = True, shell: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, capture_output=True, check=False,
                          **({"executable": "/bin/bash"} if shell else {}))
    if check and proc.returncode != 0:
        raise BenchError(f"{cmd if shell else ' '.join(map(str, cmd))} failed (exit {proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


def machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, idle and iowait left out), plus
    steal: time the hypervisor gave this virtual machine's CPUs to others."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and of its children that ended (the modules, tar, zstd, ...)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        use = resource.getrusage(who)
        total += use.ru_utime + use.ru_stime
    return total


def progress(what: str, t: dict[str, list[float]]) -> None:
    print(f"{', '.join(what)} done: " + "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vs)}"
                                                  for k, vs in t.items() if k[0] in what), flush=True)


# -- the data set ----------------------------------------------------------------------------

WORDS = ("alpha beta gamma delta order invoice customer shipped pending total amount currency "
         "EUR USD address street city country warehouse item quantity price discount status "
         "created updated deleted user admin session token request response error warning info "
         "debug trace latency cache hit miss upstream backend frontend queue worker job retry").split()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def make_db(root: Path, rng: random.Random, size: int) -> int:
    """Postgres-like relation files of 8 KiB pages: header, line pointers, free space, rows."""
    pool = []
    for _template in range(600):  # row "templates": ints from small ranges and short text, as tables hold
        text = " ".join(rng.choices(WORDS, k=rng.randint(3, 9))).encode()
        pool.append(struct.pack("<IIHH", rng.randrange(1000), rng.randrange(50), rng.randrange(8), 0)
                    + text[:80].ljust(80, b"\0"))
    pages = size // 8192
    per_file = 2048  # 16 MiB segments
    lsn = 0x1000000
    written = 0
    for f in range((pages + per_file - 1) // per_file):
        n = min(per_file, pages - f * per_file)
        chunks = []
        for _row in range(n):
            rows = rng.randint(30, 70)
            ids = rng.randbytes(8 * rows)
            body = b"".join(pool[j] + ids[k * 8:k * 8 + 8]
                            for k, j in enumerate(rng.choices(range(len(pool)), k=rows)))
            lsn += rng.randrange(1, 4096)
            lower = 24 + 4 * rows
            upper = 8192 - len(body)
            header = struct.pack("<QHHHHHHI", lsn, 0, 4, lower, upper, 8192, 0x2004, 0)
            pointers = b"".join(struct.pack("<I", (upper + k * 108) | (1 << 15) | (108 << 17))
                                for k in range(rows))
            chunks.append(header + pointers + b"\0" * (upper - lower) + body)
        _write(root / "db" / "base" / "16384" / f"{24576 + f}", b"".join(chunks))
        written += n * 8192
    return written


def make_media(root: Path, rng: random.Random, size: int) -> int:
    written, i = 0, 0
    while written < size:
        n = min(size - written, rng.randint(1 * MIB, 8 * MIB))
        _write(root / "media" / f"{2020 + i % 5}" / f"{i % 12 + 1:02d}" / f"IMG_{i:04d}.jpg", rng.randbytes(n))
        written += n
        i += 1
    return written


def make_logs(root: Path, rng: random.Random, size: int) -> int:
    paths = ["/api/v1/items", "/api/v1/orders", "/api/v1/users", "/health", "/static/app.js", "/login"]
    levels = ["INFO"] * 8 + ["DEBUG", "WARN"]
    t = 1_700_000_000.0
    written, i = 0, 0
    while written < size:
        target = min(size - written, 8 * MIB)
        lines, n = [], 0
        while n < target:
            t += rng.random() * 0.05
            line = (f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))}.{int(t * 1000) % 1000:03d}Z "
                    f"{rng.choice(levels)} [worker-{rng.randrange(8)}] {rng.choice(('GET', 'GET', 'POST'))} "
                    f"{rng.choice(paths)}/{rng.randrange(100000)} {rng.choice((200, 200, 200, 404, 500))} "
                    f"{rng.randrange(2000)}ms user=u{rng.randrange(5000)} req={rng.getrandbits(32):08x}\n")
            lines.append(line)
            n += len(line)
        data = "".join(lines).encode()[:target]
        _write(root / "logs" / (f"app.log.{i}" if i else "app.log"), data)
        written += len(data)
        i += 1
    return written


def make_small(root: Path, rng: random.Random, count: int) -> tuple[int, int]:
    """COUNT files of 0.5-16 KiB (log-uniform), 40 per directory, three levels deep; 60 % text
    (JSON-ish documents cut from a shared corpus), 40 % random bytes (thumbnails)."""
    corpus = " ".join(rng.choices(WORDS, k=400_000)).encode()
    written = 0
    for i in range(count):
        d = i // 40
        size = int(512 * 32 ** rng.random())
        if rng.random() < 0.6:
            off = rng.randrange(len(corpus) - 16384)
            head = f'{{"id": {i}, "rev": {rng.randrange(1 << 30)}, "body": "'.encode()
            data = (head + corpus[off:off + size])[:size]
            name = f"doc{i}.json"
        else:
            data = rng.randbytes(size)
            name = f"thumb{i}.webp"
        _write(root / "files" / f"{d % 16:x}" / f"{d // 16 % 16:x}" / f"d{d}" / name, data)
        written += len(data)
    return count, written


def make_dataset(root: Path, scale: float, seed: int) -> dict:
    rng = random.Random(seed)
    started = time.perf_counter()
    info = {"db": make_db(root, rng, int(120 * MIB * scale)),
            "media": make_media(root, rng, int(100 * MIB * scale)),
            "logs": make_logs(root, rng, int(60 * MIB * scale))}
    info["small_files"], info["small"] = make_small(root, rng, int(30_000 * scale))
    os.sync()  # nothing dirty left to be written back during the timings
    files = sum(len(f) for _d, _s, f in os.walk(root))
    info.update(files=files, bytes=info["db"] + info["media"] + info["logs"] + info["small"],
                seconds=time.perf_counter() - started)
    return info


def describe(info: dict) -> str:
    return (f"{info['files']:,} files, {info['bytes'] / MIB:.0f} MiB: db pages {info['db'] / MIB:.0f} MiB, "
            f"media {info['media'] / MIB:.0f} MiB, logs {info['logs'] / MIB:.0f} MiB, "
            f"{info['small_files']:,} small files {info['small'] / MIB:.0f} MiB")


# -- the bench ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = "lbs" + secrets.token_hex(3)
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-", dir=args.workdir))
        self.engine = None              # the throw-away engine, unless --real-engine
        self.docker = ["docker"]        # the docker CLI, pointed at the engine in use
        self.docker_host: dict[str, str] = {}  # docker_host for the modules
        self.state = self.work / "state"  # the modules' journal directory (LIFEBOAT_STATE_DIR)
        self.state.mkdir()
        self.launcher = self.work / "launcher.py"
        self.launcher.write_text(LAUNCHER)
        self.counter = 0
        self.t: dict[str, list[float]] = {}       # wall seconds of each timed run, by measurement
        self.other: dict[str, list[float]] = {}   # CPU seconds the rest of the machine used meanwhile
        self.notes: dict[str, str] = {}
        self.retried: dict[str, int] = {}         # disturbed runs discarded, by measurement
        self.container_cpu = 0.0

    def name(self, what: str) -> str:
        self.counter += 1
        return f"{self.prefix}_{what}{self.counter}"

    def path(self, what: str) -> Path:
        return self.work / self.name(what)

    # -- docker ------------------------------------------------------------------------------
    def start_engine(self) -> None:
        """A dockerd of the bench's own (tests/integration/fixtures/engine.py), its data root in
        the work directory's file system, with the classic command's image copied in: the
        modules then inventory only the bench's volumes, whatever else runs on the machine."""
        from fixtures.engine import ThrowawayEngine  # pylint: disable=import-outside-toplevel

        self.engine = ThrowawayEngine(base_dir=self.args.workdir).start()
        self.engine.load_image(CLASSIC_IMAGE)
        self.docker = ["docker", "-H", self.engine.url]
        self.docker_host = {"docker_host": self.engine.url}

    def volume(self, name: str) -> Path:
        sh([*self.docker, "volume", "create", "--label", f"{LABEL}={self.prefix}", name])
        return Path(sh([*self.docker, "volume", "inspect", "-f", "{{.Mountpoint}}", name]).stdout.decode().strip())

    def remove_volume(self, name: str) -> None:
        sh([*self.docker, "volume", "rm", "-f", name], check=False)

    def cleanup(self) -> None:
        flt = f"label={LABEL}={self.prefix}"
        ids = sh([*self.docker, "ps", "-aq", "--filter", flt], check=False).stdout.decode().split()
        if ids:
            sh([*self.docker, "rm", "-f", *ids], check=False)
        names = sh([*self.docker, "volume", "ls", "-q", "--filter", flt], check=False).stdout.decode().split()
        names += [n for n in sh([*self.docker, "volume", "ls", "-q"], check=False).stdout.decode().split()
                  if n.startswith(self.prefix)]
        for n in sorted(set(names)):
            self.remove_volume(n)
        if self.engine is not None:
            self.engine.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- ansible -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_PYTHON_INTERPRETER=str(VENV_BIN / "python"),
            ANSIBLE_LOCALHOST_WARNING="0",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
            ANSIBLE_DEPRECATION_WARNINGS="0",
            LIFEBOAT_STATE_DIR=str(self.state),
        )
        return env

    def poll_default_config(self) -> Path:
        """The project's ansible.cfg with Ansible's own default internal_poll_interval (0.001 s)
        instead of the project's: for the information row that shows what the setting is worth."""
        path = self.work / "ansible-default-poll.cfg"
        lines = []
        for line in (ROOT / "ansible.cfg").read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key == "internal_poll_interval":
                continue
            if key == "collections_path":  # relative paths resolve against the file's directory
                line = f"collections_path = {COLLECTIONS}"
            lines.append(line)
            if line.strip() == "[defaults]":
                lines.append("internal_poll_interval = 0.001")
        path.write_text("\n".join(lines) + "\n")
        return path

    def ansible(self, module: str, args: dict | None, config: Path | None = None) -> tuple[float, dict]:
        cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", module]
        if args is not None and module.startswith("lifeboat."):
            args = {**self.docker_host, **args}
        if args is not None:
            cmd += ["-a", json.dumps(args)]
        env = self.env()
        if config is not None:
            env["ANSIBLE_CONFIG"] = str(config)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
        elapsed = time.perf_counter() - start
        try:
            result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise BenchError(f"{module}: no JSON result (rc={proc.returncode})\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
        if result.get("failed"):
            raise BenchError(f"{module} failed: {result.get('msg')}\n{result.get('exception', '')[-2000:]}")
        return elapsed, result

    def direct(self, module: str, args: dict) -> tuple[dict, float, float]:
        """Run plugins/modules/MODULE.py in a Python process of its own (no Ansible, no AnsiballZ).

        Returns (result, VmHWM MB the process read of itself at its end, VmHWM MB polled from
        /proc/PID/status every 20 ms while it ran: a cross-check). Children (tar, zstd) are other
        processes with their own address spaces: in neither figure.
        """
        args_file = self.work / "args.json"
        report = self.work / "rss.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**self.docker_host, **args}}))
        env = dict(self.env(), PYTHONPATH=str(COLLECTIONS))
        proc = subprocess.Popen([str(VENV_BIN / "python"), str(self.launcher), str(MODULES / f"{module}.py"),
                                 str(args_file), str(report)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=self.work)
        hwm = [0]

        def poll() -> None:
            status = f"/proc/{proc.pid}/status"
            while proc.poll() is None:
                try:
                    with open(status) as fh:
                        for line in fh:
                            if line.startswith("VmHWM:"):
                                hwm[0] = max(hwm[0], int(line.split()[1]))
                except (OSError, ValueError):
                    pass
                time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        out, err = proc.communicate()
        poller.join()
        try:
            result = json.loads(out)
        except ValueError:
            raise BenchError(f"{module} (direct) gave no JSON (rc={proc.returncode}): "
                             f"{out[-2000:]!r} {err[-2000:]!r}") from None
        if result.get("failed"):
            raise BenchError(f"{module} (direct) failed: {result.get('msg')}")
        own = json.loads(report.read_text())["vmhwm_kib"] * 1024 / 1e6
        return result, own, hwm[0] * 1024 / 1e6

    # -- measurements ------------------------------------------------------------------------
    def measure(self, key: str, fn):
        """Run fn (which must make its own fresh target each call), timed, then sync (untimed).

        Also measures the CPU the rest of the machine used meanwhile: machine-wide busy CPU and
        steal, minus what this bench, its children and its container used. A disturbed run (see
        DISTURBED_S) is discarded and run again, at most --retries times per measurement; what
        the kept runs saw is in the table's `other CPU s` column.
        """
        attempts: list[tuple[float, float, object]] = []  # (other, wall, result) of disturbed runs
        while True:
            self.container_cpu = 0.0
            cpu0, own0 = machine_cpu(), own_cpu()
            start = time.perf_counter()
            result = fn()
            wall = time.perf_counter() - start
            other = max(0.0, (machine_cpu() - cpu0) - (own_cpu() - own0) - self.container_cpu)
            os.sync()
            disturbed = other > DISTURBED_S + DISTURBED_SHARE * wall + ALLOWANCE.get(key, 0.0)
            if disturbed:
                attempts.append((other, wall, result))
                if self.retried.get(key, 0) < self.args.retries:
                    self.retried[key] = self.retried.get(key, 0) + 1
                    print(f"  {key}: {wall:.2f} s discarded, the rest of the machine used {other:.2f} CPU s "
                          "meanwhile", flush=True)
                    continue
                # Retries used up: keep the least disturbed of this measurement's runs.
                other, wall, result = min(attempts, key=lambda a: a[0])
            self.t.setdefault(key, []).append(wall)
            self.other.setdefault(key, []).append(other)
            return result

    def classic(self, vol: str) -> Path:
        """The classic command; its container's CPU (cgroup v1 cpuacct, polled) goes to container_cpu."""
        outdir = self.path("c")
        outdir.mkdir()
        cidfile = self.work / f"{self.name('cid')}"
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [*self.docker, "run", "--rm", "--cidfile", str(cidfile), "--name", self.name("classic"),
             *(["--network", "none"] if self.engine else []),  # the throw-away engine has no bridge
             "--label", f"{LABEL}={self.prefix}", "-v", f"{vol}:/data", "-v", f"{outdir}:/backup", CLASSIC_IMAGE,
             "tar", "czf", "/backup/x.tgz", "-C", "/data", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cid, used = "", 0.0
        while proc.poll() is None:
            if not cid and cidfile.exists():
                cid = cidfile.read_text().strip()
            if cid:
                try:
                    used = int(Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage").read_text()) / 1e9
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        _out, err = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"the classic docker run failed (exit {proc.returncode}): {err.decode(errors='replace')}")
        self.container_cpu = used
        return outdir

    def record(self, key: str, seconds: float, same_run_as: str) -> None:
        """A figure a module reported for the run just measured under SAME_RUN_AS."""
        self.t.setdefault(key, []).append(seconds)
        self.other.setdefault(key, []).append(self.other[same_run_as][-1])

    def warm(self, data: Path) -> None:
        # `tar -cf - . > /dev/null` would not read the files (GNU tar detects /dev/null).
        sh("tar -cf - . | cat > /dev/null", cwd=data, shell=True)

    def run(self) -> None:
        a = self.args
        runs = a.runs
        # Nothing is deleted before the end (see bench/README.md): room for the data set, the
        # reference archives, repositories and extracted copies (retries included), and the memory runs.
        need = 1.2 * 450 * MIB * (a.scale * (4 + 4 * (runs + a.retries)) + a.mem_scale * 2)
        for where in (self.work, Path("/var/lib/docker/volumes")):
            free = shutil.disk_usage(where).free
            if free < need:
                raise BenchError(f"{where} has {free / 1e9:.1f} GB free; this run needs about {need / 1e9:.1f} GB")
        self.load_before = os.getloadavg()
        if not a.real_engine:
            self.start_engine()
        vol = f"{self.prefix}_data"
        unit = f"volume:{vol}"
        data = self.volume(vol)
        engine = f"throw-away engine {self.engine.url}" if self.engine else "the host's engine"
        print(f"prefix {self.prefix}, work directory {self.work}, {engine}", flush=True)
        info = make_dataset(data, a.scale, a.seed)
        print(f"data set (scale {a.scale:g}, seed {a.seed}): {describe(info)}; built in {info['seconds']:.1f} s",
              flush=True)
        self.warm(data)
        self.ansible("ping", None)  # Ansible's own caches warm too
        t, notes = self.t, self.notes
        snap_args = {"volumes": [vol], "strategy": "stop"}

        # Warm-up round, untimed: the reference and the module once each, so that the first timed
        # run finds caches, Ansible, the engine and the file system's allocator as the others do.
        sh(f"tar -cf - . | zstd -T0 -3 > {self.path('a')}", cwd=data, shell=True)
        self.ansible("lifeboat.docker.snapshot", dict(snap_args, repository=str(self.path("repo"))))
        os.sync()

        # A, B, A_sync, B_p1 and C take turns (A B A_sync B_p1 C, B A_sync B_p1 C A, ...), so that a
        # drift of the machine's speed touches all alike: its two cores are shared with other
        # machines, and the same command's CPU time moves by a fifth from one minute to the next.
        # C, which uses one core, is in the same turns as A and B, so that C / A and C / B_unit
        # compare runs made under the same conditions.
        def reference() -> Path:
            out = self.path("a")
            sh(f"tar -cf - . | zstd -T0 -3 > {out}", cwd=data, shell=True)
            return out

        def snapshot(config: Path | None = None) -> tuple[Path, dict]:
            repo = self.path("repo")  # a fresh repository: nothing to reuse
            return repo, self.ansible("lifeboat.docker.snapshot", dict(snap_args, repository=str(repo)), config)[1]

        # B_p1 (information): the same snapshot with Ansible's default internal_poll_interval
        # (0.001 s), which ansible.cfg raises to 0.01 s: the controller then polls 1,000 times a
        # second on the same 2 cores while the module works.
        default_poll = self.poll_default_config()

        # A_sync (information): the reference made as durable as a snapshot's object, which is
        # fsynced before it is named (the reference's own bytes go to disk after its timing, in
        # the untimed sync).
        def reference_synced() -> Path:
            out = self.path("as")
            sh(f"tar -cf - . | zstd -T0 -3 > {out} && sync {out}", cwd=data, shell=True)
            return out

        def fresh(res: dict) -> dict:
            u = res["units"][unit]
            if u.get("reused_from") or not u.get("bytes_read"):
                raise BenchError(f"snapshot into a fresh repository reused data: {u}")
            return u

        repo = obj = None
        order = ("A", "B", "A_sync", "B_p1", "C")
        for i in range(runs):
            for what in order[i % len(order):] + order[:i % len(order)]:
                if what == "C":
                    outdir = self.measure("C", lambda: self.classic(vol))
                    notes["C"] = f"{(outdir / 'x.tgz').stat().st_size / MIB:.0f} MiB"
                    continue
                if what == "A":
                    out = self.measure("A", reference)
                    notes["A"] = f"{out.stat().st_size / MIB:.0f} MiB"
                    continue
                if what == "A_sync":
                    self.measure("A_sync", reference_synced)
                    continue
                if what == "B_p1":
                    _repo, res = self.measure("B_p1_ansible", lambda: snapshot(default_poll))
                    self.record("B_p1", fresh(res)["seconds"], "B_p1_ansible")
                    continue
                repo, res = self.measure("B_ansible", snapshot)
                u = fresh(res)
                self.record("B_unit", u["seconds"], "B_ansible")
                notes["B_unit"] = f"{u['bytes_stored'] / MIB:.0f} MiB stored, {u['files']:,} files"
                obj = u["sha256"]
        progress("ABC", t)
        obj_path = repo / "objects" / obj[:2] / obj
        if not obj_path.is_file():
            raise BenchError(f"object {obj} not found in {repo}")

        # D: restore into a new volume, against zstd -d | tar -x of the same object into a new
        # volume too (the same place on the file system), alternating which goes first. Before,
        # untimed extractions until one is no faster than the one before: they take the inode
        # slots that earlier deletions (other runs, other tests) left behind, which this ext4 is
        # slow to reuse (see bench/README.md).
        def extract_ref() -> None:
            dest = self.volume(self.name("extracted"))
            sh(f"zstd -d < {obj_path} | tar -x -C {dest}", shell=True)

        def restore() -> dict:
            return self.ansible("lifeboat.docker.snapshot_restore", {
                "repository": str(repo), "unit": unit, "target_volume": self.name("restored")})[1]

        settle = []
        while len(settle) < 6:
            start = time.perf_counter()
            extract_ref()
            settle.append(time.perf_counter() - start)
            os.sync()
            if len(settle) >= 2 and settle[-1] > 0.85 * settle[-2]:
                break
        print(f"untimed extractions before D: {', '.join(f'{x:.2f}' for x in settle)} s", flush=True)
        for i in range(runs):
            for what in (("module", "ref") if i % 2 == 0 else ("ref", "module")):
                if what == "module":
                    res = self.measure("D_ansible", restore)
                    self.record("D_module", res["seconds"], "D_ansible")
                    notes["D_module"] = f"verified: {res.get('verified')}, {res.get('members')} members"
                else:
                    self.measure("D_ref", extract_ref)
        progress("D", t)

        # E: unchanged re-snapshot into the same repository (it holds the last B snapshot), against
        # restic's unchanged re-backup of the same tree (after one untimed full backup), alternating.
        restic_env = dict(os.environ, RESTIC_REPOSITORY=str(self.work / "restic"), RESTIC_PASSWORD="bench",
                          RESTIC_CACHE_DIR=str(self.work / "restic-cache"))
        restic = ["restic", "-q", "backup", "--host", self.prefix, str(data)]
        sh(["restic", "-q", "init"], env=restic_env)
        first = time.perf_counter()
        sh(restic, env=restic_env)
        notes["E_restic"] = f"first (full) backup {time.perf_counter() - first:.1f} s, untimed"
        os.sync()
        for _run in range(runs):
            _elapsed, res = self.measure("E_ansible", lambda: self.ansible(
                "lifeboat.docker.snapshot", dict(snap_args, repository=str(repo))))
            u = res["units"][unit]
            self.record("E_unit", u["seconds"], "E_ansible")
            notes["E_unit"] = f"bytes_read {u['bytes_read']}, reused: {u['reused_from'] is not None}"
            if u["bytes_read"] != 0:
                notes["E_unit"] += " (READ AGAIN)"
            self.measure("E_restic", lambda: sh(restic, env=restic_env))
        progress("E", t)

        # F: peak memory of the module process, at two sizes
        mem = {}
        mem[a.scale] = self.memory(vol, data)
        if a.mem_scale:
            vol2 = f"{self.prefix}_big"
            data2 = self.volume(vol2)
            info2 = make_dataset(data2, a.mem_scale, a.seed)
            print(f"data set (scale {a.mem_scale:g}): {describe(info2)}; built in {info2['seconds']:.1f} s",
                  flush=True)
            mem[a.mem_scale] = self.memory(vol2, data2)
        self.report(info, t, notes, mem)

    def memory(self, vol: str, data: Path) -> dict[str, tuple[float, float, float]]:
        """{operation: (VmHWM MB at exit, VmHWM MB polled, seconds)} of direct module runs."""
        repo = self.path("memrepo")
        unit = f"volume:{vol}"
        out = {}
        start = time.perf_counter()
        res, rss, hwm = self.direct("snapshot", {"repository": str(repo), "volumes": [vol], "strategy": "stop"})
        out["snapshot"] = (rss, hwm, time.perf_counter() - start)
        start = time.perf_counter()
        res, rss, hwm = self.direct("snapshot", {"repository": str(repo), "volumes": [vol], "strategy": "stop"})
        if res["units"][unit]["bytes_read"] != 0:
            raise BenchError("the unchanged re-snapshot read the data again")
        out["snapshot, unchanged"] = (rss, hwm, time.perf_counter() - start)
        target = self.name("memrestored")
        start = time.perf_counter()
        _res, rss, hwm = self.direct("snapshot_restore", {"repository": str(repo), "unit": unit,
                                                          "target_volume": target})
        out["snapshot_restore"] = (rss, hwm, time.perf_counter() - start)
        return out

    # -- output ------------------------------------------------------------------------------
    def report(self, info: dict, t: dict[str, list[float]], notes: dict[str, str],
               mem: dict[float, dict[str, tuple[float, float, float]]]) -> None:
        med = {k: statistics.median(v) for k, v in t.items()}
        labels = {
            "A": "A  tar -cf - . | zstd -T0 -3 > FILE",
            "A_sync": "A  the same, then `sync FILE` (info)",
            "B_unit": "B  snapshot: the unit's `seconds`",
            "B_ansible": "B  snapshot: whole ansible command",
            "B_p1": "B  the same, Ansible's default poll (info)",
            "C": "C  docker run ... tar czf",
            "D_module": "D  snapshot_restore: module `seconds`",
            "D_ansible": "D  snapshot_restore: whole ansible command",
            "D_ref": "D  zstd -d < OBJECT | tar -x -C NEWVOLUME",
            "E_unit": "E  unchanged re-snapshot: unit `seconds`",
            "E_ansible": "E  unchanged re-snapshot: whole ansible command",
            "E_restic": "E  restic backup, unchanged tree",
        }
        print()
        print(f"data set: {describe(info)}; {self.args.runs} runs each, page cache warm; machine: "
              f"{os.cpu_count()} CPUs; 1-minute load average at the start {self.load_before[0]:.2f}")
        print(f"other CPU s: the most CPU seconds the rest of the machine used (or the hypervisor stole) "
              f"during one kept run; runs where it exceeded {DISTURBED_S} s + {DISTURBED_SHARE:.0%} of the "
              f"run's time (C: + {ALLOWANCE['C']} s for the engine) were run again, up to {self.args.retries} "
              "times; discarded: " + (", ".join(f"{k} {n}" for k, n in sorted(self.retried.items())) or "none"))
        print()
        print(f"| {'measurement':<48} | median s | min s | max s | other CPU s | note |")
        print(f"|{'-' * 50}|----------|-------|-------|-------------|------|")
        for key, label in labels.items():
            v = t[key]
            print(f"| {label:<48} | {med[key]:8.2f} | {min(v):5.2f} | {max(v):5.2f} | "
                  f"{max(self.other[key]):11.2f} | {notes.get(key, '')} |")

        goals = [
            ("snapshot / reference: B_unit / A", med["B_unit"] / med["A"], f"<= {GOAL_SNAPSHOT}",
             med["B_unit"] / med["A"] <= GOAL_SNAPSHOT),
            ("  (whole ansible command: B_ansible / A)", med["B_ansible"] / med["A"], "info", None),
            ("  (against a reference as durable: B_unit / A_sync)", med["B_unit"] / med["A_sync"], "info", None),
            ("  (Ansible's default poll interval: B_p1 / A)", med["B_p1"] / med["A"], "info", None),
            ("classic / snapshot: C / B_unit", med["C"] / med["B_unit"], f">= {GOAL_CLASSIC:g}",
             med["C"] / med["B_unit"] >= GOAL_CLASSIC),
            ("  (whole ansible command: C / B_ansible)", med["C"] / med["B_ansible"], "info", None),
            ("  (the reference itself: C / A)", med["C"] / med["A"], "info", None),
            ("restore / reference: D_module / D_ref", med["D_module"] / med["D_ref"], f"<= {GOAL_RESTORE}",
             med["D_module"] / med["D_ref"] <= GOAL_RESTORE),
            ("  (whole ansible command: D_ansible / D_ref)", med["D_ansible"] / med["D_ref"], "info", None),
            ("unchanged re-snapshot / restic: E_unit / E_restic", med["E_unit"] / med["E_restic"],
             f"< {GOAL_UNCHANGED}", med["E_unit"] / med["E_restic"] < GOAL_UNCHANGED),
            ("  (whole ansible command: E_ansible / E_restic)", med["E_ansible"] / med["E_restic"], "info", None),
        ]
        print()
        print(f"| {'goal':<52} |  ratio | goal    | met |")
        print(f"|{'-' * 54}|--------|---------|-----|")
        for label, ratio, goal, met in goals:
            shown = "-" if met is None else ("yes" if met else "NO")
            print(f"| {label:<52} | {ratio:6.2f} | {goal:<7} | {shown:<3} |")

        print()
        print("F  peak memory of the module's Python process (run directly, children not counted), MB = 10^6 B")
        scales = sorted(mem)
        head = " | ".join(f"scale {s:g}: peak MB (polled), s" for s in scales)
        print(f"| {'operation':<22} | {head} | goal | met |")
        print(f"|{'-' * 24}|" + "|".join("-" * (len(f'scale {s:g}: peak MB (polled), s') + 2) for s in scales)
              + "|------|-----|")
        for op in mem[scales[0]]:
            cells, peaks = [], []
            for s in scales:
                rss, hwm, secs = mem[s][op]
                peaks.append(rss)
                cell = f"{rss:.1f} ({hwm:.1f}), {secs:.1f} s"
                cells.append(f"{cell:<{len(f'scale {s:g}: peak MB (polled), s')}}")
            under = max(peaks) < GOAL_MEMORY_MB
            flat = len(peaks) < 2 or peaks[-1] <= peaks[0] * FLAT_TOLERANCE
            met = "yes" if under and flat else "NO"
            why = "" if met == "yes" else (" (not flat)" if under else " (over 150 MB)")
            print(f"| {op:<22} | {' | '.join(cells)} | < {GOAL_MEMORY_MB:g} MB, flat | {met}{why} |")
        print(f"\n(flat: the peak at the larger size is at most {FLAT_TOLERANCE:.2f} x the peak at the smaller)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the data set: 1 = ~420 MiB and ~30,000 small files (default 1)")
    parser.add_argument("--mem-scale", type=float, default=3.0,
                        help="second data-set size for the memory comparison (F); 0 skips it (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each measurement (default 3)")
    parser.add_argument("--retries", type=int, default=4,
                        help="disturbed timed runs (other work on the machine) run again, at most this "
                             "many times per measurement (default 4)")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--real-engine", action="store_true",
                        help="work in the host's engine (volumes prefixed lbs...) instead of a throw-away "
                             "dockerd of the bench's own; the modules then also inventory everything else there")
    parser.add_argument("--workdir", default="/var/tmp",
                        help="where the work directory (repositories, reference outputs) goes (default /var/tmp)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench fills /var/lib/docker/volumes/NAME/_data directly")
    for tool in ("docker", "dockerd", "tar", "zstd", "restic"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: run bash tests/testbed/setup.sh")

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    busy = subprocess.run(["pgrep", "-af", "scripts/test.sh|pytest"], capture_output=True, text=True, check=False).stdout
    if busy.strip():
        print(f"WARNING: tests are running on this machine; the timings will be distorted:\n{busy}", flush=True)
    signal.signal(signal.SIGTERM, on_term)
    bench = Bench(args)
    try:
        bench.run()
    except BenchError as exc:
        raise SystemExit(f"bench failed: {exc}") from None
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
