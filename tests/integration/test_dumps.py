"""Integration tests of strategy `dump` (issue 5, "Strategy dump" and "Proof under load").

Real database servers in containers (the test bench's PostgreSQL 15, MariaDB and Redis images),
real writers running while lifeboat dumps, every module through real Ansible. Each dump is
restored into a FRESH server of the same engine (option target_container), and an invariant
that the writer keeps in every committed transaction is checked there: a dump that was not one
consistent point in time (a "torn" dump) breaks it.

- PostgreSQL under pgbench (4 clients): data_inventory plans `db:NAME` with strategy dump while
  pgbench writes; after the restore, sum(abalance) = sum(bbalance) = sum(tbalance) =
  sum(delta), history not empty, and the module's row-count check ran.
- MariaDB with a transfer writer: every transaction moves an amount between two accounts,
  appends a ledger row and bumps a counter. In the restore: total unchanged, every balance equals
  its opening balance plus the ledger's movements, ledger rows = counter; users, a second database
  and a stored procedure came back (--all-databases, --routines).
- Redis with MULTI/EXEC writers: the restored keys are one consistent point.
- MongoDB: a STAND-IN (no MongoDB server runs here), see its test.
- Failures: dumps that fail or write nothing fail their unit only; restore into a non-empty
  server needs force, and force keeps the old content as a pre-restore snapshot that restores.
- Secrets: after every test the database passwords are searched in every module result, all of
  Ansible's stdout and stderr, and every file of the repository (objects decompressed).

Each writer is checked to have committed both before and after the dump (`before < N < after`),
so the dump really was taken while it wrote. No assertion is about time.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import time

import pytest

from conftest import ROOT, VENV_BIN, _ansible_env, docker_cli
from fixtures.lab import Lab as BaseLab
from fixtures.lab import open_lab

POSTGRES = "lifeboat-test/postgres:15"
MARIADB = "lifeboat-test/mariadb:latest"
REDIS = "lifeboat-test/redis:latest"
DEBIAN = "lifeboat-test/debian-base:12"
STANDIN_LABEL = "lifeboat.fixture.stand-in"


# --------------------------------------------------------------------------------------------
# running modules, keeping everything they printed
# --------------------------------------------------------------------------------------------
def ansible(name: str, *, check: bool = False, **args) -> tuple[dict, str, str]:
    """(result, stdout, stderr) of `ansible localhost -m lifeboat.docker.NAME -a ARGS`."""
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
           "-m", f"lifeboat.docker.{name}"]
    if args:  # ansible-core 2.19 takes '-a {}' for raw parameters, which modules refuse
        cmd += ["-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ansible_env(), cwd=ROOT,
                          timeout=900, check=False)
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        pytest.fail(f"ansible gave no JSON result (rc={proc.returncode})\nstdout:\n{proc.stdout[-4000:]}\n"
                    f"stderr:\n{proc.stderr[-4000:]}")
    return result, proc.stdout, proc.stderr


class Lab(BaseLab):
    """The shared lab, with the writer processes a test starts, and every module run's result and
    output, for the secret checks."""

    def __init__(self, client, prefix: str) -> None:
        super().__init__(client, prefix)
        self.procs: list[subprocess.Popen] = []
        self.outputs: list[tuple[str, str]] = []  # (what, text)
        self.repos: list[str] = []

    # -- names and places ----------------------------------------------------------------------
    def name(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"  # also a database's name here: no "-"

    def repo(self, suffix: str = "repo") -> str:
        path = super().repo(suffix)
        self.repos.append(path)
        return path

    # -- modules -------------------------------------------------------------------------------
    def run(self, module: str, *, expect_fail: bool = False, check: bool = False, **args) -> dict:
        result, out, err = ansible(module, check=check, **args)
        self.outputs += [(f"{module} result", json.dumps(result)), (f"{module} stdout", out),
                         (f"{module} stderr", err)]
        failed = bool(result.get("failed"))
        if failed and not expect_fail:
            pytest.fail(f"lifeboat.docker.{module} failed: {result.get('msg')}\n{result.get('exception', '')[-3000:]}")
        if expect_fail and not failed:
            pytest.fail(f"lifeboat.docker.{module} was expected to fail but returned: {json.dumps(result)[:3000]}")
        return result

    # -- containers ----------------------------------------------------------------------------
    def start(self, suffix: str, image: str, *, env: dict[str, str] | None = None, data: str | None = None,
              labels: dict[str, str] | None = None, binds: dict[str, str] | None = None,
              command: list[str] | None = None) -> str:
        """docker run -d a prefixed container; DATA: a prefixed named volume mounted there."""
        name = self.name(suffix)
        self.containers.append(name)
        args = ["run", "-d", "--name", name]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if data:
            args += ["-v", f"{name}_data:{data}"]
        for src, dst in (binds or {}).items():
            args += ["-v", f"{src}:{dst}"]
        docker_cli(*args, image, *(command or []))
        return name

    def exec(self, container: str, *argv: str, env: dict[str, str] | None = None, user: str | None = None,
             input: bytes | None = None, check: bool = True) -> str:
        args = ["exec", "-i"] if input is not None else ["exec"]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if user:
            args += ["-u", user]
        return docker_cli(*args, container, *argv, input=input, check=check)

    def background(self, container: str, script: str, shell: str = "sh",
                   env: dict[str, str] | None = None) -> subprocess.Popen:
        """A writer: `SHELL -c SCRIPT` in the container, its docker exec client kept to be ended."""
        cmd = ["docker", "exec"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        cmd += [container, shell, "-c", script]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def logs(self, container: str) -> str:
        proc = subprocess.run(["docker", "logs", container], capture_output=True, check=False)
        return (proc.stdout + proc.stderr).decode(errors="replace")

    def wait_for(self, what: str, check, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.3)

    def running(self, container: str) -> bool:
        return self.client.api.inspect_container(container)["State"]["Status"] == "running"

    # -- secrets -------------------------------------------------------------------------------
    def assert_no_secret(self, *secrets_: str) -> None:
        """SECRETS appear in no module result, no Ansible output, no repository file (objects
        decompressed), no file name."""
        places: list[tuple[str, bytes]] = [(what, text.encode()) for what, text in self.outputs]
        for repo in self.repos:
            for path in sorted(glob.glob(os.path.join(repo, "**"), recursive=True)):
                places.append((f"name {path}", path.encode()))
                if not os.path.isfile(path):
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
                places.append((path, data))
                if "/objects/" in path:
                    plain = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True,
                                           check=False).stdout
                    places.append((f"{path} (decompressed)", plain))
        assert len(self.outputs) >= 3, "no module ran: nothing was checked"
        for secret in secrets_:
            assert len(secret) >= 12
            hits = [what for what, data in places if secret.encode() in data]
            assert not hits, f"a password appears in: {hits}"

    # -- removing ------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for proc in self.procs:  # docker exec clients this lab started (their own pids)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        super().cleanup()


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


def password(tag: str) -> str:
    """A random password no output could contain by chance (and easy to grep for)."""
    return f"Pw{tag}{os.urandom(9).hex()}"


# --------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------
def start_postgres(lab: Lab, suffix: str, pw: str) -> str:
    return lab.start(suffix, POSTGRES, env={"POSTGRES_PASSWORD": pw}, data="/var/lib/postgresql/data")


def wait_postgres(lab: Lab, name: str) -> None:
    # The entry point runs a first server for initdb and stops it: wait for the real one.
    lab.wait_for(f"PostgreSQL in {name}", lambda: "init process complete" in lab.logs(name)
                 and subprocess.run(["docker", "exec", name, "pg_isready", "-q", "-U", "postgres"],
                                    capture_output=True, check=False).returncode == 0)


def psql(lab: Lab, name: str, db: str, sql: str) -> str:
    return lab.exec(name, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", db,
                    "-c", sql).strip()


def start_mariadb(lab: Lab, suffix: str, root_pw: str) -> str:
    return lab.start(suffix, MARIADB, env={"MARIADB_ROOT_PASSWORD": root_pw}, data="/var/lib/mysql")


def wait_mariadb(lab: Lab, name: str, root_pw: str) -> None:
    lab.wait_for(f"MariaDB in {name}", lambda: "init process complete" in lab.logs(name)
                 and subprocess.run(["docker", "exec", "-e", f"MYSQL_PWD={root_pw}", name, "mariadb-admin",
                                     "-uroot", "ping"], capture_output=True, check=False).returncode == 0)


def sql(lab: Lab, name: str, root_pw: str, query: str, db: str = "") -> str:
    argv = ["mariadb", "-uroot", "-N", "-B", "-e", query] + ([db] if db else [])
    return lab.exec(name, *argv, env={"MYSQL_PWD": root_pw}).strip()


def start_redis(lab: Lab, suffix: str) -> str:
    return lab.start(suffix, REDIS, data="/data")


def wait_redis(lab: Lab, name: str) -> None:
    lab.wait_for(f"Redis in {name}", lambda: lab.exec(name, "redis-cli", "PING", check=False).strip() == "PONG")


def redis(lab: Lab, name: str, *args: str) -> str:
    return lab.exec(name, "redis-cli", *args).strip()


def manifest_files(repo: str) -> list[str]:
    return sorted(glob.glob(os.path.join(repo, "snapshots", "*.json")))


def read_manifest(repo: str, snapshot_id: str) -> dict:
    with open(os.path.join(repo, "snapshots", f"{snapshot_id}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def object_files(repo: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(repo, "objects", "**"), recursive=True) if os.path.isfile(p))


def object_bytes(repo: str, sha: str) -> bytes:
    with open(os.path.join(repo, "objects", sha[:2], sha), "rb") as fh:
        data = fh.read()
    assert hashlib.sha256(data).hexdigest() == sha
    return subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True, check=True).stdout


# --------------------------------------------------------------------------------------------
# 1. PostgreSQL under pgbench
# --------------------------------------------------------------------------------------------
PGBENCH_SUMS = ("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches), "
                "(SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(delta) FROM pgbench_history), "
                "(SELECT count(*) FROM pgbench_history)")


def test_postgres_dump_under_pgbench_restores_consistent_into_fresh_server(lab):
    """pgbench (4 clients) writes while data_inventory plans and snapshot dumps; the dump,
    restored into a fresh server, satisfies pgbench's invariant and the module's row check."""
    src_pw, dst_pw = password("src"), password("dst")
    src = start_postgres(lab, "pg_src", src_pw)
    dst = start_postgres(lab, "pg_fresh", dst_pw)
    wait_postgres(lab, src)
    db = lab.name("bench")
    psql(lab, src, "postgres", f'CREATE DATABASE "{db}"')
    lab.exec(src, "pgbench", "-i", "-q", "-s", "5", "-U", "postgres", db)
    bench = lab.background(src, f"echo $$ > /tmp/pgbench.pid; exec pgbench -U postgres -c 4 -j 2 -T 120 -n {db}")
    lab.wait_for("pgbench to commit", lambda: int(psql(lab, src, db, "SELECT count(*) FROM pgbench_history")) > 200)

    inventory = lab.run("data_inventory")
    units = {u["id"]: u for u in inventory["units"]}
    db_unit = units.get(f"db:{src}")
    assert db_unit, f"data_inventory planned no db:{src}: {sorted(units)}"
    assert db_unit["strategy"] == "dump" and db_unit["engine"] == "postgres", db_unit
    data_unit = units[f"volume:{src}_data"]
    assert data_unit["strategy"] == "skip", "the data directory of a dumped server must not be copied live"
    assert bench.poll() is None, "pgbench stopped before the snapshot"

    repo = lab.repo()
    before = int(psql(lab, src, db, "SELECT count(*) FROM pgbench_history"))
    snap = lab.run("snapshot", repository=repo, units=[db_unit, data_unit])
    after = int(psql(lab, src, db, "SELECT count(*) FROM pgbench_history"))
    assert bench.poll() is None, "pgbench stopped during the snapshot: the dump was not under load"
    lab.exec(src, "sh", "-c", "kill -INT $(cat /tmp/pgbench.pid)")
    bench.wait(timeout=30)

    assert snap["complete"] is True and snap["failed_units"] == []
    [listed] = lab.run("snapshot_info", repository=repo)["snapshots"]
    assert listed["units"] == sorted([f"db:{src}", data_unit["id"]]) and listed["failed"] == []
    assert listed["skipped"] == [{"id": data_unit["id"], "reason": data_unit["reason"]}], \
        "the listing does not say that the data directory was not captured, and why"
    res = snap["units"][f"db:{src}"]
    assert res["strategy"] == "dump" and res["bytes"] > 0 and res["rows"] > 500000
    manifest = read_manifest(repo, snap["snapshot_id"])
    [entry] = [u for u in manifest["units"] if u["id"] == f"db:{src}"]
    counts = entry["row_counts"][db]
    dumped_history = counts['"public"."pgbench_history"']
    assert counts['"public"."pgbench_accounts"'] == 500000
    assert before < dumped_history < after, (
        f"history rows in the dump ({dumped_history}) should lie between the counts just before "
        f"({before}) and after ({after}) the snapshot: pgbench was writing during the dump")

    wait_postgres(lab, dst)
    restored = lab.run("snapshot_restore", repository=repo, unit=f"db:{src}", target_container=dst)
    assert restored["target"] == dst and restored["engine"] == "postgres"
    assert restored["verified"] is True, "the restore did not compare row counts"
    assert restored["previous"] is None, "a fresh server holds nothing to keep aside"
    assert restored["row_counts"][db] == counts

    accounts, branches, tellers, deltas, history = psql(lab, dst, db, PGBENCH_SUMS).split("|")
    assert int(history) == dumped_history > 0, "pgbench_history is empty or not what was dumped"
    assert int(accounts) == int(branches) == int(tellers) == int(deltas), (
        f"pgbench invariant broken in the restore: accounts {accounts}, branches {branches}, "
        f"tellers {tellers}, history {deltas}")
    assert int(psql(lab, dst, db, "SELECT count(*) FROM pgbench_accounts")) == 500000
    # the source moved on: the restore is the dump's point in time, not the source's now
    assert int(psql(lab, src, db, "SELECT count(*) FROM pgbench_history")) > dumped_history
    lab.assert_no_secret(src_pw, dst_pw)


# --------------------------------------------------------------------------------------------
# 2. MariaDB with a transfer writer
# --------------------------------------------------------------------------------------------
ACCOUNTS = 2000
OPENING = 1000
MARIA_SCHEMA = f"""
CREATE TABLE accounts (id INT PRIMARY KEY, opening BIGINT NOT NULL, balance BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, src INT NOT NULL, dst INT NOT NULL,
                     amount BIGINT NOT NULL) ENGINE=InnoDB;
