"""Retention policies (plugins/module_utils/_repo/retention.py): pure logic, calendar edges.

The expected results follow restic's documented `forget` semantics (newest snapshot of each
calendar bucket, buckets counted only when they hold a snapshot, rules OR-ed, keep-within measured
back from the newest snapshot), plus lifeboat's keep_days and the newest-complete guarantee.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from ansible_collections.lifeboat.docker.plugins.module_utils._repo import retention as rt
from ansible_collections.lifeboat.docker.plugins.module_utils._repo.retention import Duration, Policy, PolicyError

UTC = dt.timezone.utc
NOW = dt.datetime(2030, 1, 1, tzinfo=UTC)  # after every test snapshot, unless a test says otherwise
_serial = itertools.count()


def t(text: str) -> dt.datetime:
    """'2026-11-29 23:59:59' (UTC) as a datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def snap(when: str, host: str = "web1", units=("volume:app",), complete: bool = True, sid: str | None = None) -> dict:
    ts = t(when)
    sid = sid or f"{ts:%Y%m%dT%H%M%SZ}-{host}-{next(_serial):06x}"
    return {"id": sid, "host": host, "time": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "complete": complete,
            "units": [{"id": u, "object": {"sha256": "0" * 64}} for u in units]}


def kept(manifests: list[dict], now: dt.datetime = NOW, **policy) -> list[str]:
    """Times ('YYYY-MM-DD HH:MM:SS') of the kept snapshots, oldest first."""
    by_id = {m["id"]: m for m in manifests}
    out = [d for d in rt.decide(manifests, Policy(**policy), now) if d["keep"]]
    return sorted(rt._utc(by_id[d["id"]]["time"], "x").strftime("%Y-%m-%d %H:%M:%S") for d in out)


def decisions(manifests: list[dict], now: dt.datetime = NOW, **policy) -> dict[str, dict]:
    return {d["id"]: d for d in rt.decide(manifests, Policy(**policy), now)}


def policy_only(manifests, now=NOW, **policy) -> list[str]:
    """Kept times, not counting what only the newest-complete guarantee keeps."""
    by_id = {m["id"]: m for m in manifests}
    out = []
    for d in rt.decide(manifests, Policy(**policy), now):
        if any("never removed" not in r for r in d["reasons"]):
            out.append(rt._utc(by_id[d["id"]]["time"], "x").strftime("%Y-%m-%d %H:%M:%S"))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# weeks: ISO 8601, Monday to Sunday, UTC
# --------------------------------------------------------------------------------------------
def test_week_starts_on_monday_midnight_utc():
    sunday, monday = snap("2026-11-29 23:59:59"), snap("2026-11-30 00:00:00")
    assert rt.bucket_of("keep_weekly", t("2026-11-29 23:59:59")) == "2026-W48"
    assert rt.bucket_of("keep_weekly", t("2026-11-30 00:00:00")) == "2026-W49"
    assert policy_only([sunday, monday], keep_weekly=1) == ["2026-11-30 00:00:00"]
    assert kept([sunday, monday], keep_weekly=2) == ["2026-11-29 23:59:59", "2026-11-30 00:00:00"]
    # Monday 00:00 and Sunday 23:59:59 of the same week are one bucket
    assert policy_only([snap("2026-11-30 00:00:00"), snap("2026-12-06 23:59:59")], keep_weekly=2) \
        == ["2026-12-06 23:59:59"]


def test_one_week_holds_monday_to_sunday():
    week = [snap("2026-11-30 00:00:00"), snap("2026-12-03 12:00:00"), snap("2026-12-06 23:59:59")]
    assert policy_only(week, keep_weekly=5) == ["2026-12-06 23:59:59"]


def test_iso_week_53_spans_the_year_end():
    # 2026 has 53 ISO weeks: 2026-12-28 (Mon) to 2027-01-03 (Sun) is 2026-W53
    assert rt.bucket_of("keep_weekly", t("2026-12-31 12:00:00")) == "2026-W53"
    assert rt.bucket_of("keep_weekly", t("2027-01-03 23:59:59")) == "2026-W53"
    assert rt.bucket_of("keep_weekly", t("2027-01-04 00:00:00")) == "2027-W01"
    assert rt.bucket_of("keep_weekly", t("2020-12-31 00:00:00")) == "2020-W53"
    snaps = [snap("2026-12-27 23:00:00"), snap("2026-12-28 00:00:00"), snap("2026-12-31 23:59:59"),
             snap("2027-01-02 10:00:00"), snap("2027-01-04 00:00:00")]
    # one snapshot per week: 2026-W52, 2026-W53 (newest: 2027-01-02), 2027-W01
    assert kept(snaps, keep_weekly=3) == ["2026-12-27 23:00:00", "2027-01-02 10:00:00", "2027-01-04 00:00:00"]
    # but by year, 2026-12-31 and 2027-01-02 are different buckets
    assert policy_only(snaps, keep_yearly=2) == ["2026-12-31 23:59:59", "2027-01-04 00:00:00"]


