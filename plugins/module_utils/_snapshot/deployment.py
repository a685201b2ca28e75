# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The host's deployment in a snapshot: what a rebuild needs that no unit holds.

Every container's spec (also containers without volumes), the networks, every volume's driver,
options and labels, the compose projects (their files captured as objects) and, when asked, the
images the containers use (`docker save` through zstd, one object per image, saved once per
repository). The pure parts (records of containers, networks, volumes, projects) are apart from
capture_deployment(), which reads files and the engine and writes objects.

Environment values and compose .env files are secrets: they are stored, as objects, only when the
snapshot is encrypted; otherwise the section says what was left out, and the rebuild takes the
values from its own (vaulted) variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._data.dump import Compressor, env_of

DEPLOYMENT_VERSION = 1
DEFAULT_NETWORKS = ("bridge", "host", "none")
COMPOSE = "com.docker.compose."
MAX_COMPOSE_FILE = 4 * 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# HostConfig settings a rebuild replays as they were (beyond mounts, ports, restart policy).
HOST_SETTINGS = ("CapAdd", "CapDrop", "Privileged", "Devices", "ExtraHosts", "Tmpfs", "ReadonlyRootfs", "ShmSize",
                 "Init", "Links", "VolumesFrom", "LogConfig", "Sysctls", "SecurityOpt", "Memory", "NanoCpus",
                 "CpuShares", "Dns", "DnsSearch", "DnsOptions", "GroupAdd", "PidMode", "IpcMode", "Ulimits",
                 "PublishAllPorts", "Runtime", "OomScoreAdj", "CgroupnsMode", "UsernsMode")


class DeploymentError(Exception):
    """Part of the deployment could not be captured; the message says which and why."""


# -- pure records -------------------------------------------------------------------------------

def is_anonymous_volume(volume: dict[str, Any]) -> bool:
    labels = volume.get("Labels") or {}
    return "com.docker.volume.anonymous" in labels or bool(_HEX64.match(volume.get("Name") or ""))


def volume_record(volume: dict[str, Any]) -> dict[str, Any]:
    return {"name": volume.get("Name"), "driver": volume.get("Driver") or "local",
            "options": volume.get("Options") or {}, "labels": volume.get("Labels") or {},
            "anonymous": is_anonymous_volume(volume)}


def network_record(net: dict[str, Any]) -> dict[str, Any]:
    ipam = net.get("IPAM") or {}
    configs = []
    for conf in ipam.get("Config") or []:
        entry = {k: conf.get(v) for k, v in (("subnet", "Subnet"), ("gateway", "Gateway"), ("ip_range", "IPRange"))
                 if conf.get(v)}
        if conf.get("AuxiliaryAddresses"):
            entry["aux_addresses"] = conf["AuxiliaryAddresses"]
        configs.append(entry)
    return {"name": net.get("Name"), "driver": net.get("Driver") or "bridge", "scope": net.get("Scope") or "local",
            "options": net.get("Options") or {}, "labels": net.get("Labels") or {},
            "internal": bool(net.get("Internal")), "attachable": bool(net.get("Attachable")),
            "enable_ipv6": bool(net.get("EnableIPv6")),
            "ipam": {"driver": ipam.get("Driver") or "default", "options": ipam.get("Options") or {},
                     "config": configs}}


def compose_of(labels: dict[str, str]) -> dict[str, Any] | None:
    """The compose facts a container's labels carry (compose v1 and v2 set the same ones)."""
    project = labels.get(COMPOSE + "project")
    if not project:
        return None
    working_dir = labels.get(COMPOSE + "project.working_dir")
    # compose v1 records the files as given (often relative to the working dir), v2 absolute
    files = [os.path.join(working_dir or "/", f) for f in (labels.get(COMPOSE + "project.config_files") or "").split(",")
             if f]
    env_files = [os.path.join(working_dir or "/", f)
                 for f in (labels.get(COMPOSE + "project.environment_file") or "").split(",") if f]
    depends = []
    for item in (labels.get(COMPOSE + "depends_on") or "").split(","):
        if item:
            depends.append(item.split(":", 1)[0])
    return {"project": project, "service": labels.get(COMPOSE + "service"),
            "number": labels.get(COMPOSE + "container-number"),
            "oneoff": labels.get(COMPOSE + "oneoff", "False") == "True",
            "working_dir": working_dir, "config_files": files,
            "environment_files": env_files, "depends_on": sorted(set(depends)),
            "version": labels.get(COMPOSE + "version")}


