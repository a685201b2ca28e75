"""The pure parts of swarm support: service records, the inventory's swarm section and units,
the stack policy, compose files rebuilt from specs, and the manifest's swarm object references."""

from __future__ import annotations

import json

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.copy import object_refs
from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    PolicyError,
    build_inventory,
    validate_policy,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import (
    SwarmError,
    compose_from_specs,
    db_unit_id,
    given_stacks,
    inventory_section,
    service_record,
    services_of,
)
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm_apply import (
    RebuildError,
    pick_stacks,
    stack_of_unit,
    swarm_section,
    unit_service,
)
from ansible_collections.lifeboat.docker.tests.unit.plugins.module_utils.inventory_data import container, raw, scan, vol, volume

NODE = "node0000000000000000000001"
NETS = [{"Name": "maps_backend", "Id": "netback", "Driver": "overlay", "Scope": "swarm",
         "Labels": {"com.docker.stack.namespace": "maps"}, "Attachable": True},
        {"Name": "shared_edge", "Id": "netedge", "Driver": "overlay", "Scope": "swarm", "Labels": {}},
        {"Name": "ingress", "Id": "netingress", "Driver": "overlay", "Scope": "swarm"}]


def service(name: str, sid: str, *, replicas: int | None = 1, image: str = "lifeboat-test/busybox:latest",
            env: list[str] | None = None, mounts: list[dict] | None = None, labels: dict | None = None,
            constraints: list[str] | None = None, networks: list[dict] | None = None) -> dict:
    short = name.split("_", 1)[1]
    return {
        "ID": sid,
        "Version": {"Index": 42},
        "Spec": {
            "Name": name,
            "Labels": dict({"com.docker.stack.namespace": "maps", "com.docker.stack.image": image}, **(labels or {})),
            "TaskTemplate": {
                "ContainerSpec": {"Image": image + "@sha256:" + "ab" * 32, "Env": env or [],
                                  "Labels": {"com.docker.stack.namespace": "maps", "role": short},
                                  "Mounts": mounts or [], "StopGracePeriod": 2_000_000_000,
                                  "Args": ["sleep", "1000"]},
                "Placement": {"Constraints": constraints or []},
                "Networks": networks if networks is not None else [{"Target": "netback", "Aliases": [short]}],
                "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0},
            },
            "Mode": {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}},
            "EndpointSpec": {"Mode": "vip"},
        },
    }


def task_container(name: str, service_name: str, sid: str, slot: int, mounts: list[dict], **kw) -> dict:
    labels = {"com.docker.swarm.service.id": sid, "com.docker.swarm.service.name": service_name,
              "com.docker.swarm.task.name": f"{service_name}.{slot}.task{slot}{sid}",
              "com.docker.stack.namespace": "maps", "com.docker.swarm.node.id": NODE}
    return container(name, mounts=mounts, labels=labels, **kw)


def task(sid: str, slot: int, cid: str, node: str = NODE) -> dict:
    return {"ID": f"task{slot}{sid}", "ServiceID": sid, "NodeID": node, "Slot": slot, "DesiredState": "running",
            "Status": {"State": "running", "ContainerStatus": {"ContainerID": cid}}}


