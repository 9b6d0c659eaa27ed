"""Firing with an injected clock: DST, pause/resume, edit, misfire and overlap policies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from podstack.schemas import schedules as sch
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules import service
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.server.schedules.conftest import ADMIN, create, executions, schedule_row

MakeScheduler = Callable[..., Scheduler]


def _drive(sched: Scheduler, clock: FakeClock, until: datetime, step: timedelta) -> None:
    """Moves the clock in fixed steps (independent of the schedule) and fires at each."""
    while clock.now() < until:
        clock.set(min(clock.now() + step, until))
        sched.fire_due()


@pytest.mark.parametrize(
    ("start", "expected_utc"),
    [
        pytest.param(
            datetime(2024, 3, 8, tzinfo=UTC),
            # 02:00 EST = 07:00 UTC; on Sunday 10 March 02:00 does not exist (clocks jump to
            # 03:00 EDT): one fire at 03:00 EDT = 07:00 UTC; then 02:00 EDT = 06:00 UTC.
            [
                "2024-03-08 07:00",
                "2024-03-09 07:00",
                "2024-03-10 07:00",
                "2024-03-11 06:00",
                "2024-03-12 06:00",
            ],
            id="spring-forward",
        ),
        pytest.param(
            datetime(2024, 11, 1, tzinfo=UTC),
            # 02:00 EDT = 06:00 UTC; on Sunday 3 November 01:00-01:59 repeats but 02:00 EST
            # happens once (07:00 UTC); then 02:00 EST = 07:00 UTC.
            [
                "2024-11-01 06:00",
                "2024-11-02 06:00",
                "2024-11-03 07:00",
                "2024-11-04 07:00",
                "2024-11-05 07:00",
            ],
            id="fall-back",
        ),
    ],
)
def test_daily_0200_new_york_across_dst_fires_exactly_the_expected_times(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    start: datetime,
    expected_utc: list[str],
) -> None:
    clock = FakeClock(start)
    # Fixed 20-minute steps: a fire is at most 20 min late, counted as on time here.
    sched = make_scheduler(clock, scheduler_misfire_threshold_seconds=1800)
    sid = create(db, settings, clock.now(), timezone="America/New_York", overlap_policy="allow")
    _drive(sched, clock, start + timedelta(days=5), timedelta(minutes=20))
    rows = executions(db, sid)
    assert [r.scheduled_time.strftime("%Y-%m-%d %H:%M") for r in rows] == expected_utc
    assert {r.trigger for r in rows} == {"cron"}
    assert {r.status for r in rows} == {"queued"}


def test_repeated_local_time_on_fall_back_fires_once(
    db: Database, settings: Settings, experiment: str, make_scheduler: MakeScheduler
) -> None:
    """01:30 happens twice on 3 Nov 2024 in New York; a daily 01:30 job runs once that day."""
    start = datetime(2024, 11, 2, 12, tzinfo=UTC)
    clock = FakeClock(start)
    sched = make_scheduler(clock, scheduler_misfire_threshold_seconds=1800)
    sid = create(
        db,
        settings,
        clock.now(),
        cron="30 1 * * *",
        timezone="America/New_York",
        overlap_policy="allow",
    )
    _drive(sched, clock, start + timedelta(days=2), timedelta(minutes=10))
    times = [r.scheduled_time.strftime("%m-%d %H:%M") for r in executions(db, sid)]
    assert times == ["11-03 05:30", "11-04 06:30"]  # 01:30 EDT once, then 01:30 EST


def test_shortcut_and_every_minute_pace(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    hourly = create(
        db, settings, clock.now(), name="hourly", cron="@hourly", overlap_policy="allow"
    )
    _drive(sched, clock, clock.now() + timedelta(hours=3, minutes=1), timedelta(seconds=30))
    assert len(executions(db, hourly)) == 3


def test_pause_stops_firing_and_resume_does_not_backfill(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    sid = create(db, settings, clock.now(), overlap_policy="allow")  # 02:00 UTC daily
    _drive(sched, clock, datetime(2024, 11, 1, 3, tzinfo=UTC), timedelta(minutes=1))
    assert len(executions(db, sid)) == 1
    with db.session() as s:
        row = service.pause_schedule(s, "admin", sid, now=clock.now())
        assert row.paused and row.next_fire_at is None
    _drive(sched, clock, datetime(2024, 11, 4, 12, tzinfo=UTC), timedelta(minutes=30))
    assert len(executions(db, sid)) == 1  # nothing while paused
    with db.session() as s:
        row = service.resume_schedule(s, "admin", sid, now=clock.now())
        assert row.next_fire_at == datetime(2024, 11, 5, 2, tzinfo=UTC)  # from now: no backfill
    sched.fire_due()
    assert len(executions(db, sid)) == 1
    _drive(sched, clock, datetime(2024, 11, 5, 2, 1, tzinfo=UTC), timedelta(minutes=1))
    rows = executions(db, sid)
    assert [r.scheduled_time for r in rows][-1] == datetime(2024, 11, 5, 2, tzinfo=UTC)
    assert rows[-1].trigger == "cron" and len(rows) == 2


def test_edit_recomputes_next_fire_and_drops_queued_executions_of_old_definition(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    sid = create(db, settings, clock.now(), overlap_policy="allow")
    with db.session() as s:
        queued = service.trigger_schedule(s, "admin", sid, now=clock.now()).id
    clock.set(datetime(2024, 11, 1, 1, tzinfo=UTC))
    with db.session() as s:
        row = service.update_schedule(
            s,
            ADMIN,
            sid,
            sch.ScheduleUpdate(cron="0 5 * * *", config={"lr": 0.01}),
            settings=settings,
            now=clock.now(),
        )
        assert row.version == 2
        assert row.next_fire_at == datetime(2024, 11, 1, 5, tzinfo=UTC)
    dropped = next(r for r in executions(db, sid) if r.id == queued)
    assert dropped.status == "cancelled" and "edited" in (dropped.message or "")
    _drive(sched, clock, datetime(2024, 11, 1, 5, 1, tzinfo=UTC), timedelta(minutes=1))
    fired = [r for r in executions(db, sid) if r.trigger == "cron"]
    assert [(r.scheduled_time.hour, r.schedule_version) for r in fired] == [(5, 2)]


def test_edit_without_changes_keeps_version(
    db: Database, settings: Settings, experiment: str, clock: FakeClock
) -> None:
    sid = create(db, settings, clock.now())
    with db.session() as s:
        row = service.update_schedule(
            s, ADMIN, sid, sch.ScheduleUpdate(cron="0 2 * * *"), settings=settings, now=clock.now()
        )
        assert row.version == 1


def test_misfire_runs_latest_missed_tick_once_within_grace(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)  # default: 60 s threshold, 1 h grace
    sid = create(db, settings, clock.now(), name="hourly", cron="0 * * * *")
    clock.set(datetime(2024, 11, 1, 4, 30, tzinfo=UTC))  # down from 00:00 to 04:30
    sched.fire_due()
    sched.fire_due()
    rows = executions(db, sid)
    assert len(rows) == 1
    (ex,) = rows
    assert ex.scheduled_time == datetime(2024, 11, 1, 4, tzinfo=UTC)
    assert (ex.trigger, ex.status) == ("catch_up", "queued")
    assert "3 earlier tick(s)" in (ex.message or "")
    assert schedule_row(db, sid).next_fire_at == datetime(2024, 11, 1, 5, tzinfo=UTC)


def test_tick_missed_within_the_misfire_threshold_is_recorded(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    """Down over 01:00 but back 45 s later (threshold 60 s): runs as usual, but says so."""
    sched = make_scheduler(clock)  # default: 60 s threshold, 5 s ticks
    sid = create(db, settings, clock.now(), name="blip", cron="0 * * * *", overlap_policy="allow")
    clock.set(datetime(2024, 11, 1, 1, 0, 45, tzinfo=UTC))
    sched.fire_due()
    (ex,) = executions(db, sid)
    assert (ex.trigger, ex.status) == ("cron", "queued")
    assert ex.scheduled_time == datetime(2024, 11, 1, 1, tzinfo=UTC)
    message = ex.message or ""
    assert "Late: the scheduler reached this tick 45 s after its time" in message
    assert "2024-11-01 01:00:00 UTC" in message and "60 s misfire threshold" in message
    # A tick reached on time by a running scheduler carries no note.
    clock.set(datetime(2024, 11, 1, 2, 0, 3, tzinfo=UTC))
    sched.fire_due()
    on_time = [r for r in executions(db, sid) if r.scheduled_time.hour == 2]
    assert len(on_time) == 1 and on_time[0].message is None


def test_misfire_outside_grace_is_recorded_as_skipped(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    sid = create(
        db, settings, clock.now(), name="grace", cron="0 * * * *", misfire_grace_seconds=600
    )
    clock.set(datetime(2024, 11, 1, 7, 30, tzinfo=UTC))
    sched.fire_due()
    (ex,) = executions(db, sid)
    assert (ex.status, ex.trigger, ex.run_id) == ("skipped_misfire", "cron", None)
    assert ex.scheduled_time == datetime(2024, 11, 1, 7, tzinfo=UTC)
    assert "grace window" in (ex.message or "")


def test_misfire_policy_skip_never_catches_up(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    sid = create(db, settings, clock.now(), name="strict", cron="0 * * * *", misfire_policy="skip")
    clock.set(datetime(2024, 11, 1, 1, 5, tzinfo=UTC))  # 5 minutes late
    sched.fire_due()
    (ex,) = executions(db, sid)
    assert ex.status == "skipped_misfire" and "misfire policy is 'skip'" in (ex.message or "")


def test_overlap_skip_and_allow(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    skip = create(db, settings, clock.now(), name="skip", cron="*/10 * * * *")
    allow = create(
        db, settings, clock.now(), name="allow", cron="*/10 * * * *", overlap_policy="allow"
    )
    # Executions stay queued (nothing dispatches them): the previous one "still runs".
    _drive(sched, clock, clock.now() + timedelta(minutes=30), timedelta(minutes=1))
    assert [r.status for r in executions(db, skip)] == [
        "queued",
        "skipped_overlap",
        "skipped_overlap",
    ]
    assert [r.status for r in executions(db, allow)] == ["queued"] * 3


def test_deleted_schedule_stops_firing_and_keeps_history(
    db: Database,
    settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    clock: FakeClock,
) -> None:
    sched = make_scheduler(clock)
    sid = create(db, settings, clock.now(), cron="*/10 * * * *", overlap_policy="allow")
    _drive(sched, clock, clock.now() + timedelta(minutes=20), timedelta(minutes=1))
    with db.session() as s:
        service.delete_schedule(s, "admin", sid, now=clock.now())
    _drive(sched, clock, clock.now() + timedelta(hours=1), timedelta(minutes=5))
    rows = executions(db, sid)
    assert len(rows) == 2
    # The name is free again; the old schedule is still reachable by id with its history.
    sid2 = create(db, settings, clock.now(), cron="*/10 * * * *")
    assert sid2 != sid
    with db.session(readonly=True) as s:
        items, _ = service.list_executions(s, sid)
        assert len(items) == 2
        assert service.get_schedule(s, sid).deleted_at is not None
