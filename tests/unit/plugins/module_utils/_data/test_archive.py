"""The data path of file units with the real GNU tar and zstd: walk()'s index and fingerprint,
the streaming index comparison, and capture/extract round trips (splice path, no-xattr path)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import (
    IndexSpool,
    capture,
    compare_index,
    compare_tree,
    extract,
    walk,
)


def reference_walk(root: str) -> tuple[bytes, str]:
    """The index and fingerprint as the first versions of walk() made them (json.dumps per
    entry): today's walk() must give the same bytes, so that snapshots taken before still count
    as unchanged and their indexes still compare."""
    lines, digest = [], hashlib.sha256()

    def record(rel, st, link):
        mode = st.st_mode
        kind = ("f" if stat.S_ISREG(mode) else "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode)
                else "p" if stat.S_ISFIFO(mode) else "c" if stat.S_ISCHR(mode) else "b" if stat.S_ISBLK(mode) else "s")
        line = json.dumps([rel, kind, st.st_size if kind == "f" else 0, stat.S_IMODE(mode), st.st_uid, st.st_gid,
                           int(st.st_mtime), link], ensure_ascii=True, separators=(",", ":"))
        lines.append(line)
        digest.update(f"{line}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_nlink}\n"
                      .encode("utf-8", "surrogateescape"))

    record(".", os.lstat(root), None)
    stack = [(root, ".")]
    while stack:
        path, rel = stack.pop()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            erel = entry.name if rel == "." else f"{rel}/{entry.name}"
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISSOCK(st.st_mode):
                continue
            record(erel, st, os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else None)
            if stat.S_ISDIR(st.st_mode):
                stack.append((entry.path, erel))
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"), digest.hexdigest()


def odd_tree(root) -> None:
    names = ["plain.txt", 'quote"d', "back\\slash", "new\nline", "tab\there", "del\x7f", "caf\u00e9",
             "emoji\U0001F600", "sp ace"]
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, name in enumerate(names):
        (root / name).write_bytes(b"x" * i)
        (root / "sub" / name).mkdir()
    with open(os.path.join(os.fsencode(root), b"bad\xe9\xff"), "wb") as fh:
        fh.write(b"not utf-8")
    (root / "sub" / "deeper" / "link").symlink_to('../quote"d\\\u00e9')
    (root / "dangling").symlink_to("/nowhere/\u00e9")
    os.link(root / "plain.txt", root / "sub" / "hard")
    os.mkfifo(root / "fifo")


def test_walk_index_and_fingerprint_are_those_of_earlier_versions(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    odd_tree(root)
    index, fingerprint = reference_walk(str(root))
    scan = walk(str(root))
    assert scan.index_bytes() == index
    assert scan.fingerprint == fingerprint
    blocks: list[bytes] = []
    streamed = walk(str(root), sink=blocks.append)
    assert b"".join(blocks) == index and len(blocks) > 1  # a directory at a time
    assert streamed.fingerprint == fingerprint
    assert streamed.index is None


def test_walk_probes_extended_attributes(tmp_path):
    root = tmp_path / "t"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"x")
    assert walk(str(root), probe_xattrs=True).xattrs is False
    try:
        os.setxattr(root / "d" / "f", "user.lifeboat", b"1")
    except OSError:
        pytest.skip("this file system takes no user extended attributes")
    assert walk(str(root), probe_xattrs=True).xattrs is True
    assert walk(str(root)).xattrs is False  # not probed


def test_compare_index_streams_and_reports_what_differs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "d" / "e").mkdir(parents=True)
        (root / "d" / "f").write_bytes(b"same")
        (root / "z").write_bytes(b"last")
        os.utime(root / "d" / "f", (1_000_000_000, 1_000_000_000))
        os.utime(root / "z", (1_000_000_000, 1_000_000_000))
    os.utime(b / "d", (2_000_000_000, 2_000_000_000))  # directory mtimes are not compared
    assert compare_index(walk(str(a)).index_bytes(), walk(str(b)).index_bytes()) == []
    (b / "d" / "f").write_bytes(b"longer")
    os.chmod(b / "z", 0o600)
    problems = compare_index(walk(str(a)).index_bytes(), walk(str(b)).index_bytes())
    assert problems == ["'z': mode 384, expected 420", "'d/f': size 6, expected 4",  # walk()'s order
                        "'d/f': mtime %d, expected 1000000000" % int(os.stat(b / "d" / "f").st_mtime)]
    # An entry on one side only: the rest is compared by path.
    (b / "d" / "e" / "new").write_bytes(b"")
    os.rmdir(a / "d" / "e")
    problems = compare_index(walk(str(a)).index_bytes(), walk(str(b)).index_bytes())
    assert "unexpected 'd/e'" in problems and "unexpected 'd/e/new'" in problems
    assert "'z': mode 384, expected 420" in problems
    # Entries missing at the end.
    assert compare_index(walk(str(a)).index_bytes(), b"") == [
        f"missing {p!r}" for p in (".", "d", "z", "d/f")]


def test_compare_index_lists_at_most_twenty(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    for i in range(30):
        (root / f"f{i:02d}").write_bytes(b"x")
    index = walk(str(root)).index_bytes()
    problems = compare_index(index, index.replace(b'"f",1,', b'"f",2,'))
    assert len(problems) == 21 and problems[-1].startswith("... (more")


def round_trip(src, dest, xattrs: bool):
    spool = IndexSpool()
    scan = walk(str(src), sink=spool.write, probe_xattrs=True)
    out = io.BytesIO()
    cap = capture(str(src), out, xattrs=xattrs)
    obj = out.getvalue()
    assert cap["sha256"] == hashlib.sha256(obj).hexdigest() and cap["size"] == len(obj)
    dest.mkdir()
    info = extract(io.BytesIO(obj), str(dest), cap["sha256"], xattrs=xattrs)
    return scan, spool.compress(), info, obj


def test_capture_and_extract_round_trip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    odd_tree(src)
    big = os.urandom(3 << 20)  # moves by splice: much larger than SPLICE_MIN
    (src / "big").write_bytes(big)
    for i in range(200):
        (src / "sub" / f"small{i}").write_bytes(os.urandom(i * 37))
    with open(src / "sparse", "wb") as fh:
        fh.truncate(50 << 20)
        fh.write(b"head")
    os.chmod(src, 0o751)
    scan, index_zst, info, obj = round_trip(src, tmp_path / "dest", xattrs=True)
    dest = tmp_path / "dest"
    assert compare_tree(index_zst, str(dest)) == []
    assert (dest / "big").read_bytes() == big
    assert os.stat(dest).st_mode & 0o7777 == 0o751
    assert os.stat(dest / "sparse").st_blocks * 512 < 1 << 20
    assert os.stat(dest / "plain.txt").st_ino == os.stat(dest / "sub" / "hard").st_ino
    assert info["members"] >= scan.files + scan.dirs + scan.others - 1  # the fifo and links too
    # By hand, as docs/repository-format.md says: zstd -d | tar -x.
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    proc = subprocess.run(f"zstd -d | tar -x --numeric-owner -C {by_hand}", shell=True, input=obj,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert compare_tree(index_zst, str(by_hand)) == []
    # A changed tree is reported.
    (dest / "big").write_bytes(b"short")
    assert compare_tree(index_zst, str(dest))[0].startswith("'big': size 5")


def test_round_trip_without_extended_attributes(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(200_000))
    scan, index_zst, _info, _obj = round_trip(src, tmp_path / "dest", xattrs=False)
    assert scan.xattrs is False
    assert compare_tree(index_zst, str(tmp_path / "dest")) == []


def test_extract_refuses_a_damaged_object(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(300_000))
    out = io.BytesIO()
    cap = capture(str(src), out)
    data = bytearray(out.getvalue())
    data[len(data) // 2] ^= 0x40
    dest = tmp_path / "dest"
    dest.mkdir()
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ChecksumMismatch

    with pytest.raises(ChecksumMismatch):
        extract(io.BytesIO(bytes(data)), str(dest), cap["sha256"])


def test_capture_into_a_local_store_starts_writeback_on_the_way(tmp_path, monkeypatch):
    from ansible_collections.lifeboat.docker.plugins.module_utils._data import archive as _archive
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore, LocalWriter

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(3 << 20))
    calls = []
    real = LocalWriter.start_writeback

    def counting(self):
        calls.append(self.bytes)
        real(self)

    monkeypatch.setattr(LocalWriter, "start_writeback", counting)
    monkeypatch.setattr(_archive, "WRITEBACK_EVERY", 1 << 20)
    store = LocalStore(str(tmp_path / "repo"), create=True)
    writer = store.open_writer()
    cap = capture(str(src), writer, level=1)
    assert len(calls) >= 2 and calls == sorted(calls)
    assert writer.commit("objects/x")
    with open(tmp_path / "repo" / "objects" / "x", "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == cap["sha256"]


def test_index_spool_compresses_or_discards():
    data = b"".join(b'["f%d","f",1,420,0,0,0,null]\n' % i for i in range(20000))
    with IndexSpool() as spool:
        for i in range(0, len(data), 4096):
            spool.write(data[i:i + 4096])
        packed = spool.compress()
    assert len(packed) < len(data) // 5
    assert subprocess.run(["zstd", "-d", "-c"], input=packed, capture_output=True, check=True).stdout == data
    discarded = IndexSpool()
    discarded.write(data)
    discarded.close()  # zstd stopped, nothing kept
    assert discarded._proc.returncode is not None


def test_capture_walks_alongside_into_a_local_file_and_extracts_from_it(tmp_path):
    """The local path of capture (zstd writes the object file itself, a thread hashes it as it
    grows, the walk runs meanwhile) and of extract (zstd reads the object file itself, a thread
    hashes it with pread): the same object, index and tree as the pipe path."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ChecksumMismatch
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore

    src = tmp_path / "src"
    src.mkdir()
    odd_tree(src)
    (src / "big").write_bytes(os.urandom(5 << 20))
    for i in range(300):
        (src / "many" / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / "many" / f"d{i % 7}" / f"f{i}").write_bytes(os.urandom(i * 11))
    store = LocalStore(str(tmp_path / "repo"), create=True)
    writer = store.open_writer()
    spool = IndexSpool()
    cap = capture(str(src), writer, level=1, during=lambda cancel: walk(str(src), sink=spool.write))
    assert "cancelled" not in cap
    assert cap["during"].files == walk(str(src)).files and cap["during"].fingerprint == walk(str(src)).fingerprint
    assert writer.commit("objects/x")
    path = tmp_path / "repo" / "objects" / "x"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == cap["sha256"] and path.stat().st_size == cap["size"]
    listing = subprocess.run(f"zstd -d < {path} | tar -t", shell=True, capture_output=True, check=True).stdout
    assert b"./big\n" in listing and b"./many/d6/f293\n" in listing
    index_zst = spool.compress()
    spool.close()

    dest = tmp_path / "dest"
    dest.mkdir()
    with open(path, "rb") as fh:
        info = extract(fh, str(dest), cap["sha256"])
    assert info["members"] > 300
    assert compare_tree(index_zst, str(dest)) == []

    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3] ^= 0x01
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(damaged))
    (tmp_path / "dest2").mkdir()
    with open(bad, "rb") as fh, pytest.raises(ChecksumMismatch, match="is damaged"):
        extract(fh, str(tmp_path / "dest2"), cap["sha256"])


