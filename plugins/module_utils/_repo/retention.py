# Copyright: lifeboat.docker developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of lifeboat.docker: not a public API, free to change between releases.

"""Retention policies: which snapshots a prune keeps, and why (pure logic, no I/O here).

The rules follow restic's `forget`, which operators know:

- keep_last N: the N newest snapshots.
- keep_hourly / keep_daily / keep_weekly / keep_monthly / keep_yearly N: going from the newest
  snapshot to the oldest, the newest snapshot of each calendar hour / day / week / month / year,
  for the N newest such periods that hold a snapshot (periods without one are not counted: keep_daily
  7 with a snapshot every other day reaches back two weeks).
- keep_within DURATION (such as ``2y5m7d3h``: years, months, days, hours): every snapshot newer
  than DURATION before the newest snapshot of its group (not before now: a host that stopped
  backing up keeps its last DURATION of history). Years and months are calendar ones (one month
  before 31 March is 3 March, as with Go's AddDate, which restic uses).
- keep_days N (lifeboat's own, restic has none): every snapshot younger than N days, measured from
  now. Alone, it is the storage backends' "keep-days": delete what is older than N days.

All rules are OR-ed: a snapshot is kept when any rule keeps it. Periods are taken in UTC; weeks are
ISO 8601 weeks (Monday to Sunday; 2026-12-31, a Thursday, is in week 2026-W53; 2027-01-01 too).

Groups: the rules are applied to each (host, unit) group separately. A snapshot belongs to one group
per unit it holds captured data for (units with no object, such as strategy skip, do not count; a
manifest with no such unit forms a group of its own on its host). A snapshot is kept when any of
its groups keeps it. restic groups by host and paths in the same spirit.

Safety net: the newest snapshot with ``complete: true`` of each group is always kept, whatever the
policy. Incomplete snapshots (``complete: false``: some unit failed) are judged like any other by
the rules (the units they list were captured and are restorable) and use up counts of the bucket
rules, but they are never "the newest complete snapshot".

Differences to restic, on purpose: restic >= 0.17 additionally keeps the oldest snapshot of a group
when a count rule has counts left; lifeboat does not (keep_within or keep_days express "at least
this much history" explicitly). Negative counts ("unlimited") are not accepted.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any, Callable

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import manifest as mf

UTC = _dt.timezone.utc

COUNT_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
RULES = COUNT_RULES + ("keep_within", "keep_days")

_DURATION_PART = re.compile(r"(\d+)([ymdh])")
_DURATION_WORDS = {"y": "years", "m": "months", "d": "days", "h": "hours"}


class PolicyError(ValueError):
    """A policy that cannot be applied; the message says what is wrong and what to do."""


# --------------------------------------------------------------------------------------------
# durations (keep_within)
# --------------------------------------------------------------------------------------------
class Duration:
    """A calendar duration: years, months, days, hours (restic's keep-within format)."""

    def __init__(self, years: int = 0, months: int = 0, days: int = 0, hours: int = 0) -> None:
        self.years, self.months, self.days, self.hours = years, months, days, hours

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and \
            (self.years, self.months, self.days, self.hours) == (other.years, other.months, other.days, other.hours)

    def __repr__(self) -> str:
        return f"Duration({self})"

    def __str__(self) -> str:
        parts = ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h"))
        text = "".join(f"{n}{u}" for n, u in parts if n)
        return text or "0h"

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, when: _dt.datetime) -> _dt.datetime | None:
        """WHEN minus this duration, calendar-wise (Go's AddDate, then hours); None when that is
        before year 1 (everything is newer)."""
        months = when.year * 12 + (when.month - 1) - (self.years * 12 + self.months)
        year, month0 = divmod(months, 12)
        try:
            # day overflow normalises forward, as Go's time.Date does: 31 March - 1 month = 3 March
            first = when.replace(year=year, month=month0 + 1, day=1)
            return first + _dt.timedelta(days=when.day - 1 - self.days, hours=-self.hours)
        except (ValueError, OverflowError):
            return None


