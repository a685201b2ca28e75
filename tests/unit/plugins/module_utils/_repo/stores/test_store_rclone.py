"""The pure parts of the rclone store: URLs, the configuration's secrets, rclone's complaints, times.

The store itself runs against `rclone serve webdav` in tests/integration/test_store_rclone.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores import rclone as rc
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError

# rclone 1.60's stderr, captured against `rclone serve webdav`
NO_SECTION = '2026/11/22 13:48:54 Failed to create file system for "nosuch:x": didn\'t find section in config file\n'
REFUSED = ('2026/11/22 13:49:06 Failed to create file system for "dav:d": read metadata failed: Propfind '
           '"http://127.0.0.1:18799/d": dial tcp 127.0.0.1:18799: connect: connection refused\n')
UNAUTHORIZED = ('2026/11/22 13:49:06 Failed to create file system for "dav:d": read metadata failed: '
                'Unauthorized: 401 Unauthorized\n')
MISSING = ("2026/11/22 13:48:58 ERROR : : error listing: directory not found\n"
           "2026/11/22 13:48:58 Failed to cat with 2 errors: last error was: directory not found\n")
DELETE_MISSING = ("2026/11/22 13:48:58 ERROR : Attempt 1/1 failed with 1 errors and: dav:d/nope.txt is a directory "
                  "or doesn't exist\n2026/11/22 13:48:58 Failed to deletefile: dav:d/nope.txt is a directory or "
                  "doesn't exist\n")


@pytest.mark.parametrize("url, spec_root, spec_key, shown", [
    ("rclone://dav/backups/lifeboat", "dav:backups/lifeboat", "dav:backups/lifeboat/objects/ab/abcd",
     "rclone://dav/backups/lifeboat"),
    ("rclone://dav", "dav:", "dav:objects/ab/abcd", "rclone://dav"),
    ("rclone://my nas//srv/backups/", "my nas:/srv/backups", "my nas:/srv/backups/objects/ab/abcd",
     "rclone://my nas//srv/backups"),
])
def test_rclone_urls(url, spec_root, spec_key, shown):
    target = rc.RcloneTarget(url)
    assert (target.spec(), target.spec("objects/ab/abcd"), target.url) == (spec_root, spec_key, shown)


@pytest.mark.parametrize("url", ["rclone://", "rclone://dav:x/y", "rclone://-dav/x", "rclone://dav/../x", "dav:x"])
def test_bad_rclone_urls_are_refused(url):
    with pytest.raises(StoreError, match="rclone"):
        rc.RcloneTarget(url)


def test_secrets_of_the_configuration_are_masked():
    config = ("[dav]\ntype = webdav\nurl = https://dav.example.org/\nuser = backup\n"
              "pass = r1p-LhOAkFwv3HLAsldAtLvhUd89sixk\n"
              "[s3]\ntype = s3\naccess_key_id = AKIAEXAMPLEKEY\nsecret_access_key = wJalrXUtnFEMI/K7MDENG\n"
              "[drive]\ntoken = {\"access_token\":\"ya29.secret\"}\n")
    hidden = rc.config_secrets(config)
    assert set(hidden) == {"r1p-LhOAkFwv3HLAsldAtLvhUd89sixk", "AKIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG",
                           '{"access_token":"ya29.secret"}'}
    text = rc.mask("PUT https://backup:plain@dav.example.org/x with r1p-LhOAkFwv3HLAsldAtLvhUd89sixk and "
                   "wJalrXUtnFEMI/K7MDENG", hidden)
    assert "plain" not in text and "r1p-" not in text and "wJalr" not in text
    assert "https://backup:***@dav.example.org/x" in text


TARGET = rc.RcloneTarget("rclone://dav/repo")


@pytest.mark.parametrize("stderr, wanted", [
    (NO_SECTION, ["remote 'dav' is not defined in /etc/rclone.conf", "rclone config"]),
    (REFUSED, ["refused the connection", "connection refused", "is it running"]),
    (UNAUTHORIZED, ["refused access", "401 Unauthorized", "check the user, password"]),
    (MISSING, ["not found"]),
    ("2026/11/22 13:48:58 Failed to rcat: 507 Insufficient Storage\n", ["is full", "free space"]),
    ("", ["rclone failed (exit 7): rclone exited with 7"]),
])
def test_rclone_failures_are_explained(stderr, wanted):
    message = rc.explain_rclone_failure(stderr, 7, TARGET, "/etc/rclone.conf", "reading x")
    assert message.startswith("reading x: ")
    for part in wanted:
        assert part in message, message
    assert "2026/11/22" not in message, "rclone's log time stamps are noise in a message"


def test_without_a_config_option_rclones_default_is_named():
    assert "~/.config/rclone/rclone.conf" in rc.explain_rclone_failure(NO_SECTION, 1, TARGET, None, "x")


def test_not_found_is_told_from_other_failures():
    assert rc.not_found(MISSING, 3) and rc.not_found(DELETE_MISSING, 1)
    assert not rc.not_found(REFUSED, 1) and not rc.not_found(MISSING, 0)


@pytest.mark.parametrize("text, seconds", [
    ("2026-11-22T13:48:54Z", 1795355334.0),
    ("2026-11-22T14:48:54.123456789+01:00", 1795355334.123456789),
    ("", 0.0), ("yesterday", 0.0),
])
def test_modtimes(text, seconds):
    assert rc.parse_modtime(text) == pytest.approx(seconds, abs=1e-6)