@pytest.fixture()
def stack_raw() -> dict:
    db = task_container("maps_db.1.abc", "maps_db", "svcdb", 1, [vol("maps_db-data", "/var/lib/postgresql/data")],
                        image="lifeboat-test/postgis:15-3", env=["POSTGRES_PASSWORD=topsecret", "POSTGRES_DB=maps"],
                        cmd=["postgres"])
    reg = task_container("maps_registrar.1.def", "maps_registrar", "svcreg", 1, [vol("maps_instance-data", "/instances")])
    ren1 = task_container("maps_renderer.1.ghi", "maps_renderer", "svcren", 1,
                          [vol("maps_instance-data", "/instances")])
    ren2 = task_container("maps_renderer.2.jkl", "maps_renderer", "svcren", 2,
                          [vol("maps_instance-data", "/instances")])
    stack_label = {"com.docker.stack.namespace": "maps"}
    data = raw([db, reg, ren1, ren2], [volume("maps_db-data", stack_label), volume("maps_instance-data", stack_label),
                                       volume("maps_unused", stack_label)], NETS)
    data["swarm"] = {
        "node_id": NODE, "cluster_id": "cluster1", "manager": True, "addr": "127.0.0.1",
        "nodes": [{"ID": NODE, "Description": {"Hostname": "maps1"}, "Spec": {"Role": "manager"}}],
        "services": [
            service("maps_db", "svcdb", image="lifeboat-test/postgis:15-3",
                    env=["POSTGRES_PASSWORD=topsecret", "POSTGRES_DB=maps"],
                    mounts=[{"Type": "volume", "Source": "maps_db-data", "Target": "/var/lib/postgresql/data"}],
                    labels={"lifeboat.stack.compose_files": "/srv/maps/stack.yml, /srv/maps/prod.yml"}),
            service("maps_registrar", "svcreg",
                    mounts=[{"Type": "volume", "Source": "maps_instance-data", "Target": "/instances"},
                            {"Type": "bind", "Source": "/srv/maps/conf", "Target": "/conf", "ReadOnly": True}],
                    networks=[{"Target": "netback", "Aliases": ["registrar", "reg"]}, {"Target": "netedge"}]),
            service("maps_renderer", "svcren", replicas=2, constraints=["node.role == manager"],
                    mounts=[{"Type": "volume", "Source": "maps_instance-data", "Target": "/instances"}]),
        ],
        "tasks": [task("svcdb", 1, db["Id"]), task("svcreg", 1, reg["Id"]), task("svcren", 1, ren1["Id"]),
                  task("svcren", 2, ren2["Id"])],
    }
    return data


def test_service_record_keeps_names_of_environment_never_values(stack_raw):
    rec = service_record(stack_raw["swarm"]["services"][0], {"netback": "maps_backend"})
    assert rec["env_names"] == ["POSTGRES_DB", "POSTGRES_PASSWORD"]
    assert "topsecret" not in json.dumps(rec)
    assert rec["short_name"] == "db" and rec["stack"] == "maps" and rec["replicas"] == 1
    assert rec["image"] == "lifeboat-test/postgis:15-3" and rec["image_digest"] == "sha256:" + "ab" * 32
    assert rec["labels"] == {"lifeboat.stack.compose_files": "/srv/maps/stack.yml, /srv/maps/prod.yml"}
    assert rec["container_labels"] == {"role": "db"}
    assert rec["networks"] == [{"name": "maps_backend", "aliases": []}]  # the short-name alias is implied
    assert rec["stop_grace_period"] == "2s" and rec["restart_policy"]["delay"] == "5s"
    glob = service_record(service("maps_agent", "svcagent", replicas=None), {})
    assert glob["mode"] == "global" and glob["replicas"] is None


def test_inventory_section_lists_services_tasks_and_this_nodes_volumes(stack_raw):
    section = inventory_section(stack_raw)
    assert section["node"] == {"id": NODE, "hostname": "maps1", "role": "manager", "manager": True,
                               "cluster_id": "cluster1", "addr": "127.0.0.1", "nodes": 1}
    by_name = {s["name"]: s for s in section["services"]}
    ren = by_name["maps_renderer"]
    assert ren["replicas"] == 2 and ren["running"] == 2 and ren["nodes"] == ["maps1"]
    assert [t["container"] for t in ren["tasks"]] == ["maps_renderer.1.ghi", "maps_renderer.2.jkl"]
    assert ren["volumes"] == ["maps_instance-data"] and ren["constraints"] == ["node.role == manager"]
    (stack,) = section["stacks"]
    assert stack["services"] == ["maps_db", "maps_registrar", "maps_renderer"]
    assert stack["volumes"] == ["maps_db-data", "maps_instance-data", "maps_unused"]
    assert stack["compose_files"] == ["/srv/maps/stack.yml", "/srv/maps/prod.yml"]
    assert stack["compose_files_from"] == "label lifeboat.stack.compose_files on service maps_db"
    assert inventory_section(raw([], [])) is None


