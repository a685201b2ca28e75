"""Pure parts of _certs: PEM blocks, Traefik's acme.json, openssl's x509 text, restore modes."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._certs.bundle import (
    CertError, acme_entries, days_left, parse_x509_text, pem_blocks, restore_mode)


def test_pem_blocks_of_every_label():
    data = (b"junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            b"-----BEGIN X9.42 DH PARAMETERS-----\nBBBB\n-----END X9.42 DH PARAMETERS-----\n"
            b"-----BEGIN EC PRIVATE KEY-----\nCCCC\n-----END EC PRIVATE KEY-----\n")
    assert [label for label, _block in pem_blocks(data)] == ["CERTIFICATE", "X9.42 DH PARAMETERS", "EC PRIVATE KEY"]
    assert pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n") == []


def test_acme_json_v2_and_v1():
    crt, key = b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PRIVATE KEY-----\n"
    cert = {"domain": {"main": "a.example"}, "certificate": base64.b64encode(crt).decode(),
            "key": base64.b64encode(key).decode()}
    v2 = acme_entries(json.dumps({"le": {"Certificates": [cert]}, "other": {"Certificates": None}}).encode())
    assert v2 == [{"resolver": "le", "main": "a.example", "certificate": crt, "key": key}]
    v1 = acme_entries(json.dumps({"Certificates": [cert]}).encode())
    assert v1[0]["resolver"] == "" and v1[0]["key"] == key
    with pytest.raises(CertError, match="not valid JSON"):
        acme_entries(b"{")


def test_parse_x509_text():
    text = ("subject=CN=example.org\nissuer=CN=R11,O=Let's Encrypt,C=US\nnotAfter=Jan  5 10:00:00 2027 GMT\n"
            "sha256 Fingerprint=AB:CD\nX509v3 Subject Alternative Name: \n    DNS:example.org, DNS:www.example.org\n")
    info = parse_x509_text(text)
    assert info == {"subject": "CN=example.org", "issuer": "CN=R11,O=Let's Encrypt,C=US",
                    "not_after": "2027-01-05T10:00:00Z", "sans": ["DNS:example.org", "DNS:www.example.org"],
                    "fingerprint": "AB:CD"}
    now = datetime(2027, 1, 1, 10, 0, 1, tzinfo=timezone.utc)
    assert days_left(info["not_after"], now) == 3
    assert days_left("2026-12-31T00:00:00Z", now) == -2


def test_restore_mode_never_opens_keys():
    assert restore_mode({"mode": "0644", "private_key": True}) == 0o600
    assert restore_mode({"mode": "0400", "private_key": True}) == 0o400
    assert restore_mode({"mode": "0644", "private_key": False}) == 0o644
