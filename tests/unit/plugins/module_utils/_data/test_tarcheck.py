"""The streaming tar checker: real GNU tar archives pass; archives crafted to escape are refused."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import TarChecker, UnsafeArchive


def check(data: bytes, chunk: int = 7000, **kwargs) -> TarChecker:
    checker = TarChecker(**kwargs)
    for i in range(0, len(data), chunk):
        checker.feed(data[i:i + chunk])
    checker.close()
    return checker


def build(members, fmt=tarfile.PAX_FORMAT) -> bytes:
    """members: list of (TarInfo kwargs, content or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for attrs, content in members:
            info = tarfile.TarInfo(attrs.pop("name"))
            for key, value in attrs.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buf.getvalue()


def test_gnu_tar_archive_of_a_varied_tree_passes(tmp_path):
    src = tmp_path / "src"
    (src / "deep" / "er" / "est").mkdir(parents=True)
    (src / "deep" / "er" / "est" / "f.txt").write_text("x" * 5000)
    (src / ("long" * 40)).write_bytes(b"long name")
    (src / "link").symlink_to("deep/er")
    (src / "abs").symlink_to("/etc/passwd")
    os.link(src / ("long" * 40), src / "hard")
    with open(src / "sparse", "wb") as fh:
        fh.truncate(10 << 20)
        fh.write(b"head")
    os.mkfifo(src / "fifo")
    out = subprocess.run(
        ["tar", "-c", "--format=posix", "--sparse", "--xattrs", "--acls", "-C", str(src), "."],
        check=True, capture_output=True).stdout
    checker = check(out)
    assert checker.members >= 9


@pytest.mark.parametrize("chunk", [1, 511, 512, 513, 1 << 20])
def test_chunk_boundaries_do_not_matter(chunk):
    data = build([({"name": "a", "type": tarfile.REGTYPE}, b"z" * 1500),
                  ({"name": "b" * 200, "type": tarfile.REGTYPE}, b"y")])
    assert check(data, chunk=chunk).members == 2


@pytest.mark.parametrize("members,fragment", [
    ([({"name": "/etc/evil", "type": tarfile.REGTYPE}, b"x")], "absolute name"),
    ([({"name": "../evil", "type": tarfile.REGTYPE}, b"x")], "'..' component"),
    ([({"name": "a/../../evil", "type": tarfile.REGTYPE}, b"x")], "'..' component"),
    ([({"name": "esc", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None),
      ({"name": "esc/passwd", "type": tarfile.REGTYPE}, b"x")], "through the symlink"),
    ([({"name": "d", "type": tarfile.SYMTYPE, "linkname": "../../"}, None),
      ({"name": "d/x/y", "type": tarfile.DIRTYPE}, None)], "through the symlink"),
    ([({"name": "h", "type": tarfile.LNKTYPE, "linkname": "/etc/shadow"}, None)], "absolute name"),
    ([({"name": "h", "type": tarfile.LNKTYPE, "linkname": "../outside"}, None)], "'..' component"),
    ([({"name": "s", "type": tarfile.SYMTYPE, "linkname": "/"}, None),
      ({"name": "h", "type": tarfile.LNKTYPE, "linkname": "s/etc/shadow"}, None)], "through the symlink"),
    ([({"name": "esc", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None),
      ({"name": "hl", "type": tarfile.LNKTYPE, "linkname": "esc"}, None),
      ({"name": "hl/pwned", "type": tarfile.REGTYPE}, b"x")], "through the symlink b'hl'"),
    ([({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)], "device file"),
    ([({"name": "sda", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, None)], "device file"),
    ([({"name": ".", "type": tarfile.SYMTYPE, "linkname": "/"}, None)], "target itself"),
])
def test_escapes_are_refused(members, fragment):
    with pytest.raises(UnsafeArchive, match=fragment):
        check(build(members))


def test_pax_path_overrides_the_header_name():
    # The ustar name is harmless; the pax path that tar would use is not.
    data = build([({"name": "harmless", "type": tarfile.REGTYPE,
                    "pax_headers": {"path": "../../../etc/cron.d/x"}}, b"x")])
    with pytest.raises(UnsafeArchive, match="'..' component"):
        check(data)


def test_gnu_longname_is_checked():
    data = build([({"name": "../" + "a" * 150, "type": tarfile.REGTYPE}, b"x")], fmt=tarfile.GNU_FORMAT)
    with pytest.raises(UnsafeArchive, match="'..' component"):
        check(data)


def test_devices_pass_when_allowed():
    data = build([({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)])
    assert check(data, allow_devices=True).members == 1


def test_symlink_replaced_by_directory_is_no_longer_a_symlink():
    data = build([({"name": "d", "type": tarfile.SYMTYPE, "linkname": "/etc"}, None),
                  ({"name": "d", "type": tarfile.DIRTYPE}, None),
                  ({"name": "d/f", "type": tarfile.REGTYPE}, b"x")])
    assert check(data).members == 3


def test_truncated_archive_is_refused():
    data = build([({"name": "a", "type": tarfile.REGTYPE}, b"x" * 4000)])
    with pytest.raises(UnsafeArchive, match="truncated"):
        check(data[:2048])
    with pytest.raises(UnsafeArchive, match="truncated"):
        check(data[:512 * 9])  # whole member, no end marker


def test_flipped_byte_in_a_header_is_caught():
    data = bytearray(build([({"name": "a", "type": tarfile.REGTYPE}, b"x" * 100)]))
    # Damage the first real member header's name (the pax header comes first only when needed).
    data[5] ^= 0x01
    with pytest.raises(UnsafeArchive, match="checksum"):
        check(bytes(data))


def test_unknown_member_type_is_refused():
    data = build([({"name": "vol", "type": b"V"}, None)])
    with pytest.raises(UnsafeArchive, match="does not restore"):
        check(data)


def test_pending_data_lets_member_data_pass_unread():
    big = b"q" * 200_000
    data = build([({"name": "big", "type": tarfile.REGTYPE}, big),
                  ({"name": "../after", "type": tarfile.REGTYPE}, b"x")])
    checker = TarChecker()
    checker.feed(data[:512 * 2])  # big's header (a short name needs no pax header) and one data block
    pending = checker.pending_data()
    assert pending == len(big) + (-len(big)) % 512 - 512
    checker.passed(pending)
    with pytest.raises(UnsafeArchive, match="'..' component"):
        checker.feed(data[512 * 2 + pending:])  # the next header is examined again
    with pytest.raises(ValueError):
        TarChecker().passed(1)


def test_hard_link_to_a_path_that_is_no_member_fails_in_tar(tmp_path):
    """The checker leaves it to tar (see the module's docstring): the extraction fails, and the
    staging directory holds nothing but what the archive made."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError, extract

    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    data = build([({"name": "h", "type": tarfile.LNKTYPE, "linkname": "outside"}, None),
                  ({"name": "h2", "type": tarfile.LNKTYPE, "linkname": "never-seen"}, None)])
    obj = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
    dest = tmp_path / "stage"
    dest.mkdir()
    import hashlib

    with pytest.raises(ArchiveError, match="Cannot hard link"):
        extract(io.BytesIO(obj), str(dest), hashlib.sha256(obj).hexdigest())
    assert os.listdir(dest) == []
    assert os.stat(outside).st_nlink == 1
