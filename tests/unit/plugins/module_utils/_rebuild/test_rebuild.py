"""The deployment section (records, references for prune/copy/sealed records) and the rebuild's
pure planning: snapshot choice, dependency order, create requests, the plan and the runbook."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild import plan as rb
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.copy import object_refs
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.deployment import (
    compose_projects,
    deployment_container,
    image_reuse_key,
    known_image_archives,
    network_record,
    referenced_files,
)


def ref(char: str, **extra) -> dict:
    return {"sha256": char * 64, "size": 10, **extra}


def attrs(name: str, **over) -> dict:
    base = {
        "Id": "f" * 64, "Name": "/" + name, "Image": "sha256:" + "1" * 64,
        "Config": {"Image": "app:1", "Cmd": ["serve"], "Entrypoint": None, "Env": ["PATH=/bin", "SECRET=hunter2"],
                   "Labels": {"tier": "web"}, "Hostname": "f" * 12, "ExposedPorts": {"80/tcp": {}}},
        "HostConfig": {"NetworkMode": "app_net", "RestartPolicy": {"Name": "unless-stopped"},
                       "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}, "Links": None},
        "State": {"Status": "running"},
        "Mounts": [{"Type": "volume", "Name": "data", "Source": "/x", "Destination": "/srv", "RW": True, "Mode": "z"}],
        "NetworkSettings": {"Networks": {"app_net": {"Aliases": ["f" * 12, "www", name]},
                                         "backend": {"Aliases": None, "IPAMConfig": {"IPv4Address": "10.5.0.9"}}}},
    }
    for key, value in over.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return base


def spec(name: str, **over) -> dict:
    out = deployment_container(attrs(name), {}, {"PATH": "/bin"})
    out.update(over)
    return out


# -- the deployment section -----------------------------------------------------------------------

def test_container_spec_records_env_names_it_sets_never_values():
    record = spec("web")
    text = json.dumps(record)
    assert "hunter2" not in text
    assert record["env_set"] == ["SECRET"]  # PATH is the image's own value
    assert record["env_names"] == ["PATH", "SECRET"]
    assert record["state"] == "running" and record["hostname"] is None
    ep = {e["name"]: e for e in record["endpoints"]}
    assert ep["app_net"]["aliases"] == ["www"] and ep["backend"]["ipv4_address"] == "10.5.0.9"


def test_network_record_keeps_ipam_and_flags():
    net = network_record({"Name": "n", "Driver": "bridge", "Internal": True, "Attachable": True,
                          "Labels": {"a": "b"}, "Options": {"com.docker.network.bridge.name": "br-x"},
                          "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]}})
    assert net["internal"] and net["attachable"]
    assert net["ipam"]["config"] == [{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}]


def test_compose_projects_from_labels():
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
              "com.docker.compose.project.working_dir": "/srv/shop",
              "com.docker.compose.project.config_files": "compose.yml,/srv/shop/override.yml",
              "com.docker.compose.depends_on": "db:service_started:false"}
    web = spec("shop-web-1", labels=labels, compose=None)
    web["compose"] = __import__("ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.deployment",
                                fromlist=["compose_of"]).compose_of(labels)
    projects = compose_projects([web])
    files = ["/srv/shop/compose.yml", "/srv/shop/override.yml"]
    assert projects[0]["name"] == "shop" and projects[0]["config_files"] == files
    assert projects[0]["services"][0]["depends_on"] == ["db"] and projects[0]["services"][0]["running"]


def test_files_a_compose_file_names_are_found():
    doc = {"services": {"web": {"env_file": "web.env"},
                        "worker": {"env_file": ["common.env", "/etc/app/worker.env", "web.env",
                                                {"path": "./extra.env", "required": False}]},
                        "cron": {"env_file": "${ENV_DIR}/cron.env"}, "bad": "not a mapping"},
           "secrets": {"db_password": {"file": "./secrets/db.txt"}, "ext": {"external": True}},
           "configs": {"nginx": {"file": "conf/nginx.conf"}, "inline": {"content": "x"}}}
    files, problems = referenced_files(doc, "/srv/shop")
    assert [(f["path"], f["secret"], f["optional"]) for f in files] == [
        ("/srv/shop/web.env", True, False),
        ("/srv/shop/common.env", True, False), ("/etc/app/worker.env", True, False),
        ("/srv/shop/extra.env", True, True),
        ("/srv/shop/secrets/db.txt", True, False), ("/srv/shop/conf/nginx.conf", False, False)]
    assert len(problems) == 1 and "${ENV_DIR}/cron.env depends on variables" in problems[0]
    assert referenced_files("not a mapping", "/x") == ([], [])


def test_runbook_puts_compose_files_back_with_owner_and_mode():
    man = deployment_manifest()
    man["deployment"]["compose_projects"][0]["files"][0].update(mode="0640", uid=1000, gid=33)
    man["deployment"]["containers"][0]["compose"] = {"project": "shop", "service": "web", "depends_on": []}
    text = rb.runbook(man, "/var/backups/lifeboat")
    assert "chmod 0640 /srv/shop/compose.yml" in text and "chown 1000:33 /srv/shop/compose.yml" in text


def deployment_manifest() -> dict:
    return {
        "format": mf.MANIFEST_FORMAT, "version": 1, "id": "20261122T103000Z-web1-3fa2c1", "host": "web1",
        "time": "2026-11-22T10:30:00.000000Z", "complete": True, "failed": [],
        "units": [{"id": "volume:data", "kind": "volume", "object": ref("a"), "index": ref("b"),
                   "source": {"type": "volume", "name": "data"}}],
        "deployment": {
            "containers": [spec("web")], "networks": [], "volumes": [],
            "compose_projects": [{"name": "shop", "files": [{"path": "/srv/shop/compose.yml", "object": ref("c")}],
                                  "env_files": [{"path": "/srv/shop/.env", "object": ref("d", encryption="age")}],
                                  "services": []}],
            "images": [{"id": "sha256:" + "1" * 64, "tags": ["app:1"], "archive": ref("e"),
                        "reuse_key": image_reuse_key("sha256:" + "1" * 64, [])}],
            "environment": ref("f", encryption="age"),
        },
    }


def test_prune_copy_and_sealed_record_find_every_deployment_object():
    man = deployment_manifest()
    wanted = {c * 64 for c in "abcdef"}
    assert set(mf.objects_of(man)) == wanted
    assert set(object_refs(man)) == wanted
    sealed = mf.sealed_record(man, ref("9"), ["age1xyz"])
    assert set(mf.objects_of(sealed)) == wanted | {"9" * 64}
    assert set(object_refs(sealed)) == wanted | {"9" * 64}
    text = json.dumps(sealed)
    for secret_or_name in ("shop", "compose.yml", ".env", "SECRET", "app:1", "www", "serve", "tier"):
        assert secret_or_name not in text, secret_or_name
    # a later snapshot finds the image archive by its reuse key in the sealed record
    known = known_image_archives([sealed])
    assert known[image_reuse_key("sha256:" + "1" * 64, [])]["archive"]["sha256"] == "e" * 64


def test_object_refs_need_a_sha_and_a_size():
    assert mf.is_object_ref(ref("a"))
    assert not mf.is_object_ref({"sha256": "a" * 64, "size": "10"})
    assert not mf.is_object_ref({"sha256": "sha256:" + "a" * 64, "size": 10})
    assert mf.deployment_refs({"deployment": {"containers": [{"labels": {"sha256": "a" * 64, "size": "1"}}]}}) == []


def test_image_reuse_key_depends_on_recipients():
    assert image_reuse_key("sha256:1", []) != image_reuse_key("sha256:1", ["age1x"])
    assert image_reuse_key("sha256:1", ["b", "a"]) == image_reuse_key("sha256:1", ["a", "b"])


# -- planning -------------------------------------------------------------------------------------

def records() -> list[dict]:
    return [{"id": "20261120T010000Z-web1-aaaaaa", "host": "web1", "time": "2026-11-20T01:00:00Z", "complete": True},
            {"id": "20261121T010000Z-web1-bbbbbb", "host": "web1", "time": "2026-11-21T01:00:00Z", "complete": False},
            {"id": "20261121T010000Z-db2-cccccc", "host": "db2", "time": "2026-11-21T01:00:00Z", "complete": True}]


def test_choose_snapshot():
    assert rb.choose_snapshot(records(), "web1")["id"].endswith("aaaaaa")  # newest complete
    assert rb.choose_snapshot(records(), "web1", "2026-11-21")["id"].endswith("aaaaaa")
    assert rb.choose_snapshot(records(), "web1", "20261121T010000Z-web1-bbbbbb")["id"].endswith("bbbbbb")
    with pytest.raises(rb.PlanError, match="snapshots of: db2, web1"):
        rb.choose_snapshot(records(), "web9")


def test_service_order_follows_links_volumes_from_and_network_mode():
    specs = [spec("proxy", host_settings={"Links": ["/web:/proxy/web"]}),
             spec("worker", endpoints=[{"name": "app_net", "aliases": [], "links": ["db:postgres"]}]),
             spec("web", host_settings={"VolumesFrom": ["data:ro"]}),
             spec("data", state="created"),
             spec("sidecar", network_mode="container:proxy"),
             spec("db")]
    order = [s["name"] for s in rb.service_order(specs, already={"db"})]
    assert order.index("data") < order.index("web") < order.index("proxy") < order.index("sidecar")
    assert "db" in order and "worker" in order
    assert rb.dependencies(specs[1]) == {"db"}
    assert rb.create_request(specs[1], {})["network"][1] == {"links": {"db": "postgres"}}


def test_service_order_refuses_cycles():
    specs = [spec("a", host_settings={"Links": ["/b:/a/b"]}), spec("b", host_settings={"VolumesFrom": ["a"]})]
    with pytest.raises(rb.PlanError, match="cycle: container:a, container:b"):
        rb.service_order(specs)


def test_create_request_replays_the_spec():
    req = rb.create_request(spec("web", host_settings={"CapAdd": ["NET_ADMIN"], "IpcMode": "private"}),
                            {"SECRET": "s"})
    assert req["create"]["environment"] == {"SECRET": "s"} and req["missing_environment"] == []
    assert req["create"]["ports"] == [("80", "tcp")]
    assert req["host_config"]["binds"] == ["data:/srv:rw,z"]
    assert req["host_config"]["restart_policy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert req["host_config"]["cap_add"] == ["NET_ADMIN"] and "ipc_mode" not in req["host_config"]
    assert req["network"] == ("app_net", {"aliases": ["www"]})
    assert req["connect"] == [("backend", {"ipv4_address": "10.5.0.9"})]
    assert rb.create_request(spec("web"), {})["missing_environment"] == ["SECRET"]


def test_plan_says_what_is_missing_and_nothing_once_everything_is_there():
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    man["deployment"]["networks"] = [{"name": "app_net", "driver": "bridge"}]
    man["deployment"]["volumes"] = [{"name": "data", "driver": "local"}, {"name": "data.pre-restore-1", "driver": "local"}]
    empty = {"containers": {}, "networks": [], "volumes": {}, "images": [], "paths": {}}
    plan = rb.plan_rebuild(man, empty, {})
    assert [v["name"] for v in plan["volumes"]] == ["data"]
    assert plan["volume_data"][0]["action"] == "restore" and plan["images"][0]["action"] == "load"
    assert plan["services"] == [{"kind": "container", "name": "web", "image": "app:1", "state": "running",
                                 "action": "create and start"}]
    assert plan["missing_environment"] == {"web": ["SECRET"]}
    assert rb.plan_rebuild(man, empty, {"web": {"SECRET": "x"}})["missing_environment"] == {}
    done = {"containers": {"web": "running"}, "networks": ["app_net"], "volumes": {"data": True},
            "images": ["sha256:" + "1" * 64], "paths": {}}
    plan = rb.plan_rebuild(man, done, {})
    assert plan["changes"] == 0 and plan["missing_environment"] == {}


def test_a_bind_source_the_snapshot_does_not_hold_stops_the_rebuild_and_is_reported():
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    mounts = [{"type": "bind", "name": None, "source": "/srv/app/config.php", "destination": "/app/config.php",
               "rw": False},
              {"type": "bind", "name": None, "source": "/srv/site/uploads", "destination": "/up", "rw": True},
              {"type": "bind", "name": None, "source": "/var/run/docker.sock", "destination": "/s", "rw": True},
              {"type": "bind", "name": None, "source": "/etc/localtime", "destination": "/etc/localtime", "rw": False}]
    man["deployment"]["containers"] = [spec("web", mounts=mounts)]
    # /srv/site is a captured directory unit: what is below it comes back with it.
    man["units"].append({"id": "path:/srv/site", "kind": "path", "object": ref("a"), "index": ref("b"),
                         "source": {"type": "path", "path": "/srv/site"}})
    have = {"containers": {}, "bind_sources": {m["source"]: False for m in mounts}}
    plan = rb.plan_rebuild(man, have, {"web": {"SECRET": "x"}})
    assert plan["bind_sources_missing"] == [{"path": "/srv/app/config.php", "containers": ["web"]}]
    assert any("/srv/app/config.php" in text and "empty directory" in text for text in plan["left_out"])
    # Held by the snapshot as a file unit: nothing missing.
    man["units"].append({"id": "path:/srv/app/config.php", "kind": "path", "object": ref("c"), "index": ref("d"),
                         "source": {"type": "file", "path": "/srv/app/config.php"}})
    assert rb.plan_rebuild(man, have, {"web": {"SECRET": "x"}})["bind_sources_missing"] == []
    # Or present on the new host already.
    man["units"].pop()
    have["bind_sources"]["/srv/app/config.php"] = True
    assert rb.plan_rebuild(man, have, {"web": {"SECRET": "x"}})["bind_sources_missing"] == []


def test_the_runbook_puts_a_file_unit_back_as_a_file():
    man = deployment_manifest()
    man["units"].append({"id": "path:/srv/app/config.php", "kind": "path", "object": ref("c"), "index": ref("d"),
                         "files": 1, "bytes": 120, "source": {"type": "file", "path": "/srv/app/config.php"}})
    text = rb.runbook(man, "/var/backups/lifeboat")
    block = text[text.index("`/srv/app/config.php`"):]
    assert "if [ -d /srv/app/config.php ]; then rmdir /srv/app/config.php; fi" in block
    assert "mkdir -p /srv/app\n" in block and "-C /srv/app\n" in block
    assert "mkdir -p /srv/app/config.php" not in text


def test_the_runbook_restores_databases_without_prompts_once_they_accept_connections():
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    man["deployment"]["environment"] = None  # not encrypted: no values stored
    man["deployment"]["containers"].append(spec("db", image="mariadb:11"))
    man["units"].append({"id": "db:db", "kind": "database", "engine": "mariadb", "object": ref("9"),
                         "source": {"type": "database", "container": "db", "engine": "mariadb"}})
    text = rb.runbook(man, "sftp://backup@vault:2222/srv/lifeboat")
    assert "-P 2222" in text and "backup@vault:/srv/lifeboat" in text
    block = text[text.index("`db` (mariadb)"):text.index("## 7. Services")]
    assert "mariadb -u root -p" not in block
    wait = block.index("mariadb-admin -u root --silent ping")
    restore = block.index("MYSQL_PWD=\"${MARIADB_ROOT_PASSWORD:-$MYSQL_ROOT_PASSWORD}\" exec mariadb -u root'")
    assert block.index("docker run") < wait < restore
    # Not encrypted: the values come from the password store, and the run stops on a missing one.
    assert ': "${SECRET:?set SECRET for db from your password store}"' in block
    assert "lifeboat_env" not in text


def test_databases_dumped_from_swarm_tasks_are_left_to_the_swarm_step():
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    task_labels = {"com.docker.swarm.service.name": "maps_db", "com.docker.swarm.service.id": "s1",
                   "com.docker.swarm.task.id": "t1", "com.docker.swarm.task.name": "maps_db.1.t1"}
    man["units"] += [
        {"id": "db:maps_db", "kind": "database", "engine": "postgres", "object": ref("7"),
         "source": {"type": "database", "container": "maps_db.1.t1", "engine": "postgres"},
         "containers": [{"name": "maps_db.1.t1", "labels": task_labels}]},
        {"id": "db:shopdb", "kind": "database", "engine": "mariadb", "object": ref("8"),
         "source": {"type": "database", "container": "shopdb", "engine": "mariadb"},
         "containers": [{"name": "shopdb", "labels": {}}]}]
    plan = rb.plan_rebuild(man, {"containers": {}}, {"web": {"SECRET": "x"}})
    assert [d["unit"] for d in plan["databases"]] == ["db:shopdb"]


def test_volumes_of_swarm_stacks_are_left_to_the_swarm_step():
    """The swarm step creates and restores a stack's volumes before the deploy: the plain steps
    restoring them first made it keep their restored content aside as .pre-restore volumes (seen in
    molecule/swarm_rebuild). A stack's volume is known by the swarm section or by its label."""
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    stack_label = {"com.docker.stack.namespace": "maps"}
    man["units"] += [
        {"id": "volume:maps_instance-data", "kind": "volume", "object": ref("7"),
         "source": {"type": "volume", "name": "maps_instance-data", "labels": stack_label}},
        {"id": "volume:maps_proxy-data", "kind": "volume", "object": ref("8"),
         "source": {"type": "volume", "name": "maps_proxy-data", "labels": {}}},
        {"id": "volume:other_data", "kind": "volume", "object": ref("9"),
         "source": {"type": "volume", "name": "other_data", "labels": {"com.docker.stack.namespace": "other"}}}]
    man["deployment"]["volumes"] = [{"name": n, "driver": "local"} for n in
                                    ("data", "maps_instance-data", "maps_proxy-data", "other_data")]
    empty = {"containers": {}, "networks": [], "volumes": {}, "images": [], "paths": {}}
    # without a swarm section (a worker's snapshot) the plain steps bring every volume back
    plan = rb.plan_rebuild(man, empty, {"web": {"SECRET": "x"}})
    assert [v["target"] for v in plan["volume_data"]] == ["data", "maps_instance-data", "maps_proxy-data", "other_data"]
    man["swarm"] = {"stacks": [{"name": "maps", "volumes": [{"name": "maps_proxy-data"}]}]}
    assert rb.swarm_stack_volumes(man) == {"maps_instance-data", "maps_proxy-data"}
    plan = rb.plan_rebuild(man, empty, {"web": {"SECRET": "x"}})
    assert [v["target"] for v in plan["volume_data"]] == ["data", "other_data"]
    assert [v["name"] for v in plan["volumes"]] == ["data", "other_data"]


