"""A loopback speech-to-text server speaking OpenAI's ``POST /v1/audio/transcriptions``.

A real HTTP/1.1 server (stdlib, in a thread, so that a worker in another process reaches it
too) that parses the multipart/form-data body as OpenAI does (``file``, ``model``, ``language``,
``response_format``) and, unless a test scripted the next answers (``script``), plays the real
API: a missing or wrong key is a 401 whose message echoes part of it (as OpenAI's does), a file
whose name has no audio extension a 400 ``Invalid file format``, a missing model a 400; else
``{"text", "usage"}`` (``response_format=json``) or the bare text (``text``). The transcript is
the one registered for the file's bytes (``texts``), else ``TRANSCRIPT``. The usage is OpenAI's
for the model asked: ``whisper-1`` ``{"type": "duration", "seconds"}`` (``seconds``, else a WAV
file's duration, else 1), the gpt-4o transcribe models ``{"type": "tokens", ...}``
(``TOKENS_USAGE``), any other model (a self-hosted server's) none. Every request is recorded.
"""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import wave
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from multipart import MultipartSegment, PushMultipartParser  # type: ignore[import-untyped]

from tests.support.loopback_http import LoopbackHttpServer

API_KEY = "sk-speech-0123456789abcdef"
TRANSCRIPT = "The quarterly meeting starts at nine."
SUPPORTED = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
DURATION_MODELS = ("whisper-1",)
TOKEN_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")
# What OpenAI's gpt-4o transcribe models answer (API reference, "The transcription object")
TOKENS_USAGE: dict[str, Any] = {
    "type": "tokens",
    "input_tokens": 1_200,
    "input_token_details": {"text_tokens": 200, "audio_tokens": 1_000},
    "output_tokens": 300,
    "total_tokens": 1_500,
}


@dataclass(frozen=True)
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class RecordedTranscription:
    path: str
    headers: dict[str, str]  # names in lower case
    fields: dict[str, str]
    file: FilePart | None


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # JSON (a dict) or bytes
    headers: dict[str, str] = field(default_factory=dict)


def openai_error(message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


class FakeTranscriptionServer:
    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[RecordedTranscription] = []
        self.texts: dict[bytes, str] = {}
        self.seconds: float | None = None  # the duration whisper-1 says (None: the WAV's, or 1)
        self._script: deque[Answer] = deque()
        self._holds: deque[threading.Event] = deque()
        self._lock = threading.Lock()
        self._http = LoopbackHttpServer(_handler(self))

    @property
    def base_url(self) -> str:
        return f"{self._http.url}/v1"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def hold(self) -> threading.Event:
        """The next request is answered only once the event returned is set (at most 30 s)."""
        gate = threading.Event()
        with self._lock:
            self._holds.append(gate)
        return gate

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def answer(self, request: RecordedTranscription) -> Answer:
        with self._lock:
            self.requests.append(request)
            gate = self._holds.popleft() if self._holds else None
        if gate is not None:
            gate.wait(30)
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self._as_openai(request)

    def _as_openai(self, request: RecordedTranscription) -> Answer:
        if request.path != "/v1/audio/transcriptions":
            return Answer(404, openai_error(f"Unknown request URL: POST {request.path}."))
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key and given != self.api_key:
            said = f"Incorrect API key provided: {given[:6]}***{given[-4:]}."
            return Answer(401, openai_error(said, "invalid_api_key"))
        if not request.fields.get("model"):
            return Answer(400, openai_error("you must provide a model parameter"))
        file = request.file
        extension = file.filename.rpartition(".")[2].lower() if file else ""
        if file is None or extension not in SUPPORTED:
            said = f"Invalid file format. Supported formats: {list(SUPPORTED)}"
            return Answer(400, openai_error(said))
        text = self.texts.get(file.data, TRANSCRIPT)
        if request.fields.get("response_format") == "text":
            return Answer(200, text.encode(), {"content-type": "text/plain"})
        answer: dict[str, Any] = {"text": text}
        model = request.fields["model"]
        if model in DURATION_MODELS:
            seconds = self.seconds if self.seconds is not None else _duration(file.data)
            answer["usage"] = {"type": "duration", "seconds": seconds}
        elif model in TOKEN_MODELS:
            answer["usage"] = TOKENS_USAGE
        return Answer(200, answer)


def _duration(data: bytes) -> float:
    try:
        with wave.open(io.BytesIO(data)) as audio:
            return audio.getnframes() / audio.getframerate()
    except (wave.Error, EOFError):
        return 1.0


def _parse(content_type: str, body: bytes) -> tuple[dict[str, str], FilePart | None]:
    boundary = content_type.partition("boundary=")[2].strip('"')
    parser = PushMultipartParser(boundary, strict=True)
    fields: dict[str, str] = {}
    file: FilePart | None = None
    segment: MultipartSegment | None = None
    data = bytearray()
    for event in [*parser.parse(body), *parser.parse(b"")]:
        if isinstance(event, MultipartSegment):
            segment, data = event, bytearray()
        elif event is None and segment is not None:
            if segment.filename is not None:
                kind = segment.content_type or ""
                file = FilePart(segment.filename, kind, bytes(data))
            else:
                fields[segment.name] = data.decode()
            segment = None
        elif isinstance(event, bytes | bytearray):
            data += event
    parser.close()
    return fields, file


def _handler(server: FakeTranscriptionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self._body()
            fields, file = _parse(self.headers.get("content-type", ""), body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = server.answer(RecordedTranscription(self.path, headers, fields, file))
            if isinstance(answer.body, bytes):
                content = answer.body
                kind = answer.headers.get("content-type", "application/octet-stream")
            else:
                content, kind = json.dumps(answer.body).encode(), "application/json"
            self.send_response(answer.status)
            self.send_header("content-type", kind)
            for name, value in answer.headers.items():
                if name != "content-type":
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                read = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(read)
                    read += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length", "0")))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def tiny_wav(tone_hz: int = 440, frames: int = 800, rate: int = 8000) -> bytes:
    """A valid mono 16-bit PCM WAV file (a tenth of a second of a tone by default)."""
    samples = (int(8000 * math.sin(2 * math.pi * tone_hz * n / rate)) for n in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()
