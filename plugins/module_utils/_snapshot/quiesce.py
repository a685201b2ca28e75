# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Stopping containers for a capture, and never leaving them stopped.

Before the engine is asked to stop a container, the journal on the host records it (written and
fsynced first), with the container's start time and the moment by which its stop must be over.
The containers are started again in a `finally` as soon as the capture is done. If the process
dies anyway (SIGKILL, a crash, the host losing power), the next run of any lifeboat module calls
repair(): journals of processes that are gone are replayed (their containers started again or
unpaused, also when the engine was still stopping one: repair waits for that stop to end) and
removed. A restore also journals its staging directory, which repair removes when the restore
was killed.

SIGTERM and SIGHUP end a run (TerminationGuard), but never while a container is being stopped,
paused or brought back (deferred_signals): the signal takes effect once that is done, and then
the `finally` blocks start every container again before the process exits.

Pure: nothing here; everything talks to the engine or the journal files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import secrets
import signal
import threading
import time
from typing import Any

from ansible_collections.lifeboat.docker.plugins.module_utils._common.files import write_atomic
from ansible_collections.lifeboat.docker.plugins.module_utils._common.procs import process_start
from ansible_collections.lifeboat.docker.plugins.module_utils._rebuild.swarm import ServiceScaler, is_task, rescale

STATE_DIR_ENV = "LIFEBOAT_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/lifeboat"
# Seconds the engine may take past a stop's timeout to kill the container and see it exit.
STOP_MARGIN = 15
STAGING_PREFIX = ".lifeboat-restore-"
# Scratch space of a capture (the online copies of SQLite databases), in scratch_dir().
SCRATCH_PREFIX = ".lifeboat-scratch-"


def state_dir() -> str:
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def journal_dir() -> str:
    return os.path.join(state_dir(), "journal")


def scratch_dir() -> str:
    return os.path.join(state_dir(), "scratch")


def own_state_dirs() -> list[str]:
    """lifeboat's own bookkeeping on the host (the journal, the locks, the captures' scratch
    space): never captured, never restored over. The rest of the state directory may hold data
    lifeboat keeps for the user (the cert_safekeeping role's bundle), captured like any other."""
    return [journal_dir(), os.path.join(state_dir(), "locks"), scratch_dir()]


STOP_TIMEOUT_LABEL = "lifeboat.stop_timeout"


def stop_timeout_of(labels: dict[str, str] | None, default: int) -> int:
    """The seconds `docker stop` gives a container before it kills it: its label
    lifeboat.stop_timeout (a whole number of seconds, 0 to 3600) where it has a valid one, else
    DEFAULT (the module's stop_timeout). Pure. For a main process that ignores its stop signal
    (data_inventory warns of those), a short timeout is the whole downtime saved."""
    value = (labels or {}).get(STOP_TIMEOUT_LABEL)
    if value is not None and str(value).strip().isdigit() and int(str(value).strip()) <= 3600:
        return int(str(value).strip())
    return default


def _write_atomic(path: str, doc: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(doc, sort_keys=True), 0o600, dir_mode=0o700)


