"""The schedule (issue 23): a systemd timer on a Debian host that is its own control node runs the
backup by itself, a broken repository makes the next run notify, a healthy run pings success.

The host is a lifeboat-test/debian-control:13 container (fixtures/systemd_host.py: systemd as
PID 1, Debian's engine, ansible-core and apprise inside). The collection is copied in; the role
lifeboat.docker.schedule is applied from this machine over the docker connection (as a person
applies it over SSH), with a calendar a few seconds ahead, so the timer itself starts the run
(not `systemctl start`). The receivers are real servers on this machine (fixtures/receivers.py):
an HTTP server (Apprise json:// and the dead-man pings) and an SMTP server (Apprise mailto://),
listening on the address the container reaches this machine by (the bridge's gateway).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from fixtures.receivers import HttpRecorder, SmtpRecorder
from fixtures.systemd_host import SystemdHost

from conftest import ROOT, VENV_BIN

IMAGE = "lifeboat-test/debian-control:13"
TOKEN = "t0ken-of-the-schedule-0815"
UNIT = "lifeboat-backup"
COLLECTION = "/opt/lifeboat/ansible_collections/lifeboat/docker"
REPO = "/var/backups/lifeboat"


@pytest.fixture()
def host(docker_client, prefix):
    with SystemdHost(docker_client, f"{prefix}-ctl", IMAGE) as made:
        made.put_tree(str(ROOT), COLLECTION, ["galaxy.yml", "meta", "plugins", "roles", "playbooks"])
        # something to back up in the host's own engine: a volume with a file
        made.sh("docker volume create sched_data >/dev/null && echo payload > /var/lib/docker/volumes/sched_data/_data/file")
        yield made


def _apply(host: SystemdHost, **variables) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_PIPELINING="1")
    args = {"target": host.name, "ansible_connection": "community.docker.docker",
            "ansible_python_interpreter": "/usr/bin/python3", **variables}
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", f"{host.name},", "playbooks/schedule.yml",
                           "-e", json.dumps(args)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300, check=False)
    assert TOKEN not in proc.stdout + proc.stderr
    return proc


def _soon(host: SystemdHost, seconds: int = 50) -> str:
    """A calendar expression for one moment SECONDS from now on the host's clock (applying the role over
    the docker connection takes about 25 s here: the moment must still be ahead when the timer starts)."""
    return host.sh(f"date -d '+{seconds} sec' '+%Y-%m-%d %H:%M:%S'").strip()


def _apply_soon(host: SystemdHost, before: tuple[str, str], settings: dict) -> subprocess.CompletedProcess:
    """Apply the role with a moment soon ahead. On a loaded machine applying it may take longer
    than the margin: the moment is then past when the timer starts (it has no next elapse and
    never fired), and the role is applied again with twice the margin (at most three times)."""
    for margin in (50, 100, 200):
        applied = _apply(host, schedule_on_calendar=_soon(host, margin), **settings)
        assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
        timer = host.sh(f"systemctl show {UNIT}.timer -p NextElapseUSecRealtime -p LastTriggerUSec")
        next_elapse = dict(line.split("=", 1) for line in timer.splitlines() if "=" in line)
        if next_elapse.get("NextElapseUSecRealtime") or _last_runs(host) != before:
            return applied
    raise AssertionError(f"the role's timer never had a moment ahead (applying it took longer than 200 s): {timer}")


def _unit_show(host: SystemdHost, unit: str) -> dict:
    out = host.sh(f"systemctl show {unit} -p ActiveState -p Result -p LastTriggerUSec -p InvocationID")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _last_runs(host: SystemdHost) -> tuple[str, str]:
    """(the timer's last trigger, the service's last invocation): what a new run changes."""
    return _unit_show(host, f"{UNIT}.timer")["LastTriggerUSec"], _unit_show(host, f"{UNIT}.service")["InvocationID"]


def _wait_for_run(host: SystemdHost, before: tuple[str, str], timeout: float = 300) -> dict:
    """The state of the backup service once a run that the timer started since BEFORE (_last_runs) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service = _unit_show(host, f"{UNIT}.service")
        triggered = _unit_show(host, f"{UNIT}.timer")["LastTriggerUSec"]
        if triggered != before[0] and service["InvocationID"] != before[1] and \
                service["ActiveState"] in ("inactive", "failed"):
            return service
        time.sleep(1)
    raise AssertionError(f"the timer did not run {UNIT}.service within {timeout} s: "
                         + host.sh(f"systemctl list-timers --all; journalctl -u {UNIT}.service -n 40 --no-pager"))