def test_week_spanning_the_year_end_into_the_next_iso_year():
    # 2024-12-30 (Mon) is in 2025-W01, with 2025-01-05 (Sun); 2024-12-29 (Sun) is in 2024-W52
    assert rt.bucket_of("keep_weekly", t("2024-12-30 00:00:00")) == "2025-W01"
    assert rt.bucket_of("keep_weekly", t("2024-12-29 23:59:59")) == "2024-W52"
    snaps = [snap("2024-12-29 23:59:59"), snap("2024-12-30 00:00:00"), snap("2025-01-05 23:59:59")]
    assert policy_only(snaps, keep_weekly=1) == ["2025-01-05 23:59:59"]
    assert kept(snaps, keep_weekly=2) == ["2024-12-29 23:59:59", "2025-01-05 23:59:59"]


# --------------------------------------------------------------------------------------------
# months, leap days, years
# --------------------------------------------------------------------------------------------
def test_month_end_jan_31_and_feb_1():
    snaps = [snap("2026-01-31 23:59:59"), snap("2026-02-01 00:00:00")]
    assert rt.bucket_of("keep_monthly", t("2026-01-31 23:59:59")) == "2026-01"
    assert policy_only(snaps, keep_monthly=1) == ["2026-02-01 00:00:00"]
    assert kept(snaps, keep_monthly=2) == ["2026-01-31 23:59:59", "2026-02-01 00:00:00"]
    assert kept(snaps, keep_daily=2) == ["2026-01-31 23:59:59", "2026-02-01 00:00:00"]


def test_february_end_in_common_and_leap_years():
    common = [snap("2025-02-27 12:00:00"), snap("2025-02-28 23:59:59"), snap("2025-03-01 00:00:00")]
    assert policy_only(common, keep_monthly=2) == ["2025-02-28 23:59:59", "2025-03-01 00:00:00"]
    leap = [snap("2024-02-28 12:00:00"), snap("2024-02-29 00:00:00"), snap("2024-02-29 23:59:59"),
            snap("2024-03-01 00:00:00")]
    assert rt.bucket_of("keep_daily", t("2024-02-29 23:59:59")) == "2024-02-29"
    # Feb 2024 has 29 days: its newest snapshot is the one of the 29th, late in the day
    assert policy_only(leap, keep_monthly=2) == ["2024-02-29 23:59:59", "2024-03-01 00:00:00"]
    # three days hold snapshots: 28th, 29th (newest of two), 1 March
    assert kept(leap, keep_daily=3) == ["2024-02-28 12:00:00", "2024-02-29 23:59:59", "2024-03-01 00:00:00"]


def test_year_boundary():
    snaps = [snap("2025-12-31 23:59:59"), snap("2026-01-01 00:00:00")]
    for rule in ("keep_hourly", "keep_daily", "keep_monthly", "keep_yearly"):
        assert policy_only(snaps, **{rule: 1}) == ["2026-01-01 00:00:00"], rule
        assert kept(snaps, **{rule: 2}) == ["2025-12-31 23:59:59", "2026-01-01 00:00:00"], rule
    # 2025-12-31 (Wed) and 2026-01-01 (Thu) are both in 2026-W01
    assert rt.bucket_of("keep_weekly", t("2025-12-31 23:59:59")) == "2026-W01"
    assert policy_only(snaps, keep_weekly=2) == ["2026-01-01 00:00:00"]


def test_hourly_buckets():
    snaps = [snap("2026-05-01 09:59:59"), snap("2026-05-01 10:00:00"), snap("2026-05-01 10:59:59"),
             snap("2026-05-01 11:00:00"), snap("2026-05-01 13:30:00")]
    assert rt.bucket_of("keep_hourly", t("2026-05-01 10:59:59")) == "2026-05-01T10"
    # hours without a snapshot (12:00) are not counted: 13, 11, 10 (newest: 10:59:59)
    assert kept(snaps, keep_hourly=3) == ["2026-05-01 10:59:59", "2026-05-01 11:00:00", "2026-05-01 13:30:00"]
    assert kept(snaps, keep_hourly=10) == ["2026-05-01 09:59:59", "2026-05-01 10:59:59", "2026-05-01 11:00:00",
                                           "2026-05-01 13:30:00"]


