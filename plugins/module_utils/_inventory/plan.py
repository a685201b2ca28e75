# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The planning logic of data_inventory: pure, no engine and no file system.

Input: what the engine said (container inspect dicts, the volume, network and image lists), what
the probe found on disk for each volume and host path (`scans`, keyed by unit id) and which dump
tools exist in running database containers (`dump_tools`, keyed by container name).
Output: the inventory (containers, volumes, binds, networks, images) and the backup plan (units),
with findings and the undeclared items.

Decisions, strongest first: the policy, labels (volume, then the containers that use it),
detection (image, command, environment, on-disk markers), defaults.
"""

from __future__ import annotations

import fnmatch
import heapq
import posixpath
import re
import signal
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import (
    annotate_units,
    inventory_section,
    task_slot,
    validate_stack_policy,
)

STRATEGIES = ("dump", "stop", "pause", "live", "skip")
ENGINES = ("postgres", "mariadb", "mysql", "redis", "mongodb", "sqlite", "none")
SERVER_ENGINES = ("postgres", "mariadb", "mysql", "redis", "mongodb")
ENGINE_TITLES = {
    "postgres": "PostgreSQL", "mariadb": "MariaDB", "mysql": "MySQL", "redis": "Redis",
    "mongodb": "MongoDB", "sqlite": "SQLite", "none": "no database",
}
# Tools that make a consistent dump of a running server, in order of preference.
DUMP_TOOLS = {
    "postgres": ("pg_dumpall", "pg_dump"),
    "mariadb": ("mariadb-dump", "mysqldump"),
    "mysql": ("mysqldump", "mariadb-dump"),
    "redis": ("redis-cli",),
    "mongodb": ("mongodump",),
}
# Where the usual images keep their data.
DATA_DIRS = {
    "postgres": ("/var/lib/postgresql", "/bitnami/postgresql"),
    "mariadb": ("/var/lib/mysql", "/var/lib/mariadb", "/bitnami/mariadb"),
    "mysql": ("/var/lib/mysql", "/bitnami/mysql"),
    "redis": ("/data", "/var/lib/redis", "/bitnami/redis"),
    "mongodb": ("/data/db", "/data/configdb", "/var/lib/mongodb", "/bitnami/mongodb"),
}
POLICY_SETTINGS = ("confidential", "engine", "exclude", "hook_timeout", "on_error", "order", "post", "pre",
                   "reason", "skip", "strategy")
HOOK_ON_ERROR = ("fail", "continue")
ACTIVE_STATES = ("running", "paused", "restarting")
NEVER_STARTED = "0001-01-01T00:00:00Z"

# Host paths that are never captured: kernel interfaces, devices, runtime state, engine storage.
SYSTEM_PATHS = ("/proc", "/sys", "/dev", "/run", "/var/run", "/lib/modules", "/usr/lib/modules",
                "/boot", "/var/lib/docker", "/var/lib/containerd", "/etc/localtime",
                "/etc/timezone", "/etc/machine-id")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CONFIDENTIAL = re.compile(
    r"(?<![a-z])(certs?|certificates?|ssl|tls|secrets?|keys?|rosauth|letsencrypt|acme\.json"
    r"|private|id_rsa|id_ecdsa|id_ed25519|htpasswd)(?![a-z])"
)
_GLOB_CHARS = set("*?[")
_IMAGE_DENY = re.compile(r"(exporter|commander|express|admin|insight|bouncer|pool|proxy|"
                         r"sentinel|operator|ui)(?![a-z])")
_IMAGE_ENGINES = (
    ("mariadb", "mariadb"), ("postgis", "postgres"), ("postgres", "postgres"),
    ("timescale", "postgres"), ("pgvector", "postgres"), ("mysql", "mysql"), ("percona", "mysql"),
    ("redis", "redis"), ("valkey", "redis"), ("keydb", "redis"), ("mongo", "mongodb"),
)
_COMMAND_ENGINES = {
    "postgres": "postgres", "postmaster": "postgres", "mariadbd": "mariadb", "mysqld": "mysql",
    "redis-server": "redis", "valkey-server": "redis", "keydb-server": "redis", "mongod": "mongodb",
}
_MARKER_ORDER = ("postgres", "mariadb", "mysql", "mongodb", "redis", "sqlite")


class PolicyError(ValueError):
    """The policy option is malformed: the message says which entry, what and how to fix it."""


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _truthy(value: Any) -> bool | None:
    """Booleans as labels and YAML write them; None when it is no boolean at all."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off", ""):
        return False
    return None


def _is_glob(key: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in key)


def human_size(size: int | None) -> str:
    if size is None:
        return "not measured"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def size_class(size: int | None) -> str:
    """An order-of-magnitude size class, so that the report does not change with every byte."""
    if size is None:
        return "not measured"
    if size == 0:
        return "empty"
    mib = 1024 * 1024
    bounds = ((mib, "under 1 MiB"), (10 * mib, "1-10 MiB"), (100 * mib, "10-100 MiB"),
              (1024 * mib, "100 MiB-1 GiB"), (10 * 1024 * mib, "1-10 GiB"),
              (100 * 1024 * mib, "10-100 GiB"), (1024 * 1024 * mib, "100 GiB-1 TiB"))
    for bound, label in bounds:
        if size < bound:
            return label
    return "over 1 TiB"


def is_anonymous_volume(name: str, labels: dict[str, str] | None) -> bool:
    """Anonymous: the engine made up the name (64 hex digits) and compose does not manage it.

    Compose labels the volumes it declares with com.docker.compose.volume; such a volume comes
    back on the next `compose up` and is not anonymous in the sense that matters here (data that
    `docker rm -v` or `docker volume prune` silently throws away).
    """
    return bool(_HEX64.match(name)) and "com.docker.compose.volume" not in (labels or {})


def confidential_reason(*texts: str | None, secret_files: list[str] | None = None) -> str | None:
    """Why data looks confidential (certificates, keys, secrets), or None."""
    for text in texts:
        if not text:
            continue
        hit = _CONFIDENTIAL.search(text.lower())
        if hit:
            return f"'{text}' names {hit.group(1)}"
    files = sorted(secret_files or [])
    if files:
        shown = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
        return f"holds key or certificate files ({shown})"
    return None


def bind_kind(path: str, file_type: str | None = None) -> str:
    """data, socket or system for a bind-mounted host path (file_type from lstat, if known)."""
    norm = posixpath.normpath(path)
    if file_type == "socket" or norm.endswith(".sock") or posixpath.basename(norm) == "docker.sock":
        return "socket"
    if norm == "/":
        return "system"
    for system in SYSTEM_PATHS:
        if norm == system or norm.startswith(system + "/"):
            return "system"
    return "data"