CREATE TABLE stats (id INT PRIMARY KEY, transfers BIGINT NOT NULL) ENGINE=InnoDB;
INSERT INTO accounts SELECT seq, {OPENING}, {OPENING} FROM seq_1_to_{ACCOUNTS};
INSERT INTO stats VALUES (1, 0);
CREATE PROCEDURE total_balance() SELECT sum(balance) FROM accounts;
"""
# One transfer per transaction: two balances, one ledger row, the counter. Each statement runs
# in the same session; a dump that reads accounts and ledger at different moments breaks
# "balance = opening + incoming - outgoing" for the accounts in between.
TRANSFER_WRITER = r"""
while [ ! -e /tmp/stop-writer ]; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    a=$((RANDOM % ACCOUNTS + 1)); b=$((RANDOM % ACCOUNTS + 1)); m=$((RANDOM % 500 + 1))
    echo "START TRANSACTION; UPDATE accounts SET balance = balance - $m WHERE id = $a;
UPDATE accounts SET balance = balance + $m WHERE id = $b;
INSERT INTO ledger (src, dst, amount) VALUES ($a, $b, $m);
UPDATE stats SET transfers = transfers + 1 WHERE id = 1; COMMIT;"
  done
done | mariadb -uroot "$DB"
"""
MARIA_CHECKS = """
SELECT sum(balance), count(*) FROM accounts;
SELECT count(*) FROM ledger;
SELECT transfers FROM stats WHERE id = 1;
SELECT count(*) FROM accounts a
  LEFT JOIN (SELECT dst AS id, sum(amount) AS v FROM ledger GROUP BY dst) i ON i.id = a.id
  LEFT JOIN (SELECT src AS id, sum(amount) AS v FROM ledger GROUP BY src) o ON o.id = a.id
  WHERE a.balance <> a.opening + coalesce(i.v, 0) - coalesce(o.v, 0);