def test_buckets_without_snapshots_are_not_counted():
    # one snapshot every other day: keep_daily 3 reaches back 5 days (restic's semantics)
    snaps = [snap(f"2026-03-{day:02d} 02:00:00") for day in (1, 3, 5, 7, 9)]
    assert kept(snaps, keep_daily=3) == ["2026-03-05 02:00:00", "2026-03-07 02:00:00", "2026-03-09 02:00:00"]


# --------------------------------------------------------------------------------------------
# keep_last
# --------------------------------------------------------------------------------------------
def test_keep_last_counts_snapshots_not_periods():
    snaps = [snap("2026-03-01 02:00:00"), snap("2026-03-01 02:00:01"), snap("2026-03-01 02:00:02")]
    assert kept(snaps, keep_last=2) == ["2026-03-01 02:00:01", "2026-03-01 02:00:02"]


def test_keep_last_with_ties_keeps_exactly_n_deterministically():
    a = snap("2026-03-01 02:00:00", sid="20260301T020000Z-web1-aaaaaa")
    b = snap("2026-03-01 02:00:00", sid="20260301T020000Z-web1-bbbbbb")
    c = snap("2026-03-01 01:00:00", sid="20260301T010000Z-web1-cccccc")
    for order in itertools.permutations([a, b, c]):
        result = decisions(list(order), keep_last=1)
        assert [i for i, d in result.items() if d["keep"]] == [b["id"]], "ties are broken by id, newest first"
        result = decisions(list(order), keep_last=2)
        assert sorted(i for i, d in result.items() if d["keep"]) == [a["id"], b["id"]]
        assert not result[c["id"]]["keep"]


# --------------------------------------------------------------------------------------------
# keep_within
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("2y5m7d3h", Duration(2, 5, 7, 3)),
    ("14d", Duration(days=14)),
    ("3h2d", Duration(days=2, hours=3)),       # any order, as restic
    (" 1y ", Duration(years=1)),
    ("0y36h", Duration(hours=36)),
    ("18m", Duration(months=18)),
])
def test_keep_within_parses(text, expected):
    assert rt.parse_duration(text) == expected


@pytest.mark.parametrize("text,why", [
    ("", "not a duration"), ("abc", "not a duration"), ("5", "not a duration"), ("5w", "not a duration"),
    ("-1d", "not a duration"), ("1.5d", "not a duration"), ("d", "not a duration"), ("1y 2m", "not a duration"),
    ("1D", "not a duration"), ("1d1d", "days twice"), ("0d", "is zero"), ("0y0h", "is zero"),
])
def test_keep_within_refuses_invalid_strings(text, why):
    with pytest.raises(PolicyError, match=why):
        rt.parse_duration(text)
    if text.strip():
        with pytest.raises(PolicyError):
            Policy(keep_within=text)


def test_keep_within_is_measured_from_the_newest_snapshot_not_now():
    snaps = [snap("2020-06-01 00:00:00"), snap("2020-06-20 12:00:00"), snap("2020-06-23 11:59:59"),
             snap("2020-06-23 12:00:01"), snap("2020-06-30 12:00:00")]
    # years after the last snapshot, the last 7 days before it are still kept
    assert kept(snaps, now=t("2026-01-01 00:00:00"), keep_within="7d") == [
        "2020-06-23 12:00:01", "2020-06-30 12:00:00"]
    # exactly DURATION before the newest is not "newer than" it (restic: strictly after)
    exact = [snap("2020-06-23 12:00:00"), snap("2020-06-30 12:00:00")]
    assert kept(exact, keep_within="7d") == ["2020-06-30 12:00:00"]
    assert kept(exact, keep_within="7d1h") == ["2020-06-23 12:00:00", "2020-06-30 12:00:00"]


def test_keep_within_ignores_snapshots_from_the_future_as_anchor():
    now = t("2026-06-10 00:00:00")
    snaps = [snap("2026-06-01 00:00:00"), snap("2026-06-08 00:00:00"), snap("2027-01-01 00:00:00")]
    # anchor: 2026-06-08 (the newest not in the future); the future one is newer than the cutoff
    assert kept(snaps, now=now, keep_within="3d") == ["2026-06-08 00:00:00", "2027-01-01 00:00:00"]


