"""A training's fits as Dask tasks (CONTRACT §12): connect, scatter the rows once, submit, collect, recover.

The training process becomes a Dask client. It scatters the job's rows to the
cluster once; every task carries a reference to them, never the rows. Results
come back in the order asked; each finished task moves the job's progress. On
the workers an estimator with ``nJobs`` > 1 runs its own parallel loops through
joblib's Dask backend, so they too are tasks of the cluster rather than
threads the worker never declared.

Faults, and what answers them:

- the scheduler does not answer within ``CONNECT_SECONDS`` (or has no worker):
  TrainingFailed ``executor_unavailable``, before any row is read;
- a worker dies: the scheduler runs its tasks again on another worker. If it
  held the only copy of the scattered rows, the tasks that needed them are
  cancelled ("lost dependencies"); this process still has the rows, so it
  scatters them again and resubmits those tasks (at most ``MAX_RECOVERIES`` times);
- the scheduler goes away mid-job: ``executor_unavailable``;
- cancel or ``timeoutSeconds``: the parent kills this process; its connection
  closes and the scheduler releases every future of the client, so queued
  tasks never start and the workers are free once their current fit ends.

``SchedulerProbe`` answers ``GET /health``'s question, at most every 5 s.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from concurrent.futures import CancelledError
from typing import Any, Callable, Sequence

from .errors import TrainingFailed

log = logging.getLogger(__name__)

CONNECT_SECONDS = 4.0  # an unreachable scheduler fails the job this soon (CONTRACT §12: within 10 s of the POST)
POLL_SECONDS = 0.5  # how often a waiting job looks for lost rows, a lost scheduler and its deadline
MAX_RECOVERIES = 5  # rounds of re-scattering and resubmitting before the job gives up
PROBE_EVERY = 5.0  # seconds between two scheduler checks of /health
PROBE_TIMEOUT = 1.0


def _on_worker(fn: Callable[..., Any], n_jobs: int, rows: Any, *args: Any) -> Any:
    """Run one fit on a worker; an estimator's own parallel loops (nJobs > 1) become tasks of the cluster."""
    if n_jobs > 1:
        import joblib

        with joblib.parallel_config(backend="dask"):
            return fn(rows, *args)
    return fn(rows, *args)