def test_capture_can_be_cancelled_from_alongside_and_stops_on_its_errors(tmp_path):
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(20 << 20))
    store = LocalStore(str(tmp_path / "repo"), create=True)
    writer = store.open_writer()
    cap = capture(str(src), writer, level=1, during=lambda cancel: cancel())
    assert cap == {"during": None, "cancelled": True}
    writer.abort()

    def fails(_cancel):
        raise ArchiveError("cannot read directory x")

    writer = store.open_writer()
    with pytest.raises(ArchiveError, match="cannot read directory x"):
        capture(str(src), writer, level=1, during=fails)
    writer.abort()
    assert os.listdir(tmp_path / "repo" / "tmp") == []


def _walking_capture(tmp_path, src):
    """SnapshotRun._capture_walking on a plain local repository (no engine needed)."""
    import types

    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import SnapshotRun
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import LocalStore

    repo = Repository(LocalStore(str(tmp_path / "repo"), create=True), create=True)
    run = types.SimpleNamespace(repo=repo, level=1)
    spool = IndexSpool()
    scan, cap, writer = SnapshotRun._capture_walking(run, str(src), [], "stop", spool)
    path = tmp_path / "object"
    assert writer.commit("objects/walked")
    os.replace(tmp_path / "repo" / "objects" / "walked", path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == cap["sha256"]
    index = spool.compress()
    spool.close()
    assert os.listdir(tmp_path / "repo" / "tmp") == []  # a dropped first capture left nothing
    return scan, cap, path, index


def _extract_walked(tmp_path, path, cap):
    dest = tmp_path / "dest"
    dest.mkdir()
    with open(path, "rb") as fh:
        extract(fh, str(dest), cap["sha256"], xattrs=cap["xattrs"])
    return dest


def test_walking_capture_starts_again_with_xattrs_when_the_walk_finds_one(tmp_path):
    """The root has no extended attribute, a file deep down has one: tar started without
    --xattrs, the walk finds it and stops that capture, which runs again with them; the object
    then carries the attribute."""
    src = tmp_path / "src"
    for i in range(400):
        (src / f"d{i % 20}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 20}" / f"f{i}").write_bytes(os.urandom(3000))
    (src / "big").write_bytes(os.urandom(30 << 20))  # tar is still busy when the walk gets there
    marked = src / "d19" / "f399"
    try:
        os.setxattr(marked, "user.lifeboat", b"kept")
    except OSError as exc:
        pytest.skip(f"no user xattrs on {tmp_path}: {exc}")
    scan, cap, path, index = _walking_capture(tmp_path, src)
    assert scan.xattrs is True and cap["xattrs"] is True
    assert scan.files == 401
    dest = _extract_walked(tmp_path, path, cap)
    assert os.getxattr(dest / "d19" / "f399", "user.lifeboat") == b"kept"
    assert compare_tree(index, str(dest)) == []


def test_walking_capture_without_xattrs_keeps_its_first_capture(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(100_000))
    scan, cap, path, index = _walking_capture(tmp_path, src)
    assert scan.xattrs is False and cap["xattrs"] is False and "cancelled" not in cap
    dest = _extract_walked(tmp_path, path, cap)
    assert (dest / "d" / "f").read_bytes() == (src / "d" / "f").read_bytes()


def test_walking_capture_runs_again_when_the_walk_finds_xattrs_after_tar_ended(tmp_path, monkeypatch):
    """The fallback: the walk reports an extended attribute only once tar and zstd are done (here
    the walk is made to ignore its cancel). The finished capture, which lacks the attribute, is
    dropped and the unit captured again with --xattrs."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot import capture as _snapshot

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(5000))
    try:
        os.setxattr(src / "d" / "f", "user.lifeboat", b"late")
    except OSError as exc:
        pytest.skip(f"no user xattrs on {tmp_path}: {exc}")
    real_walk = _snapshot.walk
    calls = []

    def late_walk(*args, **kwargs):
        calls.append(kwargs.get("on_xattrs"))
        kwargs["on_xattrs"] = None  # never stops the running capture
        return real_walk(*args, **kwargs)

    monkeypatch.setattr(_snapshot, "walk", late_walk)
    scan, cap, path, index = _walking_capture(tmp_path, src)
    assert len(calls) == 1 and calls[0] is not None  # the walk was asked to cancel, and did not
    assert scan.xattrs is True and cap["xattrs"] is True and "cancelled" not in cap
    dest = _extract_walked(tmp_path, path, cap)
    assert os.getxattr(dest / "d" / "f", "user.lifeboat") == b"late"
    assert compare_tree(index, str(dest)) == []
