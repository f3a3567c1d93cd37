"""The time triggers of CONTRACT §8: ``maxModelAgeHours`` (trigger ``age``) and a cron ``schedule`` (trigger ``schedule``).

Every test brings its own clock: ``tick(now)`` and ``scheduled_check(now)`` are called directly
with a time past the limit or at the cron's next fire time, so nothing sleeps or waits for a tick.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.cron import CronTrigger

from backend import create_app, shutdown
from backend.scheduler import TrainingScheduler, job_id, schedule_job_id
from tests.helpers import wait_job, write_config, write_samples

SUNDAY_1AM = "0 1 * * SUN"


def trained_app(trained_folder, tmp_path, **training):
    """An app whose model serves v1 (trained on 300 rows), with ``training`` settings of its own."""
    for part in ("data", "ml_models"):
        shutil.copytree(trained_folder / part, tmp_path / part, dirs_exist_ok=True)
    (tmp_path / "data" / "training_logs" / "history.log").unlink()  # each test reads only its own events
    return create_app(write_config(tmp_path, **training))


def runtime_of(app):
    return app.extensions["refit"].runtimes["parima"]


def created_at(rt) -> datetime:
    return datetime.fromisoformat(rt.registry.version(rt.registry.state()["active"])["created_at"])


def events(rt, event_type):
    return rt.history.tail("parima", event_type=event_type)


def finished(rt, job):
    return wait_job(lambda: rt.runner.get(job.job_id))


def next_fire(expr: str, after: datetime | None = None) -> datetime:
    return CronTrigger.from_crontab(expr, timezone="UTC").get_next_fire_time(None, after or datetime.now(timezone.utc))


# -- maxModelAgeHours ---------------------------------------------------------------------------

def test_a_stale_version_retrains_with_trigger_age_below_min_samples(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, maxModelAgeHours=2, minSamplesForTraining=50)
    rt = runtime_of(app)
    write_samples(tmp_path / "data" / "samples.csv", 5, seed=7)  # 5 new rows, far below 50
    young = created_at(rt) + timedelta(hours=1)
    assert rt.tick(now=young) is None  # not stale yet: the normal rule
    assert events(rt, "TRAINING_SKIPPED")[-1]["details"]["reason"] == "not_enough_new_samples"
    assert events(rt, "TRAINING_SKIPPED")[-1]["details"]["trigger"] == "auto"

    job = rt.tick(now=created_at(rt) + timedelta(hours=2.5))
    assert job is not None and job.trigger == "age"
    assert finished(rt, job)["status"] == "completed"
    started = events(rt, "TRAINING_STARTED")[-1]["details"]
    assert started["trigger"] == "age"
    assert rt.sample_counts()[1] == 0  # the 5 rows were trained on
    shutdown(app)


def test_a_stale_version_without_new_rows_is_skipped_once(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, maxModelAgeHours=0.5)
    rt = runtime_of(app)
    stale = created_at(rt) + timedelta(hours=1)
    assert rt.tick(now=stale) is None
    assert rt.tick(now=stale + timedelta(hours=24)) is None
    assert rt.tick(now=stale + timedelta(hours=48)) is None
    skipped = [e["details"] for e in events(rt, "TRAINING_SKIPPED")]
    assert [(d["reason"], d["trigger"]) for d in skipped] == [
        ("no_new_samples", "age"), ("not_enough_new_samples", "auto"), ("not_enough_new_samples", "auto")]
    assert skipped[0]["version"] == "v1" and skipped[0]["max_model_age_hours"] == 0.5
    assert skipped[0]["model_age_hours"] == pytest.approx(1.0)

    write_samples(tmp_path / "data" / "samples.csv", 1, seed=8)  # one row is enough for a stale version
    job = rt.tick(now=stale + timedelta(hours=72))
    assert job is not None and job.trigger == "age"
    assert finished(rt, job)["status"] == "completed"
    assert [e["details"]["trigger"] for e in events(rt, "TRAINING_STARTED")] == ["age"]
    shutdown(app)


def test_no_active_version_has_no_age(tmp_path):
    app = create_app(write_config(tmp_path, maxModelAgeHours=1))
    rt = runtime_of(app)
    write_samples(tmp_path / "data" / "samples.csv", 5)
    assert rt.tick(now=datetime.now(timezone.utc) + timedelta(days=365)) is None
    assert events(rt, "TRAINING_SKIPPED")[-1]["details"]["trigger"] == "auto"


# -- schedule -----------------------------------------------------------------------------------

def test_the_schedule_starts_a_training_below_min_samples(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, schedule=SUNDAY_1AM, minSamplesForTraining=50)
    rt = runtime_of(app)
    write_samples(tmp_path / "data" / "samples.csv", 3, seed=9)
    job = rt.scheduled_check(now=next_fire(SUNDAY_1AM))
    assert job is not None and job.trigger == "schedule"
    assert finished(rt, job)["status"] == "completed"
    assert events(rt, "TRAINING_STARTED")[-1]["details"]["trigger"] == "schedule"
    shutdown(app)


def test_the_schedule_without_new_rows_is_skipped(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, schedule=SUNDAY_1AM)
    rt = runtime_of(app)
    first = next_fire(SUNDAY_1AM)
    assert rt.scheduled_check(now=first) is None
    assert rt.scheduled_check(now=next_fire(SUNDAY_1AM, first + timedelta(minutes=1))) is None
    skipped = [e["details"] for e in events(rt, "TRAINING_SKIPPED")]
    assert [(d["reason"], d["trigger"]) for d in skipped] == [("no_new_samples", "schedule")] * 2  # one per run
    assert skipped[0]["schedule"] == SUNDAY_1AM and skipped[0]["scheduled_time"] == first.isoformat()
    assert not events(rt, "TRAINING_STARTED")


def test_the_leader_registers_the_cron_job(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, schedule=SUNDAY_1AM)
    state = app.extensions["refit"]
    scheduler = TrainingScheduler(state.runtimes, state.config.storage.data_dir)
    scheduler.start()
    try:
        assert scheduler.is_leader
        job = scheduler._scheduler.get_job(schedule_job_id("parima"))
        assert isinstance(job.trigger, CronTrigger)
        assert str(job.trigger) == str(CronTrigger.from_crontab(SUNDAY_1AM, timezone="UTC"))
        assert job.max_instances == 1 and job.coalesce
        assert job.next_run_time == next_fire(SUNDAY_1AM)
        interval = scheduler._scheduler.get_job(job_id("parima"))
        assert scheduler.next_run("parima") == min(job.next_run_time, interval.next_run_time).isoformat()
    finally:
        scheduler.shutdown()


def test_next_check_time_reflects_the_cron_job(tmp_path):
    every_five_minutes = "*/5 * * * *"  # sooner than the 24 h interval, so it is the next check
    app = create_app(write_config(tmp_path, schedule=every_five_minutes), start_scheduler=True)
    try:
        cron = app.extensions["refit"].scheduler._scheduler.get_job(schedule_job_id("parima"))
        answer = app.test_client().get("/api/parima/training/status").json
        assert answer["next_check_time"] == cron.next_run_time.isoformat()
        assert datetime.fromisoformat(answer["next_check_time"]) - datetime.now(timezone.utc) <= timedelta(minutes=5)
    finally:
        shutdown(app)


# -- autoTrain off ------------------------------------------------------------------------------

def test_without_auto_train_neither_trigger_acts(trained_folder, tmp_path):
    app = trained_app(trained_folder, tmp_path, autoTrain=False, maxModelAgeHours=1, schedule=SUNDAY_1AM)
    rt = runtime_of(app)
    write_samples(tmp_path / "data" / "samples.csv", 5, seed=10)
    assert rt.tick(now=created_at(rt) + timedelta(days=30)) is None
    assert rt.scheduled_check(now=next_fire(SUNDAY_1AM)) is None
    assert not events(rt, "TRAINING_STARTED")
    assert all(e["details"]["trigger"] == "auto" for e in events(rt, "TRAINING_SKIPPED"))
    state = app.extensions["refit"]
    scheduler = TrainingScheduler(state.runtimes, state.config.storage.data_dir)
    scheduler.start()
    try:
        assert scheduler._scheduler.get_job(schedule_job_id("parima")) is None
        assert scheduler.next_run("parima") is None
    finally:
        scheduler.shutdown()
