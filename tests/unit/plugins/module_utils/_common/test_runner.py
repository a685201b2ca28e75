"""The one runner of every module's main(): the exception ladder maps each kind of error to the same
fail_json as each module's own ladder did, the crash journal is repaired outside check mode only, and
the termination guard turns SIGTERM into an unwinding exit. A real AnsibleModule answers (its
fail_json prints JSON and exits), fed its arguments as Ansible feeds them."""

from __future__ import annotations

import json
import os
import signal

import pytest
from ansible.module_utils import basic
from ansible.module_utils._internal import _traceback

from ansible_collections.lifeboat.docker.plugins.module_utils._common import runner as _runner
from ansible_collections.lifeboat.docker.plugins.module_utils._data.archive import ArchiveError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.browse import BrowseError
from ansible_collections.lifeboat.docker.plugins.module_utils._certs.bundle import CertError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.copy import CopyError
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._common.locks import LockTimeout
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.plan import PlanError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import RepositoryError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.files import RestoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import DbRestoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.stores.core import StoreError
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import SwarmError
from ansible_collections.lifeboat.docker.plugins.module_utils._data.tarcheck import UnsafeArchive
from ansible_collections.lifeboat.docker.plugins.modules import cert_bundle, rebuild, snapshot_restore, swarm_rebuild

Failure = _runner.Failure


