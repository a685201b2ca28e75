"""The storage-concept document: stable bytes, the sections operators need, atomic writes."""

from __future__ import annotations

import os
import random
import stat

from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    build_inventory,
    validate_policy,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.report import (
    diagram,
    read_text,
    render,
    write_atomic,
)
from ansible_collections.lifeboat.docker.tests.unit.plugins.module_utils.inventory_data import bind, container, raw, scan, vol, volume

HEX = "4d73c76e94abc555595225c5cf72ca5df2e20cdb4c2d3aee768b355580d3c95f"


def _host():
    return raw([
        container("postgres_db", image="lifeboat-test/postgres:15",
                  mounts=[vol("postgres_data", "/var/lib/postgresql/data")]),
        container("user_data", state="created", started=False, mounts=[vol(HEX, "/home/ros/user_data")]),
        container("nginx", image="lifeboat-test/nginx:latest",
                  mounts=[bind("/srv/nginx/certs", "/etc/nginx/certs", rw=False),
                          bind("/srv/www|odd", "/var/www")]),
        container("dockerbridge", mounts=[bind("/var/run/docker.sock", "/var/run/docker.sock")]),
    ], [volume("postgres_data"), volume(HEX), volume("old_stuff")])


def _scans():
    return {"volume:postgres_data": scan(markers={"postgres": "."}, size=40 * 1024 * 1024),
            f"volume:{HEX}": scan(), "volume:old_stuff": scan(),
            "path:/srv/nginx/certs": scan(secret_files=["server.key"]),
            "path:/srv/www|odd": scan(sockets=["run/php.sock"])}


TOOLS = {"postgres_db": {"engine": "postgres", "tool": "pg_dump"}}


def _render(policy=None, shuffle=None):
    data = _host()
    if shuffle is not None:
        for key in ("containers", "volumes", "images"):
            shuffle.shuffle(data[key])
        for c in data["containers"]:
            shuffle.shuffle(c["Mounts"])
    policy = validate_policy(policy) if policy is not None else None
    inventory = build_inventory(data, _scans(), policy, TOOLS)
    return render(inventory, "ease1", policy_given=policy is not None)


def test_same_state_same_bytes_whatever_the_engine_order():
    first = _render({"postgres_data": {}})
    for seed in range(5):
        assert _render({"postgres_data": {}}, random.Random(seed)) == first


def test_no_timestamps_or_ids():
    text = _render()
    assert "2026" not in text
    assert "sha256:" not in text


def test_sections_and_content():
    text = _render({"postgres_data": {}, "/srv/nginx": {}})
    assert text.startswith("# Storage concept of ease1\n")
    for heading in ("## Summary", "## Backup plan", "## Host paths", "## Volumes", "## Containers",
                    "## Confidential data", "## Not captured, and why", "## Undeclared", "## Findings"):
        assert f"\n{heading}\n" in text
    assert "| `db:postgres_db` | dump | PostgreSQL |" in text
    assert "- `path:/srv/nginx/certs`:" in text  # confidential
    assert "`/var/run/docker.sock` (socket, used by dockerbridge): sockets are never captured" in text
    assert "- `volume:postgres_data`: PostgreSQL data directory" in text  # skipped, with why
    assert "inside `path:/srv/www|odd`: `run/php.sock`" in text
    undeclared = text.split("## Undeclared\n", 1)[1].split("## Findings", 1)[0]
    assert f"- `volume:{HEX}`" in undeclared and "- `volume:old_stuff`" in undeclared
    assert "postgres_data" not in undeclared
    assert "10-100 MiB" in text  # sizes as classes
    assert "docker_socket_mounted" in text


def test_table_cells_are_escaped():
    text = _render()
    assert "`/srv/www\\|odd`" in text
    for line in text.splitlines():
        if line.startswith("| `path:/srv/www"):
            assert line.count(" | ") == 7  # eight columns, the | inside the path escaped


def test_without_policy_undeclared_is_not_checked():
    text = _render()
    assert "No policy was given" in text
    assert "Undeclared: not checked (no policy given)" in text


def test_empty_host_renders():
    text = render(build_inventory(raw([], [], [])), "empty")
    assert "Nothing to capture" in text and "No volumes." in text and "\n## Findings\n\nNone.\n" in text


def test_write_atomic_new_file_is_0644_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "concept.md"
    write_atomic(str(target), "hello\n")
    assert target.read_text() == "hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["concept.md"]
    assert read_text(str(target)) == "hello\n"
    assert read_text(str(tmp_path / "missing.md")) is None


def test_write_atomic_keeps_existing_mode(tmp_path):
    target = tmp_path / "concept.md"
    target.write_text("old")
    target.chmod(0o600)
    write_atomic(str(target), "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["concept.md"]


def test_diagram_draws_containers_mounts_units_and_dumps():
    text = _render({"postgres_data": {}, "/srv/nginx": {}})
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    assert lines[0] == "flowchart LR"
    label = {line.split("[", 1)[0].split("(", 1)[0].strip(): line for line in lines[1:]
             if line.startswith("  n") and "--" not in line and "class " not in line}
    nginx = next(k for k, v in label.items() if '"nginx"' in v)
    certs = next(k for k, v in label.items() if "path /srv/nginx/certs" in v)
    assert f'  {nginx} -- "ro /etc/nginx/certs" --> {certs}' in lines
    pgdata = next(k for k, v in label.items() if "volume postgres_data" in v)
    assert "skip" in label[pgdata] and f"  class {pgdata} skipped" in lines  # captured by the dump
    dump = next(k for k, v in label.items() if "db:postgres_db" in v)
    db = next(k for k, v in label.items() if '"postgres_db"' in v)
    assert f"  {db} -- dump --> {dump}" in lines and "dump" in label[dump]
    assert "docker.sock" not in block  # sockets are no data


def test_diagram_lines_of_an_item_do_not_change_when_other_items_come_and_go():
    """data_inventory's report is rewritten only when the host changed: a container added elsewhere
    on the host must not renumber the nodes of the others (CI saw it with tests running side by side)."""
    inventory = build_inventory(_host(), _scans(), None, TOOLS)
    fewer = dict(inventory, volumes=[v for v in inventory["volumes"] if v["name"] != "postgres_data"])
    full, reduced = "\n".join(diagram(inventory)), "\n".join(diagram(fewer))
    kept = [line for line in reduced.splitlines() if "nginx" in line]
    assert kept and all(line in full.splitlines() for line in kept)
    assert "postgres_data" in full and "postgres_data" not in reduced.split("db:", maxsplit=1)[0]
