# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Bytes through a child process (zstd, age): fed into its stdin, taken from its stdout, with
its exit status and stderr checked at the end.

feed() is the stdin side alone: a thread writing what a reader gives into a child's stdin.
Filter is the whole child: its stdin fed by write() or by feed() from a source, its stdout
drained by a thread into a sink or read by the caller, its stderr kept in a temporary file (a
pipe nobody reads could fill up and stall the child) for the message when it fails. A failure of
a thread (the source or the sink raised) is kept in `failure` and kills the child, so that the
other side never waits for ever; the caller decides what to raise.

Pure: stderr_text() (reads a file it is given); the rest runs processes and threads.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from typing import Callable, Iterator

CHUNK = 1 << 20


def stderr_text(fh, limit: int | None = 500) -> str:
    """What a child wrote to the temporary file FH, stripped; its last LIMIT characters."""
    fh.seek(0)
    text = fh.read().decode("utf-8", "replace").strip()
    return text[-limit:] if limit else text


def feed(stdin, read: Callable[[int], bytes], on_chunk: Callable[[bytes], None] | None = None,
         failure: list[BaseException] | None = None, on_failure: Callable[[], None] | None = None) -> threading.Thread:
    """Start a thread writing read(CHUNK) into the child's STDIN until it returns b"", then
    closing STDIN. on_chunk sees every chunk first (to hash it). A broken pipe ends it quietly (the
    child stopped: its exit status tells why); any other exception is appended to FAILURE and
    on_failure (the child's kill) is called."""

    def run() -> None:
        try:
            while True:
                chunk = read(CHUNK)
                if not chunk:
                    break
                if on_chunk is not None:
                    on_chunk(chunk)
                stdin.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # pylint: disable=broad-except
            if failure is not None:
                failure.append(exc)
            if on_failure is not None:
                on_failure()
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class Filter:
    """A child process the bytes go through (see the module doc).

    source: read(n) -> bytes, fed into stdin by a thread (else the caller calls write()).
    sink: called with each chunk of stdout by a thread (else the caller reads read() or chunks()).
    on_input: sees each chunk of the source before the child does."""

    def __init__(self, argv: list[str], source: Callable[[int], bytes] | None = None,
                 sink: Callable[[bytes], None] | None = None,
                 on_input: Callable[[bytes], None] | None = None) -> None:
        self.failure: list[BaseException] = []
        self.err = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                         stderr=self.err)
        except BaseException:
            self.err.close()
            raise
        self.threads: list[threading.Thread] = []
        self.fed = source is not None  # then the feeder alone writes to and closes stdin
        if source is not None:
            self.threads.append(feed(self.proc.stdin, source, on_input, self.failure, self.kill_child))
        if sink is not None:
            drain = threading.Thread(target=self._drain, args=(sink,), daemon=True)
            drain.start()
            self.threads.append(drain)

    def _drain(self, sink: Callable[[bytes], None]) -> None:
        fd = self.proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    break
                sink(chunk)
        except BaseException as exc:  # pylint: disable=broad-except
            self.failure.append(exc)
            self.kill_child()  # a writer blocked on the child's input gets a broken pipe

    def kill_child(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def write(self, data: bytes) -> None:
        """Into the child's stdin; BrokenPipeError (or ValueError, once closed) when it stopped."""
        self.proc.stdin.write(data)

    def read(self, size: int = CHUNK) -> bytes:
        """Up to SIZE bytes of the child's stdout, at least one unless it ended (b"")."""
        out = self.proc.stdout
        return out.read1(size) if hasattr(out, "read1") else out.read(size)

    def chunks(self) -> Iterator[bytes]:
        """The child's stdout, chunk by chunk, to its end."""
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                return
            yield chunk

    def stderr(self, limit: int | None = 500) -> str:
        return stderr_text(self.err, limit)

    def finish(self) -> int:
        """End the input (when the caller wrote it), wait for the threads and the child; its exit
        status. Then look at failure (the threads' exceptions) and stderr()."""
        if not self.fed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        for thread in self.threads:
            thread.join()
        rc = self.proc.wait()
        self.proc.stdout.close()
        return rc

    def close(self) -> None:
        """Stop the child (if it still runs) and release everything; safe after finish()."""
        self.kill_child()
        if not self.fed:
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        for thread in self.threads:
            thread.join()
        self.proc.wait()
        for fh in (self.proc.stdout, self.err):
            try:
                fh.close()
            except (OSError, ValueError):
                pass
