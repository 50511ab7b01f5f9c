"""The ``whalli`` subcommands; each is thin and delegates to adapters and the composition root."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from whalli.adapters.system.open_files import raise_open_files_limit
from whalli.config import load_settings, redact_url
from whalli.entrypoints.cli.environment import (
    dev_stack,
    development_outbox,
    development_secrets,
    embedded_env,
    resolved_settings,
)


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def services(args: argparse.Namespace) -> int:
    settings = load_settings()
    stack = dev_stack(settings)
    if args.action == "up":
        say(f"starting embedded services (data in {Path(settings.data_dir).resolve()})")
        urls, _ = stack.up(progress=lambda m: say(m))
        print(f"WHALLI_DATABASE_URL={redact_url(urls.database_url)}")
        print(f"WHALLI_REDIS_URL={redact_url(urls.redis_url)}")
        print(f"WHALLI_S3_ENDPOINT={urls.s3_endpoint}")
        return 0
    if args.action == "down":
        stopped = stack.down()
        say("stopped " + (", ".join(stopped) if stopped else "nothing (no services were recorded)"))
        return 0
    down = 0
    for name, (running, url) in stack.status().items():
        print(f"{name:9} {'running' if running else 'stopped':8} {redact_url(url)}")
        down += not running
    return 0 if down == 0 else 3


def migrate(args: argparse.Namespace) -> int:
    from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir

    settings = resolved_settings()
    assert settings.database_url is not None
    migrator = Migrator(settings.database_url.reveal(), default_migrations_dir())
    if args.status:
        for name, applied in migrator.status():
            print(f"{'applied' if applied else 'pending':8} {name}")
        return 0
    done = migrator.apply()
    say(f"applied {len(done)} migration(s)" + (": " + ", ".join(done) if done else ""))
    warning = migrator.case_folding_warning()
    if warning is not None:
        say(f"warning: {warning}")
    return 0


def _metrics_dir(settings_dir: str, data_dir: str) -> str:
    path = (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or settings_dir
        or str(Path(data_dir, "metrics").resolve())
    )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def serve(args: argparse.Namespace) -> int:
    settings = resolved_settings()
    _metrics_dir(settings.metrics_dir, settings.data_dir)
    before, after = raise_open_files_limit()  # every open stream holds a descriptor or two
    if after != before:
        say(f"open-file limit raised from {before} to {after}")
    from whalli.entrypoints.cli.supervisor import run_server
    from whalli.entrypoints.http.lean_protocol import LeanHttpToolsProtocol

    run_server(
        "whalli.entrypoints.http.asgi:app_factory",
        factory=True,
        http=LeanHttpToolsProtocol,  # httptools, holding less per open connection
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        root_path=settings.root_path,
        workers=settings.web_workers if args.workers is None else args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        # The client address is ``client_ip``'s to decide (``WHALLI_TRUSTED_PROXIES``): uvicorn's
        # own handling would believe any X-Forwarded-For sent from loopback.
        proxy_headers=False,
        timeout_keep_alive=settings.http_keep_alive_s,
        timeout_graceful_shutdown=10,
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    settings = resolved_settings()
    _metrics_dir(settings.metrics_dir, settings.data_dir)
    from whalli.entrypoints.worker.run import run

    return run(settings)


def dev(args: argparse.Namespace) -> int:
    """What ``make run`` does: everything on embedded services, in the foreground."""
    settings = load_settings()
    stack = dev_stack(settings)
    say(f"starting embedded Postgres, Redis and S3 (data in {Path(settings.data_dir).resolve()})")
    urls, started = stack.up(progress=lambda m: say(f"  {m}"))
    env = {**os.environ, **embedded_env(settings, urls), **development_secrets(settings)}
    env["WHALLI_DEV_MODELS"] = "true"
    env.update(development_outbox(settings))  # emails (reset links, search results) in a folder
    os.environ.update(env)
    children: list[subprocess.Popen[bytes]] = []

    def shutdown(code: int) -> int:
        say("stopping API and worker")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if started:
            say("stopping embedded services: " + ", ".join(started))
            stack.down(only=started)
        return code

    try:
        say("applying database migrations")
        if migrate(argparse.Namespace(status=False)) != 0:
            return shutdown(1)
        metrics = _metrics_dir(settings.metrics_dir, settings.data_dir)
        for stale in Path(metrics).glob("*.db"):
            stale.unlink()
        cli = [sys.executable, "-m", "whalli.entrypoints.cli.main"]
        say(f"starting the API on http://{settings.host}:{settings.port} and one worker")
        # Own sessions: Ctrl-C reaches only this process, which then stops the children in order.
        children.append(subprocess.Popen([*cli, "serve"], env=env, start_new_session=True))
        children.append(subprocess.Popen([*cli, "worker"], env=env, start_new_session=True))
    except BaseException:
        shutdown(1)
        raise

    stop = {"requested": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    say(
        f"Whalli is up: http://{settings.host}:{settings.port}/api/health/ready "
        f"(API docs at /api/docs). Press Ctrl-C to stop everything."
    )
    while not stop["requested"]:
        for child in children:
            if child.poll() is not None:
                say(f"a child process exited with code {child.returncode}; stopping")
                return shutdown(1)
        time.sleep(0.2)
    return shutdown(0)