def test_plan_refuses_snapshots_without_deployment():
    man = deployment_manifest()
    del man["deployment"]
    with pytest.raises(rb.PlanError, match="no deployment section"):
        rb.plan_rebuild(man, {}, {})


def test_runbook_is_a_procedure_without_secrets():
    man = deployment_manifest()
    man["encryption"] = {"scheme": "age"}
    man["deployment"]["compose_projects"] = []
    man["deployment"]["networks"] = [{"name": "app_net", "driver": "bridge", "internal": True,
                                      "ipam": {"config": [{"subnet": "10.9.0.0/24"}]}}]
    text = rb.runbook(man, "sftp://backup@vault/srv/lifeboat")
    assert "docker network create --driver bridge --subnet 10.9.0.0/24 --internal app_net" in text
    assert f"cat $REPO/objects/ee/{'e' * 64} | zstd -d | docker load" in text
    # The environment values: never in the runbook, printed by a command from the encrypted
    # object (issue 20), once, in the function step 0 defines; each container's run uses it.
    assert text.count("age -d -i \"$KEY\" $REPO/objects/ff/") == 1 and "lifeboat_env() {" in text
    assert "LIFEBOAT_ENV=$(lifeboat_env web) && eval \"$LIFEBOAT_ENV\"" in text
    assert "-e SECRET=\"$SECRET\"" in text and "hunter2" not in text
    # The repository is fetched with scp HOST:PATH, a key and a checked host key, without prompts.
    assert ("scp -r -q -i \"$SSH_KEY\" -o BatchMode=yes -o UserKnownHostsFile=\"$KNOWN_HOSTS\" "
            "-o StrictHostKeyChecking=yes backup@vault:/srv/lifeboat /var/backups/lifeboat") in text
    assert "docker network connect --ip 10.5.0.9 backend web" in text
    assert text.index("## 4. Volume data") < text.index("## 7. Services")
    lines = rb.plan_lines(rb.plan_rebuild(man, {"containers": {}}, {}))
    assert any("volume_data: volume:data: restore" in line for line in lines)