def test_a_worker_knows_its_own_tasks_only(stack_raw):
    stack_raw["swarm"].update(manager=False, services=[], tasks=[], nodes=[])
    services = {s["name"]: s for s in services_of(stack_raw)}
    assert services["maps_renderer"]["running"] == 2 and services["maps_renderer"]["replicas"] is None
    assert services["maps_db"]["volumes"] == ["maps_db-data"]


def test_units_name_the_service(stack_raw):
    scans = {"volume:maps_db-data": scan(markers={"postgres": "."}), "volume:maps_instance-data": scan()}
    tools = {"maps_db.1.abc": {"engine": "postgres", "tool": "pg_dumpall", "error": None}}
    result = build_inventory(stack_raw, scans, None, tools)
    units = {u["id"]: u for u in result["units"]}
    db = units["db:maps_db"]
    assert db["container"] == "maps_db.1.abc" and db["service"] == "maps_db" and db["strategy"] == "dump"
    shared = units["volume:maps_instance-data"]
    assert shared["services"] == ["maps_registrar", "maps_renderer"]
    assert shared["strategy"] == "pause"  # the default for swarm writers; stop scales (see _quiesce)
    assert units["volume:maps_db-data"]["strategy"] == "skip"
    assert [u["id"] for u in result["units"]] == sorted(units)
    assert result["swarm"]["stacks"][0]["name"] == "maps"
    assert db_unit_id("maps_db", 3, "2") == "db:maps_db.2" and db_unit_id("maps_db", 1, "1") == "db:maps_db"


def test_a_policy_names_a_swarm_database_by_the_id_the_inventory_prints(stack_raw):
    scans = {"volume:maps_db-data": scan(markers={"postgres": "PG_VERSION"})}
    tools = {"maps_db.1.abc": {"engine": "postgres", "tool": "pg_dumpall", "error": None}}
    policy = validate_policy({"db:maps_db": {"strategy": "skip", "reason": "a replica elsewhere holds it"}})
    result = build_inventory(stack_raw, scans, policy, tools)
    units = {u["id"]: u for u in result["units"]}
    assert units["db:maps_db"]["strategy"] == "skip" and units["db:maps_db"]["declared"] is True
    assert not [f for f in result["findings"] if f["code"] == "policy_unmatched"], result["findings"]


def test_stack_policy_entries(stack_raw):
    policy = validate_policy({"stack:maps": {"compose_files": ["/srv/maps/given.yml"]},
                              "maps_instance-data": "stop"})
    assert policy["stack:maps"] == {"compose_files": ["/srv/maps/given.yml"], "reason": None}
    result = build_inventory(stack_raw, {}, policy)
    assert result["swarm"]["stacks"][0]["compose_files"] == ["/srv/maps/given.yml"]
    assert result["swarm"]["stacks"][0]["compose_files_from"] == "policy entry 'stack:maps'"
    assert not [f for f in result["findings"] if f["code"] == "policy_unmatched"], result["findings"]
    # Only stack entries: no data is declared, so nothing is undeclared (the default backup passes).
    only_stacks = build_inventory(stack_raw, {"volume:maps_instance-data": scan(files=3, size=100)},
                                  validate_policy({"stack:maps": {"compose_files": ["/srv/maps/given.yml"]}}))
    assert only_stacks["undeclared"] == []
    declared = build_inventory(stack_raw, {"volume:maps_instance-data": scan(files=3, size=100)},
                               validate_policy({"stack:maps": {"compose_files": ["/srv/maps/given.yml"]},
                                                "maps_db-data": {}}))
    assert "volume:maps_instance-data" in [u["id"] for u in declared["undeclared"]]
    gone = build_inventory(stack_raw, {}, validate_policy({"stack:other": {"compose_files": ["/x.yml"]}}))
    assert [f["subject"] for f in gone["findings"] if f["code"] == "policy_unmatched"] == ["stack:other"]
    with pytest.raises(PolicyError, match="absolute paths"):
        validate_policy({"stack:maps": {"compose_files": ["stack.yml"]}})
    with pytest.raises(PolicyError, match="unknown setting.*strategy"):
        validate_policy({"stack:maps": "stop"})


