"""The quiesce journal on the host: what stays when containers did not come back."""

from __future__ import annotations

import json
import os

from ansible_collections.lifeboat.docker.plugins.module_utils._quiesce import Journal, journal_dir


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