"""


def maria_state(lab: Lab, name: str, pw: str, db: str) -> dict:
    lines = sql(lab, name, pw, MARIA_CHECKS, db).splitlines()
    total, accounts = (int(x) for x in lines[0].split("\t"))
    return {"total": total, "accounts": accounts, "ledger": int(lines[1]), "transfers": int(lines[2]),
            "mismatched": int(lines[3])}


def test_mariadb_dump_under_transfers_restores_consistent_with_users(lab):
    """A transfer writer commits while mariadb-dump runs; the restore into a fresh MariaDB holds a
    consistent point (total kept, every balance explained by the ledger, ledger rows = counter),
    the users, a second database and the stored procedure."""
    src_pw, dst_pw, app_pw = password("root"), password("fresh"), password("app")
    src = start_mariadb(lab, "maria_src", src_pw)
    dst = start_mariadb(lab, "maria_fresh", dst_pw)
    wait_mariadb(lab, src, src_pw)
    db, other, app = lab.name("bank"), lab.name("notes"), lab.name("app")
    sql(lab, src, src_pw, f"CREATE DATABASE `{db}`; CREATE DATABASE `{other}`; "
                          f"CREATE TABLE `{other}`.notes (id INT PRIMARY KEY, body TEXT); "
                          f"INSERT INTO `{other}`.notes VALUES (1, 'kept'), (2, 'also kept'); "
                          f"CREATE USER '{app}'@'%' IDENTIFIED BY '{app_pw}'; "
                          f"GRANT SELECT, INSERT ON `{db}`.* TO '{app}'@'%';")
    sql(lab, src, src_pw, MARIA_SCHEMA, db)
    writer = lab.background(src, TRANSFER_WRITER, shell="bash",
                            env={"ACCOUNTS": str(ACCOUNTS), "DB": db, "MYSQL_PWD": src_pw})
    lab.wait_for("transfers", lambda: maria_state(lab, src, src_pw, db)["transfers"] > 300)

    repo = lab.repo()
    before = maria_state(lab, src, src_pw, db)["transfers"]
    snap = lab.run("snapshot", repository=repo, units=[f"db:{src}"])
    after = maria_state(lab, src, src_pw, db)["transfers"]
    assert writer.poll() is None, f"the writer stopped: {writer.stdout.read().decode(errors='replace')[-2000:]}"
    lab.exec(src, "touch", "/tmp/stop-writer")
    writer.wait(timeout=60)
    final = maria_state(lab, src, src_pw, db)
    assert final["mismatched"] == 0 and final["ledger"] == final["transfers"], f"the writer itself is broken: {final}"

    assert snap["complete"] is True, snap["failed_units"]
    res = snap["units"][f"db:{src}"]
    manifest = read_manifest(repo, snap["snapshot_id"])
    [entry] = manifest["units"]
    assert entry["strategy"] == "dump" and entry["engine"] == "mariadb"
    assert "--single-transaction" in entry["command"]
    dumped_ledger = entry["row_counts"][db]["`ledger`"]
    assert entry["row_counts"][db]["`accounts`"] == ACCOUNTS
    assert entry["row_counts"][other]["`notes`"] == 2
    assert res["rows"] == sum(sum(t.values()) for t in entry["row_counts"].values())
    assert before < dumped_ledger < after, (
        f"ledger rows in the dump ({dumped_ledger}) should lie between the transfers committed just "
        f"before ({before}) and after ({after}) the snapshot: the writer was writing during the dump")

    wait_mariadb(lab, dst, dst_pw)
    restored = lab.run("snapshot_restore", repository=repo, unit=f"db:{src}", target_container=dst)
    assert restored["verified"] is True and restored["engine"] == "mariadb"
    assert restored["row_counts"] == entry["row_counts"]

    state = maria_state(lab, dst, dst_pw, db)
    assert state["accounts"] == ACCOUNTS
    assert state["total"] == ACCOUNTS * OPENING, f"money appeared or vanished in the restore: {state}"
    assert state["ledger"] == state["transfers"] == dumped_ledger > 0, f"ledger and counter disagree: {state}"
    assert state["mismatched"] == 0, f"{state['mismatched']} balances are not explained by the ledger: torn dump"
    # --all-databases: the other database, the user (privileges take effect after a flush), the routine
    assert sql(lab, dst, dst_pw, f"SELECT body FROM `{other}`.notes ORDER BY id").splitlines() == ["kept", "also kept"]
    assert sql(lab, dst, dst_pw, f"SELECT count(*) FROM mysql.global_priv WHERE User = '{app}'") == "1"
    assert sql(lab, dst, dst_pw, "CALL total_balance()", db) == str(ACCOUNTS * OPENING)
    sql(lab, dst, dst_pw, "FLUSH PRIVILEGES")
    got = lab.exec(dst, "mariadb", f"-u{app}", "-N", "-B", "-e", "SELECT count(*) FROM accounts", db,
                   env={"MYSQL_PWD": app_pw}).strip()
    assert got == str(ACCOUNTS), "the restored user cannot log in with its password"
    # The dump carries mysql.global_priv: once privileges are reloaded, root's password on the
    # fresh server is the source's (documented in docs/consistency.md).
    assert lab.exec(dst, "mariadb", "-uroot", "-N", "-B", "-e", "SELECT 1", env={"MYSQL_PWD": src_pw}).strip() == "1"
    lab.assert_no_secret(src_pw, dst_pw, app_pw)


# --------------------------------------------------------------------------------------------
# 3. Redis with MULTI/EXEC writers
# --------------------------------------------------------------------------------------------
REDIS_WRITER = r"""
i=0
while [ ! -e /tmp/stop-writer ]; do
  i=$((i + 1))
  printf 'MULTI\nINCR counter\nSET key:%d %d\nRPUSH list %d\nSADD set %d\nEXEC\n' $i $i $i $i
