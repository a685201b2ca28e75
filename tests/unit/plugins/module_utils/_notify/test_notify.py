"""Notification URLs are never shown (plugins/module_utils/_notify/send.py): pure parts."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._notify import send as nt


@pytest.mark.parametrize("url, shown", [
    ("mailtos://backup:pa55w0rd@mail.example.org?to=ops@example.org", "mailtos://mail.example.org/***"),
    ("json://127.0.0.1:8026/hook/s3cr3t", "json://127.0.0.1:8026/***"),
    ("tgram://123456:ABCdefBotToken/987654", "tgram://***/***"),
    ("ntfy://lifeboat-topic-x1", "ntfy://***"),
    ("https://hc-ping.com/5f0e-uuid/fail", "https://hc-ping.com/***"),
    ("https://hc-ping.com/", "https://hc-ping.com"),
])
def test_mask_keeps_scheme_and_host_name_only(url, shown):
    assert nt.mask(url) == shown


def test_scrub_takes_every_part_of_the_urls_out_of_a_text():
    url = "mailtos://backup:pa55w0rd@mail.example.org?to=ops@example.org&token=abcd1234"
    text = f"login failed for backup with pa55w0rd at {url} (token abcd1234)"
    out = nt.scrub(text, [url])
    for secret in ("pa55w0rd", "abcd1234", url):
        assert secret not in out
    assert "mail.example.org" in out
    bot = "tgram://123456:ABCdefBotToken/987654"
    assert "ABCdefBotToken" not in nt.scrub(f"Telegram refused {bot}: bad token ABCdefBotToken", [bot])


def test_a_failure_notified_by_the_role_is_not_sent_twice_unless_a_host_was_unreachable():
    log = "TASK [Say that the failure was notified]\nok: [web1] =>\n  msg: 'lifeboat-notified: failure of web1 sent to json://h.example/***'\n"
    assert nt.already_notified(log)
    assert not nt.already_notified(log + "fatal: [web2]: UNREACHABLE! => {}")
    assert not nt.already_notified("ERROR! the playbook could not be found")


def test_failures_name_target_and_reason():
    results = [{"target": "json://h/***", "ok": False, "error": "HTTP 500"}, {"target": "x", "ok": True, "error": ""}]
    assert nt.failures(results) == ["json://h/***: HTTP 500"]


def test_truncate_keeps_a_ping_body_within_the_limit():
    assert len(nt.truncate("é" * 100, 60).encode()) <= 60
    assert nt.truncate("short", 60) == "short"