class DaskExecutor:
    """Runs a training's calls as tasks of the Dask cluster at ``address`` (see the module docstring)."""

    kind = "dask"

    def __init__(self, address: str, *, n_jobs: int = 1, name: str = "job", connect_seconds: float = CONNECT_SECONDS):
        from distributed import Client

        self.address = address
        self.n_jobs = n_jobs
        self.tasks_run = 0  # tasks of this job that finished and whose result was used
        self.scatters = 0
        self._name = name
        self._keys = itertools.count()
        self._rows: Any = None
        self._data: Any = None
        try:
            self._client = Client(address, timeout=connect_seconds, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise TrainingFailed("executor_unavailable", f"the Dask scheduler at {address} did not answer within "
                                 f"{connect_seconds:g} s ({exc})", {"scheduler": address}) from None
        try:
            self._client.wait_for_workers(1, timeout=connect_seconds)
        except TimeoutError:
            self.close()
            raise TrainingFailed("executor_unavailable", f"the Dask scheduler at {address} has no worker",
                                 {"scheduler": address}) from None
        self.slots = max(1, sum(self._client.nthreads().values()))

    def share(self, rows: Any) -> None:
        """Scatter ``rows`` to the cluster (once: every task refers to them)."""
        self._rows = rows
        self._scatter()

    def _scatter(self) -> None:
        key = f"refit_rows-{self._name}-{self.scatters}"
        self._data = self._client.scatter({key: self._rows}, hash=False)[key]
        self.scatters += 1

    def _spread(self) -> None:
        """Copy the rows to every worker before a batch of fits (worker to worker; a no-op where they are).

        Dask sends a task to a worker holding its inputs, so rows on one worker would keep every fit
        there. The active memory manager drops extra copies again once no task waits for them, so
        this is done per batch, not once.
        """
        if self._data.status != "finished":  # their last holder left since the last batch
            log.warning("the training rows were lost with a worker; scattering them again")
            self._scatter()
        try:
            self._client.replicate([self._data])
        except (OSError, TimeoutError, CancelledError) as exc:  # a worker left meanwhile: the batch copes (see run)
            log.info("copying the rows to every worker: %s", exc)

    def _submit(self, call: tuple[Callable[..., Any], tuple[Any, ...]], changed: threading.Event) -> Any:
        fn, args = call
        # keys name the fit first: Dask groups tasks by that word (refit_score_fold, ...) when it schedules them
        future = self._client.submit(_on_worker, fn, self.n_jobs, self._data, *args, pure=False,
                                     key=f"refit_{fn.__name__}-{self._name}-{next(self._keys)}")
        future.add_done_callback(lambda _: changed.set())  # finished, failed or cancelled
        return future

    def run(self, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]], on_done: Callable[[], None] | None = None,
            deadline: float | None = None, group: int = 1) -> list[Any]:
        """Submit every call at once; collect the results as tasks finish (see ``executor.Executor.run``)."""
        results: list[Any] = [None] * len(calls)
        if len(calls) > 1:
            self._spread()
        changed = threading.Event()
        pending = {index: self._submit(call, changed) for index, call in enumerate(calls)}
        begun = {0}  # groups with a finished call (the first always runs)
        recoveries = 0
        while pending:
            changed.wait(POLL_SECONDS)
            changed.clear()
            lost = []
            for index, future in list(pending.items()):
                if future.status == "finished":
                    results[index] = future.result()
                    del pending[index]
                    self.tasks_run += 1
                    begun.add(index // group)
                    if on_done is not None:
                        on_done()
                elif future.status == "error":
                    self._fail(future)
                elif future.status == "cancelled":
                    lost.append(index)
            if lost:
                recoveries += 1
                self._recover(lost, pending, calls, recoveries, changed)
            if deadline is not None and time.monotonic() > deadline:
                late = [index for index in pending if index // group not in begun]
                if late:
                    self._client.cancel([pending.pop(index) for index in late])
        return results

    def _recover(self, lost: list[int], pending: dict[int, Any], calls: Sequence[Any], recoveries: int,
                 changed: threading.Event) -> None:
        """Resubmit tasks the cluster cancelled: the rows went with a dead worker (scatter them again) or the scheduler went."""
        if self._client.status != "running":
            raise TrainingFailed("executor_unavailable", f"lost the connection to the Dask scheduler at {self.address}",
                                 {"scheduler": self.address})
        if recoveries > MAX_RECOVERIES:
            raise TrainingFailed("executor_unavailable", f"the Dask cluster at {self.address} kept losing this job's "
                                 f"tasks ({MAX_RECOVERIES} recoveries)", {"scheduler": self.address})
        if self._data.status != "finished":
            log.warning("the worker holding the training rows left the cluster; scattering them again")
            self._scatter()
        for index in lost:
            pending[index] = self._submit(calls[index], changed)

    def _fail(self, future: Any) -> None:
        """Turn a task's error into the job's: a cluster problem names the cluster, anything else is re-raised."""
        from distributed.scheduler import KilledWorker

        exc = future.exception()
        if isinstance(exc, KilledWorker):
            raise TrainingFailed("worker_died", f"a fit killed every Dask worker that ran it (out of memory?): {exc}",
                                 {"scheduler": self.address})
        # the scheduler unpickles every task and the workers run Refit's functions: both need its code
        # (distributed reports a scheduler without it only by this message)
        if isinstance(exc, ImportError) or (isinstance(exc, RuntimeError) and "deserializ" in str(exc)):
            raise TrainingFailed("executor_unavailable", f"the Dask scheduler or workers cannot import Refit's code "
                                 f"({str(exc).splitlines()[0]}): start them from a Refit checkout (PYTHONPATH=.) with the "
                                 "same packages", {"scheduler": self.address})
        future.result()  # re-raises the task's own exception, with its traceback

    def summary(self) -> dict[str, Any]:
        return {"executor": "dask", "scheduler": self.address, "tasks_run": self.tasks_run}

    def close(self) -> None:
        try:
            self._client.close(timeout=2)
        except (OSError, TimeoutError) as exc:  # the scheduler is gone already: nothing left to release
            log.info("closing the Dask client: %s", exc)


def scheduler_answers(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a Dask scheduler at ``address`` answers an identity request within ``timeout`` seconds."""
    from distributed.core import rpc

    async def identity() -> dict[str, Any]:
        async with rpc(address, timeout=timeout) as scheduler:
            return await scheduler.identity()

    try:
        return asyncio.run(asyncio.wait_for(identity(), 2 * timeout)).get("type") == "Scheduler"
    except (OSError, TimeoutError, ValueError) as exc:
        log.debug("the Dask scheduler at %s does not answer: %s", address, exc)
        return False


class SchedulerProbe:
    """``GET /health``'s view of the cluster: asks the scheduler at most every ``every`` seconds."""

    def __init__(self, address: str, *, every: float = PROBE_EVERY, clock: Callable[[], float] = time.monotonic,
                 ask: Callable[[str], bool] = scheduler_answers):
        self.address = address
        self._every = every
        self._clock = clock
        self._ask = ask
        self._probe = threading.Lock()  # one request asks; the others read the last answer
        self._answer: bool | None = None
        self._asked_at = -float("inf")

    def status(self) -> dict[str, Any]:
        """``{"kind": "dask", "scheduler", "scheduler_answers"}``, re-checked at most every ``every`` seconds."""
        if self._clock() - self._asked_at >= self._every:
            # a request that finds another asking waits only when there is no answer at all yet
            if self._probe.acquire(blocking=self._answer is None):
                try:
                    if self._clock() - self._asked_at >= self._every:
                        self._answer = self._ask(self.address)
                        self._asked_at = self._clock()
                finally:
                    self._probe.release()
        return {"kind": "dask", "scheduler": self.address, "scheduler_answers": bool(self._answer)}
