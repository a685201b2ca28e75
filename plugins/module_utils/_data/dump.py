# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Native dumps of databases that run in containers, streamed through `docker exec`.

Pure part: which command dumps / restores each engine, with credentials taken from the
container's environment as the official images define it (passed as exec environment, never
recorded in results, manifests or logs), and counters that read table row counts out of the dump
stream itself, so that the counts belong to the dump's own consistent snapshot even while clients
write. Effects: exec_out() streams an exec's stdout to a sink; exec_in() streams bytes into an
exec's stdin. Both speak the engine's multiplexed stream format over the raw socket.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import threading
import time
from typing import Any, Callable, Iterable

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import hash_stream
from ansible_collections.lifeboat.docker.plugins.module_utils._common.pipes import Filter
from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import children as proc_children

DUMP_FORMATS = {
    "postgres": "pg_dumpall-sql",
    "mariadb": "mysqldump-sql",
    "mysql": "mysqldump-sql",
    "redis": "redis-rdb",
    "mongodb": "mongodump-archive",
}


class DumpError(Exception):
    """A dump or a restore of a dump failed; the message says which and why (never a secret)."""


def env_of(attrs: dict[str, Any]) -> dict[str, str]:
    out = {}
    for item in (attrs.get("Config") or {}).get("Env") or []:
        key, _sep, value = item.partition("=")
        out[key] = value
    return out


def _first(env: dict[str, str], *names: str, default: str | None = None) -> str | None:
    for name in names:
        if env.get(name):
            return env[name]
    return default


class Spec:
    """A command to run in a container: argv, exec environment (may hold secrets), user."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, user: str | None = None,
                 describe: str = "") -> None:
        self.argv = argv
        self.env = env or {}
        self.user = user
        self.describe = describe or " ".join(argv)  # what results and manifests may show

    def __repr__(self) -> str:  # never the environment: it holds passwords
        return f"Spec({self.describe!r})"


def postgres_login(env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The user a PostgreSQL container was set up with, and the environment its clients log in
    with (PGUSER, and PGPASSWORD when the container has one)."""
    user = _first(env, "POSTGRES_USER", default="postgres")
    xenv = {"PGUSER": user}
    password = _first(env, "POSTGRES_PASSWORD")
    if password:
        xenv["PGPASSWORD"] = password
    return user, xenv


def mysql_login(env: dict[str, str]) -> dict[str, str]:
    """The environment MariaDB's and MySQL's clients log in as root with (MYSQL_PWD, when the
    container has a root password)."""
    password = _first(env, "MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD")
    return {"MYSQL_PWD": password} if password else {}


def redis_login(env: dict[str, str]) -> dict[str, str]:
    """The environment redis-cli authenticates with (REDISCLI_AUTH, when the container has a password)."""
    password = _first(env, "REDIS_PASSWORD")
    return {"REDISCLI_AUTH": password} if password else {}


def dump_spec(engine: str, attrs: dict[str, Any], tool: str | None = None) -> Spec:
    env = env_of(attrs)
    if engine == "postgres":
        user, xenv = postgres_login(env)
        argv = [tool or "pg_dumpall", "--no-password", "--quote-all-identifiers"]
        return Spec(argv, xenv, describe=f"{argv[0]} as {user}")
    if engine in ("mariadb", "mysql"):
        xenv = mysql_login(env)
        binary = tool or ("mariadb-dump" if engine == "mariadb" else "mysqldump")
        argv = [binary, "--user=root", "--all-databases", "--single-transaction", "--routines", "--triggers",
                "--events", "--hex-blob", "--skip-extended-insert", "--default-character-set=utf8mb4"]
        return Spec(argv, xenv, describe=f"{binary} --all-databases --single-transaction as root")
    if engine == "redis":
        xenv = redis_login(env)
        return Spec([tool or "redis-cli", "--rdb", "-"], xenv, describe="redis-cli --rdb -")
    if engine == "mongodb":
        user = _first(env, "MONGO_INITDB_ROOT_USERNAME")
        password = _first(env, "MONGO_INITDB_ROOT_PASSWORD")
        if user and password:
            return _mongo_with_password(tool or "mongodump", ["--archive", "--quiet"], user, password,
                                        f"mongodump --archive as {user}")
        return Spec([tool or "mongodump", "--archive", "--quiet"], describe="mongodump --archive")
    raise DumpError(f"lifeboat has no dump for engine {engine!r}")


