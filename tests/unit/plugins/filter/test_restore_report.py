"""The restore role's filters (pure): what does not run after a restore, told by container for
plain containers and by running tasks for swarm services, whose task containers a restore replaces."""

from __future__ import annotations

from ansible_collections.lifeboat.docker.plugins.filter.restore_report import restore_not_running, restore_plan_line


def c(name: str, state: str = "running", service: str | None = None) -> dict:
    return {"name": name, "state": state, "swarm": {"service": service} if service else None}


def test_replaced_swarm_tasks_count_by_service_and_plain_containers_by_name():
    before = [c("web"), c("db"), c("maps_redis.1.aaa", service="maps_redis"),
              c("maps_renderer.1.bbb", service="maps_renderer"), c("maps_renderer.2.ccc", service="maps_renderer"),
              c("stopped", state="exited")]
    after = [c("web"), c("db", state="exited"), c("maps_redis.1.zzz", service="maps_redis"),
             c("maps_renderer.1.yyy", service="maps_renderer")]
    assert restore_not_running(before, after) == {"containers": ["db"],
                                                  "services": ["maps_renderer (1 of 2 tasks run)"]}
    after.append(c("maps_renderer.2.xxx", service="maps_renderer"))
    after[1] = c("db")
    assert restore_not_running(before, after) == {"containers": [], "services": []}


def test_the_plan_line_says_how_redis_is_restored():
    line = restore_plan_line({"item": "db:queue", "target": "queue", "plan": {
        "target_type": "container", "engine": "redis", "existing": ["db0"],
        "method": "the RDB is placed while queue is stopped and its appendonly file is rebuilt"}})
    assert line.startswith("db:queue -> container queue (redis): holds db0: REPLACED")
    assert line.endswith("; the RDB is placed while queue is stopped and its appendonly file is rebuilt")