def test_keep_within_uses_calendar_months_and_years_like_go_adddate():
    assert Duration(months=1).before(t("2024-03-31 10:00:00")) == t("2024-03-02 10:00:00")  # Feb 31 -> Mar 2
    assert Duration(years=1).before(t("2024-02-29 10:00:00")) == t("2023-03-01 10:00:00")  # Feb 29 2023 -> Mar 1
    assert Duration(years=1, months=2, days=3, hours=4).before(t("2026-05-10 12:00:00")) == t("2025-03-07 08:00:00")
    assert Duration(days=1, hours=1).before(t("2026-01-01 00:30:00")) == t("2025-12-30 23:30:00")
    assert Duration(years=5000).before(t("2026-01-01 00:00:00")) is None  # before year 1: everything is within
    leap = [snap("2023-02-28 23:00:00"), snap("2023-03-01 11:00:00"), snap("2024-02-29 10:00:00")]
    assert kept(leap, keep_within="1y") == ["2023-03-01 11:00:00", "2024-02-29 10:00:00"]
    assert kept([snap("1990-01-01 00:00:00"), snap("2026-01-01 00:00:00")], keep_within="5000y") == [
        "1990-01-01 00:00:00", "2026-01-01 00:00:00"]


# --------------------------------------------------------------------------------------------
# keep_days
# --------------------------------------------------------------------------------------------
def test_keep_days_keeps_what_is_younger_than_n_days_from_now():
    now = t("2026-06-30 12:00:00")
    snaps = [snap("2026-05-01 00:00:00"), snap("2026-05-31 12:00:00"), snap("2026-05-31 12:00:01"),
             snap("2026-06-29 00:00:00")]
    assert kept(snaps, now=now, keep_days=30) == ["2026-05-31 12:00:01", "2026-06-29 00:00:00"]
    reasons = decisions(snaps, now=now, keep_days=30)[snaps[2]["id"]]["reasons"]
    assert reasons == ["younger than 30 days [web1 volume:app]"]


def test_keep_days_alone_deletes_what_is_older_except_the_newest_complete():
    now = t("2026-06-30 12:00:00")
    snaps = [snap("2026-01-01 00:00:00"), snap("2026-02-01 00:00:00"), snap("2026-03-01 00:00:00", complete=False)]
    result = decisions(snaps, now=now, keep_days=7)
    assert [d["keep"] for d in (result[s["id"]] for s in snaps)] == [False, True, False]
    assert result[snaps[1]["id"]]["reasons"] == [
        "newest complete snapshot of its group (never removed) [web1 volume:app]"]


# --------------------------------------------------------------------------------------------
# groups, OR, the guarantee, the empty policy
# --------------------------------------------------------------------------------------------
def test_groups_by_host():
    snaps = [snap("2026-03-01 01:00:00", host="a"), snap("2026-03-02 01:00:00", host="a"),
             snap("2026-02-01 01:00:00", host="b"), snap("2026-02-02 01:00:00", host="b")]
    assert kept(snaps, keep_last=1) == ["2026-02-02 01:00:00", "2026-03-02 01:00:00"]
    reasons = decisions(snaps, keep_last=1)[snaps[3]["id"]]["reasons"]
    assert reasons[0] == "last 1/1 [b volume:app]"


def test_groups_by_unit_and_a_snapshot_is_kept_if_any_group_keeps_it():
    both = snap("2026-03-01 01:00:00", units=("volume:app", "volume:db"))
    app_only = snap("2026-03-02 01:00:00", units=("volume:app",))
    db_old = snap("2026-02-01 01:00:00", units=("volume:db",))
    result = decisions([both, app_only, db_old], keep_last=1)
    assert result[app_only["id"]]["keep"] and result[both["id"]]["keep"] and not result[db_old["id"]]["keep"]
    assert result[both["id"]]["groups"] == ["web1 volume:app", "web1 volume:db"]
    assert [r for r in result[both["id"]]["reasons"] if r.startswith("last")] == ["last 1/1 [web1 volume:db]"]


def test_units_without_data_form_no_group():
    skipped = snap("2026-03-02 01:00:00", units=("volume:app",))
    skipped["units"].append({"id": "volume:cache", "object": None})
    cache = snap("2026-03-01 01:00:00", units=("volume:cache",))
    result = decisions([skipped, cache], keep_last=1)
    assert result[skipped["id"]]["groups"] == ["web1 volume:app"]
    assert result[cache["id"]]["keep"], "the skip does not count as a newer capture of volume:cache"
    bare = snap("2026-03-03 01:00:00", units=())
    assert decisions([bare], keep_last=1)[bare["id"]]["groups"] == ["web1 (no captured unit)"]