class Journal:
    """What this process has stopped or paused and not yet started again."""

    def __init__(self, operation: str) -> None:
        os.makedirs(journal_dir(), mode=0o700, exist_ok=True)
        self.pid = os.getpid()
        self.path = os.path.join(journal_dir(), f"{self.pid}-{secrets.token_hex(4)}.json")
        self.doc: dict[str, Any] = {
            "pid": self.pid, "process_start": process_start(self.pid), "operation": operation,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "containers": [], "staging": [],
        }
        self._lock = threading.Lock()  # units captured in parallel share one journal

    def record(self, container_id: str, name: str, action: str, **extra: Any) -> None:
        """EXTRA: what undoing the action needs besides the id (a scaled service's replicas)."""
        with self._lock:
            self.doc["containers"].append(dict(extra, id=container_id, name=name, action=action))
            _write_atomic(self.path, self.doc)

    def stage(self, path: str) -> None:
        """A staging directory or file (named STAGING_PREFIX...) about to be made: removed by
        repair() if this process dies before it is renamed into place or removed."""
        with self._lock:
            self.doc["staging"].append(path)
            _write_atomic(self.path, self.doc)

    @contextlib.contextmanager
    def staged(self, path: str):
        """stage(PATH) for the block; afterwards a staging directory still there is removed, and
        PATH is unstaged once it is gone (renamed into place, or removed)."""
        self.stage(path)
        try:
            yield path
        finally:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                self.unstage(path)

    def unstage(self, path: str) -> None:
        with self._lock:
            self.doc["staging"] = [p for p in self.doc["staging"] if p != path]
            self._save_or_remove()

    def done(self, container_id: str) -> None:
        with self._lock:
            self.doc["containers"] = [c for c in self.doc["containers"] if c["id"] != container_id]
            self._save_or_remove()

    def _save_or_remove(self) -> None:
        if self.doc["containers"] or self.doc["staging"]:
            _write_atomic(self.path, self.doc)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """End of the operation. Containers still recorded did not come back (their start or
        unpause failed): the journal stays, so that the next lifeboat run on this host tries
        again (repair) once this process has exited."""
        with self._lock:
            if self.doc["containers"] or self.doc["staging"]:
                return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _stop_under_way(container, entry: dict[str, Any]) -> bool:
    """Whether the engine may still be stopping a container a dead run asked it to stop: it runs
    since the same start as when the run journalled it, and the stop's deadline has not passed."""
    started_at = ((container.attrs or {}).get("State") or {}).get("StartedAt")
    return bool(entry.get("started_at")) and started_at == entry.get("started_at") \
        and time.time() < float(entry.get("deadline") or 0)


def _wait_not_running(container, deadline: float) -> str:
    """Poll the container until it no longer runs or the (epoch) deadline passes; its status."""
    while True:
        container.reload()
        if container.status not in ("running", "restarting") or time.time() >= deadline:
            return container.status
        time.sleep(0.2)


def _remove_staging(path: str) -> str:
    import shutil

    if not os.path.basename(path).startswith((STAGING_PREFIX, SCRATCH_PREFIX)):
        return "left alone (not a lifeboat staging directory)"
    if not os.path.lexists(path):
        return "gone"
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)  # a staged file (a Redis RDB waiting to be put in place)
    return "removed"


