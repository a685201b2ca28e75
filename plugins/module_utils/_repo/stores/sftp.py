# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""sftp://USER@HOST[:PORT]/PATH repositories, over OpenSSH's own ssh client.

`ssh -s HOST sftp` runs the server's sftp subsystem with stdin/stdout as the channel (as restic
does), so authentication, host keys, ~/.ssh/config and the agent are OpenSSH's, and this module
speaks the SFTP protocol version 3 (draft-ietf-secsh-filexfer-02) over the pipe:

- one ssh process per store; a reader thread takes the replies and hands each to the request
  (by id) that waits for it, so threads may read and write through the same channel at once;
- writes and reads are pipelined: up to WINDOW requests of CHUNK bytes are in flight, so a
  transfer runs at the link's speed instead of one round trip per chunk;
- an upload goes to tmp/HOST-PID-RANDOM.part and is renamed at commit: SSH_FXP_RENAME never
  replaces an existing file (OpenSSH links, then unlinks), which is the atomic "create only"
  commit; posix-rename@openssh.com is the atomic replace when the server offers it.

The PATH of the URL is absolute on the server (sftp://backup@nas/srv/lifeboat); /~/PATH is
relative to the login directory (sftp://backup@nas/~/lifeboat).
"""

from __future__ import annotations

import collections
import os
import re
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from typing import Any, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import Store, StoreError, Writer, redact_url
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.remote import (
    TMP_PREFIX, check_key, stale_tmp_keys, tmp_key)

# packet types
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT = 1, 2, 3, 4, 5, 6, 7
OPENDIR, READDIR, REMOVE, MKDIR, STAT, RENAME = 11, 12, 13, 14, 17, 18
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED = 101, 102, 103, 104, 105, 200
# status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE = 0, 1, 2, 3, 4
STATUS_NAMES = {OK: "ok", EOF: "end of file", NO_SUCH_FILE: "no such file", PERMISSION_DENIED: "permission denied",
                FAILURE: "failure", 5: "bad message", 6: "no connection", 7: "connection lost",
                8: "operation unsupported"}
# open flags and attribute flags
O_READ, O_WRITE, O_CREAT, O_TRUNC, O_EXCL = 0x01, 0x02, 0x08, 0x10, 0x20
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 0x01, 0x02, 0x04, 0x08, 0x80000000
S_IFMT, S_IFDIR = 0o170000, 0o040000
POSIX_RENAME = "posix-rename@openssh.com"

CHUNK = 32 * 1024   # bytes per READ/WRITE request: every SFTP server takes 32 KiB
WINDOW = 64         # requests in flight per transfer (2 MiB)
CONNECT_TIMEOUT = 20
ALIVE_INTERVAL = 15


# ------------------------------------------------------------------------------------------------
# pure parts: the URL, the ssh command, ssh's complaints, the wire format
# ------------------------------------------------------------------------------------------------
class SftpTarget:
    """What an sftp:// URL names: user (or None), host, port, and the repository path on the server."""

    def __init__(self, url: str) -> None:
        shown = redact_url(url)
        match = re.fullmatch(r"sftp://(?:([^@/:]*)(:[^@/]*)?@)?(\[[0-9A-Fa-f:.]+\]|[^/:@\[\]]+)(?::(\d*))?(/.*)?", url)
        if not match:
            raise StoreError(f"repository {shown!r} is not a valid sftp URL: write sftp://USER@HOST[:PORT]/PATH")
        user, password, host, port, path = match.groups()
        if password is not None:
            raise StoreError(f"repository {shown!r} holds a password: lifeboat logs in over SSH with keys only; remove "
                             "it from the URL and give the key with ssh_identity_file")
        if host.startswith("-") or (user or "").startswith("-"):
            raise StoreError(f"repository {shown!r}: a host or user name cannot start with '-'")
        path = re.sub(r"/+", "/", path or "").rstrip("/")
        if path in ("", "/~"):
            raise StoreError(f"repository {shown!r} names no directory: write sftp://USER@HOST[:PORT]/PATH "
                             "(an absolute path, or /~/PATH below the login directory)")
        self.user = user or None
        self.host = host
        self.port = int(port) if port else 22
        if not 0 < self.port < 65536:
            raise StoreError(f"repository {shown!r}: port {self.port} is out of range")
        # SFTP resolves a relative path against the login directory
        self.path = path[len("/~/"):] if path.startswith("/~/") else path
        self.url = f"sftp://{self.user + '@' if self.user else ''}{host}{':' + str(self.port) if port else ''}{path}"

    @property
    def host_for_keyscan(self) -> str:
        return self.host.strip("[]")

    @property
    def known_hosts_name(self) -> str:
        """How the host appears in known_hosts (with the port when it is not 22)."""
        host = self.host_for_keyscan
        return host if self.port == 22 else f"[{host}]:{self.port}"


def ssh_command(target: SftpTarget, options: dict[str, Any], ssh: str = "ssh") -> list[str]:
    """The ssh command line that runs the sftp subsystem: never prompts, refuses unknown host keys."""
    cmd = [ssh, "-oBatchMode=yes", "-oStrictHostKeyChecking=yes", f"-oConnectTimeout={CONNECT_TIMEOUT}",
           f"-oServerAliveInterval={ALIVE_INTERVAL}", "-oServerAliveCountMax=3", "-oForwardAgent=no",
           "-oForwardX11=no", "-oClearAllForwardings=yes", "-oPermitLocalCommand=no", "-oRequestTTY=no",
           "-oEscapeChar=none"]
    if options.get("ssh_known_hosts_file"):
        cmd.append(f"-oUserKnownHostsFile={options['ssh_known_hosts_file']}")
    if options.get("ssh_identity_file"):
        cmd += [f"-oIdentityFile={options['ssh_identity_file']}", "-oIdentitiesOnly=yes"]
    cmd += ["-p", str(target.port)]
    if target.user:
        cmd += ["-l", target.user]
    cmd += ["-s", "--", target.host_for_keyscan, "sftp"]
    return cmd


def explain_ssh_failure(stderr: str, returncode: int | None, target: SftpTarget, options: dict[str, Any]) -> str:
    """A StoreError message for an ssh that ended: what went wrong, and what to do."""
    where = f"{target.host_for_keyscan} port {target.port}"
    known = options.get("ssh_known_hosts_file") or "~/.ssh/known_hosts"
    identity = options.get("ssh_identity_file")
    who = target.user or "the default user"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("@@@", "Warning: Permanently"))]
    detail = lines[-1] if lines else f"ssh exited with {returncode}"
    text = stderr.lower()
    keyscan = f"ssh-keyscan -p {target.port} {target.host_for_keyscan} >> {known}"
    if "remote host identification has changed" in text:
        return (f"the host key of {where} has CHANGED since it was recorded in {known}: either the server was "
                "reinstalled or someone is intercepting the connection. Check the new key's fingerprint with the "
                f"server's administrator, then replace the entry: ssh-keygen -R '{target.known_hosts_name}' -f {known}; "
                f"{keyscan}")
    if "host key verification failed" in text or "no matching host key" in text:
        return (f"the host key of {where} is not in {known} (an unknown host key is refused, not accepted): check "
                f"the server's key fingerprint, then add it with: {keyscan}")
    if "unprotected private key file" in text or "bad permissions" in text:
        return f"ssh refuses the identity file {identity}: its permissions are too open; chmod 600 it"
    if "load key" in text and ("invalid format" in text or "error in libcrypto" in text):
        return f"ssh cannot load the identity file {identity}: it is not a private key in a format OpenSSH reads"
    if "permission denied" in text:
        key = f"the key {identity}" if identity else "the user's keys and agent"
        return (f"the SSH server {where} refused {key} for {who} ({detail}): add the public key to "
                f"~{target.user or ''}/.ssh/authorized_keys on the server, or give the right ssh_identity_file")
    if "connection refused" in text:
        return f"connection to {where} refused: is the SSH server running, and is the port right?"
    if "could not resolve hostname" in text or "name or service not known" in text:
        return f"cannot resolve the host name {target.host_for_keyscan}: check the repository URL and DNS"
    if "timed out" in text and "connect" in text:
        return f"connecting to {where} timed out after {CONNECT_TIMEOUT} s: check the address, the network and firewalls"
    if "no route to host" in text or "network is unreachable" in text:
        return f"no route to {where} ({detail}): check the address and the network"
    if "subsystem request failed" in text:
        return f"the SSH server {where} does not offer the sftp subsystem: enable 'Subsystem sftp' in its sshd_config"
    return (f"the SSH connection to {where} ended ({detail}): check that the server is up and reachable, "
            "then retry; the next snapshot or prune removes partial uploads")