def parse_depends_on(value: str | None) -> list[str]:
    """Service names from com.docker.compose.depends_on ("svc:condition:restart,svc2:...")."""
    if not value:
        return []
    names = []
    for part in value.split(","):
        name = part.strip().split(":", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return sorted(names)


def _image_base(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def detect_container_engine(attrs: dict[str, Any]) -> tuple[str | None, str]:
    """(engine, how) from the image name, the command, or the environment (weak, see below).

    An environment hit (POSTGRES_*, MYSQL_* ...) is returned with how starting with "env": apps
    set the same variables to reach their database, so the caller only believes it when the
    container also mounts the engine's data directory.
    """
    config = attrs.get("Config") or {}
    image = config.get("Image") or ""
    base = _image_base(image)
    if base and not _IMAGE_DENY.search(base):
        for needle, engine in _IMAGE_ENGINES:
            if needle in base:
                if engine == "mysql" and _env_engine(config.get("Env") or []) == "mariadb":
                    engine = "mariadb"
                return engine, f"image {image}"
    argv = [attrs.get("Path") or ""] + list(attrs.get("Args") or [])
    for token in argv[:3]:
        word = posixpath.basename(str(token).split()[0]) if str(token).split() else ""
        if word in _COMMAND_ENGINES:
            engine = _COMMAND_ENGINES[word]
            if engine == "mysql" and _env_engine(config.get("Env") or []) == "mariadb":
                engine = "mariadb"
            return engine, f"command {word}"
    env_engine = _env_engine(config.get("Env") or [])
    if env_engine == "postgres" and any(str(e).startswith("PGDATA=") for e in config.get("Env") or []):
        return "postgres", "environment PGDATA"
    if env_engine:
        return env_engine, "env"
    return None, ""


def _env_engine(env: list[str]) -> str | None:
    keys = [str(item).split("=", 1)[0] for item in env]
    if any(k.startswith("MARIADB_") for k in keys):
        return "mariadb"
    if any(k.startswith("POSTGRES_") or k == "PGDATA" for k in keys):
        return "postgres"
    if any(k.startswith("MYSQL_") for k in keys):
        return "mysql"
    if any(k.startswith("MONGO_INITDB_") for k in keys):
        return "mongodb"
    return None


def _env_value(attrs: dict[str, Any], key: str) -> str | None:
    for item in (attrs.get("Config") or {}).get("Env") or []:
        name, dummy, value = str(item).partition("=")
        if name == key:
            return value
    return None


def _same_family(a: str | None, b: str | None) -> bool:
    family = {"mariadb": "mysql", "mysql": "mysql"}
    return a is not None and b is not None and family.get(a, a) == family.get(b, b)


def signal_number(name: str) -> int | None:
    """The number of a stop signal as the engine takes it ("SIGTERM", "TERM", "15"), or None."""
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        return None


def _sqlite_words(databases: list[str]) -> str:
    names = ", ".join(databases[:5]) + (f" and {len(databases) - 5} more" if len(databases) > 5 else "")
    return (f"SQLite database{'s' if len(databases) > 1 else ''} {names} copied with SQLite's online backup "
            "API and checked with PRAGMA integrity_check")


def marker_engine(scan: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(engine, relative place) from the on-disk markers a scan found, strongest first."""
    markers = (scan or {}).get("markers") or {}
    for engine in _MARKER_ORDER:
        if engine in markers:
            return engine, markers[engine]
    return None, None


# ---------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------

def validate_policy(policy: Any) -> dict[str, dict[str, Any]]:
    """The policy normalised to {key: {strategy, engine, exclude, order, confidential, reason}}.

    Keys: volume names, absolute host paths, unit ids (volume:NAME, path:/P, db:CONTAINER) or
    shell globs over any of these; stack:NAME names a swarm stack's compose files (_rebuild/swarm.py).
    A value may be a mapping of settings, a bare strategy string,
    or empty (declared, planned by the usual rules). Raises PolicyError with a clear message.
    """
    if policy is None:
        return {}
    if not isinstance(policy, dict):
        raise PolicyError(f"policy must be a mapping from volume names, host paths or globs to "
                          f"settings, got {type(policy).__name__}")
    allowed = ", ".join(POLICY_SETTINGS)
    result: dict[str, dict[str, Any]] = {}
    for raw_key, value in policy.items():
        key, where = _policy_key(raw_key)
        if value is None:
            value = {}
        elif isinstance(value, str):
            value = {"strategy": value}
        if not isinstance(value, dict):
            raise PolicyError(f"{where}: the value must be a mapping of settings ({allowed}) or a "
                              f"strategy name, got {type(value).__name__}")
        if key.startswith("stack:"):  # a swarm stack: where its compose files are (see _rebuild/swarm.py)
            try:
                result[key] = validate_stack_policy(key, value)
            except ValueError as exc:
                raise PolicyError(str(exc)) from exc
            continue
        entry = _policy_entry(where, value, allowed)
        if key in result:
            raise PolicyError(f"{where} appears twice (after normalising trailing slashes)")
        result[key] = entry
    return result


def _policy_key(raw_key: Any) -> tuple[str, str]:
    """A policy key, checked and normalised (trailing slashes of host paths), and how messages name it."""
    key = str(raw_key).strip()
    where = f"policy entry {key!r}"
    if not key:
        raise PolicyError("policy has an empty key: use a volume name, an absolute host path, "
                          "a unit id (volume:NAME, path:/PATH, db:CONTAINER) or a glob")
    if key.startswith("path:") and not key[5:].startswith("/") and not _is_glob(key[5:]):
        raise PolicyError(f"{where}: host paths must be absolute, for example path:/srv/data")
    if "/" in key and not key.startswith(("/", "path:", "volume:", "db:")) and not _is_glob(key):
        raise PolicyError(f"{where}: host paths must be absolute (start with /); volume names "
                          "cannot contain /")
    if key.startswith("/") and len(key) > 1:
        key = key.rstrip("/") or "/"
    return key, where


def _policy_entry(where: str, value: dict[str, Any], allowed: str) -> dict[str, Any]:
    """A policy entry's settings (a mapping), checked and normalised."""
    unknown = sorted(str(k) for k in value if k not in POLICY_SETTINGS)
    if unknown:
        raise PolicyError(f"{where}: unknown setting(s) {', '.join(unknown)}; allowed: {allowed}")
    entry: dict[str, Any] = {k: None for k in POLICY_SETTINGS if k != "skip"}
    strategy = value.get("strategy")
    if strategy is not None:
        strategy = str(strategy).strip().lower()
        if strategy not in STRATEGIES:
            raise PolicyError(f"{where}: strategy {value.get('strategy')!r} is not one of "
                              f"{', '.join(STRATEGIES)}")
    if value.get("skip") is not None:
        skip = _truthy(value["skip"])
        if skip is None:
            raise PolicyError(f"{where}: skip must be true or false, got {value['skip']!r}")
        if skip:
            if strategy not in (None, "skip"):
                raise PolicyError(f"{where}: skip: true contradicts strategy {strategy}; "
                                  "keep one of them")
            strategy = "skip"
    entry["strategy"] = strategy
    if value.get("engine") is not None:
        engine = str(value["engine"]).strip().lower()
        if engine not in ENGINES:
            raise PolicyError(f"{where}: engine {value['engine']!r} is not one of "
                              f"{', '.join(ENGINES)}")
        entry["engine"] = engine
    exclude = value.get("exclude")
    if exclude is not None:
        if isinstance(exclude, str):
            exclude = [exclude]
        if not isinstance(exclude, list) or not all(isinstance(p, str) and p for p in exclude):
            raise PolicyError(f"{where}: exclude must be a list of glob patterns (strings)")
        entry["exclude"] = list(exclude)
    if value.get("order") is not None:
        order = value["order"]
        if isinstance(order, bool):
            order = None
        else:
            try:
                order = int(str(order).strip())
            except ValueError:
                order = None
        if order is None:
            raise PolicyError(f"{where}: order must be a whole number, got {value['order']!r}")
        entry["order"] = order
    if value.get("confidential") is not None:
        conf = _truthy(value["confidential"])
        if conf is None:
            raise PolicyError(f"{where}: confidential must be true or false, "
                              f"got {value['confidential']!r}")
        entry["confidential"] = conf
    if value.get("reason") is not None:
        entry["reason"] = str(value["reason"])
    for phase in ("pre", "post"):
        if value.get(phase) is not None:
            if not isinstance(value[phase], str) or not value[phase].strip():
                raise PolicyError(f"{where}: {phase} must be a shell command (a string)")
            entry[phase] = value[phase]
    if value.get("hook_timeout") is not None:
        try:
            entry["hook_timeout"] = int(value["hook_timeout"])
        except (TypeError, ValueError):
            entry["hook_timeout"] = 0
        if isinstance(value["hook_timeout"], bool) or entry["hook_timeout"] <= 0:
            raise PolicyError(f"{where}: hook_timeout must be a positive number of seconds, "
                              f"got {value['hook_timeout']!r}")
    if value.get("on_error") is not None:
        if value["on_error"] not in HOOK_ON_ERROR:
            raise PolicyError(f"{where}: on_error must be fail or continue, got {value['on_error']!r}")
        entry["on_error"] = value["on_error"]
    return entry


def match_policy(policy: dict[str, dict[str, Any]], names: list[str]) -> tuple[str | None, dict[str, Any] | None]:
    """(key, entry) of the most specific policy entry for an item known by NAMES, or (None, None).

    Exact keys beat a parent path (a key /srv covers /srv/app), which beats globs; among equals
    the longer key wins.
    """
    best: tuple[tuple[int, int, str], str] | None = None
    for key in policy:
        for name in names:
            rank = None
            if key == name:
                rank = 0
            elif _is_glob(key):
                if fnmatch.fnmatchcase(name, key):
                    rank = 2
            else:
                path_key = key[5:] if key.startswith("path:") else key
                path_name = name[5:] if name.startswith("path:") else name
                if path_key.startswith("/") and path_name.startswith("/") and (
                        path_key == "/" or path_name.startswith(path_key + "/")):
                    rank = 1
            if rank is not None:
                candidate = ((rank, -len(key), key), key)
                if best is None or candidate[0] < best[0]:
                    best = candidate
    if best is None:
        return None, None
    return best[1], policy[best[1]]


# ---------------------------------------------------------------------------------------------
# Stop order
# ---------------------------------------------------------------------------------------------

def stop_order(names: list[str], info: dict[str, dict[str, Any]]) -> tuple[list[str], bool]:
    """NAMES sorted so that dependents stop first; (order, True) when the rules form a cycle.

    INFO maps container name to {"project", "service", "depends_on", "order"}. Compose
    depends_on: a container stops before the containers of the services it depends on. The
    label lifeboat.order is a start rank: lower starts first, so higher stops first. Ties go by
    name. A cycle is broken by name (and reported by the caller).
    """
    names = sorted(set(names))
    before: dict[str, set[str]] = {n: set() for n in names}  # n must stop before each of these
    for a in names:
        ia = info.get(a) or {}
        for b in names:
            if a == b:
                continue
            ib = info.get(b) or {}
            if ia.get("project") and ia.get("project") == ib.get("project") and \
                    ib.get("service") in (ia.get("depends_on") or []):
                before[a].add(b)
            oa, ob = ia.get("order"), ib.get("order")
            if oa is not None and ob is not None and oa > ob:
                before[a].add(b)
    indegree = {n: 0 for n in names}
    for a in names:
        for b in before[a]:
            indegree[b] += 1
    ready = [n for n in names if indegree[n] == 0]
    heapq.heapify(ready)
    result: list[str] = []
    cycle = False
    remaining = set(names)
    while remaining:
        if not ready:
            cycle = True
            pick = min(remaining)
            indegree[pick] = 0
            heapq.heappush(ready, pick)
        name = heapq.heappop(ready)
        if name not in remaining:
            continue
        remaining.discard(name)
        result.append(name)
        for b in sorted(before[name]):
            if b in remaining:
                indegree[b] -= 1
                if indegree[b] == 0:
                    heapq.heappush(ready, b)
    return result, cycle


# ---------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------

class _Planner:
    def __init__(self, raw: dict[str, Any], scans: dict[str, dict[str, Any]] | None,
                 policy: dict[str, dict[str, Any]] | None, include_sizes: bool = True) -> None:
        self.raw = raw
        self.scans = scans or {}
        self.policy = policy or {}
        self.has_policy = declares_data(policy)
        self.include_sizes = include_sizes
        self.findings: list[dict[str, Any]] = []
        self.used_policy_keys: set[str] = set()
        self.images_by_id = {img.get("Id"): img for img in raw.get("images") or []}
        self.attrs: dict[str, dict[str, Any]] = {}
        for attrs in raw.get("containers") or []:
            self.attrs[(attrs.get("Name") or attrs.get("Id", "")[:12]).lstrip("/")] = attrs
        self.containers = {name: self._container(name, attrs) for name, attrs in self.attrs.items()}
        self.order_info = {
            name: {"project": (c["compose"] or {}).get("project"),
                   "service": (c["compose"] or {}).get("service"),
                   "depends_on": (c["compose"] or {}).get("depends_on") or [],
                   "order": self._label_order(c["labels"], f"container {name}")}
            for name, c in self.containers.items()
        }
        self.items = self._items()

    # -- findings ---------------------------------------------------------------------------

    def finding(self, code: str, severity: str, subject: str, message: str) -> None:
        entry = {"code": code, "severity": severity, "subject": subject, "message": message}
        if entry not in self.findings:
            self.findings.append(entry)

    # -- containers -------------------------------------------------------------------------

    def _container(self, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        config = attrs.get("Config") or {}
        state = attrs.get("State") or {}
        host_config = attrs.get("HostConfig") or {}
        labels = dict(config.get("Labels") or {})
        image_id = attrs.get("Image") or ""
        image = self.images_by_id.get(image_id) or {}
        image_name = config.get("Image") or ""
        if (not image_name or image_name.startswith("sha256:")) and image.get("RepoTags"):
            image_name = sorted(image["RepoTags"])[0]
        digests = sorted(image.get("RepoDigests") or [])
        compose = None
        if "com.docker.compose.project" in labels or "com.docker.compose.service" in labels:
            files = labels.get("com.docker.compose.project.config_files") or ""
            compose = {
                "project": labels.get("com.docker.compose.project"),
                "service": labels.get("com.docker.compose.service"),
                "working_dir": labels.get("com.docker.compose.project.working_dir"),
                "config_files": [f.strip() for f in files.split(",") if f.strip()],
                "depends_on": parse_depends_on(labels.get("com.docker.compose.depends_on")),
            }
        swarm = None
        if "com.docker.swarm.service.name" in labels or "com.docker.stack.namespace" in labels:
            swarm = {"service": labels.get("com.docker.swarm.service.name"),
                     "stack": labels.get("com.docker.stack.namespace")}
        mounts = []
        for mount in attrs.get("Mounts") or []:
            mounts.append({
                "type": mount.get("Type") or "volume",
                "name": mount.get("Name") if mount.get("Type", "volume") == "volume" else None,
                "source": mount.get("Source") or None,
                "destination": mount.get("Destination") or "",
                "rw": bool(mount.get("RW", True)),
            })
        for dest in sorted(host_config.get("Tmpfs") or {}):
            if not any(m["destination"] == dest for m in mounts):
                mounts.append({"type": "tmpfs", "name": None, "source": None,
                               "destination": dest, "rw": True})
        mounts.sort(key=lambda m: (m["destination"], m["type"]))
        networks = sorted(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        health = (state.get("Health") or {}).get("Status")
        status = state.get("Status") or ("running" if state.get("Running") else "exited")
        restart = (host_config.get("RestartPolicy") or {}).get("Name") or "no"
        return {
            "name": name,
            "id": attrs.get("Id", ""),
            "image": {"name": image_name, "id": image_id, "digest": digests[0] if digests else None},
            "state": status,
            "health": health,
            "restart_policy": restart,
            "labels": labels,
            "compose": compose,
            "swarm": swarm,
            "mounts": mounts,
            "networks": networks,
            "never_started": status == "created" and state.get("StartedAt", NEVER_STARTED) in (
                NEVER_STARTED, "", None),
        }

    def _label_order(self, labels: dict[str, str], subject: str) -> int | None:
        raw = labels.get("lifeboat.order")
        if raw is None:
            return None
        try:
            return int(str(raw).strip())
        except ValueError:
            self.finding("invalid_label", "warning", subject.split(" ", 1)[1],
                         f"{subject} has lifeboat.order={raw!r}, which is not a whole number; "
                         "the label is ignored: set it to an integer such as 10")
            return None

    def active(self, name: str) -> bool:
        return self.containers[name]["state"] in ACTIVE_STATES

    # -- items: volumes and bind-mounted host paths -------------------------------------------

    def _items(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        for vol in self.raw.get("volumes") or []:
            name = vol.get("Name")
            items[f"volume:{name}"] = {"id": f"volume:{name}", "kind": "volume",
                                       "source": name, "volume": vol, "users": []}
        self.binds: dict[str, dict[str, Any]] = {}
        for cname in sorted(self.containers):
            for mount in self.containers[cname]["mounts"]:
                use = {"container": cname, "destination": mount["destination"], "rw": mount["rw"]}
                if mount["type"] == "volume" and mount["name"]:
                    uid = f"volume:{mount['name']}"
                    if uid not in items:  # listed by the container but not by the volume list
                        items[uid] = {"id": uid, "kind": "volume", "source": mount["name"],
                                      "volume": {"Name": mount["name"], "Driver": "local",
                                                 "Mountpoint": mount["source"]}, "users": []}
                    items[uid]["users"].append(use)
                elif mount["type"] == "bind" and mount["source"]:
                    path = posixpath.normpath(mount["source"])
                    bind = self.binds.setdefault(path, {"source": path, "used_by": []})
                    bind["used_by"].append(use)
        for path, bind in sorted(self.binds.items()):
            scan = self.scans.get(f"path:{path}") or {}
            kind = bind_kind(path, scan.get("type"))
            bind["kind"] = kind
            bind["exists"] = bool(scan.get("exists", True)) if scan else None
            users = sorted(bind["used_by"], key=lambda u: (u["container"], u["destination"]))
            bind["used_by"] = users
            reason = confidential_reason(path, *[u["destination"] for u in users],
                                         secret_files=scan.get("secret_files"))
            bind["confidential"] = reason is not None
            if kind == "socket":
                for use in users:
                    if posixpath.basename(path) == "docker.sock" or \
                            posixpath.basename(use["destination"]) == "docker.sock":
                        self.finding(
                            "docker_socket_mounted", "warning", use["container"],
                            f"container {use['container']} mounts the Docker socket {path} at "
                            f"{use['destination']}: that is root-equivalent access to this host. "
                            "Sockets are never captured; make sure this container is trusted, or "
                            "give it a socket proxy with only the API calls it needs")
                    else:
                        self.finding("socket_mounted", "info", use["container"],
                                     f"container {use['container']} mounts the socket {path} at "
                                     f"{use['destination']}; sockets are never captured")
            elif kind == "system":
                for use in users:
                    self.finding("system_path_mounted", "info", use["container"],
                                 f"container {use['container']} mounts the system path {path} at "
                                 f"{use['destination']}; kernel, device and runtime paths are "
                                 "never captured")
            else:
                items[f"path:{path}"] = {"id": f"path:{path}", "kind": "path", "source": path,
                                         "volume": None, "users": users}
        for item in items.values():
            item["users"] = sorted(item["users"], key=lambda u: (u["container"], u["destination"]))
            item["scan"] = self.scans.get(item["id"]) or {}
        return items

    # -- labels ------------------------------------------------------------------------------

    def _label(self, item: dict[str, Any], key: str) -> tuple[str | None, str | None]:
        """(value, where) of a lifeboat.* label: the volume first, then its containers by name."""
        vol = item.get("volume") or {}
        labels = vol.get("Labels") or {}
        if item["kind"] == "volume" and key in labels:
            return str(labels[key]), f"volume {item['source']}"
        values = []
        for use in item["users"]:
            clabels = self.containers[use["container"]]["labels"]
            if key in clabels and (use["container"], clabels[key]) not in values:
                values.append((use["container"], str(clabels[key])))
        if not values:
            return None, None
        if len({v for dummy, v in values}) > 1:
            self.finding("conflicting_labels", "info", item["source"],
                         f"the containers using {item['id']} disagree on {key} ("
                         + ", ".join(f"{c}={v}" for c, v in values)
                         + f"); {values[0][0]}'s value wins: set the label on the volume or "
                         "declare the item in the policy to decide")
        return values[0][1], f"container {values[0][0]}"

    def _label_strategy(self, item: dict[str, Any]) -> tuple[str | None, str | None]:
        skip, where = self._label(item, "lifeboat.skip")
        if skip is not None:
            flag = _truthy(skip)
            if flag is None:
                self.finding("invalid_label", "warning", item["source"],
                             f"lifeboat.skip={skip!r} on {where} is not true or false; ignored")
            elif flag:
                return "skip", f"label lifeboat.skip on {where}"
        value, where = self._label(item, "lifeboat.strategy")
        if value is None:
            return None, None
        strategy = value.strip().lower()
        if strategy not in STRATEGIES:
            self.finding("invalid_label", "warning", item["source"],
                         f"lifeboat.strategy={value!r} on {where} is not one of "
                         f"{', '.join(STRATEGIES)}; ignored")
            return None, None
        return strategy, f"label lifeboat.strategy={strategy} on {where}"

    def _label_engine(self, item: dict[str, Any]) -> tuple[str | None, str | None]:
        value, where = self._label(item, "lifeboat.engine")
        if value is None:
            return None, None
        engine = value.strip().lower()
        if engine not in ENGINES:
            self.finding("invalid_label", "warning", item["source"],
                         f"lifeboat.engine={value!r} on {where} is not one of {', '.join(ENGINES)}; "
                         "ignored")
            return None, None
        return engine, f"label lifeboat.engine on {where}"

    # -- databases ---------------------------------------------------------------------------

    def container_engine(self, name: str) -> tuple[str | None, str]:
        """The database engine a container runs, or (None, "")."""
        c = self.containers[name]
        label = c["labels"].get("lifeboat.engine")
        if label is not None and label.strip().lower() in ENGINES:
            engine = label.strip().lower()
            return (None, "") if engine == "none" else (engine, f"label lifeboat.engine on {name}")
        engine, how = detect_container_engine(self.attrs[name])
        if engine and how != "env":
            return engine, how
        for item in self.items.values():
            for use in item["users"]:
                if use["container"] != name or not use["rw"]:
                    continue
                key, entry = match_policy(self.policy, self._names(item))
                pol_engine = (entry or {}).get("engine")
                if pol_engine in SERVER_ENGINES:
                    return pol_engine, f"policy entry {key!r}"
                mark = marker_engine(item["scan"])[0]
                if engine and (self._at_data_dir(engine, name, use["destination"]) or
                               _same_family(engine, mark)):
                    return engine, f"environment and data directory {use['destination']}"
                if mark in SERVER_ENGINES:
                    return mark, f"{ENGINE_TITLES[mark]} files in {item['id']}"
        return None, ""

    def _at_data_dir(self, engine: str, name: str, destination: str) -> bool:
        dirs = list(DATA_DIRS.get(engine, ()))
        if engine == "postgres":
            pgdata = _env_value(self.attrs[name], "PGDATA")
            if pgdata:
                dirs.append(pgdata)
        dest = destination.rstrip("/") or "/"
        for d in dirs:
            if dest == d or d.startswith(dest + "/") or dest.startswith(d + "/"):
                return True
        return False

    def is_data_mount(self, engine: str, name: str, item: dict[str, Any], destination: str) -> bool:
        dummy, entry = match_policy(self.policy, self._names(item))
        declared = (entry or {}).get("engine") or \
            ((item.get("volume") or {}).get("Labels") or {}).get("lifeboat.engine")
        if declared:
            return _same_family(str(declared).strip().lower(), engine)
        mark = marker_engine(item["scan"])[0]
        if mark and _same_family(mark, engine):
            return True
        if mark and mark in SERVER_ENGINES:
            return False  # another engine's files
        return self._at_data_dir(engine, name, destination)

    def database_candidates(self) -> dict[str, str]:
        """Running containers that run a database server: {name: engine}."""
        result = {}
        for name in sorted(self.containers):
            if self.containers[name]["state"] != "running":
                continue
            engine = self.container_engine(name)[0]
            if engine in SERVER_ENGINES:
                result[name] = engine
        return result

    # -- the plan ----------------------------------------------------------------------------

    def _names(self, item: dict[str, Any]) -> list[str]:
        return [item["source"], item["id"]]

    def with_dependents(self, names: list[str]) -> list[str]:
        """NAMES plus the active containers that depend on them (compose depends_on), transitively."""
        chosen = set(names)
        grew = True
        while grew:
            grew = False
            for other, info in self.order_info.items():
                if other in chosen or not self.active(other) or not info["project"]:
                    continue
                for name in list(chosen):
                    ni = self.order_info[name]
                    if ni["project"] == info["project"] and ni["service"] in info["depends_on"]:
                        chosen.add(other)
                        grew = True
                        break
        ordered, cycle = stop_order(sorted(chosen), self.order_info)
        if cycle:
            self.finding("stop_order_cycle", "warning", ordered[0] if ordered else "",
                         "compose depends_on and lifeboat.order labels form a cycle among "
                         + ", ".join(ordered) + "; they are stopped in name order where the "
                         "cycle is: fix the labels")
        return ordered

    def plan(self, dump_tools: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        dump_tools = dump_tools or {}
        candidates = self.database_candidates()
        units: dict[str, dict[str, Any]] = {}
        # Which items are the data directories of which running database.
        db_data: dict[str, list[tuple[str, str]]] = {}
        for name, engine in candidates.items():
            for item in self.items.values():
                for use in item["users"]:
                    if use["container"] == name and use["rw"] and \
                            self.is_data_mount(engine, name, item, use["destination"]):
                        db_data.setdefault(name, []).append((item["id"], use["destination"]))
        db_of_item = {iid: name for name, lst in db_data.items() for iid, dummy in lst}

        for iid in sorted(self.items):
            unit = self._plan_item(self.items[iid], candidates, db_of_item, dump_tools, units)
            units[unit["id"]] = unit
        # Running databases whose data lives in no volume or host path (the writable layer).
        for name, engine in candidates.items():
            if name in db_data or f"db:{name}" in units:
                continue
            self._plan_db_without_mount(name, engine, dump_tools, units)

        volumes_out = self._volumes_out()
        self._slow_stops(units)
        self._policy_findings()
        undeclared = self._undeclared(units)
        return {
            "containers": [self._container_out(n) for n in sorted(self.containers)],
            "volumes": volumes_out,
            "binds": [self._bind_out(p) for p in sorted(self.binds)],
            "networks": self._networks_out(),
            "images": self._images_out(),
            "units": [units[k] for k in sorted(units)],
            "findings": sorted(self.findings, key=lambda f: (f["severity"] != "warning", f["code"],
                                                             f["subject"], f["message"])),
            "undeclared": undeclared,
        }

    def _slow_stops(self, units: dict[str, dict[str, Any]]) -> None:
        """Stop units whose containers' main process ignores its stop signal: `docker stop` then
        waits the whole timeout before it kills them, and that wait is downtime. Said in the unit's
        reason and as a finding, with what to do, unless a lifeboat.stop_timeout label is set."""
        warned: set[str] = set()
        for unit in units.values():
            if unit["strategy"] != "stop":
                continue
            slow = [n for n in unit.get("containers") or [] if self.ignores_stop_signal(n)]
            if not slow:
                continue
            unit["reason"] += (f"; {', '.join(slow)} ignore{'s' if len(slow) == 1 else ''} the stop signal, so each "
                               "stop waits the whole stop timeout before the engine kills it")
            for name in slow:
                if name in warned:
                    continue
                warned.add(name)
                sig = self.stop_signal(name)
                self.finding("stop_signal_ignored", "warning", name,
                             f"the main process of {name} has no handler for {sig} (PID 1 of a container "
                             f"ignores signals it does not handle): stopping it for a backup waits the whole "
                             f"stop timeout (30 s unless told) and then kills it. Label it "
                             f"lifeboat.stop_timeout=SECONDS (e.g. 5) to shorten the wait, give its data "
                             f"strategy pause, or run it with an init (docker run --init, compose init: true)")

    def stop_signal(self, name: str) -> str:
        return str((self.attrs[name].get("Config") or {}).get("StopSignal") or "SIGTERM")

    def ignores_stop_signal(self, name: str) -> bool:
        """Whether NAME runs, in its own PID namespace, a main process without a handler for its
        stop signal, and has no lifeboat.stop_timeout label. False when not known."""
        attrs = self.attrs.get(name) or {}
        mask = (self.raw.get("caught_signals") or {}).get(attrs.get("Id"))
        number = signal_number(self.stop_signal(name))
        if mask is None or number is None or number >= 64:
            return False
        if ((attrs.get("HostConfig") or {}).get("PidMode") or "") == "host":
            return False  # not a namespace's init: the default action applies
        if "lifeboat.stop_timeout" in ((attrs.get("Config") or {}).get("Labels") or {}):
            return False
        return not mask & (1 << (number - 1))

    def _base_unit(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"id": item["id"], "kind": item["kind"], "source": item["source"],
                "strategy": "live", "engine": "none", "containers": [], "reason": "",
                "confidential": False, "confidential_reason": None, "declared": False,
                "exclude": [], "order": None}

    def _plan_item(self, item, candidates, db_of_item, dump_tools, units) -> dict[str, Any]:
        unit = self._base_unit(item)
        scan = item["scan"]
        # SQLite databases in a directory: named in every plan; a live capture copies them online.
        sqlite = list(scan.get("sqlite") or []) if scan and scan.get("type") == "dir" else []
        if sqlite:
            unit["sqlite"] = sqlite
        key, entry = match_policy(self.policy, self._names(item))
        entry = entry or {}
        if key is not None:
            self.used_policy_keys.add(key)
            unit["declared"] = True
        users = item["users"]
        writers = sorted({u["container"] for u in users if u["rw"]})
        active_writers = [w for w in writers if self.active(w)]
        where = self._where(item)

        db_name = db_of_item.get(item["id"])
        engine, engine_how = self._item_engine(item, entry, key, db_name, writers)
        unit["engine"] = engine or "none"
        self._item_settings(unit, item, entry, key)

        # strategy: policy > labels > detection > default
        strategy, how = None, None
        if entry.get("strategy"):
            strategy, how = entry["strategy"], f"policy entry {key!r} says {entry['strategy']}"
        else:
            strategy, how = self._label_strategy(item)
        note = f" ({entry['reason']})" if entry.get("reason") else ""

        if item["kind"] == "path" and scan and scan.get("exists") is False:
            unit.update(strategy="skip",
                        reason=f"{where} does not exist on the host; nothing to capture{note}")
            self.finding("missing_bind_source", "info", item["source"],
                         f"{item['source']} is bind-mounted into "
                         f"{', '.join(sorted({u['container'] for u in users}))} but does not exist")
            return unit
        if strategy == "skip":
            unit.update(strategy="skip", reason=f"{how}: not captured{note}")
            return unit
        if strategy in ("stop", "pause"):
            targets = active_writers if strategy == "pause" else self.with_dependents(active_writers)
            if strategy == "pause":
                targets = stop_order(targets, self.order_info)[0]
            unit.update(strategy=strategy, containers=targets,
                        reason=f"{how}" + (f"; {strategy}s " + ", ".join(targets) if targets
                                           else "; no container writes to it now") + note)
            return unit
        if strategy == "live":
            unit.update(strategy="live", reason=f"{how}: copied while in use{note}")
            if sqlite:
                unit["reason"] += "; " + _sqlite_words(sqlite)
            return unit

        planned = self._plan_dump(unit, item, strategy, how, note, engine, engine_how, db_name, active_writers,
                                  candidates, dump_tools, units)
        if planned is not None:
            return planned
        return self._plan_default(unit, item, writers, active_writers, sqlite, candidates, dump_tools, note)

    def _item_engine(self, item, entry: dict[str, Any], key: str | None, db_name: str | None,
                     writers: list[str]) -> tuple[str | None, str]:
        """The engine of an item's data and how it is known: policy > labels > detection (the
        database container dumping it, a writer whose data directory it is, marker files)."""
        if entry.get("engine"):
            return entry["engine"], f"policy entry {key!r}"
        engine, engine_how = self._label_engine(item)
        if engine is not None:
            return engine, engine_how
        if db_name:
            engine, engine_how = self.container_engine(db_name)
        else:
            for w in writers:
                cengine, how = self.container_engine(w)
                use = next(u for u in item["users"] if u["container"] == w)
                if cengine and self.is_data_mount(cengine, w, item, use["destination"]):
                    engine, engine_how = cengine, how
                    break
        if engine is None:
            mark, place = marker_engine(item["scan"])
            if mark:
                engine = mark
                engine_how = f"{ENGINE_TITLES[mark]} files" + (f" ({place})" if place else "")
        return engine, engine_how

    def _item_settings(self, unit: dict[str, Any], item, entry: dict[str, Any], key: str | None) -> None:
        """A unit's order, excludes and confidentiality: policy > labels > detection."""
        scan = item["scan"]
        users = item["users"]
        order = entry.get("order")
        if order is None and item["kind"] == "volume":
            order = self._label_order((item["volume"] or {}).get("Labels") or {},
                                      f"volume {item['source']}")
        if order is None:
            orders = [self.order_info[u["container"]]["order"] for u in users
                      if self.order_info[u["container"]]["order"] is not None]
            order = min(orders) if orders else None
        unit["order"] = order
        exclude = list(entry.get("exclude") or [])
        if entry.get("exclude") is None:
            label = self._label(item, "lifeboat.exclude")[0]
            if label:
                exclude = [p.strip() for p in re.split(r"[,\n]", label) if p.strip()]
        for sock in scan.get("sockets") or []:
            if sock not in exclude:
                exclude.append(sock)
        unit["exclude"] = exclude
        conf_reason = None
        if entry.get("confidential") is not None:
            conf = entry["confidential"]
            conf_reason = f"policy entry {key!r}" if conf else None
        else:
            label, lwhere = self._label(item, "lifeboat.confidential")
            if label is not None and _truthy(label) is not None:
                conf = bool(_truthy(label))
                conf_reason = f"label lifeboat.confidential on {lwhere}" if conf else None
            else:
                conf_reason = confidential_reason(
                    None if item["kind"] == "volume" and is_anonymous_volume(
                        item["source"], (item["volume"] or {}).get("Labels")) else item["source"],
                    *[u["destination"] for u in users], secret_files=scan.get("secret_files"))
                conf = conf_reason is not None
        unit["confidential"] = conf
        unit["confidential_reason"] = conf_reason

    def _plan_dump(self, unit: dict[str, Any], item, strategy, how, note: str, engine, engine_how: str, db_name,
                   active_writers: list[str], candidates, dump_tools, units) -> dict[str, Any] | None:
        """The unit when it is dumped (asked for, or detected for a running database), or stopped
        because its database cannot be dumped; None when no dump is wanted."""
        dumper = db_name
        if strategy == "dump" and dumper is None:
            for w in active_writers:
                if self.containers[w]["state"] == "running" and (
                        w in candidates or (engine or "none") in SERVER_ENGINES):
                    dumper = w
                    break
        wants_dump = strategy == "dump" or (dumper is not None and strategy is None)
        if wants_dump and dumper is not None:
            db_engine = engine if engine in SERVER_ENGINES else candidates.get(dumper)
            tool = (dump_tools.get(dumper) or {}).get("tool")
            title = ENGINE_TITLES.get(db_engine or "none", "database")
            if db_engine and tool:
                db_id = f"db:{dumper}"
                db_key, db_entry = match_policy(self.policy, self._db_keys(dumper))
                if db_key is not None:
                    self.used_policy_keys.add(db_key)
                db_strategy = (db_entry or {}).get("strategy")
                if db_strategy == "skip":
                    units[db_id] = self._db_unit(dumper, db_engine, item, "skip",
                                                 f"policy entry {db_key!r} says skip: not dumped",
                                                 unit, declared=True)
                    unit.update(strategy="skip", reason=(
                        f"{title} data directory of running container {dumper}; its dump {db_id} "
                        f"is skipped by policy entry {db_key!r}, so it is not captured either"))
                    return unit
                why = how if how else f"{title} runs in {dumper} ({engine_how})"
                units[db_id] = self._db_unit(
                    dumper, db_engine, item, "dump",
                    f"{why}: dumped with {tool} while it runs, a consistent copy without stopping it",
                    unit, declared=unit["declared"] or db_key is not None)
                unit.update(strategy="skip", engine=db_engine, reason=(
                    f"{title} data directory of running container {dumper}: captured by the dump "
                    f"in unit {db_id}, never copied live as well"))
                return unit
            # no dump tool: stop instead
            checked = (dump_tools.get(dumper) or {})
            tools = "/".join(DUMP_TOOLS.get(db_engine or "", ("a dump tool",)))
            detail = checked.get("error") or f"{tools} not found in the container"
            self.finding("no_dump_tool", "warning", dumper,
                         f"{title} runs in {dumper} but it cannot be dumped ({detail}); "
                         f"{item['id']} is captured by stopping it instead (the fallback chosen). "
                         + ("Fix docker exec into it (see the error) to back it up without downtime"
                            if checked.get("error") else
                            f"Install {tools} in the image to back it up without downtime"))
            targets = self.with_dependents([dumper] + [w for w in active_writers if w != dumper])
            why_not = f"cannot be dumped ({checked['error']})" if checked.get("error") else f"has no dump tool ({tools})"
            unit.update(strategy="stop", engine=db_engine or unit["engine"], containers=targets,
                        reason=f"{title} in {dumper} {why_not}: stops "
                               + ", ".join(targets) + f" for a consistent file copy{note}")
            return unit
        if strategy == "dump":
            self.finding("dump_not_possible", "warning", item["source"],
                         f"{how} but no running database container writes to {item['id']}; "
                         "it is copied live (nothing writes to it). Start the database or change "
                         "the strategy")
            unit.update(strategy="live", reason=f"{how}, but no database runs on it: nothing "
                                                f"writes, so it is copied live{note}")
            return unit
        return None

    def _plan_default(self, unit: dict[str, Any], item, writers: list[str], active_writers: list[str],
                      sqlite: list, candidates, dump_tools, note: str) -> dict[str, Any]:
        """The unit by default (no strategy given, no dump): live when nothing writes or the
        writers are dumped; paused for swarm tasks; stopped for other running writers."""
        users = item["users"]
        title = ENGINE_TITLES.get(unit["engine"])
        dumped = [w for w in active_writers if w in candidates and (dump_tools.get(w) or {}).get("tool")]
        if active_writers and len(dumped) == len(active_writers):
            unit.update(strategy="live", reason=(
                f"mounted into database container(s) {', '.join(dumped)}, which are dumped "
                f"rather than stopped; not their data directory, copied live{note}"))
            return unit
        if active_writers and sqlite and unit["engine"] == "sqlite":
            unit.update(strategy="live", reason=(
                f"SQLite data written by running container(s) {', '.join(active_writers)}: "
                f"{_sqlite_words(sqlite)}, without stopping them; the other files are copied while "
                f"in use (give it strategy stop if they must match the database exactly){note}"))
            return unit
        if active_writers:
            swarm = [w for w in active_writers if self.containers[w]["swarm"]
                     and self.containers[w]["swarm"].get("service")]
            if swarm:
                targets = stop_order(active_writers, self.order_info)[0]
                for w in swarm:
                    self.finding("swarm_service_container", "info", w,
                                 f"{w} is a task of swarm service "
                                 f"{self.containers[w]['swarm']['service']}: stopping it makes "
                                 "swarm start a replacement, so its data is captured paused")
                unit.update(strategy="pause", containers=targets,
                            reason=f"written by swarm task(s) {', '.join(targets)}: paused (a "
                                   f"stopped task would be replaced) for a consistent copy{note}")
                return unit
            targets = self.with_dependents(active_writers)
            what = f"{title} database" if unit["engine"] != "none" else "data"
            holders = sorted({u["container"] for u in users
                              if self.containers[u["container"]]["never_started"]})
            held = f" (data container {', '.join(holders)} holds it)" if holders else ""
            unit.update(strategy="stop", containers=targets,
                        reason=f"{what}{held} written by running container(s) "
                               f"{', '.join(active_writers)}: stops {', '.join(targets)} "
                               f"(dependents first) for a consistent copy{note}")
            return unit
        unit.update(strategy="live", reason=self._live_reason(item, writers, title) + note)
        return unit

    def _live_reason(self, item: dict[str, Any], writers: list[str], title: str) -> str:
        users = item["users"]
        if not users:
            return f"{self._where(item)} is used by no container: nothing writes, copied live"
        data_containers = sorted({u["container"] for u in users
                                  if self.containers[u["container"]]["never_started"]})
        if item["kind"] == "volume" and data_containers:
            dests = ", ".join(sorted({u["destination"] for u in users}))
            return (f"held by data container(s) {', '.join(data_containers)} (created, never "
                    f"started) at {dests}: nothing runs, so it is copied live")
        if writers:
            states = ", ".join(f"{w} {self.containers[w]['state']}" for w in writers)
            if title and title != "no database":
                return (f"{title} database whose container is not running ({states}): its files "
                        "are a consistent set, copied live (nothing writes)")
            return f"its writers are not running ({states}): nothing writes, copied live"
        readers = ", ".join(sorted({u["container"] for u in users}))
        return f"mounted read-only by {readers}: nothing writes, copied live"

    def _where(self, item: dict[str, Any]) -> str:
        return f"volume {item['source']}" if item["kind"] == "volume" else f"host path {item['source']}"

    def _db_unit(self, name, engine, item, strategy, reason, data_unit, declared) -> dict[str, Any]:
        return {
            "id": f"db:{name}", "kind": "database", "source": name, "strategy": strategy,
            "engine": engine, "containers": [], "reason": reason,
            "confidential": data_unit["confidential"],
            "confidential_reason": data_unit["confidential_reason"],
            "declared": declared, "exclude": [], "order": data_unit["order"],
            "container": name, "volume": item["source"] if item else None,
        }

    def _db_keys(self, name: str) -> list[str]:
        """The policy keys a database in container NAME answers to: db:NAME, and for a swarm task
        the ids data_inventory prints for it, db:SERVICE and db:SERVICE.SLOT (task containers
        come and go; the policy names the service)."""
        keys = [f"db:{name}"]
        labels = ((self.containers.get(name) or {}).get("labels") or {})
        service = labels.get("com.docker.swarm.service.name")
        if service:
            slot = task_slot(service, labels.get("com.docker.swarm.task.name") or name)
            keys += [f"db:{service}.{slot}"] if slot else []
            keys.append(f"db:{service}")
        return keys

    def _plan_db_without_mount(self, name, engine, dump_tools, units) -> None:
        title = ENGINE_TITLES[engine]
        db_id = f"db:{name}"
        key, entry = match_policy(self.policy, self._db_keys(name))
        if key is not None:
            self.used_policy_keys.add(key)
        tool = (dump_tools.get(name) or {}).get("tool")
        order = (entry or {}).get("order")
        if order is None:
            order = self.order_info[name]["order"]
        base = {"confidential": bool((entry or {}).get("confidential")),
                "confidential_reason": f"policy entry {key!r}" if (entry or {}).get("confidential")
                else None, "order": order}
        if (entry or {}).get("strategy") == "skip":
            units[db_id] = self._db_unit(name, engine, None, "skip",
                                         f"policy entry {key!r} says skip: not dumped", base, True)
            return
        if not tool:
            detail = (dump_tools.get(name) or {}).get("error") or \
                f"{'/'.join(DUMP_TOOLS[engine])} not found in the container"
            self.finding("no_dump_tool", "warning", name,
                         f"{title} runs in {name} with its data in the container's own layer (no "
                         f"volume) and cannot be dumped ({detail}): that data is not captured. "
                         "Give it a volume, or install the dump tool in the image")
            return
        units[db_id] = self._db_unit(
            name, engine, None, "dump",
            f"{title} runs in {name} with its data in the container's own layer (no volume): "
            f"dumped with {tool}", base, key is not None)

    # -- output sections ---------------------------------------------------------------------

    def _container_out(self, name: str) -> dict[str, Any]:
        c = dict(self.containers[name])
        c.pop("never_started", None)
        return c

    def _bind_out(self, path: str) -> dict[str, Any]:
        bind = self.binds[path]
        scan = self.scans.get(f"path:{path}") or {}
        return {"source": path, "kind": bind["kind"], "exists": bind["exists"],
                # file or dir: a bind-mounted file is a unit of its own (captured as one file)
                "file_type": scan.get("type"),
                "confidential": bind["confidential"], "used_by": bind["used_by"],
                "size_bytes": scan.get("size_bytes") if self.include_sizes else None,
                "file_count": scan.get("file_count") if self.include_sizes else None}

    def _volumes_out(self) -> list[dict[str, Any]]:
        out = []
        for iid in sorted(i for i in self.items if i.startswith("volume:")):
            item = self.items[iid]
            vol = item["volume"] or {}
            scan = item["scan"]
            labels = dict(vol.get("Labels") or {})
            anonymous = is_anonymous_volume(item["source"], labels)
            size = scan.get("size_bytes") if self.include_sizes else None
            count = scan.get("file_count") if self.include_sizes else None
            entry = {
                "name": item["source"], "driver": vol.get("Driver") or "local",
                "driver_options": dict(vol.get("Options") or {}), "labels": labels,
                "mountpoint": vol.get("Mountpoint"), "anonymous": anonymous,
                "size_bytes": size, "file_count": count,
                "used_by": item["users"], "unused": not item["users"],
            }
            out.append(entry)
            has_data = self._has_data(scan) is True
            users = ", ".join(f"{u['container']} at {u['destination']}" for u in item["users"])
            if entry["unused"]:
                self.finding("unused_volume", "warning" if has_data else "info", item["source"],
                             f"volume {item['source']} is used by no container"
                             + (" and holds data" if has_data else " and is empty")
                             + ": it is still captured; remove it if it is obsolete "
                             "(docker volume rm), or declare it in the policy")
            if anonymous and has_data:
                self.finding("anonymous_volume_with_data", "warning", item["source"],
                             f"anonymous volume {item['source']}"
                             + (f" (used by {users})" if users else "")
                             + " holds data"
                             + ": `docker rm -v` or `docker volume prune` loses it without a word. "
                             "It is captured; give it a name to make it easy to find and restore")
            if scan.get("readable") is False:
                self.finding("unreadable", "info", item["source"],
                             f"the mountpoint of volume {item['source']} could not be read "
                             f"({scan.get('error') or 'permission denied'}): no size and no "
                             "on-disk detection; run the module as root (become: true)")
        return out

    @staticmethod
    def _has_data(scan: dict[str, Any]) -> bool | None:
        """True or False when the probe looked, None when it could not (remote engine, unreadable)."""
        if not scan or scan.get("readable") is False:
            return None
        if scan.get("file_count"):
            return True
        if scan.get("size_bytes"):
            return True
        return bool(scan.get("has_data"))

    def _networks_out(self) -> list[dict[str, Any]]:
        members: dict[str, list[str]] = {}
        for name, c in self.containers.items():
            for net in c["networks"]:
                members.setdefault(net, []).append(name)
        out = []
        for net in sorted(self.raw.get("networks") or [], key=lambda n: n.get("Name") or ""):
            name = net.get("Name") or ""
            out.append({"name": name, "id": net.get("Id"), "driver": net.get("Driver"),
                        "scope": net.get("Scope"), "internal": bool(net.get("Internal")),
                        "labels": dict(net.get("Labels") or {}),
                        "containers": sorted(members.get(name, []))})
        return out

    def _images_out(self) -> list[dict[str, Any]]:
        users: dict[str, list[str]] = {}
        for name, c in self.containers.items():
            users.setdefault(c["image"]["id"], []).append(name)
        out = []
        for img in sorted(self.raw.get("images") or [], key=lambda i: i.get("Id") or ""):
            tags = sorted(t for t in img.get("RepoTags") or [] if t != "<none>:<none>")
            out.append({"id": img.get("Id"), "tags": tags,
                        "digests": sorted(d for d in img.get("RepoDigests") or []
                                          if d != "<none>@<none>"),
                        "size_bytes": img.get("Size"), "used_by": sorted(users.get(img.get("Id"), []))})
        return out

    def _policy_findings(self) -> None:
        for key in sorted(self.policy):
            if key in self.used_policy_keys:
                continue
            glob = _is_glob(key)
            self.finding("policy_unmatched", "info" if glob else "warning", key,
                         f"policy entry {key!r} matches no volume, host path or database on this "
                         + ("host" if glob else "host: it was declared but is gone (or misspelt); "
                            "fix or remove the entry"))

    def _undeclared(self, units: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.has_policy:
            return []
        declared_db_volumes = {u["volume"] for u in units.values()
                               if u["kind"] == "database" and u["declared"] and u.get("volume")}
        out = []
        for uid in sorted(units):
            unit = units[uid]
            if unit["kind"] == "database" or unit["declared"]:
                continue
            if unit["source"] in declared_db_volumes:
                unit["declared"] = True
                continue
            scan = self.items[uid]["scan"]
            if self._has_data(scan) is False:
                continue
            out.append({"id": uid, "kind": unit["kind"], "source": unit["source"],
                        "size_bytes": scan.get("size_bytes") if self.include_sizes else None})
        return out


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------

def database_candidates(raw: dict[str, Any], scans: dict[str, dict[str, Any]] | None = None,
                        policy: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Running containers that run a database server: {name: engine}; the probe checks their tools."""
    return _Planner(raw, scans, policy).database_candidates()


def build_inventory(raw: dict[str, Any], scans: dict[str, dict[str, Any]] | None = None,
                    policy: dict[str, dict[str, Any]] | None = None,
                    dump_tools: dict[str, dict[str, Any]] | None = None,
                    include_sizes: bool = True, undeclared: str = "warn") -> dict[str, Any]:
    """The whole inventory and plan. POLICY must come from validate_policy (None: no policy).

    With undeclared=warn, each undeclared item also becomes a warning finding.
    """
    planner = _Planner(raw, scans, policy, include_sizes)
    swarm = inventory_section(raw, policy)
    planner.used_policy_keys.update(f"stack:{s['name']}" for s in (swarm or {}).get("stacks") or []
                                    if f"stack:{s['name']}" in (policy or {}))
    result = planner.plan(dump_tools)
    for unit in result["units"]:
        if unit["kind"] == "database":
            unit["tool"] = ((dump_tools or {}).get(unit["container"]) or {}).get("tool")
        _key, entry = match_policy(policy or {}, [unit["id"], unit["source"]])
        hooks = {k: (entry or {}).get(k) for k in ("pre", "post", "hook_timeout", "on_error")}
        unit["hooks"] = hooks if hooks["pre"] or hooks["post"] else None
    # Swarm: units name the services whose tasks use them; databases in tasks are named by service.
    annotate_units(result["units"], raw)
    result["units"].sort(key=lambda u: u["id"])
    if swarm is not None:
        result["swarm"] = swarm
    if undeclared == "warn":
        for item in result["undeclared"]:
            result["findings"].append({
                "code": "undeclared", "severity": "warning", "subject": item["source"],
                "message": f"{item['id']} holds data but the policy does not mention it: "
                           "declare it in the policy (with strategy skip if it needs no backup)"})
        result["findings"].sort(key=lambda f: (f["severity"] != "warning", f["code"],
                                               f["subject"], f["message"]))
    return result


def undeclared_message(items: list[dict[str, Any]]) -> str:
    """The failure message of undeclared=fail."""
    listed = ", ".join(
        item["id"] + (f" ({human_size(item['size_bytes'])})" if item["size_bytes"] is not None else "")
        for item in items)
    example = items[0]["source"] if items else "NAME"
    return (f"{len(items)} volume(s)/host path(s) hold data that the policy does not declare: "
            f"{listed}. Declare each in the policy option (for example policy: {{'{example}': "
            "{strategy: stop}}, or a glob that covers them; use strategy skip for data that needs "
            "no backup), or set undeclared: warn to report them without failing")


def declares_data(policy: dict[str, Any] | None) -> bool:
    """Whether a policy declares units (and so makes the others undeclared): any policy but one
    that only names stacks' compose files (stack:NAME entries)."""
    return policy is not None and (not policy or any(not k.startswith("stack:") for k in policy))