def deployment_container(attrs: dict[str, Any], image_digests: dict[str, list[str]],
                         image_env: dict[str, str]) -> dict[str, Any]:
    """A container's full spec for a rebuild: container_spec() and what re-creating it needs
    (state, healthcheck, network endpoints, host settings). Environment: the NAMES the container
    sets itself (`env_set`, those that differ from the image's), never the values."""
    from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.capture import container_spec

    spec = container_spec(attrs, image_digests)
    config = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    state = attrs.get("State") or {}
    short_id = (attrs.get("Id") or "")[:12]
    env = env_of(attrs)
    endpoints = []
    for name, ep in sorted(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items()):
        ep = ep or {}
        ipam = ep.get("IPAMConfig") or {}
        endpoints.append({"name": name,
                          "aliases": sorted(a for a in ep.get("Aliases") or [] if a not in (short_id, spec["name"])),
                          "ipv4_address": ipam.get("IPv4Address") or None,
                          "ipv6_address": ipam.get("IPv6Address") or None,
                          "links": ep.get("Links") or []})
    by_dest = {m.get("Destination"): m for m in attrs.get("Mounts") or []}
    for mount in spec["mounts"]:
        raw = by_dest.get(mount["destination"]) or {}
        mount["mode"] = raw.get("Mode") or ""
        if mount["type"] == "volume":
            mount["driver"] = raw.get("Driver") or "local"
            mount["anonymous"] = bool(_HEX64.match(mount.get("name") or ""))
    restart = host.get("RestartPolicy") or {}
    spec.update(
        state=state.get("Status") or "created",
        health=(state.get("Health") or {}).get("Status"),
        healthcheck=config.get("Healthcheck") or None,
        hostname=config.get("Hostname") if config.get("Hostname") not in (None, "", short_id) else None,
        domainname=config.get("Domainname") or None,
        network_mode=host.get("NetworkMode") or "default",
        endpoints=endpoints,
        env_set=sorted(k for k, v in env.items() if image_env.get(k) != v),
        exposed_ports=sorted((config.get("ExposedPorts") or {}).keys()),
        tty=bool(config.get("Tty")), open_stdin=bool(config.get("OpenStdin")),
        stop_signal=config.get("StopSignal") or None, stop_timeout=config.get("StopTimeout"),
        restart_max_retries=restart.get("MaximumRetryCount") or 0,
        host_settings={k: host[k] for k in HOST_SETTINGS if host.get(k) not in (None, "", [], {}, 0, False)},
        compose=compose_of(spec["labels"]),
    )
    return spec