# The MongoDB tools read no password from the environment, and one given as --password is in the
# process's command line, which `ps` shows to every user of the host. A shell in the container
# writes it from the exec environment into a private YAML file (mongodump/mongorestore
# --config, tools 100.3.0+), removed when the tool ends: it is never in an argv, a result or a log.
_MONGO_CONFIG_SCRIPT = (
    'umask 077; c=$(mktemp) || exit 1; trap \'rm -f "$c"\' EXIT; trap "exit 143" HUP INT TERM; '
    'printf "%s\\n" "$LIFEBOAT_MONGO_CONFIG" > "$c" || exit 1; '
    '"$0" "$@" --authenticationDatabase admin --username "$LIFEBOAT_MONGO_USER" --config "$c"')


def _mongo_with_password(tool: str, args: list[str], user: str, password: str, describe: str) -> Spec:
    import json

    config = "password: " + json.dumps(password) + "\n"  # a JSON string is a YAML double-quoted scalar
    return Spec(["sh", "-c", _MONGO_CONFIG_SCRIPT, tool, *args],
                {"LIFEBOAT_MONGO_USER": user, "LIFEBOAT_MONGO_CONFIG": config}, describe=describe)


def restore_spec(engine: str, attrs: dict[str, Any]) -> Spec:
    env = env_of(attrs)
    if engine == "postgres":
        user, xenv = postgres_login(env)
        # The dump recreates roles and databases; "role already exists" for the bootstrap user is
        # expected, so errors do not stop psql: the row counts checked afterwards decide.
        return Spec(["psql", "--no-password", "-q", "-X", "-d", "postgres", "-f", "-"], xenv,
                    describe=f"psql -f - as {user}")
    if engine in ("mariadb", "mysql"):
        xenv = mysql_login(env)
        binary = "mariadb" if engine == "mariadb" else "mysql"
        return Spec([binary, "--user=root", "--default-character-set=utf8mb4"], xenv, describe=f"{binary} as root")
    if engine == "mongodb":
        user = _first(env, "MONGO_INITDB_ROOT_USERNAME")
        password = _first(env, "MONGO_INITDB_ROOT_PASSWORD")
        if user and password:
            return _mongo_with_password("mongorestore", ["--archive", "--drop", "--quiet"], user, password,
                                        f"mongorestore --archive --drop as {user}")
        return Spec(["mongorestore", "--archive", "--drop", "--quiet"], describe="mongorestore --archive --drop")
    raise DumpError(f"lifeboat restores {engine} dumps differently (see snapshot_restore)")


def count_spec(engine: str, attrs: dict[str, Any], database: str, tables: list[str]) -> Spec:
    """A query printing 'table<TAB>count' lines for TABLES of DATABASE."""
    env = env_of(attrs)
    if engine == "postgres":
        xenv = postgres_login(env)[1]
        query = " UNION ALL ".join(f"SELECT {_pg_literal(t)}, count(*) FROM {t}" for t in tables)
        return Spec(["psql", "--no-password", "-X", "-At", "-F", "\t", "-d", database, "-c", query], xenv)
    if engine in ("mariadb", "mysql"):
        xenv = mysql_login(env)
        query = " UNION ALL ".join(f"SELECT '{t.replace(chr(39), chr(39) * 2)}', count(*) FROM `{database}`.{t}"
                                   for t in tables)
        binary = "mariadb" if engine == "mariadb" else "mysql"
        return Spec([binary, "--user=root", "-N", "-B", "-e", query], xenv)
    raise DumpError(f"no row counts for engine {engine}")


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- counting rows in the dump stream ----------------------------------------------------------

