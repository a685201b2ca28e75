# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OnFailure helper of the role lifeboat.docker.schedule: tells that a scheduled run failed.

    lifeboat_on_failure.py /etc/lifeboat/NAME-notify.json NAME.service

systemd starts it (NAME-failed.service) when NAME.service fails. It reads the failed run's journal
(that invocation only), and sends its end with the result and exit status to the Apprise URLs of
the settings file and pings its dead-man "fail" URL. When the run's output says that the backup role
already sent its own failure notification (with the summary), it sends nothing a second time.

It needs no Ansible (a run may fail because Ansible does not start): only Python 3, Debian's
apprise for the URLs, and lifeboat_notify.py beside it (the collection's module_utils/_notify/send.py,
installed by the role). Exit status 1 when a notification failed (the journal names it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifeboat_notify as notify  # noqa: E402  pylint: disable=wrong-import-position,import-error

TAIL_LINES = 40


def unit_state(unit: str) -> dict:
    out = subprocess.run(["systemctl", "show", unit, "-p", "InvocationID", "-p", "Result", "-p", "ExecMainStatus"],
                         capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit: str, invocation: str) -> str:
    subprocess.run(["journalctl", "--sync"], capture_output=True, check=False)
    match = [f"_SYSTEMD_INVOCATION_ID={invocation}"] if invocation else ["-u", unit, "-n", "400"]
    return subprocess.run(["journalctl", "--no-pager", "-o", "cat", *match],
                          capture_output=True, text=True, check=False).stdout


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: lifeboat_on_failure.py SETTINGS.json UNIT.service", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        settings = json.load(fh)
    unit = argv[2]
    urls = [u for u in settings.get("urls") or [] if u.strip()]
    ping_fail = (settings.get("ping_fail") or "").strip()
    state = unit_state(unit)
    log = journal(unit, state.get("InvocationID", ""))
    if notify.already_notified(log):
        print(f"{unit} failed; the backup role already sent its failure notification (see that run's journal): "
              "not sending it a second time")
        return 0
    if not urls and not ping_fail:
        print(f"{unit} failed, and no notification URL or dead-man fail URL is set (schedule_notify_urls, "
              f"schedule_ping.fail): the failure is only in this journal (journalctl -u {unit})")
        return 0
    host = socket.gethostname()
    tail = "\n".join(log.splitlines()[-TAIL_LINES:])
    body = notify.scrub(f"The scheduled run {unit} on {host} failed (result {state.get('Result', '?')}, exit status "
                        f"{state.get('ExecMainStatus', '?')}). The end of its journal:\n\n{tail}\n\n"
                        f"All of it: journalctl -u {unit}", urls + [ping_fail])
    results = notify.send(urls, f"lifeboat: {unit} FAILED on {host}", body) if urls else []
    if ping_fail:
        results.append(notify.ping(ping_fail, body))
    for result in results:
        print(f"{unit} failed: told {result['target']}" if result["ok"]
              else f"{unit} failed, and telling {result['target']} failed too: {result['error']}")
    return 1 if notify.failures(results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
