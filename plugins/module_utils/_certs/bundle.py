# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificates and private keys on a Docker host: finding, describing, bundling (private: free to refactor).

Pure logic (PEM splitting, Traefik's acme.json, openssl's output, the bundle's tar layout) apart from
the effects (reading files, running openssl and age), which take their tools as arguments.

Key material never leaves this module except into the bundle: results carry paths, kinds, owners,
modes and fingerprints of public keys only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from datetime import datetime, timezone
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.crypt import age_command
from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import write_atomic

PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ./-]+)-----\r?\n.*?-----END \1-----", re.S)
MAX_FILE = 1024 * 1024  # certificates and keys are small: larger files are not read
CANDIDATE_SUFFIXES = (".pem", ".crt", ".cer", ".key", ".cert", ".chain")
BUNDLE_MANIFEST = "lifeboat-cert-bundle.json"
BUNDLE_FORMAT = "lifeboat-cert-bundle/1"


class CertError(Exception):
    """A certificate, key or bundle could not be handled; the message says what to do."""


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, block) for every PEM block in DATA, e.g. ('CERTIFICATE', b'-----BEGIN ...')."""
    return [(m.group(1).decode("ascii"), m.group(0) + b"\n") for m in PEM_RE.finditer(data)]


def is_key_label(label: str) -> bool:
    return label.endswith("PRIVATE KEY")


def acme_entries(data: bytes) -> list[dict[str, Any]]:
    """Certificates of a Traefik acme.json (v2/v3: {resolver: {Certificates: [...]}}; v1: {Certificates: [...]})."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise CertError(f"not valid JSON ({exc})") from exc
    stores = [doc] if isinstance(doc, dict) and "Certificates" in doc else list((doc or {}).values())
    out = []
    for store_name, store in zip(list(doc) if stores != [doc] else [""], stores):
        for cert in (store or {}).get("Certificates") or []:
            try:
                crt = base64.b64decode(cert.get("certificate") or cert.get("Certificate") or "")
                key = base64.b64decode(cert.get("key") or cert.get("Key") or "")
            except (ValueError, TypeError):
                continue
            domain = cert.get("domain") or cert.get("Domain") or {}
            out.append({"resolver": store_name, "main": domain.get("main") or domain.get("Main"),
                        "certificate": crt, "key": key})
    return out


def parse_x509_text(text: str) -> dict[str, Any]:
    """openssl x509 -noout -subject -issuer -enddate -fingerprint -ext subjectAltName output -> fields."""
    out: dict[str, Any] = {"subject": None, "issuer": None, "not_after": None, "sans": [], "fingerprint": None}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("subject="):
            out["subject"] = line[len("subject="):].strip()
        elif line.startswith("issuer="):
            out["issuer"] = line[len("issuer="):].strip()
        elif line.startswith("notAfter="):
            out["not_after"] = _openssl_time(line[len("notAfter="):].strip())
        elif "Fingerprint=" in line:
            out["fingerprint"] = line.split("=", 1)[1].strip()
        elif "Subject Alternative Name" in line and i + 1 < len(lines):
            out["sans"] = [s.strip() for s in lines[i + 1].split(",") if s.strip()]
    return out


