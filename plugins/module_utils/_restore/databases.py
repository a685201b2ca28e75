# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Restoring a database unit (a dump) into a running container of the same engine.

The rule of every lifeboat restore holds here too: nothing existing is destroyed before the
replacement is proven possible, and the old content is kept. The object's sha256 is checked
before anything is touched; a target that already holds databases needs force, and then its
current content is first dumped into the repository as a snapshot of its own (tag pre-restore,
reported in `previous`); only then is it replaced. Afterwards the row counts of every table are
compared with those read from the dump stream at dump time.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import (
    DumpError,
    Spec,
    capture_dump,
    compare_counts,
    count_rows,
    env_of,
    exec_capture,
    exec_in,
    mysql_login,
    object_chunks,
    postgres_login,
    redis_login,
    restore_spec,
    verify_object,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import Journal, Quiesced
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import fsync_dir, publish
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import SwarmError, task_container, task_slot

MY_SYSTEM_DATABASES = ("mysql", "sys", "performance_schema", "information_schema")


class DbRestoreError(Exception):
    """The database restore cannot go on; the message says what was (not) changed."""


def _psql(attrs: dict[str, Any], database: str, sql: str) -> Spec:
    xenv = postgres_login(env_of(attrs))[1]
    return Spec(["psql", "--no-password", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql], xenv)


def _mysql(attrs: dict[str, Any], engine: str, sql: str) -> Spec:
    return Spec(["mariadb" if engine == "mariadb" else "mysql", "--user=root", "-N", "-B", "-e", sql],
                mysql_login(env_of(attrs)))


def _redis(attrs: dict[str, Any], *args: str) -> Spec:
    return Spec(["redis-cli", *args], redis_login(env_of(attrs)))


def _run(client, container: str, spec: Spec, what: str) -> str:
    result = exec_capture(client, container, spec, timeout=300)
    if result["exit_code"] != 0:
        raise DbRestoreError(f"{what} in {container} failed: {result['output'][-800:] or 'no output'}")
    return result["output"]


# PostgreSQL tables that belong to an extension, named as the dump's row counts name them. Their
# rows come from CREATE EXTENSION (PostGIS fills spatial_ref_sys with ~8500 rows) and pg_dump dumps
# only the rows added by hand, so a restored server holds at least the dumped rows, not as many.
EXTENSION_TABLES_SQL = (
    "SELECT format('\"%s\".\"%s\"', replace(n.nspname, '\"', '\"\"'), replace(c.relname, '\"', '\"\"')) "
    "FROM pg_depend d JOIN pg_class c ON c.oid = d.objid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind IN ('r', 'p')")


def extension_tables(client, container: str, attrs: dict[str, Any], databases: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for database in databases:
        listed = _run(client, container, _psql(attrs, database, EXTENSION_TABLES_SQL),
                      f"listing the extension tables of {database}")
        out[database] = {line.strip() for line in listed.splitlines() if line.strip()}
    return out


def existing_content(client, container: str, attrs: dict[str, Any], engine: str) -> list[str]:
    """What the target already holds (databases, or Redis keys), to decide whether force is needed."""
    if engine == "postgres":
        names_sql = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'"
        tables_sql = ("SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
                      "('pg_catalog', 'information_schema')")
        names = _run(client, container, _psql(attrs, "postgres", names_sql), "listing databases").split()
        tables = _run(client, container, _psql(attrs, "postgres", tables_sql), "listing tables").strip()
        return names + (["postgres (tables)"] if tables not in ("", "0") else [])
    if engine in ("mariadb", "mysql"):
        names = _run(client, container, _mysql(attrs, engine, "SHOW DATABASES"), "listing databases").split()
        return [n for n in names if n not in MY_SYSTEM_DATABASES]
    if engine == "redis":
        info = _run(client, container, _redis(attrs, "INFO", "keyspace"), "reading the keyspace")
        return [line.split(":")[0] for line in info.splitlines() if line.startswith("db")]
    if engine == "mongodb":
        return []  # mongorestore --drop replaces what the archive holds; nothing to list here
    raise DbRestoreError(f"lifeboat cannot restore {engine} dumps")


def _clear(client, container: str, attrs: dict[str, Any], engine: str, existing: list[str]) -> None:
    """Drop the user databases (their content was dumped first)."""
    if engine == "postgres":
        for name in existing:
            if name == "postgres (tables)":
                reset = "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"
                _run(client, container, _psql(attrs, "postgres", reset), "clearing database postgres")
                continue
            quoted = '"' + name.replace('"', '""') + '"'
            _run(client, container, _psql(attrs, "postgres", f"DROP DATABASE {quoted} WITH (FORCE)"),
                 f"dropping database {name}")
    elif engine in ("mariadb", "mysql"):
        for name in existing:
            _run(client, container, _mysql(attrs, engine, f"DROP DATABASE `{name.replace('`', '``')}`"),
                 f"dropping database {name}")


def unit_service(unit: dict[str, Any]) -> tuple[str | None, str | None]:
    """(service, slot) a database unit was dumped from, from its container's swarm labels (pure);
    (None, None) for a plain container."""
    labels = ((unit.get("containers") or [{}])[0] or {}).get("labels") or {}
    service = labels.get("com.docker.swarm.service.name")
    slot = task_slot(service, labels.get("com.docker.swarm.task.name") or "") if service else None
    return service, slot


def running_task(raw: dict[str, Any], service: str, slot: str | None) -> str | None:
    """The running task container of SERVICE (of SLOT, when there is one) in the engine state RAW (pure)."""
    found = []
    for attrs in raw.get("containers") or []:
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get("com.docker.swarm.service.name") != service or (attrs.get("State") or {}).get("Status") != "running":
            continue
        name = (attrs.get("Name") or "").lstrip("/")
        task = labels.get("com.docker.swarm.task.name") or name
        found.append((0 if slot is None or task.startswith(f"{service}.{slot}.") else 1, name))
    return min(found)[1] if found else None


class DbRestoreRun:
    def __init__(self, client, repo, raw: dict[str, Any], stop_timeout: int = 30) -> None:
        self.client = client
        self.repo = repo
        self.raw = raw
        self.stop_timeout = stop_timeout

    def _attrs(self, name: str) -> dict[str, Any]:
        for attrs in self.raw.get("containers") or []:
            if (attrs.get("Name") or "").lstrip("/") == name:
                return attrs
        raise DbRestoreError(f"container {name} does not exist on this host: start a server of the same engine "
                             "(same image, its environment) and give it as target_container")

    def plan(self, unit: dict[str, Any], target_container: str | None) -> dict[str, Any]:
        engine = unit.get("engine")
        target = target_container or (unit.get("source") or {}).get("container") or unit.get("container")
        service, slot = unit_service(unit)
        if service and not target_container:
            # A swarm task's container is replaced whenever its service is scaled or updated:
            # the dump goes into the task that runs the service now.
            target = running_task(self.raw, service, slot) or target
        attrs = self._attrs(target)
        if (attrs.get("State") or {}).get("Status") != "running":
            raise DbRestoreError(f"container {target} is not running: start it, a dump is restored into a running "
                                 "server")
        existing = existing_content(self.client, target, attrs, engine)
        plan = {"engine": engine, "target": target, "attrs": attrs, "existing": existing}
        if engine == "redis":
            plan["method"] = redis_method(redis_settings(self.client, target, attrs), target)
        return plan

    def run(self, manifest: dict[str, Any], unit: dict[str, Any], plan: dict[str, Any], force: bool,
            verify: bool, level: int = 3) -> dict[str, Any]:
        started = time.monotonic()
        engine, target, attrs = plan["engine"], plan["target"], plan["attrs"]
        if plan["existing"] and not force:
            raise DbRestoreError(f"container {target} already holds {', '.join(plan['existing'])}: set force: true "
                                 "to replace them (their current content is dumped into the repository first)")
        sha = unit["object"]["sha256"]
        try:
            verify_object(self.repo, unit["object"])
        except DumpError as exc:
            raise DbRestoreError(f"{exc} (nothing was changed)") from exc
        result: dict[str, Any] = {"snapshot_id": manifest["id"], "unit": unit["id"], "target": target,
                                  "target_type": "container", "previous": None, "engine": engine}
        if plan["existing"]:
            result["previous"] = self._keep_aside(unit, target, attrs, engine, level)
            _clear(self.client, target, attrs, engine, plan["existing"])
        if engine == "redis":
            result.update(self._restore_redis(unit, target, attrs))
        else:
            spec = restore_spec(engine, attrs)
            chunks = object_chunks(self.repo, unit["object"])
            if engine in ("mariadb", "mysql"):
                # The dump has one INSERT per row (so that rows can be counted in the stream);
                # with autocommit each would be its own transaction. Off, the dump's UNLOCK TABLES
                # and DDL commit per table: about 8x faster, same result.
                chunks = itertools.chain([b"SET autocommit=0;\n"], chunks, [b"\nCOMMIT;\n"])
            try:
                run = exec_in(self.client, target, spec, chunks)
            except DumpError as exc:
                raise DbRestoreError(f"restoring into {target} stopped: {exc}") from exc
            if run["exit_code"] != 0:
                raise DbRestoreError(f"{spec.describe} in {target} failed (exit {run['exit_code']}): "
                                     f"{run['output'][-800:]}")
            result["restore_messages"] = run["output"][-2000:]
        expected = unit.get("row_counts") or {}
        result["row_counts"] = expected
        if verify and expected:
            target = result.get("target") or target  # a swarm task is a new container now
            actual = count_rows(self.client, target, attrs, engine, expected)
            filled = extension_tables(self.client, target, attrs, sorted(expected)) if engine == "postgres" else None
            problems = compare_counts(expected, actual, filled)
            if problems:
                raise DbRestoreError(f"restored into {target}, but the row counts differ from the dump: "
                                     f"{'; '.join(problems[:10])}")
        result["verified"] = bool(verify and expected)
        result["seconds"] = round(time.monotonic() - started, 3)
        return result

    def _keep_aside(self, unit: dict[str, Any], target: str, attrs: dict[str, Any], engine: str, level: int) -> str:
        """Dump what the target holds now into the repository, as a snapshot of its own."""
        from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import container_spec

        when = mf.utc_now()
        host = self.raw.get("host") or os.uname().nodename
        sid = mf.new_snapshot_id(host, when)
        try:
            dump = capture_dump(self.client, self.repo, target, attrs, engine, None, level)
        except DumpError as exc:
            raise DbRestoreError(f"could not keep the current content of {target} aside ({exc}); nothing was "
                                 "changed") from exc
        entry = {"id": f"db:{target}", "kind": "database", "strategy": "dump", "engine": engine,
                 "source": {"type": "database", "container": target, "engine": engine},
                 "reason": f"content of {target} before restoring {unit['id']}", "confidential": True,
                 "containers": [container_spec(attrs, {})], "object": dump["object"], "index": None,
                 "files": 0, "bytes": dump["bytes"], "row_counts": dump["row_counts"], "command": dump["command"],
                 "seconds": dump["seconds"]}
        self.repo.write_manifest({
            "format": mf.MANIFEST_FORMAT, "version": mf.FORMAT_VERSION, "id": sid, "host": host,
            "time": mf.iso(when), "finished": mf.iso(mf.utc_now()), "tags": ["pre-restore"],
            "complete": True, "failed": [], "units": [entry]})
        return sid

    def _restore_redis(self, unit: dict[str, Any], target: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Place the RDB with the server stopped (and its AOF rebuilt from it), then start it."""
        outcome = RedisPlacement(self.client, self.repo, self.stop_timeout).run(
            unit, target, attrs, f"restore {unit['id']} into {target}")
        return {k: outcome[k] for k in ("downtime", "keyspace", "target", "method")}


# -- Redis: the RDB placed while the server is stopped ----------------------------------------------
REDIS_AOF_WAIT = 300  # seconds a temporary server may take to load the RDB and write the AOF


def redis_settings(client, target: str, attrs: dict[str, Any]) -> dict[str, str]:
    """The running server's configuration (CONFIG GET *)."""
    lines = _run(client, target, _redis(attrs, "CONFIG", "GET", "*"), "reading the Redis configuration").splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def redis_method(settings: dict[str, str], name: str) -> str:
    """How a Redis restore goes, said before it happens (check mode)."""
    if settings.get("appendonly") == "yes":
        return (f"the RDB is placed while {name} is stopped (a swarm service: scaled to 0) and its appendonly file "
                "is rebuilt from it by a temporary server of the same image, so that the server loads the restored "
                "data at start; the old appendonly file is kept until that worked")
    return f"the RDB is placed while {name} is stopped (a swarm service: scaled to 0); the server loads it at start"


def current_container(client, target: str, attrs: dict[str, Any], timeout: float = 120) -> str:
    """The container that runs TARGET's server now: TARGET itself, or, for a swarm task (which
    the quiesce replaced by scaling its service to 0 and back), the service's running task."""
    service = ((attrs.get("Config") or {}).get("Labels") or {}).get("com.docker.swarm.service.name")
    if not service:
        return target
    deadline = time.monotonic() + timeout
    while True:
        try:
            return task_container(client, service)
        except SwarmError as exc:
            if time.monotonic() > deadline:
                raise DbRestoreError(f"no task of the swarm service of {target} runs again after the restore: "
                                     f"{exc}") from exc
        time.sleep(0.5)


class RedisPlacement:
    """A Redis restore: the RDB from the repository becomes the server's data.

    The RDB is staged in the data directory (journalled: a killed run's file is removed), the
    server stopped (a swarm task: its service scaled to 0), the RDB renamed into place and the
    server started; Redis loads it at start. With appendonly on, Redis loads its appendonly file
    instead, whatever the RDB holds: then, while the server is stopped, a temporary server of
    the same image on the same mounts (no network) loads the RDB with appendonly off, turns
    appendonly on (which writes a new appendonly file from the data) and shuts down; the old
    appendonly file is put aside first and back if anything fails. The server's own command line
    and configuration are never changed. Used by snapshot_restore and swarm_rebuild."""

    def __init__(self, client, repo, stop_timeout: int = 30) -> None:
        self.client = client
        self.repo = repo
        self.stop_timeout = stop_timeout

    def run(self, unit: dict[str, Any], target: str, attrs: dict[str, Any], what: str) -> dict[str, Any]:
        from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import STAGING_PREFIX

        started = time.monotonic()
        settings = redis_settings(self.client, target, attrs)
        data_dir, filename = settings.get("dir") or "/data", settings.get("dbfilename") or "dump.rdb"
        host_dir = next((m.get("Source") for m in attrs.get("Mounts") or [] if m.get("Destination") == data_dir), None)
        if not host_dir or not os.path.isdir(host_dir):
            raise DbRestoreError(f"Redis in {target} keeps its data in {data_dir}, which is not a volume or bind "
                                 "mount lifeboat can reach: mount a volume there")
        aof = settings.get("appendonly") == "yes"
        owner = os.stat(host_dir)
        final = os.path.join(host_dir, filename)
        staged = os.path.join(host_dir, f"{STAGING_PREFIX}{os.getpid()}-{filename}")
        journal = Journal(what)
        try:
            journal.stage(staged)
            with open(staged, "wb") as fh:
                for chunk in object_chunks(self.repo, unit["object"]):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.chown(staged, owner.st_uid, owner.st_gid)
            os.chmod(staged, 0o600)
            with Quiesced(self.client, [target], journal, "stop", self.stop_timeout) as quiesce:
                # SHUTDOWN (what docker stop sends) makes Redis save first: place the RDB after.
                aside = self._aof_aside(host_dir, settings) if aof else []
                try:
                    publish(staged, final)
                    journal.unstage(staged)
                    if aof:
                        self._rewrite_aof(attrs, settings, host_dir, owner)
                except BaseException:
                    self._aof_back(host_dir, settings, aside)
                    raise
                for path in aside:
                    _remove(path)
        finally:
            if os.path.exists(staged):
                os.unlink(staged)
                journal.unstage(staged)
            journal.close()
        if quiesce.start_failures:
            raise DbRestoreError(f"the RDB is in place but {target} did not start again: "
                                 f"{quiesce.start_failures[0]['error']}")
        now = current_container(self.client, target, attrs)
        deadline = time.monotonic() + 60
        while True:
            try:
                ping = exec_capture(self.client, now, _redis(attrs, "PING"), timeout=10)
            except Exception as exc:  # pylint: disable=broad-except
                ping = {"output": str(exc)}  # a task container that is still starting
            if ping["output"].strip() == "PONG":
                break
            if time.monotonic() > deadline:
                raise DbRestoreError(f"Redis in {now} did not answer after the restore: {ping['output'][-300:]}")
            time.sleep(0.5)
        keyspace = _run(self.client, now, _redis(attrs, "INFO", "keyspace"), "reading the keyspace")
        return {"target": now, "downtime": dict(quiesce.downtime), "method": redis_method(settings, target),
                "keyspace": [line for line in keyspace.splitlines() if line.startswith("db")],
                "seconds": round(time.monotonic() - started, 3)}

    @staticmethod
    def _aof_paths(host_dir: str, settings: dict[str, str]) -> list[str]:
        """Where the appendonly data lives: the directory (Redis 7) and/or the file (Redis 6)."""
        names = [settings.get("appenddirname"), settings.get("appendfilename") or "appendonly.aof"]
        return [os.path.join(host_dir, n) for n in names if n and "/" not in n]

    def _aof_aside(self, host_dir: str, settings: dict[str, str]) -> list[str]:
        aside = []
        for path in self._aof_paths(host_dir, settings):
            if os.path.lexists(path):
                os.rename(path, f"{path}.lifeboat-aside")
                aside.append(f"{path}.lifeboat-aside")
        fsync_dir(host_dir)
        return aside

    def _aof_back(self, host_dir: str, settings: dict[str, str], aside: list[str]) -> None:
        for path in aside:
            original = path[:-len(".lifeboat-aside")]
            _remove(original)  # what a failed rewrite left
            os.rename(path, original)
        fsync_dir(host_dir)

    def _rewrite_aof(self, attrs: dict[str, Any], settings: dict[str, str], host_dir: str, owner) -> None:
        """A temporary server of the same image, on the same mounts, with no network: loads the RDB
        (appendonly off), writes the appendonly file from it (CONFIG SET appendonly yes), shuts down."""
        from docker.errors import DockerException  # type: ignore[import-not-found]

        config = attrs.get("Config") or {}
        volumes = {}
        for mount in attrs.get("Mounts") or []:
            source = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
            if source and mount.get("Type") in ("volume", "bind"):
                volumes[source] = {"bind": mount["Destination"], "mode": "rw" if mount.get("RW") else "ro"}
        args = ["--dir", settings.get("dir") or "/data", "--dbfilename", settings.get("dbfilename") or "dump.rdb",
                "--appendonly", "no", "--save", "", "--bind", "127.0.0.1", "--port", "6379"]
        for key in ("appenddirname", "appendfilename"):
            if settings.get(key):
                args += [f"--{key}", settings[key]]
        helper = self.client.containers.run(
            attrs.get("Image") or config.get("Image"), args, entrypoint=["redis-server"], detach=True,
            network_mode="none", volumes=volumes, user=config.get("User") or "",
            labels={"lifeboat.helper": "redis-aof-rewrite"})
        plain = Spec(["redis-cli", "-h", "127.0.0.1", "-p", "6379"])

        def cli(*words: str) -> str:
            return _run(self.client, helper.id, Spec(plain.argv + list(words)), f"redis-cli {' '.join(words)}")

        try:
            deadline = time.monotonic() + REDIS_AOF_WAIT
            while True:  # answers PONG once the RDB is loaded
                try:
                    if cli("PING").strip() == "PONG":
                        break
                except (DbRestoreError, DockerException):
                    pass
                helper.reload()
                if helper.status != "running" or time.monotonic() > deadline:
                    raise DbRestoreError("the temporary Redis server that rebuilds the appendonly file did not start: "
                                         f"{helper.logs(tail=20).decode('utf-8', 'replace')[-600:]}")
                time.sleep(0.2)
            cli("CONFIG", "SET", "appendonly", "yes")
            while True:
                info = dict(line.split(":", 1) for line in cli("INFO", "persistence").splitlines() if ":" in line)
                if info.get("aof_enabled") == "1" and info.get("aof_rewrite_in_progress") == "0" \
                        and info.get("aof_rewrite_scheduled") == "0":
                    if info.get("aof_last_bgrewrite_status", "ok") != "ok":
                        raise DbRestoreError("the temporary Redis server could not write the appendonly file: "
                                             f"{helper.logs(tail=20).decode('utf-8', 'replace')[-600:]}")
                    break
                if time.monotonic() > deadline:
                    raise DbRestoreError(f"the appendonly file was not written within {REDIS_AOF_WAIT} s")
                time.sleep(0.2)
            try:
                cli("SHUTDOWN", "NOSAVE")
            except DbRestoreError:
                pass  # the connection closes as the server exits
            helper.wait(timeout=60)
        finally:
            try:
                helper.remove(force=True)
            except DockerException:
                pass
        # The files belong to the server's user, as the data directory does.
        written = [os.path.join(host_dir, settings.get("dbfilename") or "dump.rdb")]
        for path in self._aof_paths(host_dir, settings):
            if os.path.isdir(path):
                written.append(path)
                for root, dirs, files in os.walk(path):
                    written += [os.path.join(root, n) for n in dirs + files]
            elif os.path.lexists(path):
                written.append(path)
        for path in written:
            if os.path.lexists(path):
                os.lchown(path, owner.st_uid, owner.st_gid)


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
