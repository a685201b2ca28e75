"""cert_info and cert_bundle on real certificates made with openssl, real age encryption.

Certificates: one that expires in 10 days (warned), one in 90 days with its chain and key, a key
whose mode lets others read it, and a Traefik acme.json. Nothing of any private key may appear in
a module's result.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

from conftest import run_module

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("age-keygen")),
                                reason="openssl and age are installed by tests/testbed/setup.sh")


def _cert(directory, name, days, cn, sans):
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", str(days), "-subj", f"/CN={cn}", "-addext", f"subjectAltName={sans}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    key.chmod(0o600)
    return crt, key


@pytest.fixture()
def certs(tmp_path):
    proxy = tmp_path / "nginx-proxy" / "certs"
    proxy.mkdir(parents=True)
    soon_crt, soon_key = _cert(proxy, "soon.example.org", 10, "soon.example.org", "DNS:soon.example.org")
    later_crt, later_key = _cert(proxy, "later.example.org", 90, "later.example.org",
                                 "DNS:later.example.org,DNS:www.later.example.org")
    later_key.chmod(0o644)  # others can read it: a problem to report, and restored as 0600
    os.chown(later_crt, 101, 102)
    traefik = tmp_path / "traefik"
    traefik.mkdir()
    acme_crt, acme_key = _cert(tmp_path, "acme", 60, "app.example.org", "DNS:app.example.org")
    acme = {"le": {"Account": {}, "Certificates": [{
        "domain": {"main": "app.example.org"},
        "certificate": base64.b64encode(acme_crt.read_bytes()).decode(),
        "key": base64.b64encode(acme_key.read_bytes()).decode(), "Store": "default"}]}}
    (traefik / "acme.json").write_text(json.dumps(acme))
    (traefik / "acme.json").chmod(0o600)
    secrets = [k.read_text().split("-----")[2].strip()[:64] for k in (soon_key, later_key, acme_key)]
    acme_crt.unlink()
    acme_key.unlink()
    return {"root": tmp_path, "proxy": proxy, "traefik": traefik, "secrets": secrets,
            "later_key": later_key, "later_crt": later_crt}


def _no_secret(result, secrets):
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text


def test_cert_info_reports_certificates_keys_and_expiry(certs):
    result = run_module("cert_info", paths=[str(certs["proxy"]), str(certs["traefik"] / "acme.json"),
                                            str(certs["root"] / "letsencrypt")], warn_days=30)
    _no_secret(result, certs["secrets"])
    by_subject = {c["subject"]: c for c in result["certificates"]}
    assert set(by_subject) == {"CN=soon.example.org", "CN=later.example.org", "CN=app.example.org"}
    soon, later, app = (by_subject[f"CN={n}.example.org"] for n in ("soon", "later", "app"))
    assert soon["expiring"] and not soon["expired"] and 8 <= soon["days_left"] <= 10
    assert not later["expiring"] and later["sans"] == ["DNS:later.example.org", "DNS:www.later.example.org"]
    assert later["key"] == str(certs["later_key"]) and later["key_matches"]
    assert later["uid"] == 101 and later["gid"] == 102 and later["issuer"] == "CN=later.example.org"
    assert app["path"] == f"{certs['traefik'] / 'acme.json'}#le[0]" and app["key_matches"]
    assert all(k["matches_certificate"] for k in result["keys"]) and len(result["keys"]) == 3
    assert result["missing"] == [str(certs["root"] / "letsencrypt")]
    warnings = " ".join(result.get("warnings", []))
    assert "soon.example.org.crt (CN=soon.example.org) expires in" in warnings
    assert "later.example.org.key: private key with mode 0644" in warnings
    assert "later.example.org.crt" not in warnings.replace("later.example.org.key", "")


def test_bundle_is_encrypted_and_restores_owners_and_modes(certs, tmp_path):
    identity = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                               text=True).stdout.strip()
    found = run_module("cert_info", paths=[str(certs["proxy"]), str(certs["traefik"])])
    bundle = tmp_path / "safe" / "certs.tar.age"
    made = run_module("cert_bundle", files=found["files"], dest=str(bundle), recipients=[recipient])
    _no_secret(made, certs["secrets"])
    assert made["changed"] and made["encrypted"] and len(made["files"]) == 5
    raw = bundle.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1") and oct(bundle.stat().st_mode & 0o777) == "0o600"
    assert all(s.encode() not in raw for s in certs["secrets"])

    without = run_module("cert_bundle", state="restored", src=str(bundle), expect_fail=True)
    assert "is age-encrypted: give identity" in without["msg"]
    root = tmp_path / "restored"
    check = run_module("cert_bundle", check=True, state="restored", src=str(bundle), identity=str(identity),
                       root=str(root))
    assert check["changed"] and not root.exists()
    done = run_module("cert_bundle", state="restored", src=str(bundle), identity=str(identity), root=str(root))
    _no_secret(done, certs["secrets"])
    assert done["changed"] and done["encrypted"]
    later_key = root / str(certs["later_key"]).lstrip("/")
    later_crt = root / str(certs["later_crt"]).lstrip("/")
    assert later_key.read_bytes() == certs["later_key"].read_bytes()
    assert oct(later_key.stat().st_mode & 0o777) == "0o600"  # was 0644: keys are never restored more open
    assert (later_crt.stat().st_uid, later_crt.stat().st_gid) == (101, 102)
    assert oct(later_crt.stat().st_mode & 0o777) == oct(certs["later_crt"].stat().st_mode & 0o777)
    again = run_module("cert_bundle", state="restored", src=str(bundle), identity=str(identity), root=str(root))
    assert not again["changed"]
