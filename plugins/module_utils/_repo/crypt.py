# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Encryption with age: streams through the `age` command, supervised from Python.

A snapshot host holds only public keys (recipients): what it wrote cannot be read back there.
Restores and verification take an identity file. Objects stay restorable by hand with
`age -d -i KEY OBJECT | zstd -d | tar -x`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._common.pipes import CHUNK, Filter
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError, Writer

SCHEME = "age"
# X25519 recipients (age1 + bech32), and the SSH public keys age also takes.
_RECIPIENT_RE = re.compile(r"^(age1[02-9ac-hj-np-z]{58}|ssh-ed25519 [A-Za-z0-9+/=]+( .*)?|ssh-rsa [A-Za-z0-9+/=]+( .*)?)$")


class CryptError(StoreError):
    """Encryption or decryption failed; the message says why and what to do (never a key)."""


def age_binary() -> str:
    path = shutil.which("age")
    if not path:
        raise CryptError("the age command is missing on this host: install it (Debian package age) to use "
                         "encryption_recipients or encryption_identity")
    return path


def age_command(recipients: list[str] | None = None, identity: str | None = None, binary: str | None = None) -> list[str]:
    """age's command line: encrypting to RECIPIENTS, or else decrypting with the IDENTITY file;
    stdin to stdout. binary: the age command (by default found on PATH, see age_binary)."""
    cmd = [binary or age_binary()]
    if recipients is not None:
        cmd.append("--encrypt")
        for recipient in recipients:
            cmd += ["--recipient", recipient]
    else:
        cmd += ["--decrypt", "--identity", str(identity)]
    return cmd


def check_recipients(recipients: list[str]) -> list[str]:
    """The recipients, stripped and de-duplicated; CryptError naming a malformed one."""
    out: list[str] = []
    for raw in recipients:
        text = (raw or "").strip()
        if not _RECIPIENT_RE.match(text):
            shown = text if len(text) <= 80 else text[:77] + "..."
            hint = " (that is a secret key: give its public key, from age-keygen -y)" if text.upper().startswith("AGE-SECRET-KEY-") else ""
            if hint:
                shown = "AGE-SECRET-KEY-..."
            raise CryptError(f"encryption recipient {shown!r} is not an age public key (age1...) or an SSH public "
                             f"key{hint}")
        if text not in out:
            out.append(text)
    if not out:
        raise CryptError("encryption_recipients is empty: give at least one age public key")
    return out


def check_identity(path: str | None, what: str) -> str:
    """The identity file's path; CryptError when it is not given or not readable."""
    if not path:
        raise CryptError(f"{what} is encrypted: give encryption_identity (the path of an age identity file whose "
                         "public key is one of its recipients)")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise CryptError(f"encryption_identity {path} is not a readable file: check the path and its permissions")
    return path


class EncryptingWriter(Writer):
    """Plain bytes in, age ciphertext out into an inner store writer.

    The ciphertext's sha256 and size are known after finish(); the object is committed under the
    ciphertext's name, so that its checksum can be verified without the identity."""

    def __init__(self, inner: Writer, recipients: list[str]) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        self.size = 0
        self.age = Filter(age_command(recipients), sink=self._out)
        self.finished = False

    def _out(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        self.inner.write(chunk)

    def _raise_failure(self) -> None:
        if self.age.failure:
            exc = self.age.failure[0]
            raise exc if isinstance(exc, StoreError) else StoreError(f"writing the encrypted object failed: {exc}")

    def write(self, data: bytes) -> None:
        try:
            self.age.write(data)
        except (BrokenPipeError, ValueError):
            for thread in self.age.threads:
                thread.join()
            self._raise_failure()
            raise CryptError(f"age stopped while encrypting: {self.age.stderr() or 'no message'}") from None

    def finish(self) -> tuple[str, int]:
        """End the stream; returns the ciphertext's sha256 and size."""
        if not self.finished:
            self.finished = True
            rc = self.age.finish()
            self._raise_failure()
            if rc != 0:
                raise CryptError(f"age failed encrypting (exit {rc}): {self.age.stderr() or 'no message'}")
            self.age.close()
        return self.digest.hexdigest(), self.size

    def commit(self, key: str, replace: bool = False) -> bool:
        self.finish()
        return self.inner.commit(key, replace=replace)  # type: ignore[call-arg]

    def abort(self) -> None:
        self.age.close()
        self.inner.abort()


class DecryptingReader:
    """A store reader's ciphertext in, plain bytes out of read(); raises CryptError when age
    refuses (wrong identity, damaged or truncated ciphertext: age authenticates every chunk)."""

    def __init__(self, inner, identity: str, what: str) -> None:
        self.inner = inner
        self.what = what
        self.identity = identity
        self.age = Filter(age_command(identity=identity), source=inner.read)
        self.done = False

    def _end(self) -> None:
        self.done = True
        rc = self.age.finish()
        if self.age.failure:
            exc = self.age.failure[0]
            raise exc if isinstance(exc, StoreError) else StoreError(f"reading {self.what} failed: {exc}")
        if rc != 0:
            message = self.age.stderr()
            if "no identity matched" in message:
                raise CryptError(f"the identity {self.identity} cannot decrypt {self.what}: it was encrypted to other "
                                 "recipients; give the identity file of one of them")
            raise CryptError(f"{self.what} could not be decrypted ({message or 'age exit %d' % rc}): it is damaged, "
                             "or the identity file is not an age identity; restore from another snapshot or copy")

    def read(self, size: int = -1) -> bytes:
        if self.done:
            return b""
        if size is None or size < 0:
            parts = []
            while True:
                chunk = self.read(CHUNK)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        chunk = self.age.read(size)
        if not chunk:
            self._end()
        return chunk

    def close(self) -> None:
        self.age.close()
        self.inner.close()

    def __enter__(self) -> "DecryptingReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
