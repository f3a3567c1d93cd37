"""Where a training's independent fits run: in the training process, or on a Dask cluster (CONTRACT §12).

The training process (``candidate``) hands an executor the job's rows once
(``share``), then lists of calls ``fn(rows, *args)`` from ``fits``: window
candidates, cross-validation folds, tuning trials, auto-selection candidates,
the final fit and the refit. ``run`` returns their results in order and calls
``on_done`` as each one finishes, so progress moves per fit wherever they run.

    LocalExecutor   one call after another in this process: the code path of a local job
    DaskExecutor    (``cluster``) every call a Dask task on the scheduler's workers

``compute`` is a global config block: ``{"executor": "local"|"dask",
"daskScheduler": "tcp://host:8786"}``. Dask is an optional package, imported only
when a job or ``/health`` needs it.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:  # config.py imports this module: it stays free of pandas and scikit-learn
    from .fits import Rows

EXECUTORS = ("local", "dask")
PACKAGE = "dask[distributed]"  # what `executor: "dask"` needs installed (requirements-optional.txt)

Call = tuple[Callable[..., Any], tuple[Any, ...]]  # fn and its arguments after the shared rows
Done = Callable[[], None]


@dataclass(frozen=True)
class ComputeConfig:
    """``compute``: where trainings run their fits (one block for every model)."""

    executor: str = "local"
    dask_scheduler: str | None = None  # "tcp://host:8786" with executor "dask"


class Executor(Protocol):
    """Runs a training's fits; ``slots`` is how many can run at once."""

    kind: str
    slots: int

    def share(self, rows: Rows) -> None:
        """Make ``rows`` the first argument of every call from now on (sent to a cluster once)."""

    def run(self, calls: Sequence[Call], on_done: Done | None = None, deadline: float | None = None,
            group: int = 1) -> list[Any]:
        """Run ``calls``; return their results in order.

        With a ``deadline`` (``time.monotonic``), calls are taken in groups of ``group`` (a tuning
        trial's folds): a group not begun by then is left out, its results None; a begun one ends.
        The first group always runs.
        """

    def summary(self) -> dict[str, Any]:
        """What the version record says about where the fits ran: executor, scheduler, tasks_run."""

    def close(self) -> None:
        """Let go of the executor's resources (a cluster's futures and connection)."""


class LocalExecutor:
    """Every call in this process, in order: what a local job has always done."""

    kind = "local"
    slots = 1

    def __init__(self) -> None:
        self._rows: Rows | None = None

    def share(self, rows: Rows) -> None:
        self._rows = rows

    def run(self, calls: Sequence[Call], on_done: Done | None = None, deadline: float | None = None,
            group: int = 1) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        for index, (fn, args) in enumerate(calls):
            if index and index % group == 0 and deadline is not None and time.monotonic() > deadline:
                break
            results[index] = fn(self._rows, *args)
            if on_done is not None:
                on_done()
        return results

    def summary(self) -> dict[str, Any]:
        return {"executor": "local", "scheduler": None, "tasks_run": 0}

    def close(self) -> None:
        self._rows = None


def open_executor(compute: ComputeConfig, n_jobs: int, name: str) -> Executor:
    """The executor ``compute`` names; a cluster is connected to here (TrainingFailed 'executor_unavailable')."""
    if compute.executor == "dask":
        from .cluster import DaskExecutor

        return DaskExecutor(compute.dask_scheduler or "", n_jobs=n_jobs, name=name)
    return LocalExecutor()


def installed() -> bool:
    """Whether the optional ``dask[distributed]`` package can be imported."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("dask", "distributed"))
    except (ImportError, ValueError):  # a broken or blocked install counts as missing
        return False


def health_of(compute: ComputeConfig) -> Callable[[], dict[str, Any]]:
    """What ``GET /health`` says about the executor: ``{"kind": "local"}``, or the scheduler and whether it answers."""
    if compute.executor != "dask":
        return lambda: {"kind": "local"}
    from .cluster import SchedulerProbe

    return SchedulerProbe(compute.dask_scheduler or "").status
