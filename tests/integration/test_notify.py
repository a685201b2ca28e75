"""Notifications of the backup role (issue 23): Apprise to a real HTTP receiver (json://) and a real
SMTP server (mailto://, aiosmtpd), dead-man pings to the HTTP receiver, all on loopback.

The backup runs through playbooks/backup.yml against a throw-away engine (fixtures/engine.py), as
in test_backup_playbook.py. The repository is broken by putting a plain file where it should be
(a real failure of the snapshot module). The URLs carry a secret token that must never appear
in the play's output. test_schedule.py covers the same from a systemd timer on a Debian host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from fixtures.engine import ThrowawayEngine
from fixtures.receivers import HttpRecorder, SmtpRecorder

from conftest import ROOT, VENV_BIN, run_module

BUSYBOX = "lifeboat-test/busybox:latest"
TOKEN = "s3cr3t-t0ken-4711"


@pytest.fixture(scope="module")
def engine():
    with ThrowawayEngine() as eng:
        eng.load_image(BUSYBOX)
        eng.client.volumes.create("notedata")
        eng.client.containers.run(BUSYBOX, ["sh", "-c", "echo payload > /data/file; trap 'exit 0' TERM; while :; do sleep 1; done"],
                                  name="noteapp", detach=True, network_mode="none",
                                  volumes={"notedata": {"bind": "/data", "mode": "rw"}})
        yield eng


@pytest.fixture()
def receivers():
    with HttpRecorder() as http, SmtpRecorder() as smtp:
        yield http, smtp


def _backup(engine, tmp_path, repo, args):
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               LIFEBOAT_STATE_DIR=str(tmp_path / "state"))
    args = {"lifeboat_docker_host": engine.url, "lifeboat_repository": str(repo), **args}
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/local", "playbooks/backup.yml",
                           "-e", json.dumps(args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300, check=False)


def _settings(http, smtp, **extra):
    return {"lifeboat_notify_urls": [f"json://{http.host}:{http.port}/hook/{TOKEN}", smtp.url()],
            "lifeboat_ping": {"start": http.url(f"/ping/{TOKEN}/start"), "success": http.url(f"/ping/{TOKEN}"),
                              "fail": http.url(f"/ping/{TOKEN}/fail")}, **extra}


def test_success_is_notified_when_asked_and_pinged(engine, tmp_path, receivers):
    http, smtp = receivers
    repo = tmp_path / "repo"
    proc = _backup(engine, tmp_path, repo, _settings(http, smtp, lifeboat_notify_on_success=True))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert TOKEN not in proc.stdout + proc.stderr
    start = http.wait_for(lambda r: r.path.endswith("/start"), timeout=5)
    assert start.method == "GET"
    hook = json.loads(http.wait_for(lambda r: r.path.startswith("/hook/"), timeout=5).body)
    assert hook["title"] == "lifeboat: backup of localhost complete"
    # the summary: the unit with its strategy, size and downtime, and the totals
    assert re.search(r"volume:notedata +stop +\d+ B .* noteapp [\d.]+ s", hook["message"]), hook["message"]
    assert "Total: " in hook["message"]
    mail = smtp.wait_for(lambda m: True, timeout=5)
    assert mail.subject == hook["title"] and mail.rcpt_tos == ["ops@example.invalid"]
    assert "volume:notedata" in mail.text and "Total: " in mail.text
    success = http.wait_for(lambda r: r.path == f"/ping/{TOKEN}", timeout=5)
    assert success.method == "POST" and "volume:notedata" in success.body
    assert not [r for r in http.requests if r.path.endswith("/fail")]
    assert run_module("snapshot_info", repository=str(repo))["snapshots"][0]["complete"]


def test_success_is_not_notified_unless_asked(engine, tmp_path, receivers):
    http, smtp = receivers
    proc = _backup(engine, tmp_path, tmp_path / "repo", _settings(http, smtp))
    assert proc.returncode == 0, proc.stdout[-4000:]
    http.wait_for(lambda r: r.path == f"/ping/{TOKEN}", timeout=5)  # the dead-man switch still hears it
    assert not [r for r in http.requests if r.path.startswith("/hook/")] and smtp.messages == []


def test_a_broken_repository_is_notified_with_the_reason(engine, tmp_path, receivers):
    http, smtp = receivers
    broken = tmp_path / "repo"
    broken.write_text("not a repository\n")
    proc = _backup(engine, tmp_path, broken, _settings(http, smtp))
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert TOKEN not in proc.stdout + proc.stderr
    hook = json.loads(http.wait_for(lambda r: r.path.startswith("/hook/"), timeout=5).body)
    assert hook["title"] == "lifeboat: backup of localhost FAILED"
    assert str(broken) in hook["message"] and "not a directory" in hook["message"], hook["message"]
    mail = smtp.wait_for(lambda m: True, timeout=5)
    assert "FAILED" in mail.subject and str(broken) in mail.text
    fail = http.wait_for(lambda r: r.path == f"/ping/{TOKEN}/fail", timeout=5)
    assert "not a directory" in fail.body
    assert not [r for r in http.requests if r.path == f"/ping/{TOKEN}"]
    # the marker the schedule's OnFailure helper looks for
    assert "lifeboat-notified: failure of localhost sent to json://127.0.0.1" in proc.stdout


def test_a_failed_notification_is_reported_beside_the_backups_result(engine, tmp_path, receivers):
    http, smtp = receivers
    http.fail_paths.add(f"/hook/{TOKEN}")
    proc = _backup(engine, tmp_path, tmp_path / "repo", _settings(http, smtp, lifeboat_notify_on_success=True))
    assert proc.returncode != 0, proc.stdout[-4000:]
    out = proc.stdout
    assert TOKEN not in out + proc.stderr
    assert re.search(r"The backup of localhost is complete \(snapshot \S+\)\.\s+Its notification did not get "
                     r"through: 1 of 3 notifications failed: json://127\.0\.0\.1:\d+/\*\*\*: ", out), out[-3000:]
    smtp.wait_for(lambda m: "complete" in m.subject, timeout=5)  # the other target still got it


def test_notify_module_masks_urls_and_names_a_dead_target(tmp_path):
    dead = f"json://127.0.0.1:9/{TOKEN}"
    result = run_module("notify", expect_fail=True, urls=[dead], title="t", body="b",
                        ping_url=f"http://127.0.0.1:9/{TOKEN}")
    assert TOKEN not in json.dumps(result)
    assert [s["target"] for s in result["sent"]] == ["json://127.0.0.1:9/***", "http://127.0.0.1:9/***"]
    assert "2 of 2 notifications failed" in result["msg"] and "the ping failed" in result["msg"]