def _sh_blocks(text: str) -> list[str]:
    """The ```sh blocks of a runbook, in order (as a person pastes them)."""
    return [b.split("\n```", 1)[0] for b in text.split("```sh\n")[1:]]


def test_the_runbook_lets_the_operator_name_the_key_files():
    man = deployment_manifest()
    man["encryption"] = {"scheme": "age"}
    text = rb.runbook(man, "sftp://backup@vault/srv/lifeboat")
    first = _sh_blocks(text)[0]
    # Set in the operator's environment, they are kept; else the paths shown.
    assert "KEY=${KEY:-/root/lifeboat.key}" in first
    assert "SSH_KEY=${SSH_KEY:-/root/.ssh/lifeboat_repository}" in first
    assert "KNOWN_HOSTS=${KNOWN_HOSTS:-/root/.ssh/known_hosts}" in first
    assert "export `KEY` and `SSH_KEY` and `KNOWN_HOSTS` before the first block" in text
    for line in first.splitlines():
        assert not re.match(r"^(KEY|SSH_KEY|KNOWN_HOSTS)=/", line), line
    local = rb.runbook(deployment_manifest(), "/var/backups/lifeboat")
    assert "SSH_KEY" not in local and "KEY=" not in local


def test_the_runbook_loads_the_images_in_shell_blocks():
    man = deployment_manifest()
    image_id = "sha256:" + "1" * 64
    man["deployment"]["images"] = [
        {"id": image_id, "tags": ["app:1", "app:latest"], "archive": ref("e")},
        {"id": "sha256:" + "2" * 64, "tags": ["redis:7"], "digests": ["redis@sha256:" + "3" * 64], "archive": None},
        {"id": "sha256:" + "4" * 64, "tags": ["local/tool:dev"], "archive": None}]
    text = rb.runbook(man, "/var/backups/lifeboat")
    section = text[text.index("## 5. Images"):text.index("## 6. Databases")]
    blocks = _sh_blocks(section)
    assert blocks[0].splitlines() == [f"cat $REPO/objects/ee/{'e' * 64} | zstd -d | docker load",
                                      f"docker tag {image_id} app:1", f"docker tag {image_id} app:latest"]
    assert blocks[1].splitlines() == [f"docker pull redis@sha256:{'3' * 64}",
                                      f"docker tag redis@sha256:{'3' * 64} redis:7"]
    assert len(blocks) == 2 and "`local/tool:dev`: not in the snapshot and not in a registry" in section
    assert "docker load`" not in section  # no command left in inline code