def parse_duration(text: Any) -> Duration:
    """'2y5m7d3h' (any of the parts, each at most once, in any order) into a Duration."""
    if not isinstance(text, str):
        raise PolicyError(f"keep_within must be a string such as '2y5m7d3h', got {text!r}")
    cleaned = text.strip()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise PolicyError(f"keep_within {text!r} is not a duration: write numbers followed by y (years), m (months), "
                          "d (days) or h (hours), such as '14d', '6m' or '1y6m'")
    values: dict[str, int] = {}
    for number, unit in parts:
        if unit in values:
            raise PolicyError(f"keep_within {text!r} gives {_DURATION_WORDS[unit]} twice: give each of y, m, d, h "
                              "at most once")
        values[unit] = int(number)
    duration = Duration(values.get("y", 0), values.get("m", 0), values.get("d", 0), values.get("h", 0))
    if duration.is_zero():
        raise PolicyError(f"keep_within {text!r} is zero: it would keep nothing; give a length such as '14d'")
    return duration


# --------------------------------------------------------------------------------------------
# the policy
# --------------------------------------------------------------------------------------------
class Policy:
    """Validated retention rules (None: rule not given)."""

    def __init__(self, keep_last: int | None = None, keep_hourly: int | None = None, keep_daily: int | None = None,
                 keep_weekly: int | None = None, keep_monthly: int | None = None, keep_yearly: int | None = None,
                 keep_within: str | None = None, keep_days: int | None = None) -> None:
        counts = {"keep_last": keep_last, "keep_hourly": keep_hourly, "keep_daily": keep_daily,
                  "keep_weekly": keep_weekly, "keep_monthly": keep_monthly, "keep_yearly": keep_yearly,
                  "keep_days": keep_days}
        for name, value in counts.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise PolicyError(f"{name} must be a whole number, got {value!r}")
            if value < 0:
                raise PolicyError(f"{name} is {value}: give 0 or more (0, like leaving it out, turns the rule off)")
        self.counts = {name: counts[name] or 0 for name in COUNT_RULES}
        self.keep_days = keep_days or 0
        self.keep_within_text = None if keep_within in (None, "") else str(keep_within).strip()
        self.keep_within = parse_duration(keep_within) if self.keep_within_text is not None else None
        if self.is_empty():
            raise PolicyError("the retention policy is empty: give at least one of " + ", ".join(RULES) +
                              " (a prune without a rule would remove every snapshot but the newest of each unit)")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Policy":
        return cls(**{name: params.get(name) for name in RULES})

    def is_empty(self) -> bool:
        return not any(self.counts.values()) and not self.keep_days and self.keep_within is None

    def describe(self) -> dict[str, Any]:
        """The rules in effect, as given."""
        out: dict[str, Any] = {name: value for name, value in self.counts.items() if value}
        if self.keep_within is not None:
            out["keep_within"] = str(self.keep_within)
        if self.keep_days:
            out["keep_days"] = self.keep_days
        return out


