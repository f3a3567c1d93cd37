"""The training process protocol: spawn a child, pass on its progress, cancel it, bound it in time.

Fitting in another process keeps the GIL and the CPU of training away from
request threads. Children come from a forkserver that has already imported
scikit-learn and pandas (``backend.candidate``), so a job starts in
milliseconds rather than seconds, and the server's threads are never forked.
The child reports over a pipe:

    ("progress", percent, stage)   as it goes
    ("loaded", n_rows)             once the CSV is read (the parent logs TRAINING_STARTED)
    ("result", Candidate)          the candidate, its scores and the saved artifact
    ("failed", reason, message, details)

A cancelled or late child is killed: a fit has no checkpoints to stop at.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from typing import Any, Callable

from threadpoolctl import threadpool_limits

from .candidate import Candidate, TrainingSpec, train_candidate
from .errors import DataQualityError, TrainingFailed

TRAINING_NICENESS = 19  # the lowest CPU priority: a training yields the CPU to requests
POLL_SECONDS = 0.1


def _child(spec: TrainingSpec, conn: Any) -> None:
    def send(*message: Any) -> None:
        conn.send(message)

    try:
        # Predictions come first: at the lowest CPU priority the fit takes only what serving leaves
        # idle (threads started below inherit it), so it slows down under load instead of the requests.
        os.nice(TRAINING_NICENESS)
        # The parent starts this process as a daemon (so it dies with the parent), and joblib refuses
        # to run parallel loops in a daemon: nJobs > 1 silently became 1. Inside this process the flag
        # only decides whether it may parallelise; the parent still owns and kills it.
        multiprocessing.current_process().daemon = False
        # nJobs bounds the CPU a training takes: estimator n_jobs, and the BLAS/OpenMP pools underneath
        with threadpool_limits(limits=spec.options.n_jobs):
            send("result", train_candidate(spec, send))
    except DataQualityError as exc:
        send("failed", "data_quality", exc.message, {"problem": exc.problem, "report": exc.report})
    except TrainingFailed as exc:
        send("failed", exc.reason, exc.message, exc.details)
    except MemoryError:
        send("failed", "out_of_memory", "the training ran out of memory", {})
    except Exception as exc:  # report everything else with its traceback: the parent logs it as TRAINING_FAILED
        send("failed", "error", f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()})
    finally:
        conn.close()


def _context(cluster: bool) -> multiprocessing.context.BaseContext:
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        # skl2onnx takes ~1.8 s to import, a Dask client ~1 s (for jobs on a cluster; it starts no thread at
        # import): once in the forkserver, not in every training
        context.set_forkserver_preload(["backend.candidate", "skl2onnx"] + (["distributed"] if cluster else []))
        return context
    return multiprocessing.get_context("spawn")


def run(spec: TrainingSpec, on_message: Callable[[tuple], None], cancelled: Callable[[], bool],
        deadline: Callable[[], float]) -> Candidate:
    """Run ``train_candidate`` in a child process, pass its messages on, and return its candidate.

    ``deadline()`` is the seconds left of the job's time budget. Raises
    TrainingFailed with reason 'cancelled', 'timeout', 'worker_died' or the
    child's own reason.
    """
    context = _context(spec.compute.executor == "dask")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, sender), name=f"refit-train-{spec.model}", daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            if cancelled():
                raise TrainingFailed("cancelled", "the job was cancelled")
            left = deadline()
            if left <= 0:
                raise TrainingFailed("timeout", "the training exceeded its time limit (timeoutSeconds)")
            if not receiver.poll(min(POLL_SECONDS, left)):
                continue
            try:
                message = receiver.recv()
            except EOFError:
                process.join(5)
                raise TrainingFailed("worker_died", f"the training process exited with code {process.exitcode}") from None
            if message[0] == "result":
                return message[1]
            if message[0] == "failed":
                raise TrainingFailed(message[1], message[2], message[3])
            on_message(message)
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        receiver.close()
