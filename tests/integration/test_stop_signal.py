"""Integration test of a service whose main process ignores SIGTERM (issue 20): PID 1 of a
container without a handler for its stop signal (a shell script, many small apps) makes
`docker stop` wait the whole timeout. data_inventory says so, in the unit's reason and as a
warning that says what to do; with the label lifeboat.stop_timeout the wait, and so the
downtime, is as short as the label says.
"""

from __future__ import annotations

import pytest

from conftest import docker_cli, run_module
from fixtures.lab import BUSYBOX, open_lab
from fixtures.lab import Lab as BaseLab

# A writer without a trap: as PID 1 it ignores SIGTERM (the kernel drops signals that a
# namespace's init does not handle).
DEAF_WRITER = ["sh", "-c", "while :; do date >> /data/log; sleep 1; done"]


class Lab(BaseLab):
    def writer(self, suffix: str, volume: str, *labels: str) -> str:
        name = self.name(suffix)
        self.containers.append(name)
        extra = [a for label in labels for a in ("--label", label)]
        docker_cli("run", "-d", "--name", name, *extra, "-v", f"{volume}:/data", BUSYBOX, *DEAF_WRITER)
        return name


@pytest.fixture()
def lab(docker_client, prefix, monkeypatch):
    yield from open_lab(Lab(docker_client, prefix), monkeypatch)


def test_a_main_process_that_ignores_sigterm_is_named_and_the_label_shortens_its_stop(lab):
    deaf_volume = lab.volume("deaf")[0]
    quick_volume = lab.volume("quick")[0]
    deaf = lab.writer("deaf", deaf_volume)
    quick = lab.writer("quick", quick_volume, "lifeboat.stop_timeout=1")

    inv = run_module("data_inventory")
    units = {u["id"]: u for u in inv["units"]}
    assert units[f"volume:{deaf_volume}"]["strategy"] == "stop"
    assert "ignores the stop signal" in units[f"volume:{deaf_volume}"]["reason"]
    assert "ignores the stop signal" not in units[f"volume:{quick_volume}"]["reason"]
    warned = [f for f in inv["findings"] if f["code"] == "stop_signal_ignored"]
    assert [f["subject"] for f in warned if f["subject"] in (deaf, quick)] == [deaf]
    assert "lifeboat.stop_timeout" in warned[0]["message"] and "pause" in warned[0]["message"]

    # The label's 1 s instead of the module's 30 s: the container is killed after 1 s.
    done = run_module("snapshot", repository=lab.repo(), units=[f"volume:{quick_volume}"])
    downtime = done["units"][f"volume:{quick_volume}"]["downtime"][quick]
    assert downtime < 8, done
    assert lab.state(quick)[0] == "running"
