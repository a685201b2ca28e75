"""Builders for engine data as the Docker API returns it (inspect dicts), for the planner's tests."""

from __future__ import annotations

from typing import Any

STARTED = "2026-01-01T10:00:00.000000000Z"
NEVER = "0001-01-01T00:00:00Z"


def vol(name: str, dest: str, rw: bool = True) -> dict[str, Any]:
    return {"Type": "volume", "Name": name, "Source": f"/var/lib/docker/volumes/{name}/_data",
            "Destination": dest, "RW": rw, "Driver": "local"}


def bind(src: str, dest: str, rw: bool = True) -> dict[str, Any]:
    return {"Type": "bind", "Source": src, "Destination": dest, "RW": rw}


def container(name: str, *, image: str = "lifeboat-test/busybox:latest", state: str = "running",
              mounts: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None,
              env: list[str] | None = None, cmd: list[str] | None = None,
              started: bool = True, networks: tuple[str, ...] = ("bridge",)) -> dict[str, Any]:
    cmd = cmd or ["sleep", "3600"]
    return {
        "Id": (name.encode().hex() * 8)[:64],
        "Name": "/" + name,
        "Path": cmd[0],
        "Args": cmd[1:],
        "Image": "sha256:" + (image.encode().hex() * 8)[:64],
        "Config": {"Image": image, "Env": env or ["PATH=/bin"], "Cmd": cmd, "Labels": labels or {}},
        "State": {"Status": state, "Running": state == "running",
                  "StartedAt": STARTED if started else NEVER},
        "HostConfig": {"RestartPolicy": {"Name": "no"}},
        "Mounts": mounts or [],
        "NetworkSettings": {"Networks": {n: {} for n in networks}},
    }


def volume(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Name": name, "Driver": "local", "Labels": labels, "Options": None, "Scope": "local",
            "Mountpoint": f"/var/lib/docker/volumes/{name}/_data"}


def scan(*, data: bool = True, size: int = 100, files: int = 2, markers: dict[str, str] | None = None,
         secret_files: list[str] | None = None, sockets: list[str] | None = None,
         ftype: str = "dir", exists: bool = True) -> dict[str, Any]:
    return {"exists": exists, "type": ftype, "readable": True, "has_data": data,
            "size_bytes": size if data else 0, "file_count": files if data else 0,
            "markers": markers or {}, "secret_files": secret_files or [], "sockets": sockets or [],
            "error": None}


def raw(containers: list[dict[str, Any]] = (), volumes: list[dict[str, Any]] = (),
        networks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    images = {}
    for c in containers:
        images[c["Image"]] = {"Id": c["Image"], "RepoTags": [c["Config"]["Image"]], "RepoDigests": [],
                              "Size": 1000}
    return {"containers": list(containers), "volumes": list(volumes),
            "networks": networks if networks is not None else [
                {"Name": "bridge", "Id": "n1", "Driver": "bridge", "Scope": "local"}],
            "images": list(images.values()), "host": "testhost"}
