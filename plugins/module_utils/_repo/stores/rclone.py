# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""rclone://REMOTE/PATH repositories, through the rclone command (Debian's rclone, 1.60 or later).

Each operation is one rclone process: `rcat` streams an upload from stdin to tmp/HOST-PID-RANDOM.part
and `moveto` puts it under its key at commit (a server-side move where the remote has one),
`cat` streams a download, `lsjson --stat` answers exists and size, one `lsjson -R` lists a prefix,
`deletefile` deletes. Nothing is cached between calls. The remote comes from the rclone
configuration file (option rclone_config, else rclone's own default); its secrets never appear in
messages: the values of the configuration's password-like settings are masked in whatever rclone
prints.

rcat streams only to backends that take uploads of unknown size (rclone's feature PutStream: S3,
SFTP, Drive, Dropbox, local, ...); for the others, WebDAV among them in rclone 1.60, rclone spools
each object to a temporary file in TMPDIR before sending it (see docs/stores-sftp-rclone.md).

PATH is relative to the remote's root (rclone://dav/backups is `dav:backups`); //PATH is
absolute, for remotes that have one (rclone://nas//srv/backups is `nas:/srv/backups`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import subprocess
import tempfile
import time
from typing import Any, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import Store, StoreError, Writer, redact_url
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.remote import (
    TMP_PREFIX, check_key, stale_tmp_keys, tmp_key)

SECRET_SETTING = re.compile(r"^\s*([A-Za-z0-9_]*(?:pass|password|secret|token|key|credentials?)[A-Za-z0-9_]*)\s*=\s*(.+?)\s*$",
                            re.I)
FLAGS = ["--ask-password=false", "--low-level-retries", "3", "--retries", "1", "--contimeout", "20s",
         "--timeout", "2m"]
READ_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------------
# pure parts: the URL, secrets of the configuration, rclone's complaints
# ------------------------------------------------------------------------------------------------
class RcloneTarget:
    """What an rclone:// URL names: the remote and the repository path in it."""

    def __init__(self, url: str) -> None:
        shown = redact_url(url)
        match = re.fullmatch(r"rclone://([A-Za-z0-9_. +@-]+)(/.*)?", url)
        if not match or match.group(1).startswith("-"):
            raise StoreError(f"repository {shown!r} is not a valid rclone URL: write rclone://REMOTE/PATH, REMOTE being "
                             "the name of a remote in the rclone configuration (without the colon)")
        self.remote = match.group(1)
        raw = match.group(2) or ""
        absolute = raw.startswith("//")
        path = re.sub(r"/+", "/", raw).strip("/")
        if ".." in path.split("/"):
            raise StoreError(f"repository {shown!r}: the path may not contain '..'")
        self.path = ("/" if absolute else "") + path
        self.url = f"rclone://{self.remote}/{'/' if absolute else ''}{path}".rstrip("/")

    def spec(self, key: str = "") -> str:
        """rclone's REMOTE:PATH for a key of the repository ('' is the repository itself)."""
        joined = "/".join(part for part in (self.path.rstrip("/"), key) if part)
        if self.path.startswith("/") and not joined.startswith("/"):
            joined = "/" + joined
        return f"{self.remote}:{joined}"


def config_secrets(text: str) -> list[str]:
    """Values of password-like settings in an rclone configuration (to mask them in messages)."""
    out = []
    for line in text.splitlines():
        match = SECRET_SETTING.match(line)
        if match and len(match.group(2)) >= 4:
            out.append(match.group(2))
    return sorted(set(out), key=len, reverse=True)


def mask(text: str, hidden: list[str]) -> str:
    for secret in hidden:
        text = text.replace(secret, "***")
    return re.sub(r"(://[^/@:\s]*):[^/@\s]*@", r"\1:***@", text)


def explain_rclone_failure(stderr: str, returncode: int, target: RcloneTarget, config: str | None, what: str) -> str:
    """A message for an rclone command that failed: what, why, and what to do."""
    text = stderr.lower()
    lines = [re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    detail = lines[-1] if lines else f"rclone exited with {returncode}"
    where = config or "rclone's default configuration (~/.config/rclone/rclone.conf)"
    remote = f"remote {target.remote!r}"
    if "didn't find section in config file" in text:
        return (f"{what}: {remote} is not defined in {where}: check the name in the URL, or add the remote "
                "with `rclone config`")
    if "couldn't decrypt" in text or "unable to decrypt" in text or "config file is encrypted" in text:
        return f"{what}: the rclone configuration {where} is encrypted: give its password in RCLONE_CONFIG_PASS"
    if "connection refused" in text:
        return f"{what}: the server of {remote} refused the connection ({detail}): is it running, is its address right?"
    if "no such host" in text:
        return f"{what}: the host of {remote} cannot be resolved ({detail}): check its address in {where}"
    if "401" in text or "403" in text or "unauthorized" in text or "forbidden" in text or "permission denied" in text:
        return (f"{what}: the server of {remote} refused access ({detail}): check the user, password or token of "
                f"the remote in {where}")
    if "insufficient storage" in text or "507" in text or "no space left" in text or "quota" in text:
        return f"{what}: the store of {remote} is full ({detail}): free space there or use another repository"
    if "timeout" in text or "deadline exceeded" in text:
        return f"{what}: the server of {remote} did not answer in time ({detail}): check the network and the server"
    if "directory not found" in text or "not found" in text:
        return f"{what}: not found ({detail})"
    return f"{what}: rclone failed (exit {returncode}): {detail}"


def parse_modtime(text: str) -> float:
    """Seconds since the epoch of an lsjson ModTime (RFC 3339, up to nanoseconds); 0 when unreadable."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return 0.0
    stamp, fraction, zone = match.groups()
    when = _dt.datetime.fromisoformat(stamp + ("+00:00" if zone == "Z" else zone))
    return when.timestamp() + float(f"0.{fraction}" if fraction else 0)


def not_found(stderr: str, returncode: int) -> bool:
    text = stderr.lower()
    return returncode in (1, 3, 4) and ("not found" in text or "doesn't exist" in text or "does not exist" in text)


# ------------------------------------------------------------------------------------------------
# the store
# ------------------------------------------------------------------------------------------------
class RcloneReader:
    """`rclone cat KEY` as a file: read(n), close(). A missing key raises at opening."""

    def __init__(self, store: "RcloneStore", key: str) -> None:
        self.store = store
        self.key = key
        self.errfile = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        self.proc = store.popen(["cat", store.target.spec(key)], stdout=subprocess.PIPE, stderr=self.errfile)
        try:
            self.buffer = self.proc.stdout.read1(READ_CHUNK)
            if not self.buffer:
                self._check_end()
        except BaseException:
            self.close()
            raise
        self.ended = not self.buffer

    def _check_end(self) -> None:
        returncode = self.proc.wait()
        if returncode != 0:
            stderr = _tail(self.errfile)
            if not_found(stderr, returncode):
                raise StoreError(f"{self.key} is missing from the repository {self.store.url}")
            raise StoreError(self.store.explain(stderr, returncode, f"reading {self.key} from {self.store.url}"))

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data = self.buffer + (b"" if self.ended else self.proc.stdout.read())
            self.buffer = b""
            self.ended = True
            self._check_end()
            return data
        if len(self.buffer) < size and not self.ended:
            more = self.proc.stdout.read(size - len(self.buffer))
            if len(more) < size - len(self.buffer):
                self.ended = True
                self._check_end()
            self.buffer += more
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.errfile.close()

    def __enter__(self) -> "RcloneReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class RcloneWriter(Writer):
    """`rclone rcat tmp/HOST-PID-RANDOM.part` fed by write(); `rclone moveto` at commit."""

    def __init__(self, store: "RcloneStore") -> None:
        self.store = store
        self.tmp = tmp_key()
        self.errfile = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        self.proc = store.popen(["rcat", store.target.spec(self.tmp)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=self.errfile)
        self.done = False
        store.open_tmp.add(self.tmp)

    def _upload_failed(self) -> StoreError:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        returncode = self.proc.wait()
        return StoreError(self.store.explain(_tail(self.errfile), returncode,
                                             f"uploading {self.tmp} to {self.store.url}") +
                          "; the next snapshot or prune removes the partial upload")

    def write(self, data: bytes) -> None:
        if self.done:
            raise StoreError(f"{self.tmp} in {self.store.url} is already committed or aborted")
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError):
            raise self._upload_failed() from None

    def commit(self, key: str, replace: bool = False) -> bool:
        check_key(key, self.store.url)
        try:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            if self.proc.wait() != 0:
                raise self._upload_failed()
            if not replace and self.store.exists(key):
                self.store.delete(self.tmp)
                placed = False
            else:
                self.store.run(["moveto", self.store.target.spec(self.tmp), self.store.target.spec(key)],
                               f"moving {self.tmp} to {key} in {self.store.url}")
                placed = True
        except BaseException:
            self.abort()
            raise
        self.done = True
        self.store.open_tmp.discard(self.tmp)
        self.errfile.close()
        return placed

    def abort(self) -> None:
        """Drop the upload; best effort when the remote is gone (cleanup_stale removes it later)."""
        self.done = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        try:
            self.store.delete(self.tmp)
        except StoreError:
            pass
        self.store.open_tmp.discard(self.tmp)
        if not self.errfile.closed:
            self.errfile.close()


def _tail(fh) -> str:
    fh.seek(0)
    return fh.read()[-8192:].decode("utf-8", "replace")


class RcloneStore(Store):
    """A repository in a path of an rclone remote."""

    def __init__(self, url: str, create: bool = False, options: dict[str, Any] | None = None) -> None:
        self.target = RcloneTarget(url)
        self.url = self.target.url
        self.config = (options or {}).get("rclone_config")
        self.open_tmp: set[str] = set()
        self.secrets: list[str] = []
        if self.config:
            if not os.path.isfile(self.config):
                raise StoreError(f"rclone_config {self.config} does not exist or is no file: give the path of the rclone "
                                 "configuration that defines the remote")
            try:
                with open(self.config, encoding="utf-8", errors="replace") as fh:
                    self.secrets = config_secrets(fh.read())
            except OSError as exc:
                raise StoreError(f"rclone_config {self.config} cannot be read ({exc.strerror}): check its permissions") from None
        info = self._stat("")
        if info is None or not info.get("IsDir"):
            if info is not None:
                raise StoreError(f"repository {self.url}: {self.target.spec()} is a file, not a directory")
            if not create:
                raise StoreError(f"repository {self.url} does not exist ({self.target.spec()} not found): check the URL, "
                                 "or run a snapshot to create it")
            self.run(["mkdir", self.target.spec()], f"creating the repository {self.url}")

    # -- running rclone --------------------------------------------------------------------------
    def command(self, args: list[str]) -> list[str]:
        cmd = ["rclone"]
        if self.config:
            cmd += ["--config", self.config]
        return cmd + FLAGS + args

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen:
        try:
            return subprocess.Popen(self.command(args), **kwargs)  # pylint: disable=consider-using-with
        except OSError as exc:
            raise StoreError(f"cannot run rclone ({exc.strerror}): install it (Debian package rclone)") from None

    def explain(self, stderr: str, returncode: int, what: str) -> str:
        return mask(explain_rclone_failure(stderr, returncode, self.target, self.config, what), self.secrets)

    def run(self, args: list[str], what: str, missing_ok: bool = False) -> bytes | None:
        """Run rclone ARGS; its stdout, or None when missing_ok and rclone found nothing there."""
        with tempfile.TemporaryFile() as errfile:
            proc = self.popen(args, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL)
            out = proc.communicate()[0]
            if proc.returncode == 0:
                return out
            stderr = _tail(errfile)
        if missing_ok and not_found(stderr, proc.returncode):
            return None
        raise StoreError(self.explain(stderr, proc.returncode, what))

    def _stat(self, key: str) -> dict[str, Any] | None:
        out = self.run(["lsjson", "--stat", "--no-mimetype", self.target.spec(key)],
                       f"looking up {key or 'the repository'} in {self.url}", missing_ok=True)
        return None if out is None else json.loads(out)

    def _ls(self, prefix: str, modtime: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """(key, lsjson entry) of the files under prefix, sorted; one rclone process."""
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        args = ["lsjson", "-R", "--files-only", "--fast-list", "--no-mimetype"]
        if not modtime:
            args.append("--no-modtime")
        out = self.run(args + [self.target.spec(base)], f"listing {prefix or '/'} in {self.url}", missing_ok=True)
        found = []
        for entry in json.loads(out or b"[]"):
            key = f"{base}/{entry['Path']}" if base else entry["Path"]
            if key.startswith(prefix):
                found.append((key, entry))
        return sorted(found, key=lambda item: item[0])

    # -- the Store interface -----------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        info = self._stat(check_key(key, self.url))
        return info is not None and not info.get("IsDir")

    def size(self, key: str) -> int:
        info = self._stat(check_key(key, self.url))
        if info is None or info.get("IsDir"):
            raise StoreError(f"{key} is missing from the repository {self.url}")
        return int(info["Size"])

    def open_reader(self, key: str) -> RcloneReader:
        return RcloneReader(self, check_key(key, self.url))

    def open_writer(self) -> RcloneWriter:
        return RcloneWriter(self)

    def list(self, prefix: str) -> Iterator[str]:
        return iter([key for key, _entry in self._ls(prefix)])

    def delete(self, key: str) -> None:
        self.run(["deletefile", self.target.spec(check_key(key, self.url))], f"deleting {key} from {self.url}",
                 missing_ok=True)

    def cleanup_stale(self, max_age: float = 0, dry_run: bool = False) -> list[str]:
        entries = [(key, parse_modtime(entry.get("ModTime", ""))) for key, entry in self._ls(TMP_PREFIX, modtime=True)]
        removed = stale_tmp_keys(entries, time.time(), max_age, set(self.open_tmp))
        for key in [] if dry_run else removed:
            self.delete(key)
        return removed