def module_with(monkeypatch, check: bool = False, **args) -> basic.AnsibleModule:
    """A real AnsibleModule, given its arguments the way Ansible hands them to a module."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(payload).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy")
    spec = {name: {"type": "str"} for name in args}
    return basic.AnsibleModule(argument_spec=spec, supports_check_mode=True)


def outcome(capsys, call) -> dict:
    """What the module printed when CALL ended it (exit_json or fail_json)."""
    with pytest.raises(SystemExit):
        call()
    return json.loads(capsys.readouterr().out)


def raising(exc: BaseException):
    def body():
        raise exc
    return body


# --- the pure ladder: which message, and whether the traceback goes along -------------------------

def test_the_first_rung_that_fits_answers_and_anything_else_is_unexpected():
    ladder = (Failure(UnsafeArchive, lambda e: f"refused: {e}"), Failure((RestoreError, ArchiveError)))
    assert _runner.failure_message(UnsafeArchive("a link out"), ladder, "x") == ("refused: a link out", False)
    assert _runner.failure_message(ArchiveError("short read"), ladder, "x") == ("short read", False)
    assert _runner.failure_message(KeyError("id"), ladder, "snapshot") == ("snapshot failed unexpectedly: 'id'", True)


def test_engine_failed_says_to_look_at_the_engines_log():
    assert _runner.engine_failed(DockerException("500 boom")) == \
        "the Docker engine failed a request: 500 boom; check the engine's log"


# The ladders of the modules, each exception kind with the message the module gave before the runner
# (written out here as the modules wrote them, so that a changed message fails).
SUBJECT = {"changed": False, "unit": "volume:app", "stacks": [{"stack": "web"}]}
CASES = [
    (cert_bundle.LADDER, CertError("no recipients"), "no recipients"),
    (cert_bundle.LADDER, PermissionError(13, "Permission denied", "/etc/ssl/private/k.pem"),
     "/etc/ssl/private/k.pem: Permission denied; run as root (become)"),
    (cert_bundle.LADDER, OSError(28, "No space left on device"), "a file: No space left on device; run as root (become)"),
    (rebuild.ladder("images"), PlanError("no such snapshot"), "no such snapshot"),
    (rebuild.ladder("images"), RepositoryError("cannot read"), "cannot read"),
    (rebuild.ladder("images"), DockerException("409"),
     "the Docker engine failed a request during step images: 409; check the engine's log"),
    (snapshot_restore.ladder(SUBJECT), UnsafeArchive("../etc"),
     "refused: the archive of volume:app is unsafe to extract (../etc); the target was not touched"),
    (snapshot_restore.ladder(SUBJECT), LockTimeout("held by pid 9"),
     "held by pid 9 (the target was not touched unless this says otherwise)"),
    (snapshot_restore.ladder(SUBJECT), BrowseError("no such path"),
     "no such path (the target was not touched unless this says otherwise)"),
    (snapshot_restore.ladder(SUBJECT), DbRestoreError("psql failed"),
     "psql failed (the target was not touched unless this says otherwise)"),
    (snapshot_restore.ladder(SUBJECT), DockerException("404"),
     "the Docker engine failed a request: 404; check the engine's log"),
    (swarm_rebuild.ladder(SUBJECT), UnsafeArchive("../etc"),
     "refused: an archive of the snapshot is unsafe to extract (../etc)"),
    (swarm_rebuild.ladder(SUBJECT), StoreError("gone"), "gone (stacks done before this one: 1)"),
    (swarm_rebuild.ladder(SUBJECT), SwarmError("not a manager"), "not a manager"),
    (swarm_rebuild.ladder(SUBJECT), DockerException("503"),
     "the Docker engine failed a request: 503; check the engine's log"),
]


@pytest.mark.parametrize("ladder, exc, message", CASES)
def test_each_modules_ladder_gives_the_message_it_gave_before(ladder, exc, message):
    assert _runner.failure_message(exc, ladder, "m") == (message, False)


def test_a_rung_can_send_the_traceback_along():
    ladder = (Failure(DockerException, lambda e: f"engine: {e}", traceback=True),)
    assert _runner.failure_message(DockerException("x"), ladder, "data_inventory") == ("engine: x", True)


def test_swarm_rebuilds_message_counts_the_stacks_done_when_it_fails():
    result = {"stacks": []}
    ladder = swarm_rebuild.ladder(result)
    result["stacks"] += [{"stack": "a"}, {"stack": "b"}]
    assert _runner.failure_message(RestoreError("x"), ladder, "m")[0] == "x (stacks done before this one: 2)"


# --- the effects, through a real AnsibleModule ----------------------------------------------------

def test_fail_json_carries_the_result_as_it_is_when_the_failure_happens(monkeypatch, capsys):
    module = module_with(monkeypatch)
    result = {"changed": False, "copied": []}

    def body():
        result["copied"].append("s1")
        raise CopyError("target full")

    out = outcome(capsys, lambda: _runner.run(module, body, name="snapshot_copy", result=result,
                                              ladder=(Failure(CopyError),)))
    assert out["failed"] is True and out["msg"] == "target full" and out["copied"] == ["s1"]
    assert "exception" not in out


def test_an_unexpected_error_names_the_module_and_brings_its_traceback(monkeypatch, capsys):
    # Ansible puts a traceback into the result when it was asked to (ansible-playbook -vvv, or
    # ANSIBLE_DISPLAY_TRACEBACK=error): asked here.
    monkeypatch.setattr(_traceback, "_is_traceback_enabled", lambda event: True)
    module = module_with(monkeypatch)
    out = outcome(capsys, lambda: _runner.run(module, raising(ZeroDivisionError("division by zero")),
                                              name="cert_info"))
    assert out["msg"] == "cert_info failed unexpectedly: division by zero"
    assert "ZeroDivisionError" in out["exception"]


def test_what_the_body_returns_comes_back_and_exit_json_in_it_passes_through(monkeypatch, capsys):
    module = module_with(monkeypatch)
    assert _runner.run(module, lambda: 42, name="m") == 42
    out = outcome(capsys, lambda: _runner.run(module, lambda: module.exit_json(changed=True, plan=[]), name="m"))
    assert out["changed"] is True and out["plan"] == [] and "failed" not in out


def test_the_journal_is_repaired_first_outside_check_mode_only(monkeypatch):
    calls = []
    monkeypatch.setattr(_runner, "repair_journal", lambda client: calls.append(client) or [{"container": "c1"}])
    result: dict = {}
    seen = []
    _runner.run(module_with(monkeypatch), lambda: seen.append(list(calls)), name="m", result=result,
                repair=lambda: "the client")
    assert calls == ["the client"] and seen == [["the client"]] and result["repaired"] == [{"container": "c1"}]

    calls.clear()
    result = {}
    _runner.run(module_with(monkeypatch, check=True), lambda: None, name="m", result=result, repair=lambda: "c")
    assert calls == [] and "repaired" not in result


def test_the_guard_turns_sigterm_into_an_exit_that_runs_finally_blocks(monkeypatch):
    cleaned = []

    def body():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # not reached: the handler raises at once
        finally:
            cleaned.append(True)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit, match="stopped by signal"):
        _runner.run(module_with(monkeypatch), body, name="m", guard=True)
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) is before


def test_check_paths_fails_on_a_relative_path_and_names_it(monkeypatch, capsys):
    module = module_with(monkeypatch, report="inventory.md", dest="/var/lib/x")
    out = outcome(capsys, lambda: _runner.check_paths(module, ("report", "dest")))
    assert out["msg"].startswith("report='inventory.md': give absolute paths on the host")
    _runner.check_paths(module_with(monkeypatch, dest="/var/lib/x"), ("dest",))  # absolute: no failure