def test_the_runbook_waits_for_the_real_server_and_checks_the_row_counts():
    man = deployment_manifest()
    man["deployment"]["compose_projects"] = []
    man["deployment"]["containers"] += [spec("pg", image="postgres:15"), spec("my", image="mariadb:11")]
    man["units"] += [
        {"id": "db:pg", "kind": "database", "engine": "postgres", "object": ref("7"),
         "source": {"type": "database", "container": "pg", "engine": "postgres"},
         "row_counts": {"app": {'"public"."posts"': 137}}},
        {"id": "db:my", "kind": "database", "engine": "mariadb", "object": ref("8"),
         "source": {"type": "database", "container": "my", "engine": "mariadb"},
         "row_counts": {"shop": {"`items`": 5}}}]
    text = rb.runbook(man, "/var/backups/lifeboat")
    pg = text[text.index("`pg` (postgres)"):text.index("## 7. Services")]
    # Over TCP: the image's temporary initialisation server listens on the Unix socket only.
    assert "docker exec pg pg_isready -q -h 127.0.0.1\n" in pg
    assert "mariadb-admin -u root --silent ping -h 127.0.0.1 --protocol=tcp'" in text
    replay = pg.index("| docker exec -i pg sh -c 'exec psql -q -o /dev/null")
    check = pg.index("n=$(echo 'SELECT count(*) FROM \"public\".\"posts\";' | docker exec -i pg sh -c "
                     "'exec psql -X -qAt -v ON_ERROR_STOP=1 -U \"${POSTGRES_USER:-postgres}\" -d \"$1\"' sh app); "
                     "[ \"$n\" -ge 137 ] || { echo 'app.\"public\".\"posts\":' \"$n rows, 137 at backup time\" >&2; "
                     "false; }")
    assert replay < check < pg.index("```\n\nThe dump recreates the roles")
    assert ("n=$(echo 'SELECT count(*) FROM `items`;' | docker exec -i my sh -c 'MYSQL_PWD=\"${MARIADB_ROOT_PASSWORD:-"
            "$MYSQL_ROOT_PASSWORD}\" exec mariadb -u root -N -B \"$1\"' sh shop); [ \"$n\" -ge 5 ]") in text


