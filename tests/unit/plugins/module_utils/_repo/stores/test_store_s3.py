"""Pure logic of the s3:// store: URLs, part sizes, copy ranges, temporary names, staleness, and
the messages made of boto3's exceptions (real botocore exception objects, built here as boto3
builds them from a server's answer; no network). The store against a real S3 API is tested in
tests/integration/test_store_s3.py."""

from __future__ import annotations

import sys

import botocore.config
import botocore.exceptions
import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import s3
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError, open_store

MIB = 1 << 20
GIB = 1 << 30
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS = "AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize("url, bucket, prefix", [
    ("s3://backups", "backups", ""),
    ("s3://backups/", "backups", ""),
    ("s3://backups/docker/web1/", "backups", "docker/web1"),
    ("s3://my.bucket-1/a", "my.bucket-1", "a"),
])
def test_urls_parse(url, bucket, prefix):
    assert s3.parse_s3_url(url) == (bucket, prefix)


@pytest.mark.parametrize("url, says", [
    ("s3://", "not a bucket name"),
    ("s3:///prefix", "not a bucket name"),
    ("s3://bkt/a//c", "empty, '.' or '..'"),
    ("s3://bkt/a/../c", "empty, '.' or '..'"),
    ("s3://bkt/a?x=1", "must not hold '?'"),
    ("sftp://b/a", "not an s3:// URL"),
])
def test_bad_urls_are_refused(url, says):
    with pytest.raises(StoreError, match=says.replace("?", r"\?").replace(".", r"\.")):
        s3.parse_s3_url(url)


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(StoreError, match="must not hold credentials") as info:
        s3.parse_s3_url(f"s3://{ACCESS}:{SECRET}@bucket/prefix")
    assert ACCESS not in str(info.value) and SECRET not in str(info.value)


def test_part_sizes_grow_so_that_10000_parts_reach_5_tib():
    assert s3.part_size(1) == s3.part_size(1000) == 16 * MIB
    assert s3.part_size(1001) == 32 * MIB and s3.part_size(2001) == 64 * MIB
    assert s3.part_size(10000) == 5 * GIB, "a part may not exceed 5 GiB"
    assert all(s3.part_size(n) >= 5 * MIB for n in range(1, 10001)), "S3's smallest non-last part is 5 MiB"
    assert s3.max_streamed_size() >= 5 * (1 << 40)
    assert sum(s3.part_size(n) for n in range(1, 1001)) == 16000 * MIB  # first 16 GB at 16 MiB parts


@pytest.mark.parametrize("size", [5 * GIB + 1, 7 * GIB + 12345, 5 * (1 << 40)])
def test_copy_ranges_cover_the_object_in_at_most_10000_parts(size):
    ranges = s3.copy_ranges(size)
    assert ranges[0][0] == 0 and ranges[-1][1] == size - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:])), "ranges must be contiguous"
    assert len(ranges) <= s3.MAX_PARTS
    assert all(last - first + 1 <= 5 * GIB for first, last in ranges)
    assert all(last - first + 1 >= 5 * MIB for first, last in ranges[:-1])


def test_temporary_names_carry_host_and_pid():
    name = s3.tmp_name("Web-1.example.org", 4242, "0a1b2c")
    assert name == "web-1-example-org-4242-0a1b2c.part"
    assert s3.parse_tmp_name(name) == ("web-1-example-org", 4242)
    assert s3.parse_tmp_name("junk.part") is None and s3.parse_tmp_name("a-1-xyz.part") is None


def test_staleness():
    host, me = "web1", 100

    def alive(pid):
        return pid in (100, 200)

    def stale(name, age, max_age=0, own=frozenset()):
        return s3.is_stale(name, age, host, me, alive, set(own), max_age)

    assert stale("web1-300-aa.part", 5), "this host's writer with a dead pid"
    assert not stale("web1-200-aa.part", 5), "this host's live writer"
    assert not stale("web1-200-aa.part", 3 * 24 * 3600), "a live writer of this host, however long it takes"
    assert stale("web1-100-aa.part", 5), "this very process, but none of its open writers"
    assert not stale("web1-100-aa.part", 5, own={"web1-100-aa.part"}), "an open writer of this process"
    assert not stale("web2-300-aa.part", 23 * 3600), "another host's, younger than 24 h"
    assert stale("web2-300-aa.part", 24 * 3600), "another host's, 24 h old"
    assert stale("something-else", 25 * 3600) and not stale("something-else", 3600)
    assert not stale("web1-300-aa.part", 5, max_age=60), "max_age spares young leftovers"