# --------------------------------------------------------------------------------------------
# calendar buckets (UTC; ISO weeks)
# --------------------------------------------------------------------------------------------
def _hour(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H")


def _day(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _week(t: _dt.datetime) -> str:
    year, week, _weekday = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m")


def _year(t: _dt.datetime) -> str:
    return f"{t.year:04d}"


BUCKETS: dict[str, tuple[str, Callable[[_dt.datetime], str] | None]] = {
    "keep_last": ("last", None),          # every snapshot is its own bucket
    "keep_hourly": ("hourly", _hour),
    "keep_daily": ("daily", _day),
    "keep_weekly": ("weekly", _week),
    "keep_monthly": ("monthly", _month),
    "keep_yearly": ("yearly", _year),
}


def bucket_of(rule: str, when: _dt.datetime) -> str:
    """The calendar bucket (as text) of a time for a rule: '2026-W53', '2024-02-29', ..."""
    fn = BUCKETS[rule][1]
    if fn is None:
        raise PolicyError(f"{rule} has no calendar bucket")
    return fn(when.astimezone(UTC))


# --------------------------------------------------------------------------------------------
# deciding
# --------------------------------------------------------------------------------------------
def _utc(text: Any, what: str) -> _dt.datetime:
    try:
        when = mf.parse_iso(str(text))
    except ValueError:
        raise PolicyError(f"{what} has no readable time ({text!r}): it is damaged") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _stamp(when: _dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def group_keys(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """The (host, unit) groups a manifest belongs to."""
    host = str(manifest.get("host") or "")
    units = sorted({str(u.get("id")) for u in manifest.get("units") or [] if isinstance(u, dict) and u.get("object")})
    return [(host, unit) for unit in units] or [(host, "")]


def _group_name(key: tuple[str, str]) -> str:
    host, unit = key
    return f"{host} {unit}" if unit else f"{host} (no captured unit)"


def decide(manifests: list[dict[str, Any]], policy: Policy, now: _dt.datetime) -> list[dict[str, Any]]:
    """Keep or forget each manifest under POLICY; newest first.

    Each entry: id, host, time (ISO, UTC), complete, groups (["HOST UNIT", ...]), keep (bool) and
    reasons (why it is kept, one text per rule and group that keeps it; empty when forgotten).
    """
    if now.tzinfo is None:
        raise PolicyError("now must be timezone-aware")
    now = now.astimezone(UTC)
    snaps = []
    for man in manifests:
        sid = man.get("id")
        snaps.append({"id": sid, "host": man.get("host"), "when": _utc(man.get("time"), f"snapshot {sid}"),
                      "complete": man.get("complete", True) is not False, "groups": group_keys(man),
                      "reasons": []})
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for snap in snaps:
        for key in snap["groups"]:
            groups.setdefault(key, []).append(snap)
    for key, members in groups.items():
        members.sort(key=lambda s: (s["when"], s["id"]), reverse=True)  # newest first; ties by id
        _apply(policy, members, _group_name(key), now)
    out = []
    for snap in sorted(snaps, key=lambda s: (s["when"], s["id"]), reverse=True):
        out.append({"id": snap["id"], "host": snap["host"], "time": mf.iso(snap["when"]),
                    "complete": snap["complete"], "groups": [_group_name(k) for k in snap["groups"]],
                    "keep": bool(snap["reasons"]), "reasons": snap["reasons"]})
    return out


def _apply(policy: Policy, members: list[dict[str, Any]], group: str, now: _dt.datetime) -> None:
    """Add reasons to the members of one group (sorted newest first) that the policy keeps."""
    def keep(snap: dict[str, Any], reason: str) -> None:
        snap["reasons"].append(f"{reason} [{group}]")

    for rule in COUNT_RULES:
        wanted = policy.counts[rule]
        if not wanted:
            continue
        label, fn = BUCKETS[rule]
        last = None
        used = 0
        for snap in members:
            if used >= wanted:
                break
            bucket = fn(snap["when"]) if fn else None
            if fn is None or bucket != last:
                used += 1
                last = bucket
                keep(snap, f"{label} {used}/{wanted}" + (f" ({bucket})" if bucket else ""))
    if policy.keep_within is not None:
        # the anchor: the group's newest snapshot not in the future (as restic), else its newest
        past = [s["when"] for s in members if s["when"] <= now]
        anchor = past[0] if past else members[0]["when"]
        cutoff = policy.keep_within.before(anchor)
        for snap in members:
            if cutoff is None or snap["when"] > cutoff:
                keep(snap, f"within {policy.keep_within} of the group's newest snapshot ({_stamp(anchor)})")
    if policy.keep_days:
        cutoff = now - _dt.timedelta(days=policy.keep_days)
        for snap in members:
            if snap["when"] > cutoff:
                keep(snap, f"younger than {policy.keep_days} days")
    for snap in members:
        if snap["complete"]:
            keep(snap, "newest complete snapshot of its group (never removed)")
            break