def _openssl_time(value: str) -> str | None:
    """'Nov 22 10:30:00 2026 GMT' -> '2026-11-22T10:30:00Z'."""
    try:
        parsed = datetime.strptime(re.sub(r"\s+", " ", value), "%b %d %H:%M:%S %Y %Z")
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_left(not_after: str | None, now: datetime) -> int | None:
    if not not_after:
        return None
    end = datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return int((end - now).total_seconds() // 86400)


class OpenSSL:
    """The openssl command line; key material goes through stdin only."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _run(self, args: list[str], data: bytes) -> bytes | None:
        proc = subprocess.run([self.binary, *args], input=data, capture_output=True, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def describe(self, pem: bytes) -> dict[str, Any] | None:
        out = self._run(["x509", "-noout", "-subject", "-issuer", "-enddate", "-fingerprint", "-sha256",
                         "-nameopt", "RFC2253", "-ext", "subjectAltName"], pem)
        if out is None:  # openssl before 1.1.1 has no -ext; SANs are then not reported
            out = self._run(["x509", "-noout", "-subject", "-issuer", "-enddate", "-fingerprint", "-sha256",
                             "-nameopt", "RFC2253"], pem)
        if out is None:
            return None
        info = parse_x509_text(out.decode("utf-8", "replace"))
        info["public_key"] = self.public_key_of_cert(pem)
        return info

    def public_key_of_cert(self, pem: bytes) -> str | None:
        out = self._run(["x509", "-noout", "-pubkey"], pem)
        return hashlib.sha256(out).hexdigest() if out else None

    def public_key_of_key(self, pem: bytes) -> str | None:
        out = self._run(["pkey", "-pubout", "-passin", "pass:"], pem)
        return hashlib.sha256(out).hexdigest() if out else None


def _owner(st: os.stat_result) -> dict[str, Any]:
    return {"uid": st.st_uid, "gid": st.st_gid, "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def candidate_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """Regular files under PATHS that may hold certificates or keys, and the paths that do not exist."""
    found, missing = [], []
    for top in paths:
        if not os.path.lexists(top):
            missing.append(top)
            continue
        if os.path.isfile(top):
            found.append(top)
            continue
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                if os.path.islink(full) and not os.path.exists(full):
                    continue
                if name.endswith(CANDIDATE_SUFFIXES) or name == "acme.json" or name.startswith(("cert", "privkey",
                                                                                                "fullchain", "chain")):
                    found.append(full)
    return sorted(set(found)), missing


def scan(paths: list[str], openssl: OpenSSL, now: datetime, warn_days: int) -> dict[str, Any]:
    """Describe every certificate and private key found under PATHS (without key material)."""
    files, missing = candidate_files(paths)
    certs: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    kept: list[str] = []
    for path in files:
        try:
            st = os.stat(path)
            if st.st_size > MAX_FILE:
                continue
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            problems.append({"path": path, "problem": f"cannot read it ({exc.strerror}): run as root (become)"})
            continue
        meta = _owner(st)
        if os.path.basename(path) == "acme.json":
            try:
                entries = acme_entries(data)
            except CertError as exc:
                problems.append({"path": path, "problem": f"Traefik acme.json is {exc}"})
                continue
            kept.append(path)
            for n, entry in enumerate(entries):
                where = f"{path}#{entry['resolver'] or 'Certificates'}[{n}]"
                _add_cert(certs, where, entry["certificate"], openssl, meta, problems)
                if entry["key"]:
                    keys.append({"path": where, "public_key": openssl.public_key_of_key(entry["key"]), **meta})
            if meta["mode"] not in ("0600", "0400"):
                problems.append({"path": path, "problem": f"mode {meta['mode']}: Traefik refuses an acme.json "
                                                          "that others can read; chmod 600 it"})
            continue
        blocks = pem_blocks(data)
        if not blocks:
            continue
        kept.append(path)
        first_cert = True
        for label, block in blocks:
            if label in ("CERTIFICATE", "TRUSTED CERTIFICATE"):
                _add_cert(certs, path, block, openssl, meta, problems, leaf=first_cert)
                first_cert = False
            elif is_key_label(label):
                keys.append({"path": path, "public_key": openssl.public_key_of_key(block), **meta})
                if int(meta["mode"], 8) & 0o077:
                    problems.append({"path": path, "problem": f"private key with mode {meta['mode']}: others can "
                                                              "read it; chmod 600 it"})
    by_key: dict[str, list[str]] = {}
    for key in keys:
        if key["public_key"]:
            by_key.setdefault(key["public_key"], []).append(key["path"])
    cert_public_keys = {c["public_key"] for c in certs if c["public_key"]}
    for cert in certs:
        matches = by_key.get(cert.pop("public_key") or "", [])
        cert["key"] = matches[0] if matches else None
        cert["key_matches"] = bool(matches)
        cert["days_left"] = days_left(cert["not_after"], now)
        cert["expired"] = cert["days_left"] is not None and cert["days_left"] < 0
        cert["expiring"] = cert["days_left"] is not None and cert["days_left"] < warn_days
    for key in keys:
        key["matches_certificate"] = key.pop("public_key") in cert_public_keys
    return {"certificates": certs, "keys": keys, "files": kept, "missing": missing, "problems": problems}


def _add_cert(certs, path, pem, openssl, meta, problems, leaf=True) -> None:
    info = openssl.describe(pem)
    if info is None:
        problems.append({"path": path, "problem": "holds a certificate openssl cannot read"})
        return
    certs.append({"path": path, "leaf": leaf, **info, **meta})


# -- the bundle ------------------------------------------------------------------------------

def build_bundle(files: list[str], now: datetime) -> bytes:
    """A tar of FILES (absolute paths) with their owners, modes and mtimes, and a manifest with sha256s."""
    buf = io.BytesIO()
    manifest: dict[str, Any] = {"format": BUNDLE_FORMAT, "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "files": []}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(set(files)):
            if not os.path.isabs(path):
                raise CertError(f"{path!r} is not an absolute path: give the files as absolute paths")
            st = os.stat(path)
            with open(path, "rb") as handle:
                data = handle.read()
            info = tarfile.TarInfo("files" + path)
            info.size, info.uid, info.gid = len(data), st.st_uid, st.st_gid
            info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
            tar.addfile(info, io.BytesIO(data))
            manifest["files"].append({"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                      **_owner(st), "private_key": any(is_key_label(lbl) for lbl, _b in pem_blocks(data))
                                      or os.path.basename(path) == "acme.json"})
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(BUNDLE_MANIFEST)
        info.size, info.mode, info.mtime = len(body), 0o600, int(now.timestamp())
        tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def read_bundle(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the files of a bundle, every file checked against its sha256."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if BUNDLE_MANIFEST not in members:
                raise CertError("this is not a lifeboat certificate bundle (no manifest inside)")
            manifest = json.loads(tar.extractfile(members[BUNDLE_MANIFEST]).read())
            contents = {}
            for entry in manifest.get("files", []):
                member = members.get("files" + entry["path"])
                if member is None or not member.isfile():
                    raise CertError(f"the bundle lacks {entry['path']}: it is damaged")
                body = tar.extractfile(member).read()
                if hashlib.sha256(body).hexdigest() != entry["sha256"]:
                    raise CertError(f"{entry['path']} in the bundle does not match its sha256: the bundle is damaged")
                contents[entry["path"]] = body
    except tarfile.TarError as exc:
        raise CertError(f"the bundle is not a readable tar ({exc}): wrong identity or damaged file") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise CertError(f"unknown bundle format {manifest.get('format')!r}: use the lifeboat.docker version that made it")
    return manifest, contents


def restore_mode(entry: dict[str, Any]) -> int:
    """The mode a restored file gets: as recorded, but private keys never more open than 0600."""
    mode = int(entry["mode"], 8)
    return mode & 0o600 if entry.get("private_key") else mode


def write_file(path: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Atomically (_files.write_atomic): a 0600 temporary beside PATH, owner and mode set, then
    renamed over it."""
    write_atomic(path, data, mode, owner=(uid, gid))


def same_file(path: str, data: bytes, uid: int, gid: int, mode: int) -> bool:
    try:
        st = os.stat(path)
        with open(path, "rb") as handle:
            return (handle.read() == data and st.st_uid == uid and st.st_gid == gid
                    and stat.S_IMODE(st.st_mode) == mode)
    except OSError:
        return False


def age_encrypt(age: str, data: bytes, recipients: list[str]) -> bytes:
    """age -r R..., plaintext through stdin (never on disk); returns the ciphertext."""
    proc = subprocess.run(age_command(recipients, binary=age), input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise CertError(f"age could not encrypt the bundle: {proc.stderr.decode(errors='replace').strip()}; "
                        "check the recipients (age1... public keys)")
    return proc.stdout


def age_decrypt(age: str, src: str, identity: str) -> bytes:
    proc = subprocess.run(age_command(identity=identity, binary=age) + [src], capture_output=True, check=False)
    if proc.returncode != 0:
        raise CertError(f"age could not decrypt {src}: {proc.stderr.decode(errors='replace').strip()}; "
                        "give the identity whose public key the bundle was encrypted to")
    return proc.stdout


def is_age_file(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(22).startswith(b"age-encryption.org/v1")