# -- capture of compose files, .env and environment values on a real local repository ------------

class _Images:
    """Stands in for the engine's image inspection (the only engine call these captures make)."""

    @staticmethod
    def inspect_image(_image_id):
        return {"Config": {"Env": ["PATH=/bin"]}}


class _Client:
    api = _Images()


def _compose_host(tmp_path) -> dict:
    work = tmp_path / "shop"
    work.mkdir()
    (work / "docker-compose.yml").write_text("services:\n  web:\n    image: app:1\n")
    (work / ".env").write_text("SHOP_TOKEN=hunter2\n")
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
              "com.docker.compose.project.working_dir": str(work),
              "com.docker.compose.project.config_files": "docker-compose.yml"}
    return {"host": "web1", "containers": [attrs("shop_web_1", Config={"Labels": labels})], "images": [],
            "networks": [], "volumes": []}


@pytest.mark.parametrize("encrypted", [False, True])
def test_compose_env_and_environment_stored_only_when_encrypted(tmp_path, encrypted):
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.deployment import DeploymentCapture
    from ansible_collections.lifeboat.docker.plugins.module_utils._repo.repository import Repository

    recipients = None
    identity = None
    if encrypted:
        identity = str(tmp_path / "key.txt")
        subprocess.run(["age-keygen", "-o", identity], check=True, capture_output=True)
        recipients = [subprocess.run(["age-keygen", "-y", identity], check=True, capture_output=True,
                                     text=True).stdout.strip()]
    repo = Repository.open(str(tmp_path / "repo"), create=True, recipients=recipients, identity=identity)
    capture = DeploymentCapture(_Client(), repo, _compose_host(tmp_path))
    section = capture.run({"version": "20.10"})
    project = section["compose_projects"][0]
    assert project["files"][0]["path"] == str(tmp_path / "shop" / "docker-compose.yml")
    assert repo.read_object(project["files"][0]["object"], "compose file").startswith(b"services:")
    env_file = project["env_files"][0]
    stored = list((tmp_path / "repo" / "objects").rglob("*"))
    everything = b"".join(p.read_bytes() for p in stored if p.is_file())
    assert b"hunter2" not in everything  # never in clear in the repository
    if encrypted:
        assert repo.read_object(env_file["object"], ".env") == b"SHOP_TOKEN=hunter2\n"
        assert json.loads(repo.read_object(section["environment"], "environment")) == {"shop_web_1": {"SECRET": "hunter2"}}
        assert section["left_out"] == []
    else:
        assert env_file["object"] is None and "encrypted" in env_file["left_out"]
        assert section["environment"] is None
        assert any(".env of compose project shop" in t for t in section["left_out"])
        assert any("shop_web_1" in t and "dr_rebuild_environment" in t for t in section["left_out"])
    assert "hunter2" not in json.dumps(section) and "hunter2" not in json.dumps(capture.result(section))


