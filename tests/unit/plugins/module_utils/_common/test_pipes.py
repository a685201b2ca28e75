# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""_pipes: bytes through real child processes (cat, sh, zstd)."""

import hashlib
import io
import os
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._common.pipes import CHUNK, Filter, feed

DATA = os.urandom(3 * CHUNK + 123)


def test_written_input_drained_into_a_sink():
    out = []
    cat = Filter(["cat"], sink=out.append)
    for start in range(0, len(DATA), 65536):
        cat.write(DATA[start:start + 65536])
    assert cat.finish() == 0 and not cat.failure
    cat.close()
    assert b"".join(out) == DATA


def test_source_fed_and_read_by_the_caller_with_the_input_seen():
    seen = hashlib.sha256()
    cat = Filter(["cat"], source=io.BytesIO(DATA).read, on_input=seen.update)
    got = b"".join(cat.chunks())
    assert cat.finish() == 0 and got == DATA and seen.hexdigest() == hashlib.sha256(DATA).hexdigest()
    cat.close()


def test_read_returns_what_is_there_and_empty_at_the_end():
    cat = Filter(["cat"], source=io.BytesIO(b"abc").read)
    parts = []
    while True:
        chunk = cat.read(2)
        if not chunk:
            break
        parts.append(chunk)
    assert b"".join(parts) == b"abc" and cat.finish() == 0
    cat.close()


def test_exit_status_and_stderr_of_a_failing_child():
    child = Filter(["sh", "-c", "cat >/dev/null; echo broken input >&2; exit 3"])
    child.write(b"x")
    assert child.finish() == 3
    assert child.stderr() == "broken input"
    child.close()


def test_a_failing_sink_is_kept_and_kills_the_child():
    def sink(_chunk):
        raise OSError("disk full")

    zstd = Filter(["zstd", "-q", "-c"], sink=sink)
    with pytest.raises((BrokenPipeError, ValueError)):
        for _attempt in range(200):  # until the killed child's pipe breaks
            zstd.write(DATA)
    zstd.finish()
    assert isinstance(zstd.failure[0], OSError) and "disk full" in str(zstd.failure[0])
    zstd.close()


def test_a_failing_source_is_kept_and_the_child_ends():
    def source(_n):
        raise OSError("connection reset")

    cat = Filter(["cat"], source=source)
    assert list(cat.chunks()) == []
    cat.finish()
    assert "connection reset" in str(cat.failure[0])
    cat.close()


def test_feed_ends_quietly_when_the_child_stops_reading():
    proc = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    failure = []
    thread = feed(proc.stdin, io.BytesIO(DATA).read, failure=failure)
    assert proc.stdout.read() == DATA[:10]
    thread.join()
    proc.stdout.close()
    assert proc.wait() == 0 and failure == []
