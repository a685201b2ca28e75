#!/usr/bin/env python
"""Dump and restore throughput of strategy `dump` for PostgreSQL, MariaDB and Redis.

    .venv/bin/python bench/dump_bench.py                       # pgbench scale 20, 1M rows, 1M keys
    .venv/bin/python bench/dump_bench.py --pg-scale 50 --only postgres

For each engine: starts a server (the test bench's images) with a named volume, fills it with
bench data, runs `lifeboat.docker.snapshot` on its `db:NAME` unit through real Ansible, starts a
fresh server of the same image and runs `lifeboat.docker.snapshot_restore` with target_container
into it (row counts verified). Prints a table: uncompressed dump bytes, stored bytes, and the
seconds the modules report for the unit (dump: the exec stream through zstd into the repository;
restore: the object's sha256 check, the stream into the server, the row-count check), with MB/s
(10^6 bytes of uncompressed dump per second) and rows/s (keys/s for Redis). Everything the bench
creates is prefixed `lbd…`, labelled org.lifeboat-test.bench, and removed at the end (also on
failure or Ctrl-C). Runs in the host's engine: other work there skews the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LABEL = "org.lifeboat-test.bench"
POSTGRES = "lifeboat-test/postgres:15"
MARIADB = "lifeboat-test/mariadb:latest"
REDIS = "lifeboat-test/redis:latest"


def ansible_env(state_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        LIFEBOAT_STATE_DIR=state_dir,
    )
    return env


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, check=False)
    if check and proc.returncode != 0:
        shown = " ".join(a for a in args[:5] if "PWD=" not in a)
        raise RuntimeError(f"docker {shown} ... failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout.decode(errors="replace")


class Bench:
    def __init__(self) -> None:
        self.prefix = "lbd" + secrets.token_hex(3)
        self.containers: list[str] = []
        self.tmp = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/tmp")
        self.state_dir = os.path.join(self.tmp, "state")
        os.makedirs(self.state_dir)
        self.rows: list[dict] = []

    def module(self, name: str, **args) -> tuple[dict, float]:
        cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
               "-m", f"lifeboat.docker.{name}", "-a", json.dumps(args)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(self.state_dir), cwd=ROOT,
                              check=False)
        wall = time.perf_counter() - start
        try:
            result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        except (ValueError, KeyError, IndexError):
            raise RuntimeError(f"ansible gave no JSON result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
        if result.get("failed"):
            raise RuntimeError(f"{name} failed: {result.get('msg')}")
        return result, wall

    def start(self, suffix: str, image: str, env: dict[str, str], data: str) -> str:
        name = f"{self.prefix}_{suffix}"
        self.containers.append(name)
        args = ["run", "-d", "--name", name, "--label", f"{LABEL}=1", "-v", f"{name}_data:{data}"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        docker(*args, image)
        return name

    def wait(self, what: str, ok, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def ready(self, name: str, marker: str, *probe: str) -> bool:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, check=False)
        if marker and marker not in (logs.stdout + logs.stderr).decode(errors="replace"):
            return False
        return subprocess.run(["docker", "exec", *probe], capture_output=True, check=False).returncode == 0

    def measure(self, engine: str, src: str, dst: str, rows_of) -> None:
        repo = os.path.join(self.tmp, f"repo-{src}")
        snap, snap_wall = self.module("snapshot", repository=repo, units=[f"db:{src}"])
        unit = snap["units"][f"db:{src}"]
        rest, rest_wall = self.module("snapshot_restore", repository=repo, unit=f"db:{src}", target_container=dst)
        rows = rows_of(unit)
        self.rows.append({
            "engine": engine, "dump_bytes": unit["bytes"], "stored": unit["bytes_stored"], "rows": rows,
            "dump_s": unit["seconds"], "dump_wall": snap_wall, "restore_s": rest["seconds"],
            "restore_wall": rest_wall, "verified": rest.get("verified"),
        })
        shutil.rmtree(repo, ignore_errors=True)

    # -- engines -------------------------------------------------------------------------------
    def postgres(self, scale: int) -> None:
        env = {"POSTGRES_PASSWORD": secrets.token_hex(12)}
        src = self.start("pg_src", POSTGRES, env, "/var/lib/postgresql/data")
        dst = self.start("pg_dst", POSTGRES, env, "/var/lib/postgresql/data")
        for name in (src, dst):
            self.wait(name, lambda n=name: self.ready(n, "init process complete", n, "pg_isready", "-q", "-U",
                                                      "postgres"))
        docker("exec", src, "psql", "-U", "postgres", "-c", "CREATE DATABASE bench")
        docker("exec", src, "pgbench", "-i", "-q", "-s", str(scale), "-U", "postgres", "bench")
        self.measure(f"PostgreSQL 15 (pgbench -s {scale})", src, dst, lambda u: u["rows"])

    def mariadb(self, rows: int) -> None:
        pw = secrets.token_hex(12)
        env = {"MARIADB_ROOT_PASSWORD": pw}
        src = self.start("maria_src", MARIADB, env, "/var/lib/mysql")
        dst = self.start("maria_dst", MARIADB, env, "/var/lib/mysql")
        for name in (src, dst):
            self.wait(name, lambda n=name: self.ready(n, "init process complete", "-e", f"MYSQL_PWD={pw}", n,
                                                      "mariadb-admin", "-uroot", "ping"))
        query = ("CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY, n INT NOT NULL, "
                 "label VARCHAR(40) NOT NULL, created DATETIME NOT NULL) ENGINE=InnoDB; "
                 f"INSERT INTO bench.t SELECT seq, seq * 7919 % 100000, md5(seq), "
                 f"'2024-01-01' + INTERVAL seq SECOND FROM seq_1_to_{rows};")
        docker("exec", "-e", f"MYSQL_PWD={pw}", src, "mariadb", "-uroot", "-e", query, "mysql")
        self.measure(f"MariaDB ({rows:,} rows)", src, dst, lambda u: u["rows"])

    def redis(self, keys: int) -> None:
        src = self.start("redis_src", REDIS, {}, "/data")
        dst = self.start("redis_dst", REDIS, {}, "/data")
        for name in (src, dst):
            self.wait(name, lambda n=name: self.ready(n, "", n, "redis-cli", "PING"))
        docker("exec", src, "sh", "-c", f"seq 1 {keys} | sed 's/.*/SET key:& value-&-{'x' * 40}/' | "
                                        "redis-cli --pipe >/dev/null")
        count = int(docker("exec", src, "redis-cli", "DBSIZE").strip())
        self.measure(f"Redis ({count:,} keys)", src, dst, lambda u: count)
        restored = int(docker("exec", dst, "redis-cli", "DBSIZE").strip())
        if restored != count:
            raise RuntimeError(f"Redis restore holds {restored} keys, not {count}")

    # -- output and cleanup --------------------------------------------------------------------
    def table(self) -> str:
        head = ("| engine | dump MB | stored MB | rows | dump s | dump MB/s | dump rows/s | restore s | "
                "restore MB/s | restore rows/s | verified |")
        lines = [head, "|" + "---|" * 11]
        for r in self.rows:
            mb = r["dump_bytes"] / 1e6
            lines.append(
                f"| {r['engine']} | {mb:.1f} | {r['stored'] / 1e6:.1f} | {r['rows']:,} | {r['dump_s']:.1f} | "
                f"{mb / r['dump_s']:.1f} | {r['rows'] / r['dump_s']:,.0f} | {r['restore_s']:.1f} | "
                f"{mb / r['restore_s']:.1f} | {r['rows'] / r['restore_s']:,.0f} | {r['verified']} |")
        lines.append("")
        lines.append("wall-clock of the whole ansible command (s): " + ", ".join(
            f"{r['engine']}: dump {r['dump_wall']:.1f}, restore {r['restore_wall']:.1f}" for r in self.rows))
        return "\n".join(lines)

    def cleanup(self) -> None:
        for name in self.containers:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
            subprocess.run(["docker", "volume", "rm", "-f", f"{name}_data"], capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--pg-scale", type=int, default=20)
    parser.add_argument("--maria-rows", type=int, default=1_000_000)
    parser.add_argument("--redis-keys", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["postgres", "mariadb", "redis"], action="append")
    opts = parser.parse_args()
    bench = Bench()
    started = time.monotonic()
    try:
        for engine in opts.only or ["postgres", "mariadb", "redis"]:
            print(f"-- {engine} ...", flush=True)
            if engine == "postgres":
                bench.postgres(opts.pg_scale)
            elif engine == "mariadb":
                bench.mariadb(opts.maria_rows)
            else:
                bench.redis(opts.redis_keys)
            print(bench.table().splitlines()[-3], flush=True)
    finally:
        bench.cleanup()
    print()
    print(bench.table())
    print(f"\n(bench took {time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