def test_rules_are_ored():
    snaps = [snap("2026-03-01 01:00:00"), snap("2026-03-01 02:00:00"), snap("2026-03-02 01:00:00"),
             snap("2026-03-03 01:00:00"), snap("2026-03-03 02:00:00")]
    assert kept(snaps, keep_last=1) == ["2026-03-03 02:00:00"]
    assert kept(snaps, keep_daily=2) == ["2026-03-02 01:00:00", "2026-03-03 02:00:00"]
    assert kept(snaps, keep_last=2, keep_daily=3) == ["2026-03-01 02:00:00", "2026-03-02 01:00:00",
                                                      "2026-03-03 01:00:00", "2026-03-03 02:00:00"]
    d = decisions(snaps, keep_last=2, keep_daily=3)[snaps[4]["id"]]
    assert d["reasons"] == ["last 1/2 [web1 volume:app]", "daily 1/3 (2026-03-03) [web1 volume:app]",
                            "newest complete snapshot of its group (never removed) [web1 volume:app]"]


def test_newest_complete_snapshot_is_never_removed():
    snaps = [snap("2026-03-01 01:00:00"), snap("2026-03-02 01:00:00"),
             snap("2026-03-03 01:00:00", complete=False), snap("2026-03-04 01:00:00", complete=False)]
    # keep_last 1 keeps the newest (incomplete); the newest complete one stays too
    assert kept(snaps, keep_last=1) == ["2026-03-02 01:00:00", "2026-03-04 01:00:00"]
    # incomplete snapshots use up counts: keep_daily 1 takes the day of the 4th
    same_day = [snap("2026-04-01 10:00:00"), snap("2026-04-01 12:00:00", complete=False)]
    result = decisions(same_day, keep_daily=1)
    assert result[same_day[1]["id"]]["reasons"] == ["daily 1/1 (2026-04-01) [web1 volume:app]"]
    assert result[same_day[0]["id"]]["reasons"] == [
        "newest complete snapshot of its group (never removed) [web1 volume:app]"]
    # a group with only incomplete snapshots has no guarantee
    only_incomplete = [snap("2026-01-01 00:00:00", complete=False), snap("2026-01-02 00:00:00", complete=False)]
    assert kept(only_incomplete, keep_last=1) == ["2026-01-02 00:00:00"]
    # and per group: each unit keeps its own newest complete snapshot
    per_unit = [snap("2026-01-01 00:00:00", units=("volume:a",)), snap("2026-01-02 00:00:00", units=("volume:b",))]
    assert kept(per_unit, now=t("2027-01-01 00:00:00"), keep_days=1) == [
        "2026-01-01 00:00:00", "2026-01-02 00:00:00"]


def test_missing_complete_field_counts_as_complete():
    old = snap("2026-01-01 00:00:00")
    del old["complete"]
    assert decisions([old], keep_days=1)[old["id"]]["keep"]


@pytest.mark.parametrize("policy", [{}, {"keep_last": 0}, {"keep_daily": 0, "keep_days": 0, "keep_within": None},
                                    {"keep_within": ""}])
def test_empty_policy_is_refused(policy):
    with pytest.raises(PolicyError, match="policy is empty: give at least one of keep_last"):
        Policy(**policy)


@pytest.mark.parametrize("policy,why", [({"keep_last": -1}, "keep_last is -1: give 0 or more"),
                                        ({"keep_days": True}, "keep_days must be a whole number"),
                                        ({"keep_daily": "7"}, "keep_daily must be a whole number"),
                                        ({"keep_within": 7}, "keep_within must be a string")])
def test_bad_values_are_refused(policy, why):
    with pytest.raises(PolicyError, match=why):
        Policy(**policy)


def test_describe_and_from_params():
    policy = Policy.from_params({"keep_daily": 7, "keep_weekly": None, "keep_within": "1m14d", "keep_days": 0,
                                 "repository": "/x"})
    assert policy.describe() == {"keep_daily": 7, "keep_within": "1m14d"}


def test_everything_kept_or_removed_and_newest_first():
    snaps = [snap(f"2026-0{m}-0{d} 0{h}:00:00") for m in (1, 2) for d in (1, 2) for h in (1, 2)]
    out = rt.decide(snaps, Policy(keep_monthly=1), NOW)
    assert len(out) == len(snaps)
    assert [d["time"] for d in out] == sorted((d["time"] for d in out), reverse=True)
    assert [d["keep"] for d in out] == [True] + [False] * 7
    assert all(d["reasons"] == [] for d in out if not d["keep"])


def test_damaged_time_is_a_policy_error():
    bad = snap("2026-01-01 00:00:00")
    bad["time"] = "yesterday"
    with pytest.raises(PolicyError, match="no readable time"):
        rt.decide([bad], Policy(keep_last=1), NOW)