def test_compose_services_are_found_by_project_and_service_whatever_compose_named_them():
    db = spec("shop_db_1")
    db["compose"] = {"project": "shop", "service": "db", "oneoff": False, "depends_on": []}
    man = deployment_manifest()
    man["deployment"]["containers"] = [db]
    man["deployment"]["compose_projects"] = []
    man["units"] = [{"id": "db:shop_db_1", "kind": "database", "engine": "postgres", "object": ref("a"),
                     "source": {"type": "database", "container": "shop_db_1"}}]
    assert rb.found_here(db, {"containers": {}}) is None
    have = {"containers": {"shop-db-1": "running"}, "compose_members": {"shop/db": ["shop-db-1"]}}
    assert rb.found_here(db, have) == "shop-db-1"  # compose v2's name for v1's shop_db_1
    assert rb.found_here(spec("other"), have) is None
    step = rb.plan_rebuild(man, have, {})["databases"][0]
    assert step["container_here"] == "shop-db-1" and step["action"] == "restore unless it holds data"
    assert rb.plan_rebuild(man, {}, {})["databases"][0]["action"] == "start and restore"


def test_swarm_tasks_and_networks_are_left_to_the_swarm_step():
    man = deployment_manifest()
    task = spec("web.1.abc", labels={"com.docker.swarm.task.id": "x", "com.docker.swarm.service.id": "y"})
    man["deployment"]["containers"].append(task)
    man["deployment"]["compose_projects"] = []
    man["deployment"]["networks"] = [{"name": "ingress", "driver": "overlay", "scope": "swarm"},
                                     {"name": "app_net", "driver": "bridge", "scope": "local"}]
    plan = rb.plan_rebuild(man, {}, {"web": {"SECRET": "x"}})
    assert [s["name"] for s in plan["services"]] == ["web"]
    assert [n["name"] for n in plan["networks"]] == ["app_net"]
    assert "web.1.abc" not in rb.runbook(man, "/r")


