"""A reply whose generating API process is killed (``kill -9``) ends for its readers elsewhere.

Two real ``whalli serve`` processes on the test stack: the reply starts on A (A generates it),
a browser-like client streams it from B, A is killed after two tokens, once its message holds
them (progress checkpoints). B's reader must end with ``reply_interrupted`` instead of sending
heartbeats forever, and the chat keeps the text that was generated.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.support.fake_providers import API_KEY, FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.process import free_port
from whalli.adapters.embedded.stack import StackUrls


def _env(stack_urls: StackUrls, provider_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "WHALLI_ENV": "test",
        "WHALLI_DATABASE_URL": stack_urls.database_url,
        "WHALLI_REDIS_URL": stack_urls.redis_url,
        "WHALLI_S3_ENDPOINT": stack_urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": stack_urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": stack_urls.s3_secret_key,
        "WHALLI_JWT_SECRET": "killed-generator-" + "x" * 60,
        "WHALLI_OPENAI_API_KEY": API_KEY,
        "WHALLI_OPENAI_BASE_URL": provider_url,
        "WHALLI_PROVIDER_MAX_ATTEMPTS": "1",
        "WHALLI_CHAT_HEARTBEAT_S": "1",
        # not what this test is about (and the shared Redis keeps other tests' counts)
        "WHALLI_RATE_LIMIT_ENABLED": "false",
        "WHALLI_CHAT_PROGRESS_EVERY_S": "0.1",
    }


async def _serve(env: dict[str, str], root: Path) -> tuple[subprocess.Popen[bytes], str]:
    root.mkdir(parents=True)
    (root / "metrics").mkdir()
    port = free_port()
    own = {"WHALLI_LOG_DIR": str(root / "logs"), "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics")}
    process = subprocess.Popen(
        [sys.executable, "-m", "whalli.entrypoints.cli.main", "serve", "--port", str(port)],
        env={**env, **own}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(600):  # a guard against a hang, not a timing expectation
            assert process.poll() is None, "the API exited"
            try:
                if (await client.get(f"{url}/api/health")).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("the API did not answer")


async def _events(lines: Any) -> Any:
    """(event, data) pairs as EventSource parses them; ``None`` for each comment (heartbeat)."""
    fields: dict[str, str] = {}
    async for line in lines:
        if line.startswith(":"):
            yield None
        elif line == "":
            if "data" in fields:
                yield fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def _tokens(events: Any, count: int) -> Any:
    async for event in events:
        if event is not None:
            yield event
            count -= 1
            if count == 0:
                return


async def _reply(database_url: str, chat_id: str) -> tuple[str, str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT status, content FROM messages WHERE chat_id = %s AND role = 'assistant'",
            (chat_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


async def _reply_once_saved(database_url: str, chat_id: str, text: str) -> bool:
    """Whether the reply's message comes to hold ``text`` (its progress checkpoint)."""
    for _ in range(600):  # a guard against a hang, not a timing expectation
        if (await _reply(database_url, chat_id))[1] == text:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_reader_on_another_process_learns_that_the_generating_one_died(
    stack_urls: StackUrls, migrated_database_url: str, tmp_path: Path
) -> None:
    async with FakeProviderServer(openai_default()) as provider:
        # the role chunk and two tokens, then nothing more: the reply is still being generated
        two = openai_pieces(["first", " second"], usage=None, done=False)[:3]
        provider.script(Reply(chunks=two, delay=0.3, hold=True))
        env = _env(stack_urls, provider.url)
        a, a_url = await _serve(env, tmp_path / "a")
        b, b_url = await _serve(env, tmp_path / "b")
        try:
            async with httpx.AsyncClient(timeout=60) as client:
                email = f"killed-{uuid.uuid4().hex[:10]}@example.com"
                registered = await client.post(
                    f"{a_url}/api/auth/register",
                    json={"email": email, "password": "a-long-passphrase-77", "name": "K"},
                )
                assert registered.status_code == 201, registered.text
                auth = {"Authorization": f"Bearer {registered.json()['tokens']['accessToken']}"}
                started = await client.post(
                    f"{a_url}/api/chat/start", headers=auth,
                    json={"model": "openai/gpt-4o-mini", "message": f"hang {uuid.uuid4()}"},
                )  # fmt: skip
                assert started.status_code == 201, started.text
                session_id = started.json()["sessionId"]

                url = f"{b_url}/api/chat/stream?sessionId={session_id}"
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    events = _events(response.aiter_lines())
                    tokens = [event async for event in _tokens(events, 2)]
                    assert tokens == [
                        ("token", {"delta": "first"}),
                        ("token", {"delta": " second"}),
                    ]
                    chat_id = started.json()["chatId"]
                    assert await _reply_once_saved(migrated_database_url, chat_id, "first second")

                    a.kill()  # SIGKILL: no shutdown, no final event, no cleanup
                    a.wait()
                    heartbeats, final = 0, None
                    async with asyncio.timeout(60):  # a guard against a hang only
                        async for event in events:
                            if event is None:
                                heartbeats += 1
                                continue
                            final = event
                            break

            assert final is not None
            name, data = final
            assert name == "error"
            assert data["code"] == "reply_interrupted"
            assert heartbeats >= 1  # it waited a heartbeat of silence before concluding
            # what was generated stays in the chat (until the reply sweeper ends it as failed)
            assert await _reply(migrated_database_url, chat_id) == ("streaming", "first second")
        finally:
            for process in (a, b):
                if process.poll() is None:
                    process.kill()
                    process.wait()