class LineCounter:
    """Feeds chunks, splits lines across chunk boundaries, calls self.line() for each line."""

    def __init__(self) -> None:
        self._rest = b""
        self.counts: dict[str, dict[str, int]] = {}

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self.line(line)

    def close(self) -> dict[str, dict[str, int]]:
        if self._rest:
            self.line(self._rest)
            self._rest = b""
        return self.counts

    def line(self, line: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class PgCopyCounter(LineCounter):
    """Rows of every COPY block of a pg_dumpall plain dump, per database and table."""

    _COPY = re.compile(rb"^COPY (\S+) .*FROM stdin;$")

    def __init__(self) -> None:
        super().__init__()
        self.database = "postgres"
        self.table: str | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk
        pos = 0
        while True:
            if self.table is not None:
                # Inside a COPY block: count whole lines in bulk up to the "\." terminator line.
                if data.startswith(b"\\.\n", pos):
                    end = pos
                else:
                    found = data.find(b"\n\\.\n", pos)
                    end = found + 1 if found >= 0 else -1
                if end < 0:
                    last = data.rfind(b"\n", pos)
                    if last >= 0:
                        self._add(data.count(b"\n", pos, last + 1))
                        pos = last + 1
                    break
                self._add(data.count(b"\n", pos, end))
                self.table = None
                pos = end + 3
                continue
            # Outside: only lines that open a COPY block or switch database matter.
            nxt = min((i for i in (data.find(b"COPY ", pos), data.find(b"\\connect ", pos)) if i >= 0), default=-1)
            if nxt < 0:
                last = data.rfind(b"\n", pos)
                pos = last + 1 if last >= 0 else pos
                break
            start = data.rfind(b"\n", pos, nxt) + 1 if nxt > pos else pos
            if start < pos:
                start = pos
            eol = data.find(b"\n", nxt)
            if eol < 0:
                pos = start
                break
            if start == nxt:  # at the start of a line
                self.line(data[nxt:eol])
            pos = eol + 1
        self._rest = data[pos:]

    def _add(self, rows: int) -> None:
        table = self.counts.setdefault(self.database, {})
        table[self.table] = table.get(self.table, 0) + rows

    def line(self, line: bytes) -> None:
        if self.table is not None:
            if line == b"\\.":
                self.table = None
            else:
                table = self.counts.setdefault(self.database, {})
                table[self.table] = table.get(self.table, 0) + 1
            return
        if line.startswith(b"\\connect "):
            self.database = _pg_connect_target(line)
            return
        match = self._COPY.match(line)
        if match:
            self.table = match.group(1).decode("utf-8", "replace")
            self.counts.setdefault(self.database, {}).setdefault(self.table, 0)


def _pg_connect_target(line: bytes) -> str:
    rest = line[len(b"\\connect "):].strip()
    for opt in (b"-reuse-previous=on ", b"-reuse-previous=off "):
        rest = rest.replace(opt, b"")
    text = rest.decode("utf-8", "replace").strip()
    if text.startswith('"'):
        return text[1:text.index('"', 1)].replace('""', '"')
    return text.split()[0] if text else "postgres"


class MysqlInsertCounter(LineCounter):
    """Rows of a mysqldump --skip-extended-insert dump (one INSERT per row), per database and table."""

    _USE = re.compile(rb"^USE `((?:[^`]|``)+)`;")
    _INSERT = re.compile(rb"^INSERT INTO (`(?:[^`]|``)+`) VALUES ")
    _CREATE = re.compile(rb"^CREATE TABLE (`(?:[^`]|``)+`)")

    def __init__(self) -> None:
        super().__init__()
        self.database = ""

    def line(self, line: bytes) -> None:
        if line.startswith(b"INSERT INTO "):
            match = self._INSERT.match(line)
            if match:
                table = self.counts.setdefault(self.database, {})
                name = match.group(1).decode("utf-8", "replace")
                table[name] = table.get(name, 0) + 1
            return
        if line.startswith(b"USE "):
            match = self._USE.match(line)
            if match:
                self.database = match.group(1).decode("utf-8", "replace").replace("``", "`")
            return
        if line.startswith(b"CREATE TABLE "):
            match = self._CREATE.match(line)
            if match:
                self.counts.setdefault(self.database, {}).setdefault(match.group(1).decode("utf-8", "replace"), 0)


COUNTED_SYSTEM_DATABASES = {"postgres": set(), "mariadb": {"mysql", "sys", "performance_schema", "information_schema"}}


def counter_for(engine: str) -> LineCounter | None:
    if engine == "postgres":
        return PgCopyCounter()
    if engine in ("mariadb", "mysql"):
        return MysqlInsertCounter()
    return None


def comparable_counts(engine: str, counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The counts worth checking after a restore (not the server's own system tables)."""
    skip = COUNTED_SYSTEM_DATABASES.get("mariadb" if engine == "mysql" else engine, set())
    return {db: dict(sorted(tables.items())) for db, tables in sorted(counts.items()) if db not in skip and tables}


# -- exec streams --------------------------------------------------------------------------------

class _ExecStream:
    """Both ends of an exec's hijacked connection.

    Reads go through the HTTP response's buffered reader: bytes that arrived together with the
    upgrade headers sit in its buffer, and reading the bare socket would lose them. Writes and the
    half-close go to the socket itself.
    """

    def __init__(self, sock_obj) -> None:
        raw = getattr(sock_obj, "_sock", sock_obj)
        if not isinstance(raw, socket.socket):
            raise DumpError("the Docker SDK returned no socket for the exec stream (is docker_host a unix socket?)")
        self.sock = raw
        response = getattr(sock_obj, "_response", None)
        buffered = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
        self.reader = buffered if buffered is not None else sock_obj

    def read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            part = self.reader.read(n - len(buf))
            if not part:
                break
            buf += part
        return bytes(buf)

    def read_some(self, n: int) -> bytes:
        read1 = getattr(self.reader, "read1", None)
        return read1(n) if read1 else self.reader.read(n)

    def frames(self) -> Iterable[tuple[int, bytes]]:
        """(stream, payload) of the engine's multiplexed exec stream (1 stdout, 2 stderr)."""
        while True:
            header = self.read_exact(8)
            if len(header) < 8:
                return
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            remaining = size
            while remaining:
                part = self.read_some(min(remaining, 1 << 20))
                if not part:
                    return
                remaining -= len(part)
                yield stream, part

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            close = getattr(self.reader, "close", None)
            if close:
                try:
                    close()
                except OSError:
                    pass


def _exit_code(api, exec_id: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            return int(info.get("ExitCode") if info.get("ExitCode") is not None else -1)
        if time.monotonic() > deadline:
            raise DumpError("the exec stream ended but the command is still running")
        time.sleep(0.05)


def exec_out(client, container: str, spec: Spec, sink: Callable[[bytes], None],
             stderr_limit: int = 8192) -> dict[str, Any]:
    """Run spec in the container; stdout goes to sink chunk by chunk. Returns exit, bytes, stderr."""
    api = client.api
    exec_id = api.exec_create(container, spec.argv, stdout=True, stderr=True, stdin=False,
                              environment=spec.env or None, user=spec.user or "")["Id"]
    stream_ = _ExecStream(api.exec_start(exec_id, socket=True))
    out_bytes = 0
    err = bytearray()
    try:
        for stream, data in stream_.frames():
            if stream == 2:
                if len(err) < stderr_limit:
                    err += data[:stderr_limit - len(err)]
                continue
            out_bytes += len(data)
            sink(data)
    finally:
        stream_.close()
    return {"exit_code": _exit_code(api, exec_id), "bytes": out_bytes,
            "stderr": err.decode("utf-8", "replace").strip()}


def exec_in(client, container: str, spec: Spec, chunks: Iterable[bytes], output_limit: int = 8192) -> dict[str, Any]:
    """Run spec in the container with CHUNKS on its stdin. Returns exit code and (limited) output."""
    api = client.api
    exec_id = api.exec_create(container, spec.argv, stdout=True, stderr=True, stdin=True,
                              environment=spec.env or None, user=spec.user or "")["Id"]
    stream_ = _ExecStream(api.exec_start(exec_id, socket=True))
    out = bytearray()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for _stream, data in stream_.frames():
                if len(out) < output_limit:
                    out.extend(data[:output_limit - len(out)])
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sent = 0
    try:
        for chunk in chunks:
            stream_.sock.sendall(chunk)
            sent += len(chunk)
        stream_.sock.shutdown(socket.SHUT_WR)
        thread.join()
    finally:
        stream_.close()
    return {"exit_code": _exit_code(api, exec_id), "bytes": sent, "output": out.decode("utf-8", "replace").strip()}


def exec_capture(client, container: str, spec: Spec, timeout: float | None = None) -> dict[str, Any]:
    """Run spec, collect its output; past TIMEOUT seconds the process is killed (from the host)."""
    api = client.api
    exec_id = api.exec_create(container, spec.argv, stdout=True, stderr=True, stdin=False,
                              environment=spec.env or None, user=spec.user or "")["Id"]
    stream_ = _ExecStream(api.exec_start(exec_id, socket=True))
    out = bytearray()

    def reader() -> None:
        try:
            for _stream, data in stream_.frames():
                if len(out) < 65536:
                    out.extend(data[:65536 - len(out)])
        except OSError:
            pass

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    timed_out = thread.is_alive()
    if timed_out:
        _kill_exec(api, exec_id)
        thread.join(5)
    stream_.close()
    code = -1 if timed_out else _exit_code(api, exec_id)
    return {"exit_code": code, "timed_out": timed_out, "output": out.decode("utf-8", "replace").strip()}


def _kill_exec(api, exec_id: str) -> None:
    pid = (api.exec_inspect(exec_id) or {}).get("Pid")
    if pid:
        kill_tree(int(pid))


def kill_tree(pid: int) -> None:
    """SIGKILL PID and all its descendants. A shell's children would otherwise outlive it
    (re-parented to the container's init): they are stopped first, so none forks away unseen."""
    stopped: list[int] = []
    while True:
        children = proc_children()
        tree, todo = [], [pid]
        while todo:
            current = todo.pop()
            tree.append(current)
            todo.extend(children.get(current, []))
        new = [p for p in tree if p not in stopped]
        if not new:
            break
        for p in new:
            try:
                os.kill(p, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                pass
            stopped.append(p)
    for p in stopped:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# -- dump units: capture and restore -------------------------------------------------------------

class Compressor:
    """zstd fed by write(); its output hashed and written to a repository writer by a thread."""

    def __init__(self, writer, level: int = 3, threads: int = 0) -> None:
        import hashlib

        self.writer = writer
        self.digest = hashlib.sha256()
        self.size = 0
        self.zstd = Filter(["zstd", "-q", "-c", f"-{int(level)}", f"-T{int(threads)}"], sink=self._out)

    def _out(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.writer.write(chunk)
        self.size += len(chunk)

    def write(self, data: bytes) -> None:
        if self.zstd.failure:
            raise self.zstd.failure[0]
        self.zstd.write(data)

    def close(self) -> dict[str, Any]:
        rc = self.zstd.finish()
        err = self.zstd.stderr(limit=None)
        self.zstd.close()
        if self.zstd.failure:
            raise self.zstd.failure[0]
        if rc != 0:
            raise DumpError(f"zstd failed (exit {rc}): {err}")
        return {"sha256": self.digest.hexdigest(), "size": self.size}

    def abort(self) -> None:
        self.zstd.close()


def capture_dump(client, repo, container: str, attrs: dict[str, Any], engine: str, tool: str | None,
                 level: int = 3) -> dict[str, Any]:
    """Stream the engine's dump from the container into the repository. Raises DumpError.

    An exit status other than 0, or a dump of 0 bytes, fails: an empty dump is never a backup.
    """
    spec = dump_spec(engine, attrs, tool)
    counter = counter_for(engine)
    writer = repo.new_object_writer()
    comp = Compressor(writer, level)

    def sink(data: bytes) -> None:
        if counter is not None:
            counter.feed(data)
        comp.write(data)

    started = time.monotonic()
    try:
        run = exec_out(client, container, spec, sink)
        obj = comp.close()
    except BaseException:
        comp.abort()
        writer.abort()
        raise
    if run["exit_code"] != 0:
        writer.abort()
        raise DumpError(f"{spec.describe} in {container} failed (exit {run['exit_code']}): "
                        f"{run['stderr'] or 'no error output'}")
    if run["bytes"] == 0:
        writer.abort()
        raise DumpError(f"{spec.describe} in {container} wrote nothing: an empty dump is not a backup; "
                        f"check the database and its credentials ({run['stderr'] or 'no error output'})")
    ref, new = repo.store_object(writer, obj["sha256"], obj["size"])
    counts = comparable_counts(engine, counter.close()) if counter is not None else {}
    return {"object": dict(ref, format=DUMP_FORMATS[engine], compression="zstd", level=level),
            "bytes": run["bytes"], "new": new, "row_counts": counts, "command": spec.describe,
            "stderr": run["stderr"][-2000:], "seconds": round(time.monotonic() - started, 3)}


def object_chunks(repo, ref: dict[str, Any]) -> Iterable[bytes]:
    """The decompressed bytes of an object, checked against its sha256 at the end (raises)."""
    import hashlib

    sha = ref["sha256"]
    expected = ref.get("plain_sha256") or sha
    digest = hashlib.sha256()
    try:
        reader = repo.open_object(ref)
    except Exception as exc:  # pylint: disable=broad-except
        raise DumpError(f"reading object {sha} failed: {exc}") from None
    with reader:
        zstd = Filter(["zstd", "-q", "-d", "-c"], source=reader.read, on_input=digest.update)
        whole = False
        try:
            yield from zstd.chunks()
            whole = True
        finally:
            if not whole:  # the caller stopped reading: the feeder must not wait on a full pipe
                zstd.kill_child()
            rc = zstd.finish()
            zstd.close()
    if zstd.failure:
        raise DumpError(f"reading object {sha} failed: {zstd.failure[0]}")
    if rc != 0 or digest.hexdigest() != expected:
        raise DumpError(f"object {sha} is damaged (sha256 or zstd check failed): restore from another snapshot")


def verify_object(repo, ref: dict[str, Any]) -> None:
    """Hash the stored object before anything is touched (dumps are restored in one stream).
    Encrypted objects are decrypted and hashed: that also proves the identity fits."""
    sha = ref["sha256"]
    if ref.get("encryption"):
        with repo.open_object(ref) as fh:
            actual, _size = hash_stream(fh)
        if actual != ref["plain_sha256"]:
            raise DumpError(f"object {sha} is damaged: its content hashes to {actual}; "
                            "restore from another snapshot or copy")
        return
    with repo.open_object(sha) as fh:
        actual, _size = hash_stream(fh)
    if actual != sha:
        raise DumpError(f"object {sha} is damaged: its bytes hash to {actual}; "
                        "restore from another snapshot or copy")


def count_rows(client, container: str, attrs: dict[str, Any], engine: str,
               expected: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Row counts of the tables in EXPECTED, as the running server has them now."""
    actual: dict[str, dict[str, int]] = {}
    for database, tables in expected.items():
        if not tables:
            continue
        spec = count_spec(engine, attrs, database, sorted(tables))
        run = exec_capture(client, container, spec, timeout=600)
        if run["exit_code"] != 0:
            raise DumpError(f"counting rows of {database} in {container} failed: {run['output'][-500:]}")
        for line in run["output"].splitlines():
            name, _tab, count = line.rpartition("\t")
            if name:
                actual.setdefault(database, {})[name] = int(count)
    return actual


def compare_counts(expected: dict[str, dict[str, int]], actual: dict[str, dict[str, int]],
                   at_least: dict[str, set[str]] | None = None) -> list[str]:
    """Differences between the row counts of a dump and a restored server. Tables in AT_LEAST (by
    database) may hold more rows than the dump: an extension fills them (see _restore_db)."""
    problems = []
    for database, tables in sorted(expected.items()):
        for table, count in sorted(tables.items()):
            have = actual.get(database, {}).get(table)
            if table in (at_least or {}).get(database, ()) and have is not None and have >= count:
                continue
            if have != count:
                problems.append(f"{database}.{table}: {have} rows, {count} at dump time")
    return problems