def test_the_runbook_installs_the_tools_before_it_fetches_the_repository():
    """A fresh host may lack OpenSSH's client: block 1 installs it, the copy comes after (the
    Molecule drill's fresh Debian 13 host has no scp)."""
    man = deployment_manifest()
    man["encryption"] = {"scheme": "age"}
    blocks = _sh_blocks(rb.runbook(man, "sftp://backup@vault/srv/lifeboat"))
    assert "scp" not in blocks[0] and "REPO=/var/backups/lifeboat" in blocks[0]
    assert "apt-get install -y docker.io tar zstd age acl attr python3 openssh-client" in blocks[1]
    # Debian 13's docker.io only recommends the client (a host may install without recommends)
    assert "if apt-cache show docker-cli >/dev/null 2>&1; then apt-get install -y docker-cli; fi" in blocks[1]
    assert blocks[2].splitlines()[-1].startswith("scp -r -q -i \"$SSH_KEY\"")
    rclone = _sh_blocks(rb.runbook(man, "rclone://remote:bucket/lifeboat"))
    assert "python3 rclone\n" in rclone[1]
    assert "test -f /var/backups/lifeboat/lifeboat-repository.json ||" in rclone[2]
    local = _sh_blocks(rb.runbook(man, "/var/backups/lifeboat"))
    assert local[1].count("apt-get install -y docker.io tar zstd age acl attr python3\n") == 1
    assert not any("scp" in b or "lifeboat-repository.json" in b for b in local)