def test_scrub_removes_every_secret():
    text = f"failed with {SECRET} and {ACCESS} and {SECRET}"
    assert s3.scrub(text, [ACCESS, SECRET, None]) == "failed with *** and *** and ***"


def client_error(code: str, status: int, message: str = "", operation: str = "ListObjectsV2"):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def describe(exc, action="write", key="objects/ab/abcd"):
    return s3.describe_error(exc, action, key, "s3://b/p", "b", "http://127.0.0.1:9000", botocore)


@pytest.mark.parametrize("exc, action, key, says", [
    (client_error("NoSuchBucket", 404, "The specified bucket does not exist"), "list", None,
     "bucket b does not exist at http://127.0.0.1:9000: create it first (lifeboat does not create buckets)"),
    (client_error("InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist"), "list", None,
     "refused the credentials (InvalidAccessKeyId) to list s3://b/p: check access_key and secret_key"),
    (client_error("SignatureDoesNotMatch", 403), "write", "x", "refused the credentials (SignatureDoesNotMatch)"),
    (client_error("ExpiredToken", 400), "read", "x", "and session_token"),
    (client_error("AccessDenied", 403, "Access Denied"), "write", "objects/ab/abcd",
     "access denied to write objects/ab/abcd in s3://b/p at http://127.0.0.1:9000: the credentials lack "
     "permission; lifeboat needs s3:PutObject"),
    (client_error("403", 403, "", "HeadObject"), "head", "snapshots/x.json",
     "lack permission (or the credentials are not valid); lifeboat needs s3:GetObject"),
    (client_error("NoSuchKey", 404), "read", "objects/ab/abcd", "objects/ab/abcd is missing from the repository s3://b/p"),
    (client_error("PermanentRedirect", 301), "list", None, "set region to the bucket's region"),
    (client_error("SlowDown", 503, "Please reduce your request rate."), "write", "x",
     "kept failing or throttling (SlowDown: Please reduce your request rate.) to write x in s3://b/p, after "
     "boto3's retries: try again later"),
    (client_error("XMinioStorageFull", 507), "write", "x", "the store is full or over its quota"),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9000/b/p/x"), "write", "x",
     "cannot reach the S3 endpoint http://127.0.0.1:9000 to write x in s3://b/p: check endpoint_url"),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:9000/b/p/x"), "read", "x",
     "did not answer in time to read x in s3://b/p"),
    (botocore.exceptions.NoCredentialsError(), "list", None, "no S3 credentials found for s3://b/p"),
])
def test_error_messages(exc, action, key, says):
    assert says in describe(exc, action, key)


def test_messages_from_servers_are_scrubbed_of_credentials():
    """A server may echo the access key id (some do); the store's message never holds it."""
    store = s3.S3Store.__new__(s3.S3Store)
    store.url, store.bucket, store.endpoint = "s3://b/p", "b", "http://127.0.0.1:9000"
    store._secrets = [ACCESS, SECRET, None]  # pylint: disable=protected-access
    store._botocore = botocore  # pylint: disable=protected-access
    exc = client_error("WeirdError", 400, f"key {ACCESS} with secret {SECRET} is odd")
    message = str(store.error(exc, "write", "x"))
    assert ACCESS not in message and SECRET not in message and "WeirdError" in message


def test_client_config_is_path_style_with_checksums_only_when_required():
    config = s3.client_config(botocore, path_style=True)
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries == {"mode": "standard", "max_attempts": 5}
    if "request_checksum_calculation" in botocore.config.Config.OPTION_DEFAULTS:
        assert config.request_checksum_calculation == "when_required"
        assert config.response_checksum_validation == "when_required"
    assert s3.client_config(botocore, path_style=False).s3 is None


def test_missing_boto3_says_which_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 raises ImportError
    with pytest.raises(StoreError, match=r"python3-boto3 .*pip install boto3"):
        open_store("s3://bucket/prefix", options={"endpoint_url": "http://127.0.0.1:9"})


def test_mismatched_keys_are_refused_before_any_request():
    with pytest.raises(StoreError, match="secret_key is missing; give both access_key and secret_key") as info:
        open_store("s3://bucket/prefix", options={"access_key": ACCESS, "endpoint_url": "http://127.0.0.1:9"})
    assert ACCESS not in str(info.value)