def pack_str(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return struct.pack(">I", len(data)) + data


class Unpacker:
    """Reads SFTP's big-endian integers and length-prefixed strings from a reply."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return value

    def u64(self) -> int:
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return value

    def string(self) -> bytes:
        size = self.u32()
        if self.pos + size > len(self.data):
            raise StoreError("the SFTP server sent a malformed reply (string beyond the packet)")
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        return value

    def attrs(self) -> dict[str, int]:
        flags = self.u32()
        out: dict[str, int] = {}
        if flags & A_SIZE:
            out["size"] = self.u64()
        if flags & A_UIDGID:
            out["uid"], out["gid"] = self.u32(), self.u32()
        if flags & A_PERMISSIONS:
            out["permissions"] = self.u32()
        if flags & A_ACMODTIME:
            out["atime"], out["mtime"] = self.u32(), self.u32()
        if flags & A_EXTENDED:
            for _pair in range(self.u32()):
                self.string()
                self.string()
        return out

    def at_end(self) -> bool:
        return self.pos >= len(self.data)


def is_dir(attrs: dict[str, int]) -> bool:
    return attrs.get("permissions", 0) & S_IFMT == S_IFDIR


def parse_version(payload: bytes) -> tuple[int, dict[str, bytes]]:
    """(version, extensions) of the server's SSH_FXP_VERSION."""
    unpack = Unpacker(payload)
    version = unpack.u32()
    extensions = {}
    while not unpack.at_end():
        name = unpack.string().decode("utf-8", "replace")
        extensions[name] = unpack.string()
    return version, extensions


def parse_names(payload: bytes) -> list[tuple[str, dict[str, int]]]:
    """(file name, attributes) of an SSH_FXP_NAME reply."""
    unpack = Unpacker(payload)
    out = []
    for _entry in range(unpack.u32()):
        name = unpack.string().decode("utf-8", "surrogateescape")
        unpack.string()  # the long name, as ls -l would print it
        out.append((name, unpack.attrs()))
    return out


class SftpStatus(Exception):
    """A request answered with a status other than OK."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{STATUS_NAMES.get(code, f'status {code}')}" + (f": {message}" if message else ""))
        self.code = code


def parse_status(payload: bytes) -> SftpStatus:
    unpack = Unpacker(payload)
    code = unpack.u32()
    message = ""
    if not unpack.at_end():
        message = unpack.string().decode("utf-8", "replace")
    return SftpStatus(code, message)


# ------------------------------------------------------------------------------------------------
# the channel: one ssh process, requests matched to replies by id
# ------------------------------------------------------------------------------------------------
class Reply:
    """A request in flight; wait() gives (type, payload) or raises StoreError when the channel died."""

    __slots__ = ("event", "kind", "payload", "channel")

    def __init__(self, channel: "SftpChannel") -> None:
        self.event = threading.Event()
        self.kind = 0
        self.payload = b""
        self.channel = channel

    def wait(self) -> tuple[int, bytes]:
        self.event.wait()
        if self.kind == 0:
            raise StoreError(self.channel.failure())
        return self.kind, self.payload

    def status(self) -> None:
        """Wait for a STATUS reply; raise SftpStatus unless it is OK."""
        kind, payload = self.wait()
        if kind != STATUS:
            raise StoreError(f"the SFTP server sent reply type {kind} where a status was due")
        status = parse_status(payload)
        if status.code != OK:
            raise status

    def expect(self, wanted: int) -> bytes:
        """Wait for a reply of type wanted; a STATUS instead raises SftpStatus."""
        kind, payload = self.wait()
        if kind == STATUS:
            raise parse_status(payload)
        if kind != wanted:
            raise StoreError(f"the SFTP server sent reply type {kind} where {wanted} was due")
        return payload


def _end_ssh(proc: subprocess.Popen) -> None:
    """Close ssh's stdin (the server's sftp-server then exits, and ssh with it); kill it if it lingers."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class SftpChannel:
    def __init__(self, argv: list[str], label: str, explain) -> None:
        self.label = label      # the store's URL, for messages
        self.explain = explain  # (stderr text, returncode) -> message
        self.errfile = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                         stderr=self.errfile, bufsize=0, start_new_session=True)
        except OSError as exc:
            self.errfile.close()
            raise StoreError(f"cannot run {argv[0]} ({exc}): install OpenSSH's client (Debian package openssh-client)") from exc
        self.stdin_fd = self.proc.stdin.fileno()
        self.rfile = open(self.proc.stdout.fileno(), "rb", buffering=1 << 18, closefd=False)  # pylint: disable=consider-using-with
        # at exit (or when collected): end ssh cleanly; the finalizer holds the process, not the channel
        self.closer = weakref.finalize(self, _end_ssh, self.proc)
        self.lock = threading.Lock()       # pending requests, ids, state
        self.send_lock = threading.Lock()  # whole packets onto the pipe
        self.pending: dict[int, Reply] = {}
        self.next_id = 1
        self.dead = False
        self.closing = False
        self.version, self.extensions = self._handshake()
        self.thread = threading.Thread(target=self._receive, name="lifeboat-sftp", daemon=True)
        self.thread.start()

    # -- raw packets -----------------------------------------------------------------------------
    def _send_packet(self, body: list[bytes]) -> None:
        data = b"".join([struct.pack(">I", sum(len(part) for part in body)), *body])
        view = memoryview(data)
        with self.send_lock:
            while view:
                view = view[os.write(self.stdin_fd, view):]

    def _read_packet(self) -> bytes | None:
        header = self.rfile.read(4)
        if len(header) < 4:
            return None
        (length,) = struct.unpack(">I", header)
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _handshake(self) -> tuple[int, dict[str, bytes]]:
        try:
            self._send_packet([bytes([INIT]), struct.pack(">I", 3)])
            header = self.rfile.read(4)
            (length,) = struct.unpack(">I", header) if len(header) == 4 else (0,)
            if length > 1 << 16:  # no VERSION packet: text from the login shell, most likely
                text = (header + self.rfile.read1(200)).decode("utf-8", "replace").strip()
                self.dead = True
                raise StoreError(f"{self.label}: the server sent {text!r} instead of an SFTP greeting: the "
                                 "account's shell or its startup files print text, or the account has no shell "
                                 "(nologin); give the user a shell that runs the sftp subsystem silently")
            body = self.rfile.read(length) if length else b""
        except OSError:
            body = b""
        if len(body) < 5 or body[0] != VERSION:
            self.dead = True
            raise StoreError(self.failure())
        return parse_version(body[1:])

    def _receive(self) -> None:
        try:
            while True:
                body = self._read_packet()
                if body is None or len(body) < 5:
                    break
                (rid,) = struct.unpack_from(">I", body, 1)
                with self.lock:
                    reply = self.pending.pop(rid, None)
                if reply is not None:
                    reply.kind, reply.payload = body[0], body[5:]
                    reply.event.set()
        except (OSError, ValueError):
            pass
        with self.lock:
            self.dead = True
            waiting, self.pending = list(self.pending.values()), {}
        for reply in waiting:
            reply.event.set()

    def failure(self) -> str:
        """Why the channel is gone, from ssh's exit status and stderr."""
        if self.closing:
            return f"{self.label}: the SFTP connection was closed"
        try:
            returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            returncode = None
        self.errfile.seek(0)
        stderr = self.errfile.read()[-8192:].decode("utf-8", "replace")
        return f"{self.label}: {self.explain(stderr, returncode)}"

    # -- requests --------------------------------------------------------------------------------
    def send(self, kind: int, *parts: bytes) -> Reply:
        reply = Reply(self)
        with self.lock:
            dead = self.dead
            if not dead:
                rid = self.next_id
                self.next_id = (self.next_id + 1) & 0xFFFFFFFF
                self.pending[rid] = reply
        if dead:
            raise StoreError(self.failure())
        try:
            self._send_packet([bytes([kind]), struct.pack(">I", rid), *parts])
        except OSError:
            with self.lock:
                self.pending.pop(rid, None)
            raise StoreError(self.failure()) from None
        return reply

    def close(self) -> None:
        self.closing = True
        self.closer()
        self.thread.join(timeout=5)
        self.errfile.close()


