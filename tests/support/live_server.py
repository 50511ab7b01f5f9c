"""Serve an ASGI app with uvicorn on 127.0.0.1 inside the test's own event loop.

Litestar's test client runs the app's lifespan in another thread and loop, so pools opened at
startup would belong to a different loop than the requests and background tasks using them; a
real server in the test loop also streams responses for real (SSE).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import uvicorn


@asynccontextmanager
async def live_server(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0)) as client,
    ):
        yield client


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[str]:
    """``app`` served on a free port until the block ends; its base URL. ``options`` are
    uvicorn's (``root_path``, ``lifespan``...)."""
    config = uvicorn.Config(
        app, **{"host": "127.0.0.1", "port": 0, "log_config": None, "access_log": False,
                "lifespan": "on", "timeout_graceful_shutdown": 5, **options},
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@contextmanager
def threaded_server(app: Any) -> Iterator[tuple[asyncio.AbstractEventLoop, str]]:
    """Serve ``app`` with uvicorn in a thread of its own, for synchronous clients (the
    ``openai`` SDK): its loop (to run coroutines on, such as seeding) and base URL."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True
    )
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            threading.Event().wait(0.01)
        yield loop, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        loop.close()
        sock.close()
