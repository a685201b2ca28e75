"""Stop signals: which main processes ignore theirs (from the SigCgt mask the probe reads), and
the per-container stop timeout of the label lifeboat.stop_timeout."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import build_inventory, signal_number
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import stop_timeout_of


@pytest.mark.parametrize("name, number", [("SIGTERM", 15), ("TERM", 15), ("15", 15), ("sigquit", 3),
                                          ("SIGNOPE", None)])
def test_signal_number(name, number):
    assert signal_number(name) == number


@pytest.mark.parametrize("labels, want", [(None, 30), ({"lifeboat.stop_timeout": "5"}, 5),
                                          ({"lifeboat.stop_timeout": " 0 "}, 0),
                                          ({"lifeboat.stop_timeout": "-1"}, 30),
                                          ({"lifeboat.stop_timeout": "5s"}, 30),
                                          ({"lifeboat.stop_timeout": "99999"}, 30)])
def test_stop_timeout_label(labels, want):
    assert stop_timeout_of(labels, 30) == want


def _raw(mask, stop_signal=None, labels=None, pid_mode=""):
    container = {"Id": "c1", "Name": "/app", "State": {"Status": "running", "Running": True, "Pid": 42},
                 "Config": {"Labels": labels or {}, "StopSignal": stop_signal, "Image": "img"},
                 "HostConfig": {"PidMode": pid_mode}, "Mounts": [
                     {"Type": "volume", "Name": "data", "Source": "/v/data", "Destination": "/data", "RW": True}]}
    return {"containers": [container], "volumes": [{"Name": "data", "Driver": "local", "Mountpoint": "/v/data"}],
            "networks": [], "images": [], "host": "h", "swarm": None, "caught_signals": {"c1": mask}}


@pytest.mark.parametrize("mask, stop_signal, labels, pid_mode, warned", [
    (0x10002, None, None, "", True),                 # a shell script: SIGINT and SIGCHLD only
    (0x14002, None, None, "", False),                # handles SIGTERM
    (0x14002, "SIGQUIT", None, "", True),            # handles SIGTERM, but stops by SIGQUIT
    (0x10002, None, {"lifeboat.stop_timeout": "3"}, "", False),
    (0x10002, None, None, "host", False),            # not a namespace's init
    (None, None, None, "", False),                   # not known
])
def test_a_stop_unit_names_a_main_process_that_ignores_its_stop_signal(mask, stop_signal, labels, pid_mode, warned):
    scans = {"volume:data": {"exists": True, "type": "dir", "readable": True, "has_data": True, "markers": {},
                             "secret_files": [], "sockets": [], "sqlite": [], "error": None}}
    inv = build_inventory(_raw(mask, stop_signal, labels, pid_mode), scans)
    unit = next(u for u in inv["units"] if u["id"] == "volume:data")
    assert unit["strategy"] == "stop"
    assert ("ignores the stop signal" in unit["reason"]) is warned
    assert any(f["code"] == "stop_signal_ignored" for f in inv["findings"]) is warned
