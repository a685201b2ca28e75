#!/usr/bin/env python
"""Time lifeboat.docker.data_inventory on a host with 200 volumes and 100 containers.

    .venv/bin/python bench/inventory_bench.py            # in a throw-away engine (default)
    .venv/bin/python bench/inventory_bench.py --real-engine   # in the host's engine, prefixed

Builds the scene (volumes with files, busybox containers: a third running `sleep`, a third
created, a third exited, each mounting 1-3 of the volumes), runs the module through Ansible
(`ansible localhost -m lifeboat.docker.data_inventory`) with include_sizes true and false,
RUNS times each, prints the median, min and max in seconds next to Ansible's own overhead
(`-m ping`), and removes everything it created, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import docker  # noqa: E402

from fixtures.engine import ThrowawayEngine  # noqa: E402

BUSYBOX = "lifeboat-test/busybox:latest"
LABEL = "org.lifeboat-test.bench"
VENV_BIN = Path(sys.executable).parent


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )
    return env


def run_ansible(module: str, args: dict | None) -> tuple[float, dict]:
    cmd = [str(VENV_BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", module]
    if args is not None:
        cmd += ["-a", json.dumps(args)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), cwd=ROOT,
                          check=False)
    elapsed = time.perf_counter() - start
    try:
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise SystemExit(f"{module}: no JSON result (rc={proc.returncode})\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
    if result.get("failed"):
        raise SystemExit(f"{module} failed: {result.get('msg')}")
    return elapsed, result


def fill_script(files: int) -> str:
    """Shell for a helper container: FILES files (0.5-16 KiB) and a subdirectory per /v/*."""
    return (
        "set -e; for d in /v/*; do mkdir -p $d/sub; i=0; "
        f"while [ $i -lt {files} ]; do n=$(( (i * 977 % 32 + 1) * 512 )); "
        "head -c $n /dev/urandom > $d/sub/f$i.bin; i=$((i + 1)); done; "
        "echo v > $d/VERSION; done"
    )


def build(client: docker.DockerClient, prefix: str, n_volumes: int, n_containers: int,
          files: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    labels = {LABEL: prefix}
    volumes = [f"{prefix}_vol{i:03d}" for i in range(n_volumes)]
    for v in volumes:
        client.volumes.create(v, labels=labels)
    batch = 50
    for start in range(0, n_volumes, batch):
        chunk = volumes[start:start + batch]
        helper = client.containers.run(
            BUSYBOX, ["sh", "-c", fill_script(files)], detach=True, labels=labels,
            network_mode="none",
            volumes={v: {"bind": f"/v/{i:03d}", "mode": "rw"} for i, v in enumerate(chunk)})
        status = helper.wait(timeout=600)
        helper.remove(force=True)
        if status.get("StatusCode") != 0:
            raise SystemExit(f"filling the volumes failed: {status}")
    containers = []
    for i in range(n_containers):
        name = f"{prefix}_c{i:03d}"
        mounted = rng.sample(volumes, rng.randint(1, 3))
        kind = ("running", "created", "exited")[i % 3]
        command = ["sleep", "86400"] if kind == "running" else ["true"]
        c = client.containers.create(
            BUSYBOX, command, name=name, labels=labels, network_mode="none",
            volumes={v: {"bind": f"/data/{j}", "mode": "ro" if (i + j) % 4 == 0 else "rw"}
                     for j, v in enumerate(mounted)})
        if kind != "created":
            c.start()
        if kind == "exited":
            c.wait(timeout=60)
        containers.append(name)
    return volumes, containers


def cleanup(client: docker.DockerClient, prefix: str) -> None:
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}={prefix}"}):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters={"label": f"{LABEL}={prefix}"}):
        v.remove(force=True)


def bench(args: argparse.Namespace) -> None:
    engine = None
    prefix = "lbb" + secrets.token_hex(3)
    try:
        if args.real_engine:
            client = docker.from_env()
            docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        else:
            engine = ThrowawayEngine().start()
            engine.load_image(BUSYBOX)
            client, docker_host = engine.client, engine.url
        t0 = time.perf_counter()
        volumes, containers = build(client, prefix, args.volumes, args.containers,
                                    args.files_per_volume, args.seed)
        built = time.perf_counter() - t0
        on_engine_c = len(client.containers.list(all=True))
        on_engine_v = len(client.volumes.list())
        print(f"scene: {len(volumes)} volumes x {args.files_per_volume + 1} files, "
              f"{len(containers)} containers (1/3 running, 1/3 created, 1/3 exited); "
              f"engine holds {on_engine_c} containers, {on_engine_v} volumes; built in {built:.1f} s")

        rows = []
        ping = [run_ansible("ping", None)[0] for _run in range(args.runs)]
        rows.append(("ansible -m ping (overhead)", ping, ""))
        for sizes in (True, False):
            times, last = [], None
            for _run in range(args.runs):
                elapsed, last = run_ansible("lifeboat.docker.data_inventory",
                                            {"docker_host": docker_host, "include_sizes": sizes})
                times.append(elapsed)
            ours = [v for v in last["volumes"] if v["name"].startswith(prefix)]
            if len(ours) != len(volumes):
                raise SystemExit(f"the module saw {len(ours)} of the {len(volumes)} volumes")
            note = f"{len(last['containers'])} containers, {len(last['volumes'])} volumes, " \
                   f"{len(last['units'])} units"
            rows.append((f"data_inventory include_sizes={str(sizes).lower()}", times, note))

        print()
        print(f"| {'run':<38} | median s | min s | max s | result |")
        print(f"|{'-' * 40}|----------|-------|-------|--------|")
        for label, times, note in rows:
            print(f"| {label:<38} | {statistics.median(times):8.2f} | {min(times):5.2f} "
                  f"| {max(times):5.2f} | {note} |")
    finally:
        if engine is not None:
            engine.stop()
        else:
            cleanup(docker.from_env(), prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-engine", action="store_true",
                        help="build the scene in the host's engine (prefixed) instead of a "
                             "throw-away dockerd; the module then also sees everything else there")
    parser.add_argument("--volumes", type=int, default=200)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--files-per-volume", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
