"""The backup role's filters: summary lines and node_exporter metrics from a snapshot result."""

from __future__ import annotations

import re

from ansible_collections.lifeboat.docker.plugins.filter.backup_report import (
    backup_metrics, backup_summary, backup_totals, human_bytes)

RESULT = {
    "snapshot_id": "20261122T103000Z-web1-3fa2c1", "complete": False, "host": "web1",
    "units": {
        "volume:uploads": {"strategy": "stop", "bytes": 10 * 1024 * 1024, "bytes_read": 10 * 1024 * 1024,
                           "bytes_stored": 2 * 1024 * 1024, "new_bytes_stored": 1024, "seconds": 1.42,
                           "downtime": {"web": 1.61, "worker": 2.0}, "reused_from": None},
        "db:pg": {"strategy": "dump", "bytes": 3000, "bytes_stored": 1000, "new_bytes_stored": 1000,
                  "seconds": 0.5, "downtime": {}},
        "volume:pgdata": {"strategy": "skip", "reason": "dumped as db:pg"},
        'volume:we"ird': {"strategy": "live", "bytes": 0, "bytes_stored": 100, "seconds": 0.1},
    },
    "failed_units": [{"id": "volume:cache", "error": "pre hook exited 3"}],
}


def test_human_bytes():
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024 ** 3) == "3.0 GiB"
    assert human_bytes(None) == "-"


def test_summary_has_one_aligned_line_per_unit_and_totals():
    lines = backup_summary(RESULT, "/var/backups/lifeboat", 4.25)
    assert lines[0] == "Snapshot 20261122T103000Z-web1-3fa2c1 in /var/backups/lifeboat (incomplete)"
    rows = [line for line in lines if re.match(r"^(unit|(volume|db):\S*[^:\s]) ", line)]
    assert len(rows) == 6  # header and five units
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in rows}
    assert len(starts) == 1, rows  # the strategy column is aligned
    uploads = next(line for line in rows if line.startswith("volume:uploads"))
    assert uploads.split()[1:] == ["stop", "10.0", "MiB", "2.0", "MiB", "5.0x", "1.4", "web", "1.6", "s,",
                                   "worker", "2.0", "s"]
    assert next(line for line in rows if line.startswith("volume:cache")).split()[1] == "FAILED"
    assert "volume:cache: FAILED: pre hook exited 3" in lines
    assert "volume:pgdata: skipped: dumped as db:pg" in lines
    total = lines[-1]
    assert total.startswith("Total: 5 units (3 captured, 1 skipped, 1 failed)")
    assert ", 4.2 s," in total and "downtime web 1.6 s, worker 2.0 s" in total


def test_summary_of_a_module_failure_names_it():
    lines = backup_summary({"failed": True, "msg": "repository is not writable"}, "/r")
    assert lines[0] == "Snapshot none in /r (not written)"
    assert "FAILED: repository is not writable" in lines


def test_totals():
    totals = backup_totals(RESULT)
    assert totals["captured"] == 3 and totals["failed"] == 1 and totals["skipped"] == 1
    assert totals["bytes"] == 10 * 1024 * 1024 + 3000
    assert totals["new_bytes_stored"] == 2024


def test_metrics_keep_the_last_success_of_a_failed_unit():
    first = backup_metrics({"snapshot_id": "x", "complete": True,
                            "units": {"volume:cache": {"strategy": "stop", "bytes": 5, "bytes_stored": 9, "seconds": 1}}},
                           "/r", 1000.0)
    assert 'lifeboat_backup_unit_last_success_timestamp_seconds{repository="/r",unit="volume:cache"} 1000.000' in first
    assert 'lifeboat_backup_success{repository="/r"} 1' in first
    second = backup_metrics(RESULT, "/r", 2000.0, previous=first)
    assert 'lifeboat_backup_unit_success{repository="/r",unit="volume:cache"} 0' in second
    assert 'lifeboat_backup_unit_last_success_timestamp_seconds{repository="/r",unit="volume:cache"} 1000.000' in second
    assert 'lifeboat_backup_unit_last_success_timestamp_seconds{repository="/r",unit="volume:uploads"} 2000.000' in second
    assert 'lifeboat_backup_last_success_timestamp_seconds{repository="/r"} 1000.000' in second
    assert 'lifeboat_backup_success{repository="/r"} 0' in second
    assert 'unit="volume:we\\"ird"' in second  # label values are escaped
    # every sample belongs to a declared gauge
    declared = set(re.findall(r"^# TYPE (\S+) gauge$", second, re.M))
    samples = set(re.findall(r"^(lifeboat_\w+)\{", second, re.M))
    assert samples == declared


def test_metrics_of_another_repository_do_not_leak():
    first = backup_metrics({"snapshot_id": "x", "units": {"volume:a": {"strategy": "live"}}}, "/one", 10.0)
    second = backup_metrics({"failed_units": [{"id": "volume:a", "error": "e"}], "units": {}}, "/two", 20.0, first)
    assert "unit_last_success_timestamp_seconds" not in second
