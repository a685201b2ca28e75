# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The store of s3://BUCKET/PREFIX repositories on S3-compatible object storage, with boto3.

boto3 is imported only when an s3:// repository is opened (local repositories do not need it).

- Writes stream: bytes gather in a buffer of one part (16 MiB, growing for objects beyond 16 GB
  so that 10,000 parts reach S3's 5 TiB limit); each full part is uploaded by a thread while the
  next one fills, so at most about two parts are in memory. An object that stays below one part
  is sent with a single PUT at commit, straight to its key (a PUT is atomic: the key holds the
  whole object or nothing). A larger one is a multipart upload to tmp/HOST-PID-RANDOM.part that
  commit completes, copies server-side to its key (a multipart copy above 5 GiB) and deletes.
- Nothing appears under a real key before commit; with replace=False an existing key wins.
- cleanup_stale removes tmp/ objects and aborts incomplete multipart uploads whose writer is gone
  (this host's, with a dead pid) or that are older than 24 hours (any host's).
- Errors are StoreErrors naming the repository, the key and what to do; a message never holds
  the access key, the secret key or the session token (every message is scrubbed of them).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import socket
import threading
import time
from typing import Any, Callable, Iterator

from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import pid_alive
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import (
    Store,
    StoreError,
    Writer,
    redact_url,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.remote import (  # noqa: F401 pylint: disable=unused-import
    ABANDONED_AFTER,
    safe_host,  # the names S3 gives its temporary uploads are _store_remote's
    tmp_is_stale,
    tmp_name,
    tmp_writer as parse_tmp_name,
)

MIB = 1 << 20
GIB = 1 << 30
PART_SIZE = 16 * MIB          # first parts; doubles every PARTS_PER_STEP parts
PARTS_PER_STEP = 1000
MAX_PART = 5 * GIB            # S3's largest part
MAX_PARTS = 10000             # S3's most parts of one upload
COPY_THRESHOLD = 5 * GIB      # CopyObject's limit; above it, a multipart copy
COPY_PART = 512 * MIB
STALE_AFTER = ABANDONED_AFTER  # other hosts' temporary uploads are stale after this
READ_RETRIES = 3              # a download that breaks resumes (Range) this many times

MISSING_BOTO3 = ("s3:// repositories need the Python library boto3 on the Docker host (for the Python that "
                 "runs the modules): install Debian's python3-boto3 (apt-get install python3-boto3) or "
                 "pip install boto3")

# error codes of the server that mean the credentials themselves are refused
CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                    "TokenRefreshRequired", "InvalidClientTokenId", "InvalidSecurity"}
REGION_CODES = {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                "InvalidRegion"}
BUSY_CODES = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "Throttling",
              "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "500", "502", "503", "504"}
FULL_CODES = {"QuotaExceeded", "XMinioStorageFull", "StorageFull", "InsufficientStorage", "EntityTooLarge",
              "TooManyBuckets", "XMinioAdminBucketQuotaExceeded"}


# --------------------------------------------------------------------------------------------
# pure logic
# --------------------------------------------------------------------------------------------
def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of s3://BUCKET[/PREFIX]."""
    if not url.startswith("s3://"):
        raise StoreError(f"{redact_url(url)!r} is not an s3:// URL: write s3://BUCKET/PREFIX")
    rest = url[len("s3://"):]
    bucket, _sep, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        # never echo the URL: it holds credentials
        raise StoreError("the s3:// repository URL must not hold credentials or a port: write s3://BUCKET/PREFIX, "
                         "give the keys as access_key/secret_key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) "
                         "and the server as endpoint_url")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}", bucket):
        raise StoreError(f"repository {url!r}: {bucket!r} is not a bucket name; write s3://BUCKET/PREFIX")
    if "?" in prefix or "#" in prefix:
        raise StoreError(f"repository {url!r}: the prefix must not hold '?' or '#'; write s3://BUCKET/PREFIX")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"repository {url!r}: the prefix {prefix!r} has an empty, '.' or '..' component")
    return bucket, prefix