def test_timer_backs_up_notifies_a_failure_pings_success_and_is_removed(host):
    gateway = host.gateway
    with HttpRecorder(gateway) as http, SmtpRecorder(gateway) as smtp:
        urls = [f"json://{gateway}:{http.port}/hook/{TOKEN}", smtp.url()]
        ping = {"start": http.url(f"/ping/{TOKEN}/start"), "success": http.url(f"/ping/{TOKEN}"),
                "fail": http.url(f"/ping/{TOKEN}/fail")}
        # the control node's inventory, as its owner would write it (the URLs would come from a vault)
        host.put_file("/etc/lifeboat/inventory.yml", json.dumps({"docker_hosts": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}},
            "vars": {"lifeboat_repository": REPO, "lifeboat_notify_urls": urls, "lifeboat_ping": ping}}}))
        settings = {"schedule_inventory": "/etc/lifeboat/inventory.yml", "schedule_accuracy": "1s",
                    "schedule_environment": {"ANSIBLE_COLLECTIONS_PATH": "/opt/lifeboat", "ANSIBLE_FORCE_COLOR": "0"},
                    "lifeboat_notify_urls": urls, "lifeboat_ping": ping, "schedule_randomized_delay": "0"}

        # 1. a healthy run, started by the timer: a snapshot lands, success is pinged
        before = _last_runs(host)
        applied = _apply_soon(host, before, settings)
        assert f"{UNIT}.timer" in applied.stdout and f"{UNIT}.service" in applied.stdout  # list-timers
        assert f"{UNIT}.timer" in host.sh("systemctl list-timers --all --no-pager")
        timer = host.sh(f"systemctl cat {UNIT}.timer")
        assert "Persistent=true" in timer and "RandomizedDelaySec=0" in timer
        service = _wait_for_run(host, before)
        journal = host.sh(f"journalctl -u {UNIT}.service -o cat --no-pager")
        assert service["Result"] == "success", journal[-4000:]
        assert re.search(r"volume:sched_data +live", journal), journal[-3000:]  # the summary, in the journal
        assert host.sh(f"ls {REPO}/snapshots/ | grep -c 'json$'").strip() == "1"
        http.wait_for(lambda r: r.path == f"/ping/{TOKEN}/start", timeout=5)
        success = http.wait_for(lambda r: r.path == f"/ping/{TOKEN}", timeout=5)
        assert "volume:sched_data" in success.body
        assert not [r for r in http.requests if r.path.startswith("/hook/")]  # success is not notified unless asked

        # 2. the repository is broken, and the host was down when the next run was due (daily at
        # midnight; its last run two days ago): when the timer starts again, Persistent=true makes it
        # catch up at once, and that run fails and notifies, with the reason
        host.sh(f"rm -rf {REPO} && echo 'not a repository' > {REPO}")
        host.sh(f"touch -d '2 days ago' /var/lib/systemd/timers/stamp-{UNIT}.timer")
        before = _last_runs(host)
        applied = _apply(host, schedule_on_calendar="*-*-* 00:00:00", **settings)
        assert applied.returncode == 0, applied.stdout[-4000:]
        service = _wait_for_run(host, before)
        assert service["Result"] == "exit-code"
        hook = json.loads(http.wait_for(lambda r: r.path.startswith("/hook/"), timeout=30).body)
        assert hook["title"] == "lifeboat: backup of localhost FAILED"
        assert REPO in hook["message"] and "not a directory" in hook["message"], hook["message"]
        mail = smtp.wait_for(lambda m: "FAILED" in m.subject, timeout=30)
        assert "not a directory" in mail.text
        fail = http.wait_for(lambda r: r.path == f"/ping/{TOKEN}/fail", timeout=30)
        assert "not a directory" in fail.body
        # OnFailure ran, and did not send the same failure twice
        failed_log = host.wait("the OnFailure unit", f"journalctl -u {UNIT}-failed.service -o cat --no-pager | grep 'a second time'", 30)
        assert "already sent its failure notification" in failed_log
        assert len([r for r in http.requests if r.path.startswith("/hook/")]) == 1 and len(smtp.messages) == 1

        # 3. a failure the role cannot tell (Ansible stops before it runs): the OnFailure unit tells it
        applied = _apply(host, schedule_on_calendar="*-*-* 00:00:00", schedule_playbook_args=["-e", "@/etc/lifeboat/missing.yml"],
                         **settings)
        assert applied.returncode == 0, applied.stdout[-4000:]
        host.run(f"systemctl start {UNIT}.service")  # the timer was shown to fire above
        mail = smtp.wait_for(lambda m: f"{UNIT}.service FAILED" in m.subject, timeout=60)
        assert "missing.yml" in mail.text and "exit status" in mail.text, mail.text
        http.wait_for(lambda r: r.path.startswith("/hook/") and "missing.yml" in r.body, timeout=10)

        # 4. no overlap: while another lifeboat run holds the lock, a start is skipped and says so
        host.sh("(flock /run/lock/lifeboat-schedule.lock sleep 20 &) ; sleep 0.5")
        host.run(f"systemctl start {UNIT}.service")
        assert "is skipped so that they do not overlap" in host.sh(f"journalctl -u {UNIT}.service -o cat --no-pager")
        assert _unit_show(host, f"{UNIT}.service")["Result"] == "success"

        # secrets: not in any journal, and the settings file is root's only
        assert TOKEN not in host.sh("journalctl -o cat --no-pager")
        assert host.sh(f"stat -c '%a %U' /etc/lifeboat/{UNIT}-notify.json").strip() == "600 root"

    # 5. removal is one variable
    removed = _apply(host, schedule_state="absent")
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert UNIT not in host.sh("systemctl list-timers --all --no-pager")
    assert host.run(f"ls /etc/systemd/system/{UNIT}* /usr/local/lib/lifeboat/{UNIT} /etc/lifeboat/{UNIT}-notify.json")[0] != 0
