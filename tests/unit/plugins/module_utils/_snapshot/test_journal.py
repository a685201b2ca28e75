"""The quiesce journal on the host: what stays when containers did not come back."""

from __future__ import annotations

import json
import os

from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import Journal, journal_dir


def test_journal_is_removed_when_everything_came_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_STATE_DIR", str(tmp_path))
    journal = Journal("snapshot x")
    journal.record("id1", "web", "stop")
    journal.record("id2", "db", "pause")
    journal.done("id2")
    assert os.listdir(journal_dir()) == [os.path.basename(journal.path)]
    journal.done("id1")
    assert os.listdir(journal_dir()) == []
    journal.close()
    assert os.listdir(journal_dir()) == []


def test_journal_of_a_container_that_did_not_come_back_stays_for_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_STATE_DIR", str(tmp_path))
    journal = Journal("snapshot x")
    journal.record("id1", "web", "stop")
    journal.record("id2", "app", "pause")
    journal.done("id1")  # web started again; app's unpause failed, so done() was not called
    journal.close()
    [name] = os.listdir(journal_dir())
    with open(os.path.join(journal_dir(), name), encoding="utf-8") as fh:
        doc = json.load(fh)
    assert [c["name"] for c in doc["containers"]] == ["app"] and doc["pid"] == os.getpid()


def test_a_sigterm_while_a_container_is_stopped_or_started_waits_until_that_is_done():
    """The signal is real (sent to this process); what it interrupts is stood in by a sleep."""
    import signal
    import time

    import pytest

    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import TerminationGuard, deferred_signals

    done = []
    with pytest.raises(SystemExit, match="stopped by signal"):
        with TerminationGuard():
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler ran meanwhile and held the signal
                done.append("stop finished")
            done.append("never")  # the held signal takes effect here
    assert done == ["stop finished"]
    # On the way out (cleanup after the first signal), further signals are ignored.
    with pytest.raises(SystemExit):
        with TerminationGuard():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                done.append("cleanup finished")
    assert done == ["stop finished", "cleanup finished"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
