"""The swarm rebuild's choices before it touches anything (_swarm_rebuild): which snapshot V(latest)
means, what check mode reports for each stack, and which stacks are deployed already."""

from __future__ import annotations

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._common.engine import DockerException
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm_apply import (
    check_plan,
    choose_snapshot,
    deployed_stacks,
    no_swarm_snapshot,
)

LABELS = {"com.docker.stack.namespace": "maps", "com.docker.swarm.service.name": "maps_db"}


def man(sid: str, swarm: bool = True, tags=(), complete: bool = True) -> dict:
    out = {"id": sid, "host": sid.split("-")[1], "time": mf.iso(mf.parse_snapshot_id(sid)[0]), "tags": list(tags),
           "complete": complete, "units": []}
    if swarm:
        out["swarm"] = {"stacks": [{"name": "maps"}]}
    return out


def test_latest_is_the_newest_complete_snapshot_that_records_a_swarm():
    older = man("20261101T000000Z-mgr-000001")
    newest_plain = man("20261103T000000Z-mgr-000003", swarm=False)
    newer = man("20261102T000000Z-mgr-000002")
    pre_restore = man("20261104T000000Z-mgr-000004", tags=[mf.PRE_RESTORE_TAG])
    other_host = man("20261105T000000Z-web-000005")
    manifests = [other_host, pre_restore, newest_plain, newer, older]
    assert choose_snapshot(manifests, None)["id"] == other_host["id"]
    assert choose_snapshot(manifests, "mgr")["id"] == newer["id"]
    assert choose_snapshot([newest_plain], None) is None


def test_the_message_without_a_swarm_snapshot_says_what_to_do():
    assert no_swarm_snapshot("/var/backups/lifeboat", "mgr") == (
        "/var/backups/lifeboat has no snapshot that records a swarm of host mgr: take one with "
        "lifeboat.docker.snapshot on the swarm's manager")
    assert "of host" not in no_swarm_snapshot("/r", None)


def test_check_plan_lists_per_stack_its_source_and_the_units_it_restores():
    stacks = [{"name": "maps", "volumes": [{"name": "maps_tiles"}], "compose": {"files": ["docker-compose.yml"]}},
              {"name": "web", "volumes": []}]
    units = [
        {"id": "volume:maps_tiles", "kind": "volume", "object": {"sha256": "a" * 64},
         "source": {"type": "volume", "name": "maps_tiles", "labels": {}}},
        {"id": "volume:maps_empty", "kind": "volume", "source": {"type": "volume", "name": "maps_tiles"}},  # no data
        {"id": "db:maps_db", "kind": "database", "object": {"sha256": "b" * 64}, "containers": [{"labels": LABELS}]},
        {"id": "volume:other", "kind": "volume", "object": {"sha256": "c" * 64},
         "source": {"type": "volume", "name": "other", "labels": {}}},
    ]
    plan = check_plan({"units": units}, stacks, keep=["web"], source="auto")
    assert plan == [
        {"stack": "maps", "action": "rebuild", "source": "compose", "volumes": ["volume:maps_tiles"],
         "dumps": ["db:maps_db"]},
        {"stack": "web", "action": "present", "source": "specs", "volumes": [], "dumps": []},
    ]
    assert check_plan({"units": units}, stacks, keep=[], source="specs")[0]["source"] == "specs"


class Engine:
    """The engine's answer to `docker service ls --filter label=...` (a recorded answer: no swarm runs
    in a unit test; tests/integration/test_swarm.py runs the real one)."""

    def __init__(self, deployed, manager=True):
        self.deployed, self.manager, self.api = deployed, manager, self

    def services(self, filters):
        if not self.manager:
            raise DockerException("This node is not a swarm manager.")
        name = filters["label"].split("=", 1)[1]
        return [{"ID": "x"}] if name in self.deployed else []


def test_deployed_stacks_are_those_with_services_and_none_on_a_non_manager():
    stacks = [{"name": "maps"}, {"name": "web"}]
    assert deployed_stacks(Engine({"web"}), stacks) == ["web"]
    assert deployed_stacks(Engine({"web"}, manager=False), stacks) == []
