# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""The one runner every module's main() goes through: the crash-journal repair, the termination
guard and the exception ladder that turns an error into the module's fail_json.

Pure: `Failure` (one rung of a ladder), `failure_message` (which rung an exception meets, with the
message and whether the traceback goes along), `engine_failed` (the engine's usual message).
Effects: `check_paths` and `run` (they call the module's fail_json, and `run` the repair and the
signal handlers of TerminationGuard).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ansible_collections.lifeboat.docker.plugins.module_utils._common.options import relative_paths
from ansible_collections.lifeboat.docker.plugins.module_utils._snapshot.quiesce import TerminationGuard, repair as repair_journal


@dataclass(frozen=True)
class Failure:
    """One rung of a ladder: exceptions of KINDS fail the module with MESSAGE(exc) (str(exc) if not
    given); with TRACEBACK the traceback goes along as the result's `exception`."""

    kinds: Any  # an exception class or a tuple of them, as `except` takes them
    message: Callable[[BaseException], str] = str
    traceback: bool = False


def engine_failed(exc: BaseException) -> str:
    """The message of a failed Docker engine request, as most modules give it."""
    return f"the Docker engine failed a request: {exc}; check the engine's log"


def failure_message(exc: BaseException, ladder: Sequence[Failure], name: str) -> tuple[str, bool]:
    """(message, with traceback) for EXC: the first rung of LADDER whose kinds it is, else the
    unexpected failure of NAME (the module, or what it was doing) with its traceback."""
    for rung in ladder:
        if isinstance(exc, rung.kinds):
            return rung.message(exc), rung.traceback
    return f"{name} failed unexpectedly: {exc}", True


def check_paths(module, names: tuple[str, ...]) -> None:
    """Fail the module when any of the path options NAMES was given as a relative path."""
    bad = relative_paths(module.params, names)
    if bad:
        module.fail_json(msg=bad)


def run(module, body: Callable[[], Any], *, name: str, result: Optional[dict] = None,
        ladder: Sequence[Failure] = (), repair: Optional[Callable[[], Any]] = None, guard: bool = False) -> Any:
    """Run BODY() and return what it returns; an exception it raises fails the module as LADDER says.

    REPAIR, when given, returns the engine client (or None where the module has no engine) with which
    the crash journal is repaired first (outside check mode), its outcome in RESULT["repaired"].
    GUARD runs both under TerminationGuard, so that SIGTERM/SIGHUP unwind through `finally` blocks.
    fail_json gets RESULT's fields as they are when the failure happens (None: no fields).
    exit_json and fail_json called in BODY end the module as usual (SystemExit passes through)."""

    def guarded() -> Any:
        if repair is not None and not module.check_mode:
            result["repaired"] = repair_journal(repair())  # type: ignore[index]
        return body()

    try:
        if guard:
            with TerminationGuard():
                return guarded()
        return guarded()
    except Exception as exc:  # pylint: disable=broad-except
        msg, with_traceback = failure_message(exc, ladder, name)
        extra = {"exception": traceback.format_exc()} if with_traceback else {}
        module.fail_json(msg=msg, **extra, **(result or {}))
    return None  # unreachable: fail_json exits