def part_size(part_number: int) -> int:
    """The size of part PART_NUMBER (1-based) of a streamed upload: 16 MiB, doubling every 1000 parts."""
    step = (part_number - 1) // PARTS_PER_STEP
    return min(PART_SIZE << step, MAX_PART)


def max_streamed_size() -> int:
    """The largest object the part sizes can carry in MAX_PARTS parts."""
    return sum(part_size(n) for n in range(1, MAX_PARTS + 1))


def copy_ranges(size: int, part: int = COPY_PART) -> list[tuple[int, int]]:
    """Byte ranges (first, last inclusive) of a multipart copy of SIZE bytes in at most MAX_PARTS parts."""
    part = max(part, -(-size // MAX_PARTS))
    return [(start, min(start + part, size) - 1) for start in range(0, size, part)]


def is_stale(name: str, age: float, host: str, own_pid: int, alive: Callable[[int], bool],
             open_names: set[str] | frozenset = frozenset(), max_age: float = 0) -> bool:
    """Whether a temporary upload NAME, AGE seconds old, belongs to a writer that is gone
    (_store_remote.tmp_is_stale for uploads nobody touches: a multipart upload keeps its start time).

    This host's: its pid is dead (or is this very process, which has no such writer open). Any
    other (another host's, or a name not made by tmp_name): older than STALE_AFTER. Never one
    younger than max_age."""
    return tmp_is_stale(name, age, open_names, max_age, host, own_pid, alive, touched=False)


def scrub(text: str, secrets_: list[str | None]) -> str:
    """TEXT with every occurrence of the given secrets replaced by ***."""
    for value in secrets_:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def content_md5(data) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# --------------------------------------------------------------------------------------------
# boto3
# --------------------------------------------------------------------------------------------
def _import_boto3():
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.config  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise StoreError(MISSING_BOTO3) from exc
    return boto3, botocore


def client_config(botocore_mod, path_style: bool):
    """The botocore Config of lifeboat's S3 client: retries in standard mode (throttling and
    timeouts are retried with backoff), path-style addressing for other services than AWS, and
    checksums only where the API requires them (newer botocore adds CRC headers by default that
    several S3-compatible servers refuse; every upload carries a Content-MD5 instead)."""
    kwargs: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 10,
        "read_timeout": 120,
        "signature_version": "s3v4",
        "max_pool_connections": 4,
    }
    if path_style:
        kwargs["s3"] = {"addressing_style": "path"}
    defaults = getattr(botocore_mod.config.Config, "OPTION_DEFAULTS", {})
    for option in ("request_checksum_calculation", "response_checksum_validation"):
        if option in defaults:
            kwargs[option] = "when_required"
    return botocore_mod.config.Config(**kwargs)


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------
class S3Store(Store):
    """A repository under s3://BUCKET/PREFIX."""

    def __init__(self, url: str, create: bool = False, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._secrets = [options.get("access_key"), options.get("secret_key"), options.get("session_token")]
        self.endpoint_url = options.get("endpoint_url") or None
        self.copy_threshold = COPY_THRESHOLD
        self.copy_part = COPY_PART
        self.open_tmp: set[str] = set()   # names of this process's writers in progress
        self.open_uploads: set[str] = set()  # their multipart upload ids
        self.host = socket.gethostname()
        self._boto3, self._botocore = _import_boto3()
        self.client = self._make_client(options)
        self.endpoint = redact_url(self.client.meta.endpoint_url)
        # one listing proves the endpoint, the credentials and the bucket, with a clear error
        probe = self._call("list_objects_v2", "list", None, Bucket=self.bucket, Prefix=self.key(""), MaxKeys=1)
        if not create and not probe.get("KeyCount", len(probe.get("Contents", []))):
            raise StoreError(f"repository {self.url} does not exist (no object under that prefix at {self.endpoint}): "
                             "check the bucket and prefix, or run a snapshot to create it")

    # -- set-up ------------------------------------------------------------------------------
    def _make_client(self, options: dict[str, Any]):
        access, secret = options.get("access_key"), options.get("secret_key")
        if bool(access) != bool(secret):
            missing = "secret_key" if access else "access_key"
            raise StoreError(f"repository {self.url}: {missing} is missing; give both access_key and secret_key, "
                             "or neither (then boto3 finds credentials its usual way: environment, "
                             "~/.aws files, instance role)")
        kwargs: dict[str, Any] = {"config": client_config(self._botocore, bool(self.endpoint_url))}
        if access:
            kwargs.update(aws_access_key_id=access, aws_secret_access_key=secret,
                          aws_session_token=options.get("session_token") or None)
        if options.get("region"):
            kwargs["region_name"] = options["region"]
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        try:
            return self._boto3.session.Session().client("s3", **kwargs)
        except Exception as exc:  # noqa: BLE001 - a bad endpoint_url or region, said clearly
            raise StoreError(self._scrub(f"repository {self.url}: cannot set up the S3 client "
                                         f"(endpoint_url {redact_url(self.endpoint_url or 'AWS')}): {exc}")) from None

    # -- keys and errors -----------------------------------------------------------------------
    def key(self, key: str) -> str:
        """The object key of repository key KEY ('' gives the prefix itself, with its slash)."""
        if key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid repository key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def repo_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1:] if self.prefix else object_key

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def error(self, exc: BaseException, action: str, key: str | None) -> StoreError:
        """A StoreError for EXC, raised by ACTION ('read', 'write', 'list', 'delete', ...) on KEY."""
        return StoreError(self._scrub(describe_error(exc, action, key, self.url, self.bucket, self.endpoint,
                                                     self._botocore)))

    def _call(self, operation: str, action: str, key: str | None, **kwargs):
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a StoreError
            raise self.error(exc, action, key) from None

    def _head(self, key: str) -> dict | None:
        """HEAD of KEY, or None when it is missing."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except Exception as exc:  # noqa: BLE001
            if status_of(exc, self._botocore) == 404:
                return None
            raise self.error(exc, "head", key) from None

    # -- Store -----------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise StoreError(f"{key} is missing from the repository {self.url}")
        return int(head["ContentLength"])

    def open_reader(self, key: str) -> "S3Reader":
        return S3Reader(self, key)

    def open_writer(self) -> "S3Writer":
        return S3Writer(self)

    def list(self, prefix: str) -> Iterator[str]:
        base = prefix.rstrip("/")
        base = self.key(base + "/") if base else self.key("")
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                keys.extend(self.repo_key(obj["Key"]) for obj in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, "list", prefix) from None
        return iter(sorted(keys))

    def delete(self, key: str) -> None:
        self._call("delete_object", "delete", key, Bucket=self.bucket, Key=self.key(key))

    def cleanup_stale(self, max_age: float = 0, dry_run: bool = False) -> list[str]:
        """Remove tmp/ objects and abort incomplete multipart uploads of writers that are gone."""
        removed: list[str] = []
        now = time.time()
        tmp_prefix = self.key("tmp/")
        own_pid = os.getpid()

        def stale(object_key: str, when) -> bool:
            name = object_key[len(tmp_prefix):]
            age = now - when.timestamp() if when is not None else STALE_AFTER
            return is_stale(name, age, self.host, own_pid, pid_alive, self.open_tmp, max_age)

        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=tmp_prefix):
                for obj in page.get("Contents", []):
                    if stale(obj["Key"], obj.get("LastModified")):
                        if not dry_run:
                            self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                        removed.append(self.repo_key(obj["Key"]))
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, "clean up", "tmp/") from None
        try:
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                     Prefix=tmp_prefix):
                for upload in page.get("Uploads", []):
                    if upload["UploadId"] in self.open_uploads or not stale(upload["Key"], upload.get("Initiated")):
                        continue
                    if not dry_run:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                    removed.append(self.repo_key(upload["Key"]))
        except Exception as exc:  # noqa: BLE001
            raise self.error(exc, "abort incomplete uploads under", "tmp/") from None
        return sorted(set(removed))

    # -- commit helpers ------------------------------------------------------------------------
    def copy(self, src: str, dst: str, size: int) -> None:
        """Server-side copy of key SRC (SIZE bytes) to key DST."""
        source = {"Bucket": self.bucket, "Key": self.key(src)}
        if size <= self.copy_threshold:
            self._call("copy_object", "write", dst, Bucket=self.bucket, Key=self.key(dst), CopySource=source)
            return
        upload = self._call("create_multipart_upload", "write", dst, Bucket=self.bucket, Key=self.key(dst))
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, (first, last) in enumerate(copy_ranges(size, self.copy_part), start=1):
                out = self._call("upload_part_copy", "write", dst, Bucket=self.bucket, Key=self.key(dst),
                                 UploadId=upload_id, PartNumber=number, CopySource=source,
                                 CopySourceRange=f"bytes={first}-{last}")
                parts.append({"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]})
            self._call("complete_multipart_upload", "write", dst, Bucket=self.bucket, Key=self.key(dst),
                       UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            self.abort_upload(self.key(dst), upload_id)
            raise

    def abort_upload(self, object_key: str, upload_id: str) -> None:
        """Abort a multipart upload, quietly: it runs when something else already failed, and
        what it cannot abort, cleanup_stale does later."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 pylint: disable=broad-except
            pass


def status_of(exc: BaseException, botocore_mod) -> int | None:
    if isinstance(exc, botocore_mod.exceptions.ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


PERMISSIONS = {
    "read": "s3:GetObject", "head": "s3:GetObject (and s3:ListBucket, for missing keys to read as missing)",
    "write": "s3:PutObject (and s3:GetObject for the server-side copy)", "list": "s3:ListBucket",
    "delete": "s3:DeleteObject", "abort": "s3:AbortMultipartUpload",
    "clean up": "s3:ListBucket and s3:DeleteObject",
    "abort incomplete uploads under": "s3:ListBucketMultipartUploads and s3:AbortMultipartUpload",
}


def describe_error(exc: BaseException, action: str, key: str | None, url: str, bucket: str, endpoint: str,
                   botocore_mod) -> str:
    """What went wrong and what to do, for an exception of boto3 (not yet scrubbed of secrets)."""
    errors = botocore_mod.exceptions
    what = f"{key} in {url}" if key else url
    where = f"{action} {what}"
    if isinstance(exc, errors.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")).strip()
        status = status_of(exc, botocore_mod)
        detail = f"{code}: {message}" if message else (code or f"HTTP {status}")
        if code == "NoSuchBucket" or (code == "404" and key is None):
            return (f"bucket {bucket} does not exist at {endpoint}: create it first (lifeboat does not create "
                    f"buckets), or correct the repository URL {url}")
        if code in CREDENTIAL_CODES:
            return (f"{endpoint} refused the credentials ({code}) to {where}: check access_key and secret_key "
                    "(and session_token for temporary credentials)")
        if code in REGION_CODES or status == 301:
            return (f"bucket {bucket} is not in the region the client used ({detail}) to {where}: set region "
                    "to the bucket's region")
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            need = PERMISSIONS.get(action, "the permissions in docs/stores-s3.md")
            hint = " (or the credentials are not valid)" if code == "403" else ""
            if key is None:  # the bucket itself: S3 says 403 for a bucket the user may not see
                hint += f" (or bucket {bucket} does not exist: lifeboat does not create buckets)"
            return (f"access denied to {where} at {endpoint}: the credentials lack permission{hint}; "
                    f"lifeboat needs {need} on the bucket and prefix (see the policy in docs/stores-s3.md)")
        if code in ("NoSuchKey", "404") or status == 404:
            return f"{key} is missing from the repository {url}" if key else f"{url}: not found ({detail})"
        if code in FULL_CODES or status == 507:
            return f"the store is full or over its quota ({detail}) to {where}: free space or raise the quota"
        if code in BUSY_CODES or (status is not None and status >= 500):
            return (f"{endpoint} kept failing or throttling ({detail}) to {where}, after boto3's retries: "
                    "try again later")
        return f"cannot {where} at {endpoint}: {detail}"
    if isinstance(exc, (errors.NoCredentialsError, errors.PartialCredentialsError)):
        return (f"no S3 credentials found for {url}: give access_key and secret_key (or set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY), or configure a profile or an instance role for boto3")
    timeouts = tuple(t for t in (getattr(errors, "ReadTimeoutError", None), getattr(errors, "ConnectTimeoutError", None))
                     if t is not None)
    if timeouts and isinstance(exc, timeouts):
        return (f"the S3 endpoint {endpoint} did not answer in time to {where}, after boto3's retries: check "
                f"that it runs and is reachable ({exc})")
    if isinstance(exc, (errors.EndpointConnectionError, errors.ConnectionError)):
        return (f"cannot reach the S3 endpoint {endpoint} to {where}: check endpoint_url and that the service "
                f"runs and is reachable ({exc})")
    if isinstance(exc, errors.NoRegionError):
        return f"no region for {url}: set region (or AWS_REGION)"
    if isinstance(exc, errors.BotoCoreError):
        return f"cannot {where} at {endpoint}: {exc}"
    if isinstance(exc, StoreError):
        return str(exc)
    return f"cannot {where} at {endpoint}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
class S3Reader:
    """A streaming reader of one object: read(n) from the response body; a download that breaks
    resumes where it stopped (a Range request bound to the object's ETag)."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store = store
        self.key = key
        self.pos = 0
        self.etag: str | None = None
        self.size = 0
        self.closed = False
        self.body = self._open()

    def _open(self):
        kwargs: dict[str, Any] = {"Bucket": self.store.bucket, "Key": self.store.key(self.key)}
        if self.etag is not None:
            kwargs.update(Range=f"bytes={self.pos}-", IfMatch=self.etag)
        try:
            out = self.store.client.get_object(**kwargs)
        except Exception as exc:  # noqa: BLE001
            if status_of(exc, self.store._botocore) == 404:  # pylint: disable=protected-access
                raise StoreError(f"{self.key} is missing from the repository {self.store.url}") from None
            raise self.store.error(exc, "read", self.key) from None
        if self.etag is None:
            self.etag = out.get("ETag")
            self.size = int(out.get("ContentLength", 0))
        return out["Body"]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while True:
                chunk = self.read(1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        attempts = 0
        while True:
            try:
                data = self.body.read(n)
                self.pos += len(data)
                if not data and self.pos < self.size:
                    raise IOError(f"the download ended at byte {self.pos} of {self.size}")
                return data
            except Exception as exc:  # noqa: BLE001 - a broken stream: resume or say why
                if isinstance(exc, StoreError):
                    raise
                attempts += 1
                if attempts > READ_RETRIES or self.etag is None:
                    raise self.store.error(exc, "read", self.key) from None
                try:
                    self.body.close()
                except Exception:  # noqa: BLE001 pylint: disable=broad-except
                    pass
                time.sleep(min(2 ** attempts, 10))
                self.body = self._open()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.body.close()
            except Exception:  # noqa: BLE001 pylint: disable=broad-except
                pass

    def __enter__(self) -> "S3Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
class _PartUpload(threading.Thread):
    """One part uploading in the background."""

    def __init__(self, writer: "S3Writer", number: int, data: bytes) -> None:
        super().__init__(name=f"lifeboat-s3-part-{number}", daemon=True)
        self.writer = writer
        self.number = number
        self.data = data
        self.etag: str | None = None
        self.exc: BaseException | None = None

    def run(self) -> None:
        store = self.writer.store
        try:
            out = store.client.upload_part(Bucket=store.bucket, Key=store.key(self.writer.tmp_key),
                                           UploadId=self.writer.upload_id, PartNumber=self.number,
                                           Body=self.data, ContentMD5=content_md5(self.data))
            self.etag = out["ETag"]
        except BaseException as exc:  # noqa: BLE001 - handed to the writer's thread
            self.exc = exc
        finally:
            self.data = b""


class S3Writer(Writer):
    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.name = tmp_name(store.host, os.getpid(), secrets.token_hex(6))
        self.tmp_key = f"tmp/{self.name}"
        self.buf = bytearray()
        self.bytes = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.pending: _PartUpload | None = None
        self.done = False
        store.open_tmp.add(self.name)

    # -- streaming -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.done:
            raise StoreError(f"writing to {self.tmp_key} in {self.store.url} after commit or abort")
        if self.pending is not None and not self.pending.is_alive():
            self._finish_pending()  # a failed part stops the stream at once
        self.buf += data
        self.bytes += len(data)
        while len(self.buf) >= part_size(len(self.parts) + (2 if self.pending else 1)):
            size = part_size(len(self.parts) + (2 if self.pending else 1))
            part = bytes(memoryview(self.buf)[:size])
            del self.buf[:size]  # cheap: a bytearray drops its front without moving the rest
            self._send(part)

    def _send(self, part: bytes) -> None:
        if self.upload_id is None:
            out = self.store._call("create_multipart_upload", "write", self.tmp_key,  # pylint: disable=protected-access
                                   Bucket=self.store.bucket, Key=self.store.key(self.tmp_key))
            self.upload_id = out["UploadId"]
            self.store.open_uploads.add(self.upload_id)
        self._finish_pending()
        if len(self.parts) + 1 > MAX_PARTS:
            raise StoreError(f"{self.tmp_key}: the object is larger than S3 allows (5 TiB) for {self.store.url}")
        self.pending = _PartUpload(self, len(self.parts) + 1, part)
        self.pending.start()

    def _finish_pending(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        pending.join()
        if pending.exc is not None:
            raise self.store.error(pending.exc, "write", self.tmp_key) from None
        self.parts.append({"PartNumber": pending.number, "ETag": pending.etag})

    # -- the end ---------------------------------------------------------------------------------
    def commit(self, key: str, replace: bool = False) -> bool:
        store = self.store
        if self.done:
            raise StoreError(f"{self.tmp_key} in {store.url} was already committed or aborted")
        try:
            if self.upload_id is None:
                # small: one PUT straight to the key (atomic), nothing under tmp/
                if not replace and store.exists(key):
                    self._close()
                    return False
                data = bytes(self.buf)
                store._call("put_object", "write", key, Bucket=store.bucket,  # pylint: disable=protected-access
                            Key=store.key(key), Body=data, ContentMD5=content_md5(data))
                self._close()
                return True
            if self.buf:
                part, self.buf = bytes(self.buf), bytearray()
                self._send(part)
            self._finish_pending()
            if not replace and store.exists(key):
                self.abort()
                return False
            store._call("complete_multipart_upload", "write", self.tmp_key,  # pylint: disable=protected-access
                        Bucket=store.bucket, Key=store.key(self.tmp_key), UploadId=self.upload_id,
                        MultipartUpload={"Parts": self.parts})
            store.open_uploads.discard(self.upload_id)
            self.upload_id = None
            try:
                store.copy(self.tmp_key, key, self.bytes)
            finally:
                try:
                    store.client.delete_object(Bucket=store.bucket, Key=store.key(self.tmp_key))
                except Exception:  # noqa: BLE001 pylint: disable=broad-except
                    pass  # cleanup_stale removes it later (this writer's pid will be dead)
            self._close()
            return True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.done:
            return
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.join()
        if self.upload_id is not None:
            self.store.abort_upload(self.store.key(self.tmp_key), self.upload_id)
            self.store.open_uploads.discard(self.upload_id)
            self.upload_id = None
        self._close()

    def _close(self) -> None:
        self.done = True
        self.buf = bytearray()
        self.store.open_tmp.discard(self.name)