def compose_projects(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compose projects the container specs name: project, working dir, config files,
    services (each with its containers' state)."""
    projects: dict[str, dict[str, Any]] = {}
    for spec in containers:
        comp = spec.get("compose")
        if not comp:
            continue
        proj = projects.setdefault(comp["project"], {
            "name": comp["project"], "working_dir": comp["working_dir"], "config_files": [],
            "environment_files": [], "services": {}, "compose_version": comp.get("version")})
        for key in ("config_files", "environment_files"):
            for path in comp[key]:
                if path not in proj[key]:
                    proj[key].append(path)
        if comp.get("oneoff"):
            continue
        service = proj["services"].setdefault(comp["service"], {"name": comp["service"], "containers": [],
                                                                "depends_on": [], "running": False})
        service["containers"].append(spec["name"])
        service["depends_on"] = sorted(set(service["depends_on"]) | set(comp["depends_on"]))
        service["running"] = service["running"] or spec.get("state") == "running"
    out = []
    for name in sorted(projects):
        proj = projects[name]
        proj["services"] = [proj["services"][s] for s in sorted(proj["services"])]
        out.append(proj)
    return out


def referenced_files(doc: Any, base_dir: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The files a compose file (parsed, DOC) names besides itself, which `compose up` on a new
    host needs: services' env_file (secret), top-level secrets with a file (secret) and configs
    with a file. Paths are absolute (relative ones from BASE_DIR, the compose file's directory).
    Returns (files [{path, secret, what}], problems). Pure."""
    files: list[dict[str, Any]] = []
    problems: list[str] = []

    def add(value: Any, secret: bool, what: str, optional: bool = False) -> None:
        if not isinstance(value, str) or not value:
            problems.append(f"{what}: {value!r} is not a file path")
            return
        if "$" in value:
            problems.append(f"{what}: {value} depends on variables; it is not captured (put it on the new host "
                            "by hand)")
            return
        path = os.path.normpath(os.path.join(base_dir, value))
        if not any(f["path"] == path for f in files):
            files.append({"path": path, "secret": secret, "what": what, "optional": optional})

    if not isinstance(doc, dict):
        return files, problems
    for name, service in sorted((doc.get("services") or {}).items()) if isinstance(doc.get("services"), dict) else []:
        env_file = (service or {}).get("env_file") if isinstance(service, dict) else None
        for item in ([env_file] if isinstance(env_file, str) else env_file or []):
            if isinstance(item, dict):  # the long form: {path: ..., required: false}
                add(item.get("path"), True, f"env_file of service {name}", optional=item.get("required") is False)
            else:
                add(item, True, f"env_file of service {name}")
    for section, secret in (("secrets", True), ("configs", False)):
        entries = doc.get(section)
        for name, entry in sorted(entries.items()) if isinstance(entries, dict) else []:
            if isinstance(entry, dict) and entry.get("file"):
                add(entry["file"], secret, f"{section[:-1]} {name}")
    return files, problems


def env_file_paths(project: dict[str, Any]) -> list[str]:
    """The .env files a project reads: the recorded environment files, else WORKING_DIR/.env."""
    paths = list(project.get("environment_files") or [])
    if not paths and project.get("working_dir"):
        paths.append(os.path.join(project["working_dir"], ".env"))
    return paths


def image_reuse_key(image_id: str, recipients: list[str] | None) -> str:
    """What must be equal for an image archive in the repository to serve again: the image id and
    the encryption's recipients. A hash, so a sealed record can carry it."""
    text = json.dumps(["image", image_id, sorted(recipients or [])])
    return hashlib.sha256(text.encode()).hexdigest()


def known_image_archives(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """reuse key -> (archive reference, snapshot id) of every image archive the manifests (plain or
    sealed) of a repository name."""
    out: dict[str, dict[str, Any]] = {}
    for man in records:
        for image in (man.get("deployment") or {}).get("images") or []:
            if image.get("reuse_key") and image.get("archive") and image["reuse_key"] not in out:
                out[image["reuse_key"]] = {"archive": image["archive"], "snapshot": man.get("id")}
    return out


# -- capture (engine, files, repository) --------------------------------------------------------

def _read_small(path: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_COMPOSE_FILE + 1)
    if len(data) > MAX_COMPOSE_FILE:
        raise DeploymentError(f"{path} is larger than {MAX_COMPOSE_FILE} bytes: not a compose or .env file")
    return data


def save_image(client, repo, name: str, level: int) -> dict[str, Any]:
    """`docker save NAME` (through the API) | zstd into a new object; returns its reference."""
    writer = repo.new_object_writer()
    comp = Compressor(writer, level)
    try:
        for chunk in client.api.get_image(name):
            comp.write(chunk)
        obj = comp.close()
    except BaseException:
        comp.abort()
        writer.abort()
        raise
    ref, _new = repo.store_object(writer, obj["sha256"], obj["size"])
    return dict(ref, format="docker-save+zstd", compression="zstd", level=level)


class DeploymentCapture:
    """Captures the deployment section of one snapshot (see the module docstring)."""

    def __init__(self, client, repo, raw: dict[str, Any], include_images: bool = False, level: int = 3) -> None:
        self.client = client
        self.repo = repo
        self.raw = raw
        self.include_images = include_images
        self.level = level
        self.encrypted = bool(repo.recipients)
        self.left_out: list[str] = []
        self.problems: list[str] = []
        self.stats = {"images_saved": 0, "images_reused": 0, "image_bytes_stored": 0}

    def _image_env(self, image_id: str, cache: dict[str, dict[str, str]]) -> dict[str, str]:
        if image_id not in cache:
            try:
                attrs = self.client.api.inspect_image(image_id)
            except Exception:  # pylint: disable=broad-except  # image gone: every name counts as set
                attrs = {}
            cache[image_id] = env_of(attrs)
        return cache[image_id]

    def containers(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
        """(specs, values of the environment each container sets itself)."""
        digests = {i.get("Id", ""): i.get("RepoDigests") or [] for i in self.raw.get("images") or []}
        cache: dict[str, dict[str, str]] = {}
        specs, values = [], {}
        for attrs in sorted(self.raw.get("containers") or [], key=lambda a: a.get("Name") or ""):
            spec = deployment_container(attrs, digests, self._image_env(attrs.get("Image") or "", cache))
            specs.append(spec)
            env = env_of(attrs)
            if spec["env_set"]:
                values[spec["name"]] = {k: env[k] for k in spec["env_set"]}
        return specs, values

    def _file_entry(self, path: str, secret: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "object": None}
        if not os.path.isfile(path):
            entry["missing"] = "not found on the host at backup time"
            return entry
        if secret and not self.encrypted:
            entry["left_out"] = "environment values are secrets: stored only in encrypted snapshots"
            return entry
        try:
            data = _read_small(path)
        except (OSError, DeploymentError) as exc:
            entry["missing"] = str(exc)
            return entry
        st = os.stat(path)
        ref, _new = self.repo.put_bytes(data)
        entry.update(object=ref, mode=f"{st.st_mode & 0o7777:04o}", uid=st.st_uid, gid=st.st_gid)
        return entry

    def _referenced(self, proj: dict[str, Any]) -> list[dict[str, Any]]:
        """The files the project's compose files name (referenced_files), each once."""
        try:
            import yaml  # Debian's python3-yaml (the docker_engine role installs it)
        except ImportError:
            self.problems.append(f"compose project {proj['name']}: the files its compose files name (env_file, "
                                 "secrets, configs) were not looked for: install python3-yaml on this host")
            return []
        seen = set(proj["config_files"]) | set(env_file_paths(proj))
        refs: list[dict[str, Any]] = []
        for path in proj["config_files"]:
            try:
                doc = yaml.safe_load(_read_small(path))
            except (OSError, DeploymentError, yaml.YAMLError) as exc:
                self.problems.append(f"compose project {proj['name']}: {path} could not be read for the files it "
                                     f"names ({str(exc).splitlines()[0]})")
                continue
            files, problems = referenced_files(doc, os.path.dirname(path))
            self.problems.extend(f"compose project {proj['name']}: {p}" for p in problems)
            for ref in files:
                if ref["path"] not in seen:
                    seen.add(ref["path"])
                    refs.append(ref)
        return refs

    def projects(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for proj in compose_projects(specs):
            proj["files"] = [self._file_entry(p, secret=False) for p in proj["config_files"]]
            proj["env_files"] = [e for e in (self._file_entry(p, secret=True) for p in env_file_paths(proj))
                                 if "missing" not in e or proj.get("environment_files")]
            for ref in self._referenced(proj):
                entry = self._file_entry(ref["path"], secret=ref["secret"])
                entry["what"] = ref["what"]
                if entry.get("missing") and ref["optional"]:
                    continue
                (proj["env_files"] if ref["secret"] else proj["files"]).append(entry)
            for entry in proj["files"]:
                if entry.get("missing"):
                    self.problems.append(f"compose project {proj['name']}: {entry['path']} {entry['missing']}")
            for entry in proj["env_files"]:
                if entry.get("left_out"):
                    self.left_out.append(f"{entry['path']} of compose project {proj['name']} (the snapshot is not "
                                         "encrypted; give its content to the rebuild as dr_rebuild_compose_env)")
                elif entry.get("missing"):
                    self.problems.append(f"compose project {proj['name']}: {entry['path']} ({entry.get('what')}) "
                                         f"{entry['missing']}")
            out.append(proj)
        return out

    def images(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {i.get("Id"): i for i in self.raw.get("images") or []}
        known = known_image_archives(self.repo.manifests()[0]) if self.include_images else {}
        out = []
        for image_id in sorted({s["image_id"] for s in specs if s.get("image_id")}):
            summary = by_id.get(image_id) or {}
            tags = sorted(t for t in summary.get("RepoTags") or [] if t and t != "<none>:<none>")
            entry: dict[str, Any] = {"id": image_id, "tags": tags, "digests": sorted(summary.get("RepoDigests") or []),
                                     "size": summary.get("Size"), "archive": None, "reused_from": None,
                                     "reuse_key": image_reuse_key(image_id, self.repo.recipients)}
            if self.include_images:
                prior = known.get(entry["reuse_key"])
                if prior and self.repo.has_object(prior["archive"]):
                    entry.update(archive=dict(prior["archive"]), reused_from=prior["snapshot"])
                    self.stats["images_reused"] += 1
                elif not summary:
                    self.problems.append(f"image {image_id} of a container is not on this host: not saved")
                else:
                    started = time.monotonic()
                    try:
                        entry["archive"] = save_image(self.client, self.repo, tags[0] if tags else image_id, self.level)
                    except Exception as exc:  # pylint: disable=broad-except
                        self.problems.append(f"image {tags[0] if tags else image_id} could not be saved: {exc}")
                    else:
                        entry["seconds"] = round(time.monotonic() - started, 3)
                        self.stats["images_saved"] += 1
                        self.stats["image_bytes_stored"] += entry["archive"]["size"]
            out.append(entry)
        return out

    def run(self, engine: dict[str, Any] | None = None) -> dict[str, Any]:
        started = time.monotonic()
        specs, values = self.containers()
        section: dict[str, Any] = {
            "version": DEPLOYMENT_VERSION,
            "engine": dict(engine or {}, name=self.raw.get("host") or ""),
            "containers": specs,
            "networks": [network_record(n) for n in sorted(self.raw.get("networks") or [], key=lambda n: n.get("Name") or "")
                         if n.get("Name") not in DEFAULT_NETWORKS],
            "volumes": [volume_record(v) for v in sorted(self.raw.get("volumes") or [], key=lambda v: v.get("Name") or "")],
            "compose_projects": self.projects(specs),
            "include_images": self.include_images,
            "images": self.images(specs),
            "environment": None,
        }
        if values and self.encrypted:
            ref, _new = self.repo.put_bytes(json.dumps(values, sort_keys=True).encode())
            section["environment"] = dict(ref, format="json")
        elif values:
            self.left_out.append(f"environment values of {len(values)} container(s) ({', '.join(sorted(values))}): the "
                                 "snapshot is not encrypted; their names are recorded, give the values to the rebuild "
                                 "as dr_rebuild_environment")
        section["left_out"] = list(self.left_out)
        section["problems"] = list(self.problems)
        section["seconds"] = round(time.monotonic() - started, 3)
        return section

    def result(self, section: dict[str, Any]) -> dict[str, Any]:
        """What the snapshot module reports of the section."""
        return {"containers": len(section["containers"]), "networks": len(section["networks"]),
                "volumes": len(section["volumes"]), "compose_projects": [p["name"] for p in section["compose_projects"]],
                "images": len(section["images"]), **self.stats, "environment_stored": bool(section["environment"]),
                "left_out": section["left_out"], "problems": section["problems"], "seconds": section["seconds"]}
