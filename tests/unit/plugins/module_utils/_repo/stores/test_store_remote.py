"""Names of temporary uploads and the choice of stale ones (_store_remote), shared by the remote stores."""

from __future__ import annotations

import os

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.remote import (
    ABANDONED_AFTER, check_key, stale_tmp_keys, this_host, tmp_is_stale, tmp_key, tmp_writer)

NOW = 1_800_000_000.0


def test_tmp_key_names_host_and_pid_and_parses_back():
    key = tmp_key()
    assert key.startswith(f"tmp/{this_host()}-{os.getpid()}-") and key.endswith(".part")
    assert tmp_writer(key) == (this_host(), os.getpid())
    assert tmp_key() != key, "two writers of one process got the same name"
    assert tmp_writer("tmp/web-1-example-org-4242-abcdef012345.part") == ("web-1-example-org", 4242)


@pytest.mark.parametrize("key", ["tmp/notes.txt", "tmp/host-abc-123456.part", "tmp/a/b-1-2.part", "tmp/-1-2.part"])
def test_other_names_name_no_writer(key):
    assert tmp_writer(key) is None


def test_stale_uploads_are_dead_writers_of_this_host_and_anything_abandoned():
    dead, live = 999_999, 1234
    entries = [
        (f"tmp/me-{dead}-000000000001.part", NOW - 5),               # this host, process gone: stale
        (f"tmp/me-{live}-000000000002.part", NOW - 5),               # this host, process alive: kept
        (f"tmp/me-{os.getpid()}-000000000003.part", NOW - 5),        # this process, no open writer: stale
        (f"tmp/me-{os.getpid()}-000000000004.part", NOW - 5),        # this process, open writer: kept
        (f"tmp/other-{dead}-000000000005.part", NOW - 5),            # another host: kept (its pid says nothing)
        (f"tmp/other-{dead}-000000000006.part", NOW - ABANDONED_AFTER - 1),  # another host, a day old: stale
        (f"tmp/me-{live}-000000000007.part", NOW - ABANDONED_AFTER - 1),     # alive but untouched for a day: stale
        ("tmp/junk.txt", NOW - 60),                                  # unknown name, recent: kept
        ("tmp/junk-old.txt", NOW - ABANDONED_AFTER - 1),             # unknown name, old: stale
    ]
    own = {f"tmp/me-{os.getpid()}-000000000004.part"}
    stale = stale_tmp_keys(entries, NOW, 0, own, host="me", alive=lambda pid: pid == live)
    assert stale == sorted([entries[0][0], entries[2][0], entries[5][0], entries[6][0], "tmp/junk-old.txt"])


def test_max_age_spares_young_uploads_of_dead_writers():
    entries = [("tmp/me-999999-000000000001.part", NOW - 30), ("tmp/me-999999-000000000002.part", NOW - 300)]
    assert stale_tmp_keys(entries, NOW, 120, set(), host="me", alive=lambda pid: False) == [entries[1][0]]


@pytest.mark.parametrize("key", ["", "/etc/passwd", "objects/../../x", "a/..", "a\\b", "a\0b"])
def test_keys_that_leave_the_repository_are_refused(key):
    with pytest.raises(StoreError, match="invalid repository key"):
        check_key(key, "sftp://h/repo")


def test_throttled_writer_keeps_to_the_rate_after_one_seconds_burst():
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import ThrottledWriter

    class Sink:
        def __init__(self):
            self.data = b""

        def write(self, data):
            self.data += data

    clock = [100.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    sink = Sink()
    writer = ThrottledWriter(sink, 1000, clock=lambda: clock[0], sleep=sleep)
    writer.write(b"x" * 1000)  # the burst: no wait
    assert slept == []
    writer.write(b"x" * 500)  # 1500 bytes at t=0: due at 0.5 s
    assert slept == [0.5]
    clock[0] += 2.0  # a pause earns nothing beyond the rate since the start
    writer.write(b"x" * 1500)  # 3000 bytes: due at 2.0 s, now 2.5 s: no wait
    assert slept == [0.5] and len(sink.data) == 3000 and writer.waited == 0.5


@pytest.mark.parametrize("value, rate", [(None, None), ("", None), ("512K", 524288.0), ("10M", 10485760.0),
                                         ("10MiB/s", 10485760.0), ("1.5m", 1572864.0), ("4096", 4096.0),
                                         ("2G", 2147483648.0), ("1kb", 1024.0)])
def test_parse_rate(value, rate):
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import parse_rate

    assert parse_rate(value) == rate


@pytest.mark.parametrize("value", ["fast", "100", "-5M", "10X"])
def test_parse_rate_refuses(value):
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError, parse_rate

    with pytest.raises(StoreError, match="upload_limit"):
        parse_rate(value)


def test_untouched_uploads_of_a_live_writer_stay_and_max_age_spares_all():
    """touched=False (S3's multipart uploads keep their start time): a live writer of this host is
    never stale, however old; another host's is after ABANDONED_AFTER; max_age spares everything."""
    def stale(key, age, max_age=0):
        return tmp_is_stale(key, age, set(), max_age, host="me", pid=1, alive=lambda pid: pid == 7, touched=False)

    assert not stale("tmp/me-7-0a.part", 3 * ABANDONED_AFTER)
    assert stale("tmp/me-8-0a.part", 5)
    assert not stale("tmp/other-8-0a.part", ABANDONED_AFTER - 1) and stale("tmp/other-8-0a.part", ABANDONED_AFTER)
    assert not stale("tmp/other-8-0a.part", 2 * ABANDONED_AFTER, max_age=3 * ABANDONED_AFTER)