def repair(client) -> list[dict[str, Any]]:
    """Replay the journals of dead processes: remove the staging they left, start / unpause what
    they left quiesced, scale the swarm services they left at 0 back to their recorded replicas.
    Without a client (a module that talks to no engine: prune, copy) only the staging is removed;
    the containers stay journalled for the next run that has one."""
    try:
        from docker.errors import NotFound  # type: ignore[import-not-found]
    except ImportError:  # a module that talks to no engine, on a host without the Docker SDK
        NotFound = LookupError  # pylint: disable=invalid-name

    repaired: list[dict[str, Any]] = []
    jdir = journal_dir()
    if not os.path.isdir(jdir):
        return repaired
    for name in sorted(os.listdir(jdir)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(jdir, name)
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            continue
        pid = doc.get("pid")
        if isinstance(pid, int) and process_start(pid) is not None and process_start(pid) == doc.get("process_start"):
            continue  # its process still runs: it will start its containers itself
        pending = []
        staging = []
        for where in doc.get("staging") or []:
            outcome = {"container": None, "staging": where, "operation": doc.get("operation"), "journal_pid": pid}
            try:
                outcome["result"] = _remove_staging(where)
            except OSError as exc:
                outcome["result"] = f"failed: {exc}"
                staging.append(where)
            repaired.append(outcome)
        # Start in reverse of the stop order: dependencies first.
        for entry in reversed(doc.get("containers", []) if client is not None else []):
            outcome = {"container": entry.get("name"), "id": entry.get("id"), "action": entry.get("action"),
                       "operation": doc.get("operation"), "journal_pid": pid}
            try:
                if entry["action"] == "scale":  # a swarm service scaled to 0 (see _rebuild/swarm.py)
                    outcome["result"], keep = rescale(client, entry)
                    if keep:
                        pending.append(entry)
                    repaired.append(outcome)
                    continue
                container = client.containers.get(entry["id"])
                if entry["action"] == "pause" and container.status == "paused":
                    container.unpause()
                    outcome["result"] = "unpaused"
                elif entry["action"] == "stop" and container.status not in ("running", "restarting"):
                    container.start()
                    outcome["result"] = "started"
                elif entry["action"] == "stop" and _stop_under_way(container, entry):
                    # The run died while the engine was stopping it (a PID 1 that ignores SIGTERM
                    # takes the whole timeout): the stop ends on its own; start it once it has.
                    if _wait_not_running(container, float(entry["deadline"])) not in ("running", "restarting"):
                        container.start()
                        outcome["result"] = "started"
                        outcome["waited_for_stop"] = True
                    else:
                        outcome["result"] = f"already {container.status}"
                else:
                    outcome["result"] = f"already {container.status}"
            except NotFound:
                outcome["result"] = "gone (the container no longer exists)"
            except Exception as exc:  # pylint: disable=broad-except
                outcome["result"] = f"failed: {exc}"
                pending.append(entry)
            repaired.append(outcome)
        if pending or staging or (client is None and doc.get("containers")):
            if client is not None:
                doc["containers"] = list(reversed(pending))
            doc["staging"] = staging
            _write_atomic(path, doc)
        else:
            os.unlink(path)
    return repaired


class Quiesced:
    """Context manager: stop (or pause) containers in the given order, restore in reverse.

    A task of a swarm service is not stopped (swarm would start a replacement at once): "stop"
    scales its service to 0 and, on the way out, back to the replicas it had (journalled as action
    "scale" with the replicas, so that a killed run is repaired). Pausing a task pauses it.
    Containers that are not running are left alone. `downtime` maps container name to the
    seconds it was stopped; `start_failures` lists the containers that did not come back (the
    caller reports them as failed units after all others were started).
    """

    def __init__(self, client, names: list[str], journal: Journal, action: str = "stop",
                 stop_timeout: int = 30) -> None:
        if action not in ("stop", "pause"):
            raise ValueError(f"unknown quiesce action {action!r}")
        self.client = client
        self.names = names
        self.journal = journal
        self.action = action
        self.stop_timeout = stop_timeout
        self.quiesced: list[tuple[Any, float]] = []
        self.downtime: dict[str, float] = {}
        self.start_failures: list[dict[str, str]] = []
        self._scaling: list[Any] = []  # services asked to scale to 0, not yet seen stopped

    def __enter__(self) -> "Quiesced":
        try:
            for name in self.names:
                container = self.client.containers.get(name)
                if self.action == "stop" and container.status not in ("running", "restarting", "paused"):
                    continue
                if self.action == "stop" and is_task(container.labels):
                    self._scale_down(container)
                    continue
                if self.action == "pause" and container.status != "running":
                    continue
                state = (container.attrs or {}).get("State") or {}
                timeout = stop_timeout_of(container.labels, self.stop_timeout)
                # Journalled before the engine is asked: a run killed during the stop is repaired
                # by the next one, which waits for the stop to end (see repair()).
                self.journal.record(container.id, container.name, self.action, was=container.status,
                                    started_at=state.get("StartedAt"),
                                    deadline=time.time() + timeout + STOP_MARGIN)
                started = time.monotonic()
                with deferred_signals():  # a SIGTERM now takes effect once the stop is done
                    self.quiesced.append((container, started))
                    if self.action == "stop":
                        container.stop(timeout=timeout)
                    else:
                        container.pause()
            # Services were all asked to scale to 0 before any is waited for: services that share
            # the data stop together, so none keeps writing while another is already down.
            with deferred_signals():
                while self._scaling:
                    self._scaling.pop(0).wait_down()
        except BaseException:
            self.resume()
            raise
        return self

    def __exit__(self, *exc_info) -> bool:
        self.resume()
        return False

    def _scale_down(self, container) -> None:
        """Scale the service of a swarm task to 0 (once per service), journalled first."""
        service_id = container.labels["com.docker.swarm.service.id"]
        if any(getattr(q, "id", None) == service_id for q, _started in self.quiesced):
            return
        scaler = ServiceScaler(self.client, service_id, self.stop_timeout)
        self.journal.record(service_id, scaler.name, "scale", replicas=scaler.replicas, cluster=scaler.cluster)
        started = time.monotonic()
        with deferred_signals():
            self.quiesced.append((scaler, started))  # resumed (scaled back) even if scaling down fails midway
            scaler.request_down()
            self._scaling.append(scaler)

    def resume(self) -> None:
        with deferred_signals():  # every container runs again before a SIGTERM ends the run
            rising = []
            while self.quiesced:
                container, started = self.quiesced.pop()
                try:
                    if self.action == "stop" and isinstance(container, ServiceScaler):
                        container.request_up()  # all services asked back first, then waited for together
                        self.journal.done(container.id)
                        rising.append((container, started))
                        continue
                    if self.action == "stop":
                        container.start()
                    else:
                        container.unpause()
                    self.journal.done(container.id)
                except Exception as exc:  # pylint: disable=broad-except
                    self.start_failures.append({"container": container.name, "error": str(exc)})
                self.downtime[container.name] = round(time.monotonic() - started, 3)
            for scaler, started in rising:
                try:
                    scaler.wait_up()
                except Exception as exc:  # pylint: disable=broad-except
                    self.start_failures.append({"container": scaler.name, "error": str(exc)})
                self.downtime[scaler.name] = round(time.monotonic() - started, 3)


# SIGTERM/SIGHUP while a container is being stopped, paused or brought back is held until that is
# done (see deferred_signals). Module-wide: the handler runs in the main thread, the critical
# sections may run in the threads of parallel units.
_SIGNALS = {"critical": 0, "pending": None, "exiting": False}
_SIGNALS_LOCK = threading.Lock()


class deferred_signals:  # pylint: disable=invalid-name
    """Context manager: a SIGTERM or SIGHUP that arrives inside takes effect when the last such
    section ends (it is sent again to this process then)."""

    def __enter__(self) -> "deferred_signals":
        with _SIGNALS_LOCK:
            _SIGNALS["critical"] += 1
        return self

    def __exit__(self, *exc_info) -> bool:
        with _SIGNALS_LOCK:
            _SIGNALS["critical"] -= 1
            pending = _SIGNALS["pending"] if _SIGNALS["critical"] == 0 else None
            if pending is not None:
                _SIGNALS["pending"] = None
        if pending is not None:
            os.kill(os.getpid(), pending)
        return False


class TerminationGuard:
    """Turn SIGTERM/SIGHUP into SystemExit for the duration, so `finally` blocks run."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> "TerminationGuard":
        self.previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}

        def handler(signum, _frame):
            # No lock here: the handler may run while this thread holds _SIGNALS_LOCK.
            if _SIGNALS["exiting"]:
                return  # on the way out already: let the cleanup finish
            if _SIGNALS["critical"] > 0:
                _SIGNALS["pending"] = signum
                return
            _SIGNALS["exiting"] = True
            raise SystemExit(f"lifeboat: stopped by signal {signum}; containers are being started again")

        for sig in self.SIGNALS:
            signal.signal(sig, handler)
        return self

    def __exit__(self, *exc_info) -> bool:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)
        _SIGNALS.update(pending=None, exiting=False)
        return False
