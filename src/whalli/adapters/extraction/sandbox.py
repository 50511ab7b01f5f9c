"""Run a parser on hostile input in a child process with a wall-time and a memory limit.

A PDF bomb, circular form XObjects or a 20000 x 20000 image must fail their own job, not the
worker: the child gets ``RLIMIT_AS`` (inherited by Tesseract, which it starts), Pillow's pixel
limit as an error, one OpenMP thread, and its own process group so that a wall-time overrun kills
it together with anything it started. The parent only ever sees a return value or an
``ExtractionFailed`` with a reason a user can read.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import resource
import signal
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar, cast

import msgspec

from whalli.domain.model.attachments import EXTRACTION_TOO_LONG, EXTRACTION_TOO_MUCH_MEMORY
from whalli.domain.model.errors import ExtractionFailed

T = TypeVar("T")

DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
_MB = 1024 * 1024
_MAX_ANSWER_BYTES = 64 * _MB  # a million characters of text take at most 4 MB


def preload(*modules: str) -> None:
    """Import ``modules`` once in the fork server, so that each child starts with them loaded
    (pdfplumber alone takes a tenth of a second to import). Effective only before the first
    ``run_limited`` of the process starts the server."""
    context = multiprocessing.get_context("forkserver")
    # "__main__" stays first: without it every child would run the main module again
    context.set_forkserver_preload(["__main__", *modules])


def run_limited(
    func: Callable[..., T],
    *args: object,
    wall_time_s: float,
    memory_bytes: int,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    returns: type[T] | None = None,
) -> T:
    """``func(*args)`` in a child process; ``func`` must be a picklable top-level function and
    return what msgspec can encode (``returns``, when given, is the type it is decoded to).

    Raises ``ExtractionFailed`` when the child takes longer than ``wall_time_s`` (it is killed),
    needs more than ``memory_bytes``, dies from a signal, or raises (an ``ExtractionFailed``
    raised by ``func`` keeps its message). Blocking: call it from a thread in async code.
    """
    # forkserver: children fork from a small clean server (no threads, no open sockets of the
    # worker), far cheaper than spawn; the parent's state never leaks into the parser.
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(sender, func, args, memory_bytes, math.ceil(wall_time_s), max_image_pixels),
        daemon=True,
    )
    with receiver:
        process.start()
        sender.close()
        answered = False
        try:
            answered = receiver.poll(wall_time_s)
            outcome = _read(receiver) if answered else None
        finally:
            _stop(process, answered)
    code = process.exitcode
    if not answered or (outcome is None and code == -signal.SIGXCPU):
        raise ExtractionFailed(f"{EXTRACTION_TOO_LONG} {wall_time_s:g} s")
    if outcome is None:
        if code is not None and code < 0:
            raise ExtractionFailed(f"the extractor crashed (signal {-code})")
        raise ExtractionFailed(f"the extractor stopped unexpectedly (exit code {code})")
    status, payload = outcome
    if status == "ok":
        return _convert(payload, returns)
    if status == "memory":
        megabytes = memory_bytes // _MB
        raise ExtractionFailed(f"{EXTRACTION_TOO_MUCH_MEMORY} {megabytes} MB of memory")
    raise ExtractionFailed(str(payload))


def _read(receiver: Connection) -> tuple[str, Any] | None:
    """The child's (status, payload), or None if it died without answering.

    The answer is msgpack, not pickle: a child that a hostile file took over must not be able
    to run code in the parent by what it sends back, nor exhaust its memory."""
    try:
        raw = receiver.recv_bytes(_MAX_ANSWER_BYTES)
    except EOFError:
        return None  # the exit code tells how it died
    except OSError:
        return ("failed", "the extractor returned more data than allowed")
    try:
        return msgspec.msgpack.decode(raw, type=tuple[str, Any])
    except msgspec.MsgspecError:
        return ("failed", "the extractor returned an unreadable result")


def _convert(payload: Any, returns: type[T] | None) -> T:
    if returns is None:
        return cast(T, payload)
    try:
        return msgspec.convert(payload, type=returns)
    except msgspec.MsgspecError as e:
        raise ExtractionFailed("the extractor returned an unreadable result") from e


def _stop(process: multiprocessing.process.BaseProcess, answered: bool) -> None:
    """Reap a child that answered; kill one that did not, with everything it started."""
    if answered:
        process.join(timeout=5)
        if process.exitcode is not None:
            return
    assert process.pid is not None
    # the child made itself a group leader: this also ends a Tesseract it left running; it is
    # not reaped yet, so its pid (the group id) cannot have been reused. No such group: the
    # child had not reached setpgid yet.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.kill()
    process.join()


def _child(
    sender: Connection,
    func: Callable[..., object],
    args: tuple[object, ...],
    memory_bytes: int,
    cpu_seconds: int,
    max_image_pixels: int,
) -> None:
    try:
        os.setpgid(0, 0)
        os.environ["OMP_THREAD_LIMIT"] = "1"
        _limit(resource.RLIMIT_AS, memory_bytes, memory_bytes)
        # a backstop for a child whose parent died (kill -9) and can no longer enforce the wall
        # time: the kernel stops it after as much CPU time (SIGXCPU, then SIGKILL)
        _limit(resource.RLIMIT_CPU, cpu_seconds + 1, cpu_seconds + 2)
        _harden_pillow(max_image_pixels)
        outcome: tuple[str, object] = ("ok", func(*args))
    except MemoryError:
        outcome = ("memory", None)
    except ExtractionFailed as e:
        outcome = ("failed", e.message)
    except RecursionError:
        outcome = ("failed", "the file is nested too deeply to be read")
    except Exception as e:
        outcome = ("failed", f"the extractor failed ({type(e).__name__}: {str(e)[:200]})")
    try:
        answer = msgspec.msgpack.encode(outcome)
    except MemoryError:
        answer = msgspec.msgpack.encode(("memory", None))
    except Exception as e:  # a result msgspec cannot encode
        reason = f"the extractor returned an unusable result ({type(e).__name__})"
        answer = msgspec.msgpack.encode(("failed", reason))
    with sender:
        sender.send_bytes(answer)


def _limit(kind: int, soft: int, hard: int) -> None:
    """Lower a limit, never above the current hard limit (which only root could raise)."""
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def _harden_pillow(max_image_pixels: int) -> None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with pdfplumber
        return
    Image.MAX_IMAGE_PIXELS = max_image_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)
