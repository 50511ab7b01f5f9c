"""A loopback SMTP server (RFC 5321) that records the messages it accepts.

asyncio streams on their own event loop in a thread (so that a worker in another process
reaches it too). It speaks EHLO/HELO, STARTTLS (with ``tls``: RFC 3207, the session starts
over after it), AUTH PLAIN and LOGIN (with ``credentials``; refused before TLS when TLS is
offered, as real servers do), MAIL FROM, RCPT TO, DATA (dot-unstuffed), RSET, NOOP and QUIT.
``implicit_tls`` serves TLS from the first byte (port-465 style). ``reject_data`` makes DATA
answer that code. Nothing is delivered anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Self


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    user: str | None  # who logged in, if anyone
    tls: bool

    def parsed(self) -> EmailMessage:
        message = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class _Session:
    tls: bool
    user: str | None = None
    mail_from: str | None = None
    rcpt_to: list[str] = field(default_factory=list)


class FakeSmtpServer:
    def __init__(
        self, *, tls: ssl.SSLContext | None = None, implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.messages: list[Received] = []
        self.reject_data: int | None = None
        self.sessions = 0
        self._tls, self._implicit = tls, implicit_tls
        self._credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def start(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    async def _start(self) -> None:
        context = self._tls if self._implicit else None
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = _Session(tls=self._implicit)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await _say(writer, "220 fake.smtp.test ESMTP ready")
            while line := await reader.readline():
                verb, _, arg = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
                verb = verb.upper()
                if verb == "QUIT":
                    await _say(writer, "221 2.0.0 Bye")
                    break
                if verb == "STARTTLS" and self._tls is not None and not session.tls:
                    await _say(writer, "220 2.0.0 Ready to start TLS")
                    await writer.start_tls(self._tls)
                    session = _Session(tls=True)  # RFC 3207: forget everything said before
                    continue
                if verb == "DATA" and session.rcpt_to:
                    await self._data(reader, writer, session)
                    continue
                await _say(writer, await self._reply(verb, arg, session, reader, writer))
        writer.close()

    async def _reply(
        self, verb: str, arg: str, session: _Session, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> str:  # fmt: skip
        if verb == "EHLO":
            lines = ["250-fake.smtp.test", "250-8BITMIME", "250-SMTPUTF8"]
            if self._tls is not None and not session.tls:
                lines.append("250-STARTTLS")
            if self._credentials is not None and (session.tls or self._tls is None):
                lines.append("250-AUTH PLAIN LOGIN")
            return "\r\n".join([*lines, "250 SIZE 10240000"])
        if verb == "HELO":
            return "250 fake.smtp.test"
        if verb == "AUTH":
            return await self._auth(arg, session, reader, writer)
        if verb == "MAIL" and arg.upper().startswith("FROM:"):
            if self._credentials is not None and session.user is None:
                return "530 5.7.0 Authentication required"
            session.mail_from, session.rcpt_to = _path(arg[5:]), []
            return "250 2.1.0 OK"
        if verb == "RCPT" and arg.upper().startswith("TO:") and session.mail_from is not None:
            session.rcpt_to.append(_path(arg[3:]))
            return "250 2.1.5 OK"
        if verb == "RSET":
            session.mail_from, session.rcpt_to = None, []
            return "250 2.0.0 OK"
        if verb == "NOOP":
            return "250 2.0.0 OK"
        return "503 5.5.1 Bad sequence of commands"

    async def _auth(
        self, arg: str, session: _Session, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> str:  # fmt: skip
        if self._credentials is None or (self._tls is not None and not session.tls):
            return "503 5.5.1 AUTH not available"
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() == "PLAIN":
            if not initial:
                await _say(writer, "334 ")
                initial = (await reader.readline()).decode().strip()
            _, user, password = base64.b64decode(initial).decode().split("\0")
        elif mechanism.upper() == "LOGIN":
            await _say(writer, "334 VXNlcm5hbWU6")
            user = base64.b64decode((await reader.readline()).strip()).decode()
            await _say(writer, "334 UGFzc3dvcmQ6")
            password = base64.b64decode((await reader.readline()).strip()).decode()
        else:
            return "504 5.5.4 Unrecognized authentication type"
        if (user, password) != self._credentials:
            return "535 5.7.8 Authentication credentials invalid"
        session.user = user
        return "235 2.7.0 Authentication successful"

    async def _data(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: _Session
    ) -> None:
        await _say(writer, "354 End data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        while (line := await reader.readline()) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        if self.reject_data is not None:
            await _say(writer, f"{self.reject_data} Message refused")
        else:
            assert session.mail_from is not None
            self.messages.append(
                Received(
                    session.mail_from,
                    list(session.rcpt_to),
                    b"".join(lines),
                    session.user,
                    session.tls,
                )
            )
            await _say(writer, "250 2.0.0 OK: queued")
        session.mail_from, session.rcpt_to = None, []


def _path(arg: str) -> str:
    return arg.strip().split(" ")[0].strip("<>")


async def _say(writer: asyncio.StreamWriter, text: str) -> None:
    writer.write(text.encode() + b"\r\n")
    await writer.drain()