done | redis-cli > /dev/null
"""


def test_redis_dump_under_writes_restores_a_consistent_point(lab):
    """MULTI/EXEC writers run while redis-cli --rdb dumps; the RDB restored into a fresh Redis is
    one point: counter = number of key:* = LLEN list = SCARD set, the list is 1..N."""
    src, dst = start_redis(lab, "redis_src"), start_redis(lab, "redis_fresh")
    wait_redis(lab, src)
    # ballast, so that the dump takes a while as writes go on
    lab.exec(src, "sh", "-c", "seq 1 200000 | sed 's/.*/SET ballast:& ballast-value-&/' | redis-cli --pipe")
    writer = lab.background(src, REDIS_WRITER)
    lab.wait_for("Redis writes", lambda: int(redis(lab, src, "GET", "counter") or 0) > 500)

    repo = lab.repo()
    before = int(redis(lab, src, "GET", "counter"))
    snap = lab.run("snapshot", repository=repo, units=[f"db:{src}"])
    after = int(redis(lab, src, "GET", "counter"))
    assert writer.poll() is None, "the writer stopped during the snapshot"
    lab.exec(src, "touch", "/tmp/stop-writer")
    writer.wait(timeout=30)
    assert snap["complete"] is True, snap["failed_units"]
    manifest = read_manifest(repo, snap["snapshot_id"])
    assert manifest["units"][0]["object"]["format"] == "redis-rdb"

    wait_redis(lab, dst)
    restored = lab.run("snapshot_restore", repository=repo, unit=f"db:{src}", target_container=dst)
    assert restored["engine"] == "redis" and restored["target"] == dst
    assert lab.running(dst), "the fresh Redis did not run again after the restore"
    n = int(redis(lab, dst, "GET", "counter"))
    assert before < n < after, f"restored counter {n} is not between {before} and {after}: not dumped under load"
    keys = int(redis(lab, dst, "EVAL", "return #redis.call('KEYS', 'key:*')", "0"))
    assert keys == n == int(redis(lab, dst, "LLEN", "list")) == int(redis(lab, dst, "SCARD", "set")), (
        "the restored keys are not one point in time")
    assert redis(lab, dst, "LRANGE", "list", "0", "-1").split() == [str(i) for i in range(1, n + 1)]
    assert redis(lab, dst, "GET", f"key:{n}") == str(n) and redis(lab, dst, "EXISTS", f"key:{n + 1}") == "0"
    assert int(redis(lab, dst, "EVAL", "return #redis.call('KEYS', 'ballast:*')", "0")) == 200000
    assert redis(lab, dst, "GET", "ballast:123") == "ballast-value-123"


# --------------------------------------------------------------------------------------------
# 4. MongoDB: a stand-in
# --------------------------------------------------------------------------------------------
STANDIN_DUMP = r"""#!/bin/sh
# STAND-IN for MongoDB's mongodump, made by lifeboat's tests: no MongoDB server runs here.
rec=/standin/record
n=$(ls $rec | grep -c '^mongodump\.')
record() { # what mongodump was given, and where the password came from
  printf '%s\n' "$@" > $rec/mongodump.$n.argv
  where=none
  prev=
  for a in "$@"; do
    if [ "$prev" = --config ] && [ -f "$a" ] && grep -qF "$MONGO_INITDB_ROOT_PASSWORD" "$a"; then
      where=config:$(stat -c %a "$a")
    fi
    case "$a" in
      --config=*) f=${a#--config=}
                  grep -qF "$MONGO_INITDB_ROOT_PASSWORD" "$f" && where=config:$(stat -c %a "$f");;
    esac
    prev=$a
  done
  case "$*" in *"$MONGO_INITDB_ROOT_PASSWORD"*) where=argv;; esac
  echo "$where" > $rec/mongodump.$n.password
}
record "$@"
case "$STANDIN_MODE" in
  fail) echo "Failed: error connecting to db server: no reachable servers (stand-in)" >&2; exit 1;;
  empty) exit 0;;