# ------------------------------------------------------------------------------------------------
# the store
# ------------------------------------------------------------------------------------------------
class SftpReader:
    """A streaming reader of one remote file, with reads ahead in flight (window grows from 2)."""

    def __init__(self, store: "SftpStore", key: str) -> None:
        self.store = store
        self.key = key
        self.chan = store.chan
        reply = self.chan.send(OPEN, pack_str(store.path(key)), struct.pack(">II", O_READ, 0))
        payload = store.call(lambda: reply.expect(HANDLE), f"opening {key}",
                             missing=f"{key} is missing from the repository {store.url}")
        self.handle = Unpacker(payload).string()
        self.inflight: collections.deque = collections.deque()  # (offset, length, reply)
        self.next_offset = 0
        self.window = 2
        self.eof = False
        self.buffer = bytearray()
        self.closed = False

    def _request(self, offset: int, length: int) -> tuple[int, int, Reply]:
        return offset, length, self.chan.send(READ, pack_str(self.handle), struct.pack(">QI", offset, length))

    def _fill(self) -> None:
        """Issue reads up to the window, then take the oldest reply into the buffer."""
        while not self.eof and len(self.inflight) < self.window:
            self.inflight.append(self._request(self.next_offset, CHUNK))
            self.next_offset += CHUNK
        if not self.inflight:
            return
        offset, length, reply = self.inflight.popleft()
        kind, payload = reply.wait()
        if kind == DATA:
            data = Unpacker(payload).string()
            self.buffer += data
            if 0 < len(data) < length:  # a short read: ask again for the rest, first
                self.inflight.appendleft(self._request(offset + len(data), length - len(data)))
            elif data:
                self.window = min(self.window * 2, WINDOW)
            return
        status = parse_status(payload) if kind == STATUS else None
        if status is not None and status.code == EOF:
            self.eof = True
            self.inflight.clear()  # later offsets are past the end too; their replies are dropped
            return
        raise StoreError(f"reading {self.key} from {self.store.url} failed: {status or f'reply type {kind}'}")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while not (self.eof and not self.inflight):
                self._fill()
            data, self.buffer = bytes(self.buffer), bytearray()
            return data
        while len(self.buffer) < size and not (self.eof and not self.inflight):
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.inflight.clear()
        try:
            self.chan.send(CLOSE, pack_str(self.handle)).status()
        except (StoreError, SftpStatus):
            pass

    def __enter__(self) -> "SftpReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SftpWriter(Writer):
    """An upload to tmp/HOST-PID-RANDOM.part with WINDOW writes of CHUNK bytes in flight."""

    def __init__(self, store: "SftpStore") -> None:
        self.store = store
        self.chan = store.chan
        self.tmp = tmp_key()
        self.inflight: collections.deque = collections.deque()
        self.offset = 0
        self.pending = bytearray()
        self.handle = b""
        self.done = False
        try:
            payload = self._create()
        except SftpStatus as status:
            if status.code != NO_SUCH_FILE:
                raise store.status_error(status, f"creating {self.tmp}") from None
            store.makedirs(TMP_PREFIX.rstrip("/"))  # tmp/ was removed by hand: make it again, once
            payload = store.call(self._create, f"creating {self.tmp}")
        self.handle = Unpacker(payload).string()
        store.open_tmp.add(self.tmp)

    def _create(self) -> bytes:
        flags = struct.pack(">II", O_WRITE | O_CREAT | O_EXCL, 0)
        return self.chan.send(OPEN, pack_str(self.store.path(self.tmp)), flags).expect(HANDLE)

    def _send(self, chunk) -> None:
        if len(self.inflight) >= WINDOW:
            self._settle_one()
        self.inflight.append(self.chan.send(WRITE, pack_str(self.handle), struct.pack(">QI", self.offset, len(chunk)),
                                            chunk))
        self.offset += len(chunk)

    def _settle_one(self) -> None:
        reply = self.inflight.popleft()
        self.store.call(reply.status, f"writing {self.tmp}")

    def write(self, data: bytes) -> None:
        if self.done:
            raise StoreError(f"{self.tmp} in {self.store.url} is already committed or aborted")
        view = memoryview(data)
        if self.pending:
            take = CHUNK - len(self.pending)
            self.pending += view[:take]
            view = view[take:]
            if len(self.pending) < CHUNK:
                return
            self._send(bytes(self.pending))
            self.pending = bytearray()
        while len(view) >= CHUNK:
            self._send(view[:CHUNK])
            view = view[CHUNK:]
        self.pending += view

    def _finish(self) -> None:
        """Send what is buffered, wait for every write, close the handle (errors surface here)."""
        if self.pending:
            self._send(bytes(self.pending))
            self.pending = bytearray()
        while self.inflight:
            self._settle_one()
        handle, self.handle = self.handle, b""
        self.store.call(lambda: self.chan.send(CLOSE, pack_str(handle)).status(), f"closing {self.tmp}")

    def commit(self, key: str, replace: bool = False) -> bool:
        check_key(key, self.store.url)
        try:
            self._finish()
            placed = self.store.place(self.tmp, key, replace)
        except BaseException:
            self.abort()
            raise
        self.done = True
        self.store.open_tmp.discard(self.tmp)
        return placed

    def abort(self) -> None:
        """Drop the upload; best effort when the connection is gone (cleanup_stale removes it later)."""
        self.done = True
        self.inflight.clear()
        self.pending = bytearray()
        try:
            if self.handle:
                handle, self.handle = self.handle, b""
                self.chan.send(CLOSE, pack_str(handle)).status()
            self.chan.send(REMOVE, pack_str(self.store.path(self.tmp))).status()
        except (StoreError, SftpStatus):
            pass
        self.store.open_tmp.discard(self.tmp)