def test_compose_from_specs(stack_raw):
    names = {n["Id"]: n["Name"] for n in NETS}
    stack = {"name": "maps",
             "services": [service_record(s, names) for s in stack_raw["swarm"]["services"]],
             "networks": [{"name": "maps_backend", "driver": "overlay", "attachable": True, "external": False},
                          {"name": "shared_edge", "driver": "overlay", "external": True}],
             "volumes": [{"name": "maps_db-data"}, {"name": "maps_instance-data"}]}
    doc, missing = compose_from_specs(stack, {"db": {"POSTGRES_PASSWORD": "pw"}, "*": {"POSTGRES_DB": "maps"}})
    assert missing == []
    assert doc["version"] == "3.8"
    db = doc["services"]["db"]
    assert db["environment"] == {"POSTGRES_DB": "maps", "POSTGRES_PASSWORD": "pw"}
    assert db["image"] == "lifeboat-test/postgis:15-3@sha256:" + "ab" * 32
    assert db["volumes"] == [{"type": "volume", "target": "/var/lib/postgresql/data", "source": "db-data"}]
    assert db["deploy"]["labels"] == {"lifeboat.stack.compose_files": "/srv/maps/stack.yml, /srv/maps/prod.yml"}
    assert db["labels"] == {"role": "db"} and db["command"] == ["sleep", "1000"]
    reg = doc["services"]["registrar"]
    assert reg["volumes"][1] == {"type": "bind", "target": "/conf", "source": "/srv/maps/conf", "read_only": True}
    assert reg["networks"] == {"backend": {"aliases": ["reg"]}, "shared_edge": None}  # "registrar" is implied
    ren = doc["services"]["renderer"]
    assert ren["deploy"]["replicas"] == 2 and ren["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert doc["networks"] == {"backend": {"driver": "overlay", "attachable": True},
                               "shared_edge": {"external": True, "name": "shared_edge"}}
    assert doc["volumes"] == {"db-data": {}, "instance-data": {}}
    _doc, missing = compose_from_specs(stack, {})
    assert missing == ["maps_db: POSTGRES_DB", "maps_db: POSTGRES_PASSWORD"]


def test_swarm_objects_are_found_by_prune_copy_and_the_sealed_record():
    ref = {"sha256": "c" * 64, "size": 321}
    manifest = {"id": "20261122T103000Z-maps1-abcdef", "host": "maps1", "units": [],
                "swarm": {"version": 1, "stacks": [{"name": "maps", "compose": {
                    "from": "label", "files": [{"path": "/srv/maps/stack.yml", "name": "stack.yml", "object": ref}]},
                    "services": []}, {"name": "plain", "compose": None, "services": []}]}}
    assert mf.swarm_refs(manifest) == [ref]
    assert "c" * 64 in mf.objects_of(manifest)
    assert object_refs(manifest)["c" * 64] == 321
    sealed = mf.sealed_record(manifest, {"sha256": "d" * 64, "size": 10}, ["age1xyz"])
    assert sealed["swarm"] == {"objects": [ref]}
    assert "stack.yml" not in json.dumps(sealed)
    assert "c" * 64 in mf.objects_of(sealed) and object_refs(sealed)["c" * 64] == 321