esac
cat /standin/archive.bin
"""
STANDIN_RESTORE = r"""#!/bin/sh
# STAND-IN for MongoDB's mongorestore, made by lifeboat's tests: no MongoDB server runs here.
rec=/standin/record
printf '%s\n' "$@" > $rec/mongorestore.argv
cat > $rec/restored.bin
where=none
prev=
for a in "$@"; do
  if [ "$prev" = --config ] && [ -f "$a" ] && grep -qF "$MONGO_INITDB_ROOT_PASSWORD" "$a"; then where=config; fi
  prev=$a
done
case "$*" in *"$MONGO_INITDB_ROOT_PASSWORD"*) where=argv;; esac
echo "$where" > $rec/mongorestore.password
"""


def standin_archive() -> bytes:
    """1 MiB of known bytes, every byte value included (NUL, newlines, the stream's header bytes)."""
    out = bytearray(bytes(range(256)) * 16)
    seed = b"lifeboat mongodump stand-in"
    while len(out) < 1 << 20:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:1 << 20])


def start_mongo_standin(lab: Lab, suffix: str, pw: str, mode: str = "ok") -> tuple[str, str]:
    """(name, host directory) of a MongoDB STAND-IN: debian-base with fake mongodump/mongorestore."""
    host_dir = lab.tmpdir(suffix)
    os.makedirs(os.path.join(host_dir, "bin"))
    os.makedirs(os.path.join(host_dir, "record"))
    for tool, text in (("mongodump", STANDIN_DUMP), ("mongorestore", STANDIN_RESTORE)):
        path = os.path.join(host_dir, "bin", tool)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o755)
    with open(os.path.join(host_dir, "archive.bin"), "wb") as fh:
        fh.write(standin_archive())
    name = lab.start(suffix, DEBIAN, binds={host_dir: "/standin"},
                     labels={STANDIN_LABEL: "mongodb", "lifeboat.engine": "mongodb"},
                     env={"PATH": "/standin/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": pw,
                          "STANDIN_MODE": mode},
                     command=["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done'])
    return name, host_dir


def test_mongodb_standin_archive_round_trip_and_password_handling(lab):
    """MongoDB STAND-IN (container labelled lifeboat.fixture.stand-in=mongodb): its mongodump prints
    1 MiB of known bytes and records its argv; its mongorestore stores stdin and records argv.

    Proves: data_inventory plans `db:NAME` dump for a container labelled lifeboat.engine=mongodb
    that has mongodump; the commands lifeboat builds (`--archive`, `--drop`, the root user from
    MONGO_INITDB_ROOT_USERNAME); the password from MONGO_INITDB_ROOT_PASSWORD reaches the tools
    through a private config file, never on their command line (where `ps` on the host shows it),
    and appears in no result, manifest or Ansible output; the archive's bytes round-trip exactly
    through exec streaming, compression and the repository.
    Does NOT prove: that a real mongodump/mongorestore accept these options together (checked
    against their documentation only), that a real archive is consistent under writes (mongodump
    has no single point in time without --oplog on a replica set), or that the restored database
    works: no MongoDB server can run on this machine.
    """
    pw = password("mongo")
    name, host_dir = start_mongo_standin(lab, "mongo_standin", pw)
    rec = os.path.join(host_dir, "record")
    inventory = lab.run("data_inventory")
    units = {u["id"]: u for u in inventory["units"]}
    assert units.get(f"db:{name}", {}).get("strategy") == "dump", units.get(f"db:{name}")
    assert units[f"db:{name}"]["engine"] == "mongodb"

    repo = lab.repo()
    snap = lab.run("snapshot", repository=repo, units=[f"db:{name}"])
    assert snap["complete"] is True
    res = snap["units"][f"db:{name}"]
    assert res["bytes"] == 1 << 20
    [entry] = read_manifest(repo, snap["snapshot_id"])["units"]
    assert entry["object"]["format"] == "mongodump-archive"
    assert object_bytes(repo, entry["object"]["sha256"]) == standin_archive()
    argv = open(os.path.join(rec, "mongodump.0.argv"), encoding="utf-8").read().split("\n")
    assert "--archive" in argv, argv
    assert "root" in argv, "the user of MONGO_INITDB_ROOT_USERNAME was not given"
    where = open(os.path.join(rec, "mongodump.0.password"), encoding="utf-8").read().strip()
    assert where == "config:600", f"mongodump got the password via {where}, not a private config file"
    leftovers = lab.exec(name, "sh", "-c", "ls -A /tmp")
    assert leftovers.strip() == "", f"the password file was left in the container: {leftovers}"

    restored = lab.run("snapshot_restore", repository=repo, unit=f"db:{name}")
    assert restored["target"] == name and restored["engine"] == "mongodb"
    with open(os.path.join(rec, "restored.bin"), "rb") as fh:
        assert fh.read() == standin_archive(), "mongorestore did not receive the archive byte for byte"
    rargv = open(os.path.join(rec, "mongorestore.argv"), encoding="utf-8").read().split("\n")
    assert "--archive" in rargv and "--drop" in rargv, rargv
    assert open(os.path.join(rec, "mongorestore.password"), encoding="utf-8").read().strip() == "config"
    assert lab.exec(name, "sh", "-c", "ls -A /tmp").strip() == ""
    lab.assert_no_secret(pw)


# --------------------------------------------------------------------------------------------
# 5. Failures
# --------------------------------------------------------------------------------------------
def test_failing_and_empty_dumps_fail_their_unit_only(lab):
    """pg_dumpall that cannot connect (the role of POSTGRES_USER is gone), a dump tool exiting 1 and
    one exiting 0 without output each fail their unit with a clear message, leave no object and
    no manifest entry; the good unit is captured and the snapshot is listed as incomplete."""
    pg_pw, mongo_pw = password("pg"), password("mongo")
    pg = start_postgres(lab, "pg_badcreds", pg_pw)
    failing, _failing_log = start_mongo_standin(lab, "mongo_fail", mongo_pw, "fail")
    empty, _empty_log = start_mongo_standin(lab, "mongo_empty", mongo_pw, "empty")
    good, _good_log = start_mongo_standin(lab, "mongo_ok", mongo_pw, "ok")
    wait_postgres(lab, pg)
    # The container still says POSTGRES_USER=postgres (the default), but that role is renamed.
    psql(lab, pg, "postgres", "CREATE ROLE other_admin SUPERUSER LOGIN")
    lab.exec(pg, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "other_admin", "-d", "postgres",
             "-c", "ALTER ROLE postgres RENAME TO renamed_admin")

    def unit(name: str, engine: str) -> dict:
        return {"id": f"db:{name}", "kind": "database", "source": name, "strategy": "dump",
                "engine": engine, "container": name}

    repo = lab.repo()
    snap = lab.run("snapshot", expect_fail=True, repository=repo,
                   units=[unit(pg, "postgres"), unit(failing, "mongodb"), unit(empty, "mongodb"),
                          unit(good, "mongodb")])
    errors = {f["id"]: f["error"] for f in snap["failed_units"]}
    assert sorted(errors) == sorted([f"db:{pg}", f"db:{failing}", f"db:{empty}"]), errors
    assert "pg_dumpall" in errors[f"db:{pg}"] and "exit 1" in errors[f"db:{pg}"], errors[f"db:{pg}"]
    assert 'role "postgres" does not exist' in errors[f"db:{pg}"], errors[f"db:{pg}"]
    assert "exit 1" in errors[f"db:{failing}"] and "no reachable servers" in errors[f"db:{failing}"]
    assert "empty dump" in errors[f"db:{empty}"], errors[f"db:{empty}"]
    assert "3 unit(s) failed" in snap["msg"]
    for uid in errors:
        assert snap["units"][uid]["failed"] is True

    assert snap["snapshot_id"] and snap["complete"] is False
    manifest = read_manifest(repo, snap["snapshot_id"])
    assert [u["id"] for u in manifest["units"]] == [f"db:{good}"]
    assert manifest["complete"] is False and sorted(f["id"] for f in manifest["failed"]) == sorted(errors)
    sha = manifest["units"][0]["object"]["sha256"]
    assert [os.path.basename(p) for p in object_files(repo)] == [sha], "a failed dump left an object behind"
    assert object_bytes(repo, sha) == standin_archive()
    assert not os.listdir(os.path.join(repo, "tmp")), "a failed dump left a temporary file"
    info = lab.run("snapshot_info", repository=repo)
    assert [s["units"] for s in info["snapshots"]] == [[f"db:{good}"]]
    [listed] = info["snapshots"]
    assert listed["complete"] is False and listed["skipped"] == []
    assert {f["id"]: f["error"] for f in listed["failed"]} == errors, "the listing does not say what failed"
    lab.assert_no_secret(pg_pw, mongo_pw)


def test_restore_into_non_empty_server_needs_force_and_keeps_old_content(lab):
    """Without force the restore is refused naming force and nothing changes; with force the old
    content is first dumped as a pre-restore snapshot (listed by snapshot_info with its tag),
    which itself restores."""
    src_pw, dst_pw = password("src"), password("dst")
    src, dst = start_postgres(lab, "pg_from", src_pw), start_postgres(lab, "pg_into", dst_pw)
    new_db, old_db = lab.name("new"), lab.name("old")
    wait_postgres(lab, src)
    psql(lab, src, "postgres", f'CREATE DATABASE "{new_db}"')
    psql(lab, src, new_db, "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g")
    wait_postgres(lab, dst)
    psql(lab, dst, "postgres", f'CREATE DATABASE "{old_db}"')
    psql(lab, dst, old_db, "CREATE TABLE marker AS SELECT g AS id FROM generate_series(1, 77) g")

    def databases(name: str) -> set[str]:
        return set(psql(lab, name, "postgres", "SELECT datname FROM pg_database").split()) & {new_db, old_db}

    repo = lab.repo()
    snap = lab.run("snapshot", repository=repo, units=[f"db:{src}"])

    check = lab.run("snapshot_restore", check=True, expect_fail=True, repository=repo, unit=f"db:{src}",
                    target_container=dst)
    assert "force" in check["msg"] and old_db in check["msg"]
    refused = lab.run("snapshot_restore", expect_fail=True, repository=repo, unit=f"db:{src}", target_container=dst)
    assert "force" in refused["msg"] and old_db in refused["msg"], refused["msg"]
    assert databases(dst) == {old_db}, "a refused restore changed the target"
    assert len(manifest_files(repo)) == 1, "a refused restore wrote a snapshot"

    forced = lab.run("snapshot_restore", repository=repo, unit=f"db:{src}", target_container=dst, force=True)
    assert forced["verified"] is True
    previous = forced["previous"]
    assert previous and previous != snap["snapshot_id"], forced
    assert databases(dst) == {new_db}
    assert psql(lab, dst, new_db, "SELECT count(*), max(v) FROM items") == \
        psql(lab, src, new_db, "SELECT count(*), max(v) FROM items")

    info = lab.run("snapshot_info", repository=repo, tag="pre-restore")
    assert [s["id"] for s in info["snapshots"]] == [previous]
    assert info["snapshots"][0]["tags"] == ["pre-restore"] and info["snapshots"][0]["units"] == [f"db:{dst}"]
    [kept] = read_manifest(repo, previous)["units"]
    assert kept["row_counts"][old_db] == {'"public"."marker"': 77}

    back = lab.run("snapshot_restore", repository=repo, snapshot=previous, unit=f"db:{dst}", force=True)
    assert back["target"] == dst and back["verified"] is True
    assert back["previous"] and back["previous"] not in (previous, snap["snapshot_id"])
    assert databases(dst) == {old_db}
    assert psql(lab, dst, old_db, "SELECT count(*), sum(id) FROM marker") == f"77|{77 * 78 // 2}"
    lab.assert_no_secret(src_pw, dst_pw)


AOF_REDIS = ["redis-server", "--dir", "/data", "--protected-mode", "no", "--bind", "0.0.0.0", "--appendonly", "yes"]


def test_redis_with_appendonly_is_restored_and_keeps_the_restored_data_after_a_restart(lab):
    """A Redis work queue with appendonly on (it loads its AOF at start, never the RDB): the
    restore rebuilds the AOF from the dumped RDB, so the lists come back in order, the sets whole,
    and they are still there after the server restarts; appendonly stays on."""
    name = lab.start("redis_aof", REDIS, data="/data", command=AOF_REDIS)
    wait_redis(lab, name)
    jobs = [f"job-{i}" for i in range(1, 501)]
    results = {f"result-{i}" for i in range(1, 301)}
    redis(lab, name, "RPUSH", "queue:jobs", *jobs)
    redis(lab, name, "SADD", "results", *sorted(results))
    redis(lab, name, "SET", "owner", "maps")
    repo = lab.repo()
    snap = lab.run("snapshot", repository=repo, units=[f"db:{name}"])
    assert snap["complete"] is True, snap["failed_units"]

    # The queue moves on after the backup.
    redis(lab, name, "RPUSH", "queue:jobs", "job-late")
    redis(lab, name, "LPOP", "queue:jobs")
    redis(lab, name, "DEL", "results")
    redis(lab, name, "SET", "owner", "someone else")

    planned = lab.run("snapshot_restore", check=True, repository=repo, unit=f"db:{name}", force=True)
    assert "appendonly file is rebuilt" in planned["plan"]["method"], planned["plan"]
    restored = lab.run("snapshot_restore", repository=repo, unit=f"db:{name}", force=True)
    assert "appendonly file is rebuilt" in restored["method"] and restored["previous"], restored

    def state() -> tuple:
        return (redis(lab, name, "LRANGE", "queue:jobs", "0", "-1").split(),
                set(redis(lab, name, "SMEMBERS", "results").split()), redis(lab, name, "GET", "owner"))

    assert state() == (jobs, results, "maps")
    assert redis(lab, name, "CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]
    docker_cli("restart", name)
    wait_redis(lab, name)
    assert state() == (jobs, results, "maps"), "the AOF the server loads at start does not hold the restored data"
    assert redis(lab, name, "SET", "written-after", "1") == "OK"  # its files are its own: it can append
    assert docker_cli("ps", "-a", "-q", "--filter", "label=lifeboat.helper").strip() == ""
    assert not [f for f in os.listdir(lab.volume_dir(f"{name}_data")) if "lifeboat" in f]