class SftpStore(Store):
    """A repository in a directory of an SFTP server, reached with OpenSSH."""

    def __init__(self, url: str, create: bool = False, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.target = SftpTarget(url)
        self.url = self.target.url
        self.root = self.target.path
        self.open_tmp: set[str] = set()
        for opt in ("ssh_identity_file", "ssh_known_hosts_file"):
            path = self.options.get(opt)
            if path and not os.path.isfile(path):
                raise StoreError(f"{opt} {path} does not exist or is no file: give the path of an existing file")
        self.chan = SftpChannel(ssh_command(self.target, self.options), self.url,
                                lambda err, rc: explain_ssh_failure(err, rc, self.target, self.options))
        try:
            attrs = self._stat(self.root)
            if attrs is None and not create:
                raise StoreError(f"repository {self.url} does not exist (no directory {self.root} on "
                                 f"{self.target.host}): check the URL, or run a snapshot to create it")
            if attrs is not None and not is_dir(attrs):
                raise StoreError(f"repository {self.url}: {self.root} on the server is not a directory")
            if create:
                self.makedirs(TMP_PREFIX.rstrip("/"))
        except BaseException:
            self.close()
            raise

    # -- helpers ---------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        if key == "":
            return self.root
        return f"{self.root}/{check_key(key, self.url)}"

    def status_error(self, status: SftpStatus, what: str, missing: str | None = None) -> StoreError:
        """The StoreError for a bad status answering what (e.g. 'writing tmp/...')."""
        if status.code == NO_SUCH_FILE and missing:
            return StoreError(missing)
        if status.code == PERMISSION_DENIED:
            return StoreError(f"{what} in {self.url}: the server denied permission ({status}); check that "
                              f"{self.target.user or 'the SSH user'} may read and write {self.root}")
        hint = "; the server's disk may be full or read-only" if status.code == FAILURE else ""
        return StoreError(f"{what} in {self.url} failed: {status}{hint}")

    def call(self, request, what: str, missing: str | None = None):
        """Run request() (which sends and waits); a bad status becomes a StoreError about what."""
        try:
            return request()
        except SftpStatus as status:
            raise self.status_error(status, what, missing) from None

    def _stat(self, path: str, kind: int = LSTAT) -> dict[str, int] | None:
        try:
            return Unpacker(self.chan.send(kind, pack_str(path)).expect(ATTRS)).attrs()
        except SftpStatus as status:
            if status.code == NO_SUCH_FILE:
                return None
            raise StoreError(f"looking up {path} in {self.url} failed: {status}") from None

    def makedirs(self, rel: str) -> None:
        """mkdir -p of rel below the repository root (the root itself and its parents included)."""
        self._mkdir_p(self.path(rel))

    def _mkdir(self, path: str) -> Reply:
        return self.chan.send(MKDIR, pack_str(path), struct.pack(">II", A_PERMISSIONS, 0o750))

    def _mkdir_p(self, path: str) -> None:
        try:
            self._mkdir(path).status()
            return
        except SftpStatus as status:
            first = status
        attrs = self._stat(path, STAT)
        if attrs is not None and is_dir(attrs):
            return
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if first.code != NO_SUCH_FILE or parent == "":
            raise self.status_error(first, f"creating the directory {path}")
        self._mkdir_p(parent)
        self.call(self._mkdir(path).status, f"creating the directory {path}")

    # -- the Store interface -----------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._stat(self.path(key)) is not None

    def size(self, key: str) -> int:
        attrs = self._stat(self.path(key), STAT)
        if attrs is None:
            raise StoreError(f"{key} is missing from the repository {self.url}")
        return attrs.get("size", 0)

    def open_reader(self, key: str) -> SftpReader:
        return SftpReader(self, key)

    def open_writer(self) -> SftpWriter:
        return SftpWriter(self)

    def place(self, tmp: str, key: str, replace: bool) -> bool:
        """Rename tmp to key (creating its directory); False when key existed and replace is False."""
        src, dst = self.path(tmp), self.path(key)
        for attempt in (1, 2):
            try:
                if replace and POSIX_RENAME in self.chan.extensions:
                    self.chan.send(EXTENDED, pack_str(POSIX_RENAME), pack_str(src), pack_str(dst)).status()
                else:
                    if replace:
                        self.delete(key)  # a server without posix-rename: not atomic
                    self.chan.send(RENAME, pack_str(src), pack_str(dst)).status()
                return True
            except SftpStatus as status:
                if status.code == NO_SUCH_FILE and attempt == 1 and "/" in key:
                    self.makedirs(key.rsplit("/", 1)[0])
                    continue
                if not replace and self.exists(key):
                    self.delete(tmp)
                    return False
                raise self.status_error(status, f"renaming {tmp} to {key}") from None
        return False  # pragma: no cover - the loop returns or raises

    def list(self, prefix: str) -> Iterator[str]:
        return iter([key for key, _attrs in self._walk(prefix)])

    def _walk(self, prefix: str) -> list[tuple[str, dict[str, int]]]:
        """(key, attributes) of every file under prefix, sorted; directories read level by level with
        all their requests in flight at once (one round trip per level, not per directory)."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        found: list[tuple[str, dict[str, int]]] = []
        level = [base]
        while level:
            listings = self._read_dirs(level)
            level = []
            for rel, entries in listings:
                for name, attrs in entries:
                    if name in (".", ".."):
                        continue
                    key = f"{rel}/{name}" if rel else name
                    if is_dir(attrs):
                        if prefix.startswith(key + "/") or key.startswith(prefix):
                            level.append(key)
                    elif key.startswith(prefix):
                        found.append((key, attrs))
        return sorted(found)

    def _read_dirs(self, rels: list[str]) -> list[tuple[str, list]]:
        opening = [(rel, self.chan.send(OPENDIR, pack_str(self.path(rel)))) for rel in rels]
        handles = []
        for rel, reply in opening:
            try:
                handles.append((rel, Unpacker(reply.expect(HANDLE)).string()))
            except SftpStatus as status:
                if status.code != NO_SUCH_FILE:
                    raise self.status_error(status, f"listing {rel or '/'}") from None
        out = {rel: [] for rel, _handle in handles}
        while handles:
            asked = [(rel, handle, self.chan.send(READDIR, pack_str(handle))) for rel, handle in handles]
            handles = []
            for rel, handle, reply in asked:
                try:
                    out[rel].extend(parse_names(reply.expect(NAME)))
                    handles.append((rel, handle))
                except SftpStatus as status:
                    self.chan.send(CLOSE, pack_str(handle))
                    if status.code != EOF:
                        raise self.status_error(status, f"listing {rel or '/'}") from None
        return sorted(out.items())

    def delete(self, key: str) -> None:
        try:
            self.chan.send(REMOVE, pack_str(self.path(key))).status()
        except SftpStatus as status:
            if status.code != NO_SUCH_FILE:
                raise self.status_error(status, f"deleting {key}") from None

    def cleanup_stale(self, max_age: float = 0, dry_run: bool = False) -> list[str]:
        entries = [(key, attrs.get("mtime", 0)) for key, attrs in self._walk(TMP_PREFIX)]
        removed = stale_tmp_keys(entries, time.time(), max_age, set(self.open_tmp))
        for key in [] if dry_run else removed:
            self.delete(key)
        return removed

    def close(self) -> None:
        """End the ssh process (also done at exit, and when the store is garbage collected)."""
        chan = getattr(self, "chan", None)
        if chan is not None:
            chan.close()