def test_the_runbook_runs_compose_v1_or_v2_and_waits_for_healthy_services():
    man = deployment_manifest()
    man["deployment"]["containers"][0]["compose"] = {"project": "shop", "service": "web", "depends_on": []}
    man["deployment"]["compose_projects"][0].update(working_dir="/srv/shop", services=[{"name": "web", "running": True}])
    text = rb.runbook(man, "/var/backups/lifeboat")
    block = _sh_blocks(text[text.index("Compose project `shop`"):])[0].splitlines()
    # the same block runs on Debian 12 (docker-compose 1.29) and 13 (the compose v2 plugin)
    assert block[-2].startswith("COMPOSE='docker compose'; docker compose version >/dev/null 2>&1 || COMPOSE=docker-compose")
    assert block[-1] == "$COMPOSE --project-name shop --project-directory /srv/shop up --detach --no-build web"
    check = _sh_blocks(text[text.index("## 8. Check"):])[0]
    assert "docker ps -q --filter health=starting" in check
    assert check.rstrip().endswith("see docker logs NAME\" >&2; false; fi")


@pytest.mark.parametrize("states, fails", [("web running healthy", False), ("web running unhealthy", True),
                                           ("web exited -", True), ("job created -", False)])
def test_the_runbook_check_stops_on_a_container_that_is_not_running(tmp_path, states, fails):
    """Block 8 run by bash against a stand-in `docker` (no engine in unit tests) that answers the
    block's filters from STATES: it stops (exit 1) naming a container that exited or is unhealthy."""
    name, status, health = states.split()
    fake = tmp_path / "docker"
    fake.write_text(f"""#!/bin/bash
# answers `docker ps [-a] [-q] --filter K=V ... --format F` for one container: {name} {status} {health}
all=0; want_status=(); want_health=()
while [ $# -gt 0 ]; do case "$1" in
  -a) all=1;; --filter) case "$2" in status=*) want_status+=("${{2#status=}}");; health=*) want_health+=("${{2#health=}}");; esac; shift;;
  --format) shift;; esac; shift; done
[ {status} = running ] || [ $all = 1 ] || exit 0
if [ ${{#want_status[@]}} -gt 0 ]; then [[ " ${{want_status[*]}} " == *" {status} "* ]] || exit 0; fi
if [ ${{#want_health[@]}} -gt 0 ]; then [[ " ${{want_health[*]}} " == *" {health} "* ]] || exit 0; fi
echo {name}
""", encoding="utf-8")
    fake.chmod(0o755)
    check = _sh_blocks(rb.runbook(deployment_manifest(), "/r")[0:])[-1]
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", check], capture_output=True, text=True, check=False,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, timeout=30)
    assert (proc.returncode != 0) == fails, proc.stderr
    assert (f"not running (or not healthy): {name}" in proc.stderr) == fails


def test_the_runbook_keeps_the_aliases_and_addresses_of_every_network():
    """The first network's aliases were lost (docker run --network NET gave none): the Molecule
    drill's exporter came back without its alias `reports` on ops_net."""
    web = spec("web")
    assert web["network_mode"] == "app_net"
    line = rb.docker_run_line(web)
    run, connect = line.splitlines()
    assert " --network app_net --network-alias www " in run
    assert connect == "docker network connect --ip 10.5.0.9 backend web"
