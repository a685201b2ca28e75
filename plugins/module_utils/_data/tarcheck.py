# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""A streaming checker for tar archives about to be extracted.

Restores pipe `zstd -d` into this checker and the checker into `tar -x`: every member header is
vetted before GNU tar sees the block that holds it, so a member that would land outside the
target is refused before anything of it is written, in the same single pass that extracts.

Refused: absolute names, names with a `..` component, members written through a symlink that
the archive itself created, hard links whose target is absolute, escapes or goes through such a
symlink, links or symlinks replacing the target's root, device files (unless allowed), and
member types GNU tar would treat specially (multi-volume, volume labels).
A hard link to a path that is no earlier member is left to tar, which fails on it: the target is
an empty staging directory no one else writes to, so the only files a link can reach there are
members extracted before. (Remembering every member's path would cost memory that grows with
the archive: 23 MB at 92,000 members.) The checker keeps only the archive's symlinks.
Understood: ustar/posix headers with pax extended headers (path, linkpath, size), GNU long
names and long links, base-256 sizes, posix-format sparse members (GNU.sparse.name), the end.
"""

from __future__ import annotations

BLOCK = 512

REGULAR = (b"0", b"\0", b"7")
HARDLINK = b"1"
SYMLINK = b"2"
CHARDEV = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
PAX_LOCAL = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"
META_TYPES = (PAX_LOCAL, PAX_GLOBAL, GNU_LONGNAME, GNU_LONGLINK)
# Old-GNU sparse ('S') and dump directories ('D') are not what lifeboat writes (--format=posix)
# and their extension blocks would need more parsing: refused like any other unknown type.
KNOWN_TYPES = REGULAR + (HARDLINK, SYMLINK, CHARDEV, BLOCKDEV, DIRECTORY, FIFO)
# pax or GNU meta data larger than this is not a header: refuse rather than buffer it.
MAX_META = 1 << 20
ZERO_BLOCK = bytes(BLOCK)


class UnsafeArchive(Exception):
    """The archive holds a member that must not be extracted; the message names it."""


def _octal_or_base256(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256: big-endian, top bit of the first byte set
        value = field[0] & 0x3F
        for byte in field[1:]:
            value = (value << 8) | byte
        if field[0] & 0x40:
            raise UnsafeArchive("negative size in a tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise UnsafeArchive(f"malformed number {field!r} in a tar header") from None


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _checksum_ok(block: bytes) -> bool:
    field = block[148:156]
    stored = _octal_or_base256(field)
    computed = sum(block) - sum(field) + 8 * 0x20  # the field counts as eight spaces
    return stored == computed


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """Records of the form b"LEN key=value\\n"."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise UnsafeArchive("malformed pax extended header")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise UnsafeArchive("malformed pax extended header length") from None
        if length <= 0 or pos + length > len(data):
            raise UnsafeArchive("pax extended header record runs past its end")
        record = data[space + 1:pos + length - 1]
        key, sep, value = record.partition(b"=")
        if not sep:
            raise UnsafeArchive("pax extended header record without '='")
        out[key] = value
        pos += length
    return out


def normalise(name: bytes) -> tuple[bytes, ...]:
    """The member's path components (no '.', no empty parts), or UnsafeArchive."""
    if name.startswith(b"/"):
        raise UnsafeArchive(f"member {name!r} has an absolute name")
    parts = tuple(p for p in name.split(b"/") if p not in (b"", b"."))
    if b".." in parts:
        raise UnsafeArchive(f"member {name!r} has a '..' component")
    return parts


