"""The planning logic of data_inventory, without an engine."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._inventory.plan import (
    PolicyError,
    bind_kind,
    build_inventory,
    confidential_reason,
    database_candidates,
    detect_container_engine,
    is_anonymous_volume,
    match_policy,
    parse_depends_on,
    size_class,
    stop_order,
    undeclared_message,
    validate_policy,
)
from ansible_collections.lifeboat.docker.tests.unit.plugins.module_utils.inventory_data import bind, container, raw, scan, vol, volume

HEX = "4d73c76e94abc555595225c5cf72ca5df2e20cdb4c2d3aee768b355580d3c95f"
HEX2 = "a" * 64


def units_by_id(result):
    return {u["id"]: u for u in result["units"]}


def codes(result, severity=None):
    return [f["code"] for f in result["findings"] if severity is None or f["severity"] == severity]


# --- decision strength -------------------------------------------------------------------------

def _app(labels=None, vlabels=None):
    return raw([container("app", mounts=[vol("appdata", "/srv/data")], labels=labels)],
               [volume("appdata", vlabels)])


def test_default_running_writer_is_stopped():
    unit = units_by_id(build_inventory(_app(), {"volume:appdata": scan()}))["volume:appdata"]
    assert unit["strategy"] == "stop"
    assert unit["containers"] == ["app"]
    assert "app" in unit["reason"]


def test_container_label_beats_default():
    unit = units_by_id(build_inventory(_app(labels={"lifeboat.strategy": "live"})))["volume:appdata"]
    assert unit["strategy"] == "live"
    assert "label lifeboat.strategy=live on container app" in unit["reason"]


def test_volume_label_beats_container_label():
    result = build_inventory(_app(labels={"lifeboat.strategy": "live"},
                                  vlabels={"lifeboat.strategy": "pause"}))
    unit = units_by_id(result)["volume:appdata"]
    assert unit["strategy"] == "pause"
    assert unit["containers"] == ["app"]
    assert "volume appdata" in unit["reason"]


def test_policy_beats_labels():
    policy = validate_policy({"appdata": {"strategy": "skip", "reason": "cache"}})
    result = build_inventory(_app(labels={"lifeboat.strategy": "live"},
                                  vlabels={"lifeboat.strategy": "pause"}), policy=policy)
    unit = units_by_id(result)["volume:appdata"]
    assert unit["strategy"] == "skip"
    assert unit["declared"] is True
    assert "policy entry 'appdata'" in unit["reason"] and "cache" in unit["reason"]


def test_skip_label_and_exclude_and_order_labels():
    result = build_inventory(_app(vlabels={"lifeboat.skip": "true"}))
    assert units_by_id(result)["volume:appdata"]["strategy"] == "skip"
    result = build_inventory(_app(labels={"lifeboat.exclude": "cache/*, *.tmp", "lifeboat.order": "7"}))
    unit = units_by_id(result)["volume:appdata"]
    assert unit["exclude"] == ["cache/*", "*.tmp"]
    assert unit["order"] == 7


def test_policy_exclude_replaces_label_exclude_and_sockets_are_excluded():
    policy = validate_policy({"appdata": {"exclude": "logs/*"}})
    result = build_inventory(_app(labels={"lifeboat.exclude": "cache/*"}),
                             {"volume:appdata": scan(sockets=["run/app.sock"])}, policy=policy)
    assert units_by_id(result)["volume:appdata"]["exclude"] == ["logs/*", "run/app.sock"]


def test_invalid_label_is_a_warning_and_ignored():
    result = build_inventory(_app(labels={"lifeboat.strategy": "copy", "lifeboat.order": "first"}))
    assert units_by_id(result)["volume:appdata"]["strategy"] == "stop"
    assert codes(result, "warning").count("invalid_label") == 2


def test_read_only_and_unused_data_is_live():
    data = raw([container("reader", mounts=[vol("shared", "/srv", rw=False)])],
               [volume("shared"), volume("lonely")])
    result = build_inventory(data, {"volume:shared": scan(), "volume:lonely": scan()})
    units = units_by_id(result)
    assert units["volume:shared"]["strategy"] == "live"
    assert "read-only" in units["volume:shared"]["reason"]
    assert units["volume:lonely"]["strategy"] == "live"
    lonely = next(v for v in result["volumes"] if v["name"] == "lonely")
    assert lonely["unused"] is True
    assert ("unused_volume", "warning") in [(f["code"], f["severity"]) for f in result["findings"]]


def test_empty_unused_volume_is_only_info():
    result = build_inventory(raw([], [volume("empty")]), {"volume:empty": scan(data=False)})
    assert [(f["code"], f["severity"]) for f in result["findings"]] == [("unused_volume", "info")]


# --- detection ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, markers, engine", [
    ({"image": "lifeboat-test/postgres:15"}, {}, "postgres"),
    ({"image": "registry.example/team/postgis:16-3.4"}, {}, "postgres"),
    ({"image": "custom/db:1", "cmd": ["mariadbd"]}, {}, "mariadb"),
    ({"image": "mysql:8"}, {}, "mysql"),
    ({"image": "mysql:8", "env": ["MARIADB_ROOT_PASSWORD=x"]}, {}, "mariadb"),
    ({"image": "custom/app:1", "env": ["MYSQL_ROOT_PASSWORD=x"]}, {}, "mysql"),
    ({"image": "lifeboat-test/redis:latest"}, {}, "redis"),
    ({"image": "custom/cache:1", "cmd": ["redis-server", "--dir", "/data"]}, {}, "redis"),
    ({"image": "mongo:7"}, {}, "mongodb"),
    ({"image": "custom/thing:1"}, {"mongodb": "."}, "mongodb"),
    ({"image": "custom/thing:1"}, {"postgres": "15/main"}, "postgres"),
    ({"image": "custom/thing:1"}, {"redis": "."}, "redis"),
])
def test_database_detection(spec, markers, engine):
    dest = {"postgres": "/var/lib/postgresql/data", "mariadb": "/var/lib/mysql",
            "mysql": "/var/lib/mysql", "redis": "/data", "mongodb": "/data/db"}[engine]
    c = container("db", mounts=[vol("dbdata", dest)], **spec)
    data = raw([c], [volume("dbdata")])
    scans = {"volume:dbdata": scan(markers=markers)}
    assert database_candidates(data, scans) == {"db": engine}
    result = build_inventory(data, scans, dump_tools={"db": {"engine": engine, "tool": "dumper"}})
    units = units_by_id(result)
    assert units["db:db"]["engine"] == engine
    assert units["db:db"]["strategy"] == "dump"
    assert units["db:db"]["volume"] == "dbdata"
    assert units["volume:dbdata"]["strategy"] == "skip"
    assert "db:db" in units["volume:dbdata"]["reason"]


def test_app_with_database_client_env_is_no_database():
    c = container("app", image="custom/app:1", env=["POSTGRES_HOST=db", "POSTGRES_PASSWORD=x"],
                  mounts=[vol("uploads", "/srv/uploads")])
    data = raw([c], [volume("uploads")])
    assert database_candidates(data, {"volume:uploads": scan()}) == {}
    unit = units_by_id(build_inventory(data, {"volume:uploads": scan()}))["volume:uploads"]
    assert (unit["strategy"], unit["engine"]) == ("stop", "none")


@pytest.mark.parametrize("image", ["prometheuscommunity/postgres-exporter:1", "rediscommander/redis-commander",
                                   "mongo-express:1"])
def test_database_tools_are_no_databases(image):
    assert detect_container_engine(container("x", image=image))[0] is None


def test_sqlite_volume_is_stopped_not_dumped():
    data = raw([container("app", image="custom/app:1", mounts=[vol("appdb", "/srv")])], [volume("appdb")])
    scans = {"volume:appdb": scan(markers={"sqlite": "app.db"})}
    assert database_candidates(data, scans) == {}
    unit = units_by_id(build_inventory(data, scans))["volume:appdb"]
    assert (unit["strategy"], unit["engine"], unit["containers"]) == ("stop", "sqlite", ["app"])
    assert "SQLite" in unit["reason"]


def test_running_database_without_dump_tool_is_stopped_with_warning():
    c = container("mongo_db", image="custom/mongo-like:1", mounts=[vol("mongo_data", "/data/db")])
    data = raw([c], [volume("mongo_data")])
    scans = {"volume:mongo_data": scan(markers={"mongodb": "."})}
    result = build_inventory(data, scans, dump_tools={"mongo_db": {"engine": "mongodb", "tool": None}})
    units = units_by_id(result)
    assert "db:mongo_db" not in units
    assert units["volume:mongo_data"]["strategy"] == "stop"
    assert units["volume:mongo_data"]["engine"] == "mongodb"
    assert units["volume:mongo_data"]["containers"] == ["mongo_db"]
    assert "no_dump_tool" in codes(result, "warning")
    assert "mongodump" in next(f["message"] for f in result["findings"] if f["code"] == "no_dump_tool")


def test_stopped_database_is_copied_live_and_says_so():
    c = container("postgres_db", image="lifeboat-test/postgres:15", state="exited",
                  mounts=[vol("postgres_data", "/var/lib/postgresql/data")])
    data = raw([c], [volume("postgres_data")])
    scans = {"volume:postgres_data": scan(markers={"postgres": "."})}
    assert database_candidates(data, scans) == {}
    unit = units_by_id(build_inventory(data, scans))["volume:postgres_data"]
    assert (unit["strategy"], unit["engine"]) == ("live", "postgres")
    assert "not running" in unit["reason"] and "consistent" in unit["reason"]


def test_running_database_without_volume_is_dumped_from_its_layer():
    data = raw([container("cache", image="lifeboat-test/redis:latest")])
    result = build_inventory(data, {}, dump_tools={"cache": {"engine": "redis", "tool": "redis-cli"}})
    unit = units_by_id(result)["db:cache"]
    assert unit["strategy"] == "dump" and unit["volume"] is None and unit["container"] == "cache"


def test_config_bind_of_dumped_database_is_not_stopped():
    c = container("pg", image="lifeboat-test/postgres:15",
                  mounts=[vol("pgdata", "/var/lib/postgresql/data"),
                          bind("/srv/pg/init", "/docker-entrypoint-initdb.d")])
    data = raw([c], [volume("pgdata")])
    scans = {"volume:pgdata": scan(markers={"postgres": "."}), "path:/srv/pg/init": scan()}
    units = units_by_id(build_inventory(data, scans, dump_tools={"pg": {"tool": "pg_dump"}}))
    assert units["path:/srv/pg/init"]["strategy"] == "live"
    assert units["db:pg"]["strategy"] == "dump"


def test_policy_stop_on_database_volume_means_no_dump():
    c = container("pg", image="lifeboat-test/postgres:15", mounts=[vol("pgdata", "/var/lib/postgresql/data")])
    policy = validate_policy({"pgdata": "stop"})
    units = units_by_id(build_inventory(raw([c], [volume("pgdata")]), {"volume:pgdata": scan()},
                                        policy, dump_tools={"pg": {"tool": "pg_dump"}}))
    assert "db:pg" not in units
    assert units["volume:pgdata"]["strategy"] == "stop"
    assert units["volume:pgdata"]["containers"] == ["pg"]


def test_policy_engine_makes_a_dump():
    c = container("docs", image="custom/docs:1", mounts=[vol("docsdb", "/srv/db")])
    policy = validate_policy({"docsdb": {"engine": "mongodb"}})
    data = raw([c], [volume("docsdb")])
    assert database_candidates(data, {}, policy) == {"docs": "mongodb"}
    units = units_by_id(build_inventory(data, {}, policy, dump_tools={"docs": {"tool": "mongodump"}}))
    assert units["db:docs"]["engine"] == "mongodb"
    assert units["db:docs"]["declared"] is True


# --- sockets and system paths ------------------------------------------------------------------

def test_sockets_and_system_paths_are_never_units():
    c = container("dockerbridge", mounts=[bind("/var/run/docker.sock", "/var/run/docker.sock"),
                                          bind("/proc", "/host/proc", rw=False),
                                          bind("/srv/agent/agent.sock", "/agent.sock"),
                                          bind("/srv/odd", "/odd"),
                                          bind("/srv/data", "/data")])
    scans = {"path:/srv/odd": scan(ftype="socket"), "path:/srv/data": scan()}
    result = build_inventory(raw([c]), scans)
    assert sorted(units_by_id(result)) == ["path:/srv/data"]
    kinds = {b["source"]: b["kind"] for b in result["binds"]}
    assert kinds == {"/var/run/docker.sock": "socket", "/proc": "system",
                     "/srv/agent/agent.sock": "socket", "/srv/odd": "socket", "/srv/data": "data"}
    assert codes(result, "warning") == ["docker_socket_mounted"]
    assert "root-equivalent" in result["findings"][0]["message"]
    assert sorted(codes(result, "info")) == ["socket_mounted", "socket_mounted", "system_path_mounted"]


@pytest.mark.parametrize("path, kind", [
    ("/var/run/docker.sock", "socket"), ("/run/docker.sock", "socket"), ("/tmp/x.sock", "socket"),
    ("/proc", "system"), ("/sys/fs/cgroup", "system"), ("/dev/snd", "system"), ("/", "system"),
    ("/etc/localtime", "system"), ("/srv/device", "data"), ("/home/ros/proc", "data"),
    ("/devices", "data"),
])
def test_bind_kind(path, kind):
    assert bind_kind(path) == kind


# --- stop order ---------------------------------------------------------------------------------

def _compose(name, service, depends=None, **kw):
    labels = {"com.docker.compose.project": "ease", "com.docker.compose.service": service}
    if depends:
        labels["com.docker.compose.depends_on"] = depends
    labels.update(kw.pop("labels", {}))
    return container(name, labels=labels, **kw)


def test_stop_order_three_chain_dependents_first():
    data = raw([
        _compose("ease-db-1", "db", mounts=[vol("dbdata", "/srv")]),
        _compose("ease-web-1", "web", "db:service_started:false"),
        _compose("ease-worker-1", "worker", "web:service_healthy:true,db:service_started:false"),
        _compose("other", "other"),
    ], [volume("dbdata")])
    result = build_inventory(data, {"volume:dbdata": scan()})
    assert units_by_id(result)["volume:dbdata"]["containers"] == ["ease-worker-1", "ease-web-1", "ease-db-1"]
    web = next(c for c in result["containers"] if c["name"] == "ease-worker-1")
    assert web["compose"]["depends_on"] == ["db", "web"]


def test_stopped_dependents_are_not_quiesced():
    data = raw([
        _compose("ease-db-1", "db", mounts=[vol("dbdata", "/srv")]),
        _compose("ease-web-1", "web", "db:service_started:false", state="exited"),
    ], [volume("dbdata")])
    assert units_by_id(build_inventory(data))["volume:dbdata"]["containers"] == ["ease-db-1"]


def test_stop_order_by_lifeboat_order_and_name():
    info = {"a": {"order": 10}, "b": {"order": 20}, "c": {}, "d": {"order": 5}}
    assert stop_order(["a", "b", "c", "d"], info) == (["b", "a", "c", "d"], False)


def test_stop_order_cycle_is_reported():
    info = {"x": {"project": "p", "service": "x", "depends_on": ["y"]},
            "y": {"project": "p", "service": "y", "depends_on": ["x"]}}
    order, cycle = stop_order(["y", "x"], info)
    assert cycle is True and sorted(order) == ["x", "y"]


def test_parse_depends_on():
    assert parse_depends_on("db:service_started:false,redis:service_healthy") == ["db", "redis"]
    assert parse_depends_on("") == []
    assert parse_depends_on(None) == []


# --- policy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, fragment", [
    ({"v": {"stratgy": "stop"}}, "unknown setting(s) stratgy"),
    ({"v": {"strategy": "copy"}}, "strategy 'copy' is not one of"),
    ({"v": {"engine": "oracle"}}, "engine 'oracle'"),
    ({"v": {"order": "soon"}}, "order must be a whole number"),
    ({"v": {"skip": True, "strategy": "stop"}}, "contradicts"),
    ({"v": {"exclude": [1]}}, "exclude must be a list"),
    ({"srv/data": {}}, "must be absolute"),
    ({"v": ["stop"]}, "must be a mapping"),
    (["v"], "policy must be a mapping"),
])
def test_policy_validation_errors(policy, fragment):
    with pytest.raises(PolicyError) as err:
        validate_policy(policy)
    assert fragment in str(err.value)


def test_policy_shorthands():
    policy = validate_policy({"a": "LIVE", "b": None, "/srv/x/": {"skip": "yes", "order": "3",
                                                                  "exclude": "*.log"}})
    assert policy["a"]["strategy"] == "live"
    assert policy["b"]["strategy"] is None
    assert policy["/srv/x"] == {"strategy": "skip", "engine": None, "exclude": ["*.log"], "order": 3,
                                "confidential": None, "reason": None, "pre": None, "post": None,
                                "hook_timeout": None, "on_error": None}


def test_match_policy_precedence():
    policy = validate_policy({"data_*": "live", "data_al*": "stop", "data_alice": "pause",
                              "/srv": "live", "/srv/app": "stop", "path:/srv/app/x*": "skip"})
    assert match_policy(policy, ["data_alice", "volume:data_alice"])[0] == "data_alice"
    assert match_policy(policy, ["data_alfred", "volume:data_alfred"])[0] == "data_al*"
    assert match_policy(policy, ["data_bob", "volume:data_bob"])[0] == "data_*"
    assert match_policy(policy, ["/srv/app/certs", "path:/srv/app/certs"])[0] == "/srv/app"
    assert match_policy(policy, ["/srv/other", "path:/srv/other"])[0] == "/srv"
    assert match_policy(policy, ["/srv/app/xyz", "path:/srv/app/xyz"])[0] == "/srv/app"
    assert match_policy(policy, ["/opt/x", "path:/opt/x"]) == (None, None)


# --- undeclared ---------------------------------------------------------------------------------

def _undeclared_host():
    return raw([
        container("data_alice", state="created", started=False,
                  mounts=[vol(HEX, "/home/ros/user_data"), bind("/srv/rosauth/alice", "/etc/rosauth")]),
        container("web", mounts=[vol("web_cache", "/cache"), bind("/srv/www", "/var/www"),
                                 bind("/opt/empty", "/empty")]),
    ], [volume(HEX), volume("web_cache"), volume("data_bob")])


def _undeclared_scans():
    return {f"volume:{HEX}": scan(), "volume:web_cache": scan(size=4096),
            "volume:data_bob": scan(), "path:/srv/rosauth/alice": scan(),
            "path:/srv/www": scan(), "path:/opt/empty": scan(data=False)}


def test_undeclared_with_globs_and_paths():
    policy = validate_policy({"data_*": "live", "/srv": {}, "web_cache": "skip"})
    result = build_inventory(_undeclared_host(), _undeclared_scans(), policy)
    assert result["undeclared"] == [
        {"id": f"volume:{HEX}", "kind": "volume", "source": HEX, "size_bytes": 100}]
    units = units_by_id(result)
    assert units["path:/srv/www"]["declared"] and units["path:/srv/rosauth/alice"]["declared"]
    assert not units["path:/opt/empty"]["declared"]  # not declared, but empty: not listed
    assert codes(result).count("undeclared") == 1


def test_undeclared_ignore_lists_without_warning():
    policy = validate_policy({"data_*": "live"})
    result = build_inventory(_undeclared_host(), _undeclared_scans(), policy, undeclared="ignore")
    assert [u["id"] for u in result["undeclared"]] == [
        "path:/srv/rosauth/alice", "path:/srv/www", f"volume:{HEX}", "volume:web_cache"]
    assert "undeclared" not in codes(result)
    message = undeclared_message(result["undeclared"])
    assert "4 volume(s)/host path(s)" in message and "path:/srv/www" in message
    assert "Declare each in the policy" in message and "undeclared: warn" in message


def test_no_policy_means_nothing_undeclared():
    result = build_inventory(_undeclared_host(), _undeclared_scans(), None)
    assert result["undeclared"] == []
    assert not any(u["declared"] for u in result["units"])


def test_unmatched_policy_entries_are_reported():
    policy = validate_policy({"gone": {}, "gone_*": {}, "data_*": {}})
    result = build_inventory(_undeclared_host(), _undeclared_scans(), policy)
    found = {(f["code"], f["subject"], f["severity"]) for f in result["findings"]
             if f["code"] == "policy_unmatched"}
    assert found == {("policy_unmatched", "gone", "warning"), ("policy_unmatched", "gone_*", "info")}


def test_declared_database_covers_its_data_volume():
    c = container("pg", image="lifeboat-test/postgres:15", mounts=[vol("pgdata", "/var/lib/postgresql/data")])
    policy = validate_policy({"db:pg": {"order": 1}})
    result = build_inventory(raw([c], [volume("pgdata")]), {"volume:pgdata": scan()}, policy,
                             dump_tools={"pg": {"tool": "pg_dump"}})
    assert result["undeclared"] == []
    assert units_by_id(result)["volume:pgdata"]["declared"] is True


# --- anonymous volumes, data containers, confidential ------------------------------------------

def test_data_container_anonymous_volume_is_live_and_warned():
    result = build_inventory(_undeclared_host(), _undeclared_scans())
    unit = units_by_id(result)[f"volume:{HEX}"]
    assert unit["strategy"] == "live"
    assert "data_alice" in unit["reason"] and "never started" in unit["reason"]
    vol_out = next(v for v in result["volumes"] if v["name"] == HEX)
    assert vol_out["anonymous"] is True and vol_out["unused"] is False
    assert vol_out["used_by"] == [{"container": "data_alice", "destination": "/home/ros/user_data", "rw": True}]
    assert ("anonymous_volume_with_data", HEX) in [(f["code"], f["subject"]) for f in result["findings"]]
    assert units_by_id(result)["path:/srv/rosauth/alice"]["confidential"] is True


def test_anonymous_volume_rules():
    assert is_anonymous_volume(HEX, None)
    assert is_anonymous_volume(HEX, {"com.example": "x"})
    assert not is_anonymous_volume(HEX, {"com.docker.compose.volume": "data"})
    assert not is_anonymous_volume("postgres_data", None)
    assert not is_anonymous_volume(HEX.upper(), None)


def test_empty_anonymous_volume_is_not_warned():
    data = raw([container("c", mounts=[vol(HEX2, "/x")])], [volume(HEX2)])
    result = build_inventory(data, {f"volume:{HEX2}": scan(data=False)})
    assert "anonymous_volume_with_data" not in codes(result)


@pytest.mark.parametrize("texts, secret_files, expected", [
    (["/etc/ease_secret"], None, True),
    (["/etc/rosauth"], None, True),
    (["/srv/nginx/certs"], None, True),
    (["/etc/letsencrypt"], None, True),
    (["/srv/traefik/acme.json"], None, True),
    (["/srv/ssh_keys"], None, True),
    (["/etc/ssl/private"], None, True),
    (["keycloak_data"], None, False),
    (["/srv/monkey"], None, False),
    (["/home/ros/user_data"], None, False),
    (["/srv/www"], ["server.pem"], True),
])
def test_confidential_detection(texts, secret_files, expected):
    assert (confidential_reason(*texts, secret_files=secret_files) is not None) is expected


def test_confidential_policy_overrides_detection():
    data = raw([container("nginx", mounts=[bind("/srv/nginx/certs", "/etc/nginx/certs", rw=False),
                                           bind("/srv/www", "/var/www")])])
    policy = validate_policy({"/srv/nginx/certs": {"confidential": False},
                              "/srv/www": {"confidential": True}})
    units = units_by_id(build_inventory(data, {}, policy))
    assert units["path:/srv/nginx/certs"]["confidential"] is False
    assert units["path:/srv/www"]["confidential"] is True
    units = units_by_id(build_inventory(data, {}))
    assert units["path:/srv/nginx/certs"]["confidential"] is True
    assert units["path:/srv/www"]["confidential"] is False


# --- other shapes -------------------------------------------------------------------------------

def test_empty_engine():
    result = build_inventory(raw([], [], []), {}, None)
    assert dict(result) == {
        "containers": [], "volumes": [], "binds": [], "networks": [], "images": [], "units": [],
        "findings": [], "undeclared": []}


def test_swarm_task_is_paused_not_stopped():
    labels = {"com.docker.swarm.service.name": "ease_web", "com.docker.stack.namespace": "ease"}
    data = raw([container("ease_web.1.abc", labels=labels, mounts=[vol("webdata", "/srv")])],
               [volume("webdata")])
    result = build_inventory(data, {"volume:webdata": scan()})
    unit = units_by_id(result)["volume:webdata"]
    assert (unit["strategy"], unit["containers"]) == ("pause", ["ease_web.1.abc"])
    assert result["containers"][0]["swarm"] == {"service": "ease_web", "stack": "ease"}


def test_container_output_shape():
    c = container("web", image="lifeboat-test/nginx:latest",
                  mounts=[vol("v", "/v", rw=False), bind("/srv/x", "/x")],
                  labels={"com.docker.compose.project": "p", "com.docker.compose.service": "web",
                          "com.docker.compose.project.config_files": "/p/a.yml,/p/b.yml",
                          "com.docker.compose.project.working_dir": "/p"})
    c["HostConfig"]["Tmpfs"] = {"/run": ""}
    c["State"]["Health"] = {"Status": "healthy"}
    out = build_inventory(raw([c], [volume("v")]))["containers"][0]
    assert set(out) == {"name", "id", "image", "state", "health", "restart_policy", "labels", "compose",
                        "swarm", "mounts", "networks"}
    assert out["health"] == "healthy"
    assert out["image"]["name"] == "lifeboat-test/nginx:latest" and out["image"]["digest"] is None
    assert out["compose"] == {"project": "p", "service": "web", "working_dir": "/p",
                              "config_files": ["/p/a.yml", "/p/b.yml"], "depends_on": []}
    assert out["mounts"] == [
        {"type": "tmpfs", "name": None, "source": None, "destination": "/run", "rw": True},
        {"type": "volume", "name": "v", "source": "/var/lib/docker/volumes/v/_data", "destination": "/v",
         "rw": False},
        {"type": "bind", "name": None, "source": "/srv/x", "destination": "/x", "rw": True}]
    assert out["networks"] == ["bridge"]


def test_size_class():
    assert size_class(None) == "not measured"
    assert size_class(0) == "empty"
    assert size_class(5) == "under 1 MiB"
    assert size_class(40 * 1024 * 1024) == "10-100 MiB"
    assert size_class(5 * 1024 ** 4) == "over 1 TiB"


def test_data_container_volume_used_by_running_app_is_stopped_and_named():
    data = raw([container("user_data", state="created", started=False, mounts=[vol(HEX, "/home/ros/user_data")]),
                container("openease", mounts=[vol(HEX, "/home/ros/user_data")])], [volume(HEX)])
    unit = units_by_id(build_inventory(data, {f"volume:{HEX}": scan()}))[f"volume:{HEX}"]
    assert (unit["strategy"], unit["containers"]) == ("stop", ["openease"])
    assert "data container user_data holds it" in unit["reason"]


def test_policy_hooks_are_validated_and_reach_the_units():
    policy = validate_policy({"uploads": {"pre": "sync", "post": "echo done", "hook_timeout": 5,
                                          "on_error": "continue"}})
    assert policy["uploads"]["pre"] == "sync" and policy["uploads"]["hook_timeout"] == 5
    for bad, fragment in (({"pre": ""}, "shell command"), ({"hook_timeout": 0}, "positive"),
                          ({"hook_timeout": True}, "positive"), ({"on_error": "ignore"}, "fail or continue")):
        with pytest.raises(PolicyError, match=fragment):
            validate_policy({"uploads": bad})
