"""The pure part of browsing (_restore/browse.py): path patterns, walk()'s order, the one-pass diff of two
indexes, the bounded listing and the lines a person reads. Indexes come from the real walk() of
trees made here, so that the order the diff relies on is the one snapshots write."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import walk
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import (
    BrowseError,
    Selector,
    Smallest,
    diff_indexes,
    diff_line,
    entry_dict,
    ls_line,
    normalise_pattern,
    walk_key,
)


def index_of(root) -> list[bytes]:
    return walk(str(root)).index_bytes().splitlines()


def tree(root, names: list[str]) -> None:
    for name in names:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)


def paths(lines: list[bytes]) -> list[str]:
    return [json.loads(line)[0] for line in lines]


def test_patterns_are_normalised_and_unsafe_ones_refused():
    assert normalise_pattern("./a/b/") == "a/b"
    assert normalise_pattern("") == "." and normalise_pattern("./") == "."
    for bad in ("/etc/passwd", "../x", "a/../../x"):
        with pytest.raises(BrowseError):
            normalise_pattern(bad)


def test_selector_names_directories_files_and_globs():
    sel = Selector(["app", "logs/*.log", "nothing/here", "[ab]c"])
    assert sel.match("app") and sel.match("app/conf/x.yml")
    assert not sel.match("apple")  # a path is a whole component, not a string prefix
    assert sel.match("logs/a.log") and sel.match("logs/old/b.log")  # '*' matches '/' as in GNU tar
    assert not sel.match("logs/a.txt")
    assert sel.match("bc/inner")  # a glob that names a directory names what is below it
    assert sel.unmatched() == ["nothing/here"]
    everything = Selector([])
    assert everything.match("any/thing") and everything.unmatched() == []
    assert Selector(["."]).match("x")


def test_walk_key_is_the_order_walk_writes(tmp_path):
    tree(tmp_path, ["a/", "b/x", "b/y/z", "b/y/zz/deep", "b-c", "c/", "c/d/e", "z", "a/aa/", "b/a", "é/ü"])
    os.symlink("b/x", tmp_path / "link")
    lines = index_of(tmp_path)
    keys = [walk_key(p) for p in paths(lines)]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(a < b and b > a and a <= b and b >= a and not a >= b for a, b in zip(keys, keys[1:]))
    assert paths(lines)[0] == "."
    # every line parsed and order-checked (nothing on the other side to skip it by): no complaint
    assert [kind for kind, _item in diff_indexes(lines, [])] == ["removed"] * len(lines)
    assert [kind for kind, _item in diff_indexes([], lines)] == ["added"] * len(lines)


def test_diff_of_two_snapshots(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        tree(root, ["keep/a", "keep/b", "gone/x", "sub/deep/file", "same"])
        os.utime(root / "same", (1_700_000_000, 1_700_000_000))
    (new / "gone" / "x").unlink()
    (new / "gone").rmdir()
    (new / "keep" / "b").write_text("longer than before")
    os.utime(new / "keep" / "b", (1_700_000_100, 1_700_000_100))
    os.chmod(new / "keep" / "a", 0o600)
    tree(new, ["sub/deep/new", "added/inner/f"])
    for root in (old, new):  # directory times as they were: only the content differs
        for d in ("keep", "sub", "sub/deep", "."):
            os.utime(root / d, (1_700_000_000, 1_700_000_000))
    changes = list(diff_indexes(index_of(old), index_of(new)))
    got = {(kind, item[0] if kind != "changed" else item[0][0]) for kind, item in changes}
    assert got == {("removed", "gone"), ("removed", "gone/x"), ("changed", "keep/a"), ("changed", "keep/b"),
                   ("added", "sub/deep/new"), ("added", "added"), ("added", "added/inner"),
                   ("added", "added/inner/f")}, got
    fields = {item[0][0]: item[2] for kind, item in changes if kind == "changed"}
    assert fields["keep/a"] == {"mode": ["0644", "0600"]}
    assert set(fields["keep/b"]) == {"size", "mtime"}
    only = list(diff_indexes(index_of(old), index_of(new), Selector(["keep/a", "gone"])))
    # in walk() order: the root's entries, then the directories' from the last one by name
    assert [(k, (i[0] if k != "changed" else i[0][0])) for k, i in only] == [
        ("removed", "gone"), ("changed", "keep/a"), ("removed", "gone/x")]
    assert list(diff_indexes(index_of(old), index_of(old))) == []


def test_an_index_out_of_order_is_refused():
    lines = [b'[".","d",0,493,0,0,1,null]', b'["b","f",1,420,0,0,1,null]', b'["a","f",1,420,0,0,1,null]']
    with pytest.raises(BrowseError, match="not in the order"):
        list(diff_indexes(lines, lines[:1]))


def synthetic_index(count: int, changed_every: int = 0):
    """walk()-ordered lines of COUNT files in 100 directories, generated (nothing kept)."""
    yield b'[".","d",0,493,0,0,1700000000,null]'
    dirs = [f"d{i:03d}" for i in range(100)]
    for name in dirs:
        yield f'["{name}","d",0,493,0,0,1700000000,null]'.encode()
    for name in reversed(dirs):
        for j in range(count // 100):
            size = 2 if changed_every and j % changed_every == 0 else 1
            yield f'["{name}/f{j:06d}","f",{size},420,1000,1000,1700000000,null]'.encode()


def test_diff_of_300000_entries_in_flat_memory():
    """The brief's size: two indexes of 300,000 files each, compared in one pass (timed: run with
    -s); memory, traced on 10,000 entries that all differ (every line parsed), must not grow
    with them: the 10,000 lines alone are more than 0.6 MB."""
    started = time.monotonic()
    changed = Smallest(100)
    for kind, item in diff_indexes(synthetic_index(300_000), synthetic_index(300_000, changed_every=1000)):
        assert kind == "changed"
        changed.add(item[0][0], item)
    seconds = time.monotonic() - started
    assert changed.count == 300 and changed.truncated and len(changed.items()) == 100
    tracemalloc.start()
    count = sum(1 for _change in diff_indexes(synthetic_index(10_000), synthetic_index(10_000, changed_every=1)))
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\ndiff of 2 x 300,000 index entries (300 changed): {seconds:.2f} s; 2 x 10,000 all changed: "
          f"peak traced memory {peak / 1e6:.2f} MB")
    assert count == 10_000
    assert peak < 0.3e6, f"memory grew with the index: peak {peak} bytes"


def test_smallest_keeps_the_first_by_path():
    keep = Smallest(3)
    for name in ["e", "b", "d", "a", "c", "f", "g"]:
        keep.add(name, name)
    assert keep.items() == ["a", "b", "c"] and keep.count == 7 and keep.truncated
    every = Smallest(0)
    for name in ["b", "a"]:
        every.add(name, name)
    assert every.items() == ["a", "b"] and not every.truncated


def test_lines_a_person_reads():
    entry = entry_dict(["app/conf.yml", "f", 1234, 0o640, 1000, 33, 1_700_000_000, None])
    assert entry["mode"] == "0640"
    assert ls_line(entry) == "-rw-r-----  1000    33         1234 2023-11-14 22:13 app/conf.yml"
    link = entry_dict(["cur", "l", 0, 0o777, 0, 0, 1_700_000_000, "releases/v2"])
    assert ls_line(link).startswith("lrwxrwxrwx") and ls_line(link).endswith("cur -> releases/v2")
    odd = entry_dict(["new\nline\udcff", "d", 0, 0o755, 0, 0, 0, None])
    assert ls_line(odd).startswith("drwxr-xr-x") and ls_line(odd).endswith("new\\nline\\xff")
    assert diff_line("added", entry) == "+ app/conf.yml" and diff_line("removed", entry) == "- app/conf.yml"
    changed = dict(entry, changes={"mode": ["0644", "0640"], "size": [10, 1234]})
    assert diff_line("changed", changed) == "M app/conf.yml  (mode 0644 -> 0640, size 10 -> 1234)"
    timed = dict(entry, changes={"mtime": [1_700_000_000, 1_700_000_001], "size": [1, 2]})
    assert diff_line("changed", timed) == "M app/conf.yml  (size 1 -> 2, mtime 2023-11-14 22:13:20 -> 2023-11-14 22:13:21)"