class TarChecker:
    """Feed the archive's bytes in order; raises UnsafeArchive before a bad member's header passes.

    Usage: for each chunk, call feed(chunk); only after it returns may the chunk go to tar.
    While pending_data() is positive, that many bytes are a member's data, which need no
    examination: they may go to tar unread, then passed(n) says how many did. At the end,
    close() checks that the archive was complete.
    """

    def __init__(self, allow_devices: bool = False) -> None:
        self.allow_devices = allow_devices
        self.members = 0
        self._header = b""          # partial header block
        self._skip = 0              # data bytes (with padding) still to pass over
        self._collect = 0           # meta data bytes still to collect (then padding to skip)
        self._meta = b""
        self._meta_type = b""
        self._meta_pad = 0
        self._pax: dict[bytes, bytes] = {}
        self._pax_global: dict[bytes, bytes] = {}
        self._longname: bytes | None = None
        self._longlink: bytes | None = None
        self._symlinks: set[tuple[bytes, ...]] = set()
        self._zero_blocks = 0
        self.ended = False

    # -- streaming -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        size = len(view)
        while pos < size:
            if self.ended:
                return  # after the end marker: padding, passed through unexamined
            if self._skip:
                step = min(self._skip, size - pos)
                self._skip -= step
                pos += step
                continue
            if self._collect:
                step = min(self._collect, size - pos)
                self._meta += bytes(view[pos:pos + step])
                self._collect -= step
                pos += step
                if not self._collect:
                    self._finish_meta()
                continue
            if not self._header and size - pos >= BLOCK:  # a whole header in this chunk
                pos += BLOCK
                self._on_header(bytes(view[pos - BLOCK:pos]))
                continue
            take = min(BLOCK - len(self._header), size - pos)
            self._header += bytes(view[pos:pos + take])
            pos += take
            if len(self._header) == BLOCK:
                block, self._header = self._header, b""
                self._on_header(block)

    def pending_data(self) -> int:
        """Bytes of member data (with padding) that come next and may pass unexamined."""
        return 0 if self.ended else self._skip

    def passed(self, size: int) -> None:
        """size bytes of the pending data went to tar without feed()."""
        if size > self._skip:
            raise ValueError(f"{size} bytes passed, only {self._skip} were pending")
        self._skip -= size

    def close(self) -> None:
        if self._header or self._skip or self._collect:
            raise UnsafeArchive("the archive ends in the middle of a member: it is truncated")
        if not self.ended:
            raise UnsafeArchive("the archive has no end-of-archive marker: it is truncated")

    # -- headers -------------------------------------------------------------------------------
    def _on_header(self, block: bytes) -> None:
        if block == ZERO_BLOCK:
            self._zero_blocks += 1
            if self._zero_blocks == 2:
                self.ended = True
            return
        if self._zero_blocks:
            raise UnsafeArchive("a lone zero block inside the archive: it is damaged")
        if not _checksum_ok(block):
            raise UnsafeArchive(f"bad header checksum after {self.members} members: the archive is damaged")
        typeflag = block[156:157]
        header_size = _octal_or_base256(block[124:136])
        if typeflag in META_TYPES:
            if header_size > MAX_META:
                raise UnsafeArchive(f"a {typeflag.decode()} meta header of {header_size} bytes is implausible")
            self._meta_type = typeflag
            self._meta = b""
            self._collect = header_size
            self._meta_pad = (-header_size) % BLOCK
            if not header_size:
                self._finish_meta()
            return
        self._member(block, typeflag, header_size)

    def _finish_meta(self) -> None:
        data = self._meta
        if self._meta_type == PAX_LOCAL:
            self._pax.update(_parse_pax(data))
        elif self._meta_type == PAX_GLOBAL:
            self._pax_global.update(_parse_pax(data))
        elif self._meta_type == GNU_LONGNAME:
            self._longname = data.split(b"\0", 1)[0]
        elif self._meta_type == GNU_LONGLINK:
            self._longlink = data.split(b"\0", 1)[0]
        self._meta = b""
        self._skip = self._meta_pad

    def _member(self, block: bytes, typeflag: bytes, header_size: int) -> None:
        pax = {**self._pax_global, **self._pax} if self._pax_global else self._pax
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\0":  # POSIX ustar: prefix field
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if self._longname is not None:
            name = self._longname
        if b"path" in pax:
            name = pax[b"path"]
        if b"GNU.sparse.name" in pax:  # posix-format sparse member: its real name
            name = pax[b"GNU.sparse.name"]
        linkname = _cstr(block[157:257])
        if self._longlink is not None:
            linkname = self._longlink
        if b"linkpath" in pax:
            linkname = pax[b"linkpath"]
        size = header_size
        if b"size" in pax:
            try:
                size = int(pax[b"size"])
            except ValueError:
                raise UnsafeArchive(f"member {name!r}: malformed pax size") from None
        self._pax = {}
        self._longname = self._longlink = None
        self.members += 1

        if typeflag not in KNOWN_TYPES:
            raise UnsafeArchive(f"member {name!r} has tar type {typeflag!r}, which lifeboat does not restore")
        parts = normalise(name)
        self._check_not_through_symlink(name, parts)
        if typeflag in (CHARDEV, BLOCKDEV) and not self.allow_devices:
            raise UnsafeArchive(f"member {name!r} is a device file; restore it only with allow_devices")
        if typeflag in (SYMLINK, HARDLINK) and not parts:
            raise UnsafeArchive(f"member {name!r} would replace the target itself with a link")
        if typeflag == HARDLINK:
            target = normalise(linkname)
            self._check_not_through_symlink(linkname, target, what="hard link target")
        if typeflag == SYMLINK or (typeflag == HARDLINK and target in self._symlinks):
            # A hard link to a symlink is that symlink under another name.
            self._symlinks.add(parts)
        elif self._symlinks:
            self._symlinks.discard(parts)
        # Links, directories and devices carry no data; everything else carries `size` bytes.
        if typeflag in REGULAR:
            self._skip = size + (-size) % BLOCK

    def _check_not_through_symlink(self, name: bytes, parts: tuple[bytes, ...], what: str = "member") -> None:
        if not self._symlinks:
            return
        for i in range(1, len(parts)):
            if parts[:i] in self._symlinks:
                link = b"/".join(parts[:i])
                raise UnsafeArchive(f"{what} {name!r} would be written through the symlink {link!r}")