def test_given_stacks_and_picking_stacks():
    assert given_stacks(["maps", {"name": "tiles", "compose_files": ["/srv/t.yml"]}]) == {
        "maps": {"compose_files": [], "compose_files_from": None},
        "tiles": {"compose_files": ["/srv/t.yml"], "compose_files_from": "the snapshot's swarm_stacks option"}}
    with pytest.raises(SwarmError, match="neither a stack name"):
        given_stacks([42])
    with pytest.raises(RebuildError, match="records no swarm stack"):
        swarm_section({"id": "x", "units": []})
    section = {"stacks": [{"name": "maps"}, {"name": "tiles"}]}
    assert [s["name"] for s in pick_stacks(section, [])] == ["maps", "tiles"]
    with pytest.raises(RebuildError, match="has no stack nope; it has maps, tiles"):
        pick_stacks(section, ["nope"])


def test_units_of_a_stack_in_a_manifest():
    stack = {"name": "maps", "volumes": [{"name": "maps_instance-data"}]}
    volume_unit = {"kind": "volume", "source": {"type": "volume", "name": "maps_instance-data", "labels": {}}}
    other = {"kind": "volume", "source": {"type": "volume", "name": "x", "labels": {}}}
    labels = {"com.docker.stack.namespace": "maps", "com.docker.swarm.service.name": "maps_db",
              "com.docker.swarm.task.name": "maps_db.1.xyz"}
    dump = {"kind": "database", "containers": [{"labels": labels}]}
    assert stack_of_unit(volume_unit, stack) and not stack_of_unit(other, stack) and stack_of_unit(dump, stack)
    assert unit_service(dump) == ("maps_db", "1")
    assert unit_service({"kind": "database", "containers": [{"labels": {}}]}) == (None, None)


def test_extension_tables_may_hold_more_rows_after_a_restore():
    """PostGIS: CREATE EXTENSION fills spatial_ref_sys, pg_dump dumps only the rows added by hand."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import compare_counts

    expected = {"maps": {'"public"."parcels"': 4, '"public"."spatial_ref_sys"': 0}}
    actual = {"maps": {'"public"."parcels"': 4, '"public"."spatial_ref_sys"': 8500}}
    assert compare_counts(expected, actual) == ['maps."public"."spatial_ref_sys": 8500 rows, 0 at dump time']
    filled = {"maps": {'"public"."spatial_ref_sys"'}}
    assert compare_counts(expected, actual, filled) == []
    actual["maps"]['"public"."parcels"'] = 3
    assert compare_counts(expected, actual, filled) == ['maps."public"."parcels": 3 rows, 4 at dump time']
    actual["maps"]['"public"."spatial_ref_sys"'] = 5
    assert compare_counts({"maps": {'"public"."spatial_ref_sys"': 10}}, actual, filled) == \
        ['maps."public"."spatial_ref_sys": 5 rows, 10 at dump time']


def test_a_swarm_dump_goes_into_the_task_that_runs_its_service_now():
    from ansible_collections.lifeboat.docker.plugins.module_utils._restore.databases import running_task

    def task(name: str, service: str, status: str = "running") -> dict:
        return {"Name": "/" + name, "State": {"Status": status},
                "Config": {"Labels": {"com.docker.swarm.service.name": service,
                                      "com.docker.swarm.task.name": name.rsplit(".", 1)[0] + ".x"}}}

    state = {"containers": [task("maps_redis.1.old", "maps_redis", "exited"), task("maps_redis.1.new", "maps_redis"),
                            task("maps_db.1.aaa", "maps_db"), task("maps_renderer.2.bbb", "maps_renderer"),
                            task("maps_renderer.1.ccc", "maps_renderer")]}
    assert running_task(state, "maps_redis", "1") == "maps_redis.1.new"
    assert running_task(state, "maps_renderer", "1") == "maps_renderer.1.ccc"
    assert running_task(state, "maps_renderer", None) == "maps_renderer.1.ccc"
    assert running_task(state, "maps_gone", None) is None
