"""Logging: structlog JSON lines to stdout and to a daily rotated file, stdlib loggers included.

Everything goes through the stdlib root logger, so lines from structlog, uvicorn, litestar and
dramatiq share one formatter: the same keys, the request id from contextvars, secrets redacted.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict, Processor

from whalli.adapters.structlog.redaction import redact_secrets

LOG_FILE_NAME = "whalli.log"
BACKUP_DAYS = 7
# Third-party loggers that must not keep handlers of their own (they would bypass redaction).
ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "dramatiq")
QUIETED_LOGGERS = ("uvicorn.access", "httpx", "httpcore")


class _WhalliHandler:
    """Marker mixin: the handlers configure_logging owns (and removes when called again)."""


def _queue_message_name(value: object) -> str | None:
    """``actor#id`` for a queue message (anything with an ``actor_name`` and a ``message_id``)."""
    actor, message_id = getattr(value, "actor_name", None), getattr(value, "message_id", None)
    return None if actor is None or message_id is None else f"{actor}#{message_id}"


def hide_job_arguments(record: logging.LogRecord) -> bool:
    """A handler filter: a queue message among a line's arguments is logged as its actor and
    id, never with its arguments. Dramatiq logs a failed or skipped job as the message itself
    (``actor('payload')``), and a job's payload carries user data (an address to mail, a chat's
    title). Keeps every record."""
    args = record.args
    if isinstance(args, tuple):
        names = [_queue_message_name(arg) for arg in args]
        if any(names):
            record.args = tuple(
                arg if name is None else name for arg, name in zip(args, names, strict=True)
            )
    return True


class _StdoutHandler(_WhalliHandler, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class SharedTimedRotatingFileHandler(_WhalliHandler, TimedRotatingFileHandler):
    """A midnight-rotated file that several processes (API workers, job workers) append to.

    The stdlib handler deletes an existing rotated file before renaming, so the second process to
    cross midnight would destroy the day the first one just rotated. Here the first one rotates;
    the others see the rotated file already there and only reopen the new base file.
    """

    def doRollover(self) -> None:
        interval_start = self.rolloverAt - self.interval
        start = time.gmtime(interval_start) if self.utc else time.localtime(interval_start)
        rotated = self.rotation_filename(f"{self.baseFilename}.{time.strftime(self.suffix, start)}")
        if not os.path.exists(rotated):
            super().doRollover()
            return
        if self.stream:
            self.stream.close()
            self.stream = None
        now = int(time.time())
        next_rollover = self.computeRollover(now)
        while next_rollover <= now:
            next_rollover += self.interval
        self.rolloverAt = next_rollover


def _render_json(_logger: Any, _method: str, event_dict: EventDict) -> str:
    # msgspec is several times faster than json.dumps; unknown objects are logged as str(),
    # which for Secret is its masked form.
    return msgspec.json.encode(event_dict, enc_hook=str).decode()


def _add_process(process_name: str) -> Processor:
    def add_process(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("process", process_name)
        event_dict.setdefault("pid", os.getpid())
        return event_dict

    return add_process


def _pre_chain() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def _formatter(process_name: str, renderer: Processor) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_process(process_name),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,  # last before rendering, so tracebacks are covered too
            renderer,
        ],
    )


def configure_logging(
    level: str, log_dir: str | None, json: bool = True, process_name: str = "api"
) -> None:
    """Send structlog and stdlib logging to stdout (JSON or console) and ``{log_dir}/whalli.log``.

    The file is always JSON lines, rotated at midnight, keeping ``BACKUP_DAYS`` old files.
    Calling it again replaces the handlers it added before (it never duplicates them).
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_pre_chain(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before configuration (tests, early imports) would otherwise
        # keep the old processors forever. The cost is one small object per log call.
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    _remove_own_handlers(root)
    console: Processor = _render_json if json else structlog.dev.ConsoleRenderer(colors=False)
    stdout = _StdoutHandler(sys.stdout)
    stdout.setFormatter(_formatter(process_name, console))
    stdout.addFilter(hide_job_arguments)
    root.addHandler(stdout)
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        file_handler = SharedTimedRotatingFileHandler(
            os.path.join(log_dir, LOG_FILE_NAME),
            when="midnight",
            backupCount=BACKUP_DAYS,
            encoding="utf-8",
            delay=True,
        )
        file_handler.setFormatter(_formatter(process_name, _render_json))
        file_handler.addFilter(hide_job_arguments)
        root.addHandler(file_handler)
    root.setLevel(numeric_level)

    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        for handler in list(routed.handlers):
            routed.removeHandler(handler)
        routed.propagate = True
        routed.setLevel(logging.NOTSET)
    # The HTTP middleware writes one access line per request; uvicorn's would duplicate it.
    # httpx logs every outgoing request at INFO, full URL included (provider keys in queries).
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))


def reset_logging() -> None:
    """Remove (and close) what :func:`configure_logging` installed; used by tests."""
    _remove_own_handlers(logging.getLogger())
    structlog.reset_defaults()


def _remove_own_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, _WhalliHandler):
            logger.removeHandler(handler)
            handler.close()
