"""The OpenAPI document lists every operation's error responses, and they are what is sent.

The bodies are checked against the schema the served document gives (not against a Struct of
the source), member by member, an undocumented member included, so the two cannot drift.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import openapi_spec_validator
from litestar import Litestar
from litestar.testing import AsyncTestClient

import whalli
from tests.support.fake_transcription import tiny_wav
from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.transcriber import InMemoryTranscriber
from whalli.domain.model.transcription_models import Transcript
from whalli.domain.model.users import Role
from whalli.entrypoints.http.openapi_errors import Problem
from whalli.entrypoints.http.schemas import camel_name
from whalli.ports.blob_storage import BlobInfo

PROBLEM = "#/components/schemas/Problem"
OPENAI_ERROR = "#/components/schemas/OpenAIError"
METHODS = ("get", "post", "put", "patch", "delete")
# Liveness and readiness: public, no input, never rate limited: no client error to answer.
PROBES = {("get", "/api/health"), ("get", "/api/health/ready")}


async def _document(client: AsyncTestClient[Litestar]) -> dict[str, Any]:
    response = await client.get("/api/docs/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _schema_errors(
    document: dict[str, Any], schema: dict[str, Any], value: Any, at: str = "$"
) -> list[str]:
    """What in ``value`` the JSON Schema ``schema`` does not allow, for the keywords the document
    uses; a member an object schema does not declare is an error too (a drift to document)."""
    if "$ref" in schema:
        return _schema_errors(document, _resolve(document, schema["$ref"]), value, at)
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not _schema_errors(document, s, value, at)]
        return [] if len(matches) == 1 else [f"{at}: {value!r} matches {len(matches)} of oneOf"]
    types = {
        "string": str, "integer": int, "number": (int, float), "boolean": bool,
        "null": type(None), "object": dict, "array": list,
    }  # fmt: skip
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if isinstance(value, bool) and "boolean" not in kinds:
            return [f"{at}: {value!r} is not {kind}"]
        if not any(isinstance(value, types[k]) for k in kinds):
            return [f"{at}: {value!r} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    if schema.get("format") == "uuid":
        uuid.UUID(value)
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [
            f"{at}: {name} is missing" for name in schema.get("required", []) if name not in value
        ]
        for name, member in value.items():
            if name not in properties:
                errors.append(f"{at}: {name} is not documented")
            else:
                errors += _schema_errors(document, properties[name], member, f"{at}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _schema_errors(document, schema["items"], item, f"{at}[{i}]")
    return errors


def _documented_schema(
    document: dict[str, Any], path: str, method: str, status: int, media_type: str
) -> dict[str, Any]:
    response = document["paths"][path][method]["responses"][str(status)]
    schema: dict[str, Any] = response["content"][media_type]["schema"]
    return schema


async def _assert_sent_as_documented(
    client: AsyncTestClient[Litestar], answer: Any, path: str, method: str, status: int
) -> None:
    """``answer`` (a response to ``method path``) is ``status``, and its body is what the
    document says that operation answers with that status."""
    assert answer.status_code == status, answer.text
    media_type = answer.headers["content-type"].split(";")[0]
    document = await _document(client)
    schema = _documented_schema(document, path, method, status, media_type)
    assert _schema_errors(document, schema, answer.json()) == []


# --- the document ------------------------------------------------------------------------------
async def test_the_document_validates_as_openapi_3_1(client: AsyncTestClient[Litestar]) -> None:
    openapi_spec_validator.validate(await _document(client))


async def test_every_reference_resolves_and_every_error_response_is_described(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    assert document["openapi"].startswith("3.1")
    text = str(document)
    refs = set(re.findall(r"'\$ref': '([^']+)'", text))
    assert {PROBLEM, OPENAI_ERROR} <= refs
    for ref in refs:
        _resolve(document, ref)
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), (method, path, status)
            assert response["description"], (method, path, status)


async def test_the_problem_schema_holds_rfc_9457s_members_and_whallis(
    client: AsyncTestClient[Litestar],
) -> None:
    problem = (await _document(client))["components"]["schemas"]["Problem"]

    assert set(problem["required"]) == {
        "type", "title", "status", "detail", "code", "instance", "requestId",
    }  # fmt: skip
    assert {"errors", "field", "retryAfter", "limit", "rule"} <= set(problem["properties"])


async def test_every_operation_lists_a_client_error(client: AsyncTestClient[Litestar]) -> None:
    checked = 0
    for method, path, operation in _operations(await _document(client)):
        if (method, path) in PROBES:
            continue
        assert any(s.startswith("4") for s in operation["responses"]), (method, path)
        checked += 1
    assert checked >= 70


async def test_every_error_response_is_a_problem_and_on_v1_openais_error(
    client: AsyncTestClient[Litestar],
) -> None:
    for method, path, operation in _operations(await _document(client)):
        if (method, path) in PROBES:
            continue
        openai = path.startswith("/v1/")
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            expected = (
                {"application/json": OPENAI_ERROR}
                if openai
                else {"application/problem+json": PROBLEM}
            )
            content = {media: c["schema"]["$ref"] for media, c in response["content"].items()}
            assert content == expected, (method, path, status)


async def test_authenticated_operations_list_401_as_a_problem(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    me = document["paths"]["/api/auth/me"]["get"]["responses"]["401"]

    assert me["content"]["application/problem+json"]["schema"] == {"$ref": PROBLEM}
    for method, path, operation in _operations(document):
        assert ("401" in operation["responses"]) >= ("security" in operation), (method, path)


async def test_operations_with_an_id_in_the_path_list_404(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    with_ids = [
        (method, path, operation)
        for method, path, operation in _operations(document)
        if re.search(r"\{\w+_id\}", path)
    ]

    assert len(with_ids) >= 30
    for method, path, operation in with_ids:
        assert "404" in operation["responses"], (method, path)
    assert "404" not in document["paths"]["/api/projects"]["get"]["responses"]


async def test_operations_reading_input_list_400_and_422_and_bodies_413(
    client: AsyncTestClient[Litestar],
) -> None:
    for method, path, operation in _operations(await _document(client)):
        reads = "requestBody" in operation or any(
            p["in"] != "path" for p in operation.get("parameters", [])
        )
        responses = operation["responses"]
        if reads and path.startswith("/v1/"):  # OpenAI's 400 for a broken rule too
            assert "400" in responses, (method, path)
            assert "422" not in responses, (method, path)
        elif reads:
            assert {"400", "422"} <= set(responses), (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
    paths = (await _document(client))["paths"]
    assert "422" not in paths["/api/models"]["get"]["responses"]
    upload = paths["/api/files/upload"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(upload)


async def test_the_special_statuses_come_from_the_routes_rules(
    client: AsyncTestClient[Litestar],
) -> None:
    paths = (await _document(client))["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert "403" in statuses("/api/admin/users", "get")
    assert "403" in statuses("/api/keys", "post")  # session only: an API key is refused
    assert "403" not in statuses("/api/keys", "get")
    assert "409" in statuses("/api/projects/{project_id}/members", "post")
    assert "409" not in statuses("/api/projects/{project_id}", "get")
    assert "429" in statuses("/api/chats", "get")
    assert "429" not in statuses("/api/chat/stream", "get")  # never rate limited
    assert "503" in statuses("/api/chats", "get")
    # what the handler documents itself stays: readiness's 503 is its probes, not a problem
    ready = paths["/api/health/ready"]["get"]["responses"]["503"]
    assert "application/problem+json" not in ready.get("content", {})
    assert set(paths["/api/auth/register"]["post"]["responses"]["201"]["content"]) == {
        "application/json"
    }


async def test_chat_completions_lists_openais_error_shape(
    client: AsyncTestClient[Litestar],
) -> None:
    document = await _document(client)
    responses = document["paths"]["/v1/chat/completions"]["post"]["responses"]

    assert {"400", "401", "404", "429"} <= set(responses)
    assert "422" not in responses  # a broken rule is OpenAI's 400
    assert "`param` names the field" in responses["400"]["description"]
    for status in ("400", "401", "429"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": OPENAI_ERROR}
    detail = document["components"]["schemas"]["OpenAIErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}


def test_every_detail_an_error_is_raised_with_is_a_documented_problem_member() -> None:
    """The extension members come from the keywords errors are raised with (camelCased by
    problems.py): one added in the source but not to ``Problem`` would go undocumented."""
    source = Path(whalli.__file__).parent
    trees = [ast.parse(p.read_text()) for p in sorted(source.rglob("*.py"))]
    errors = {"WhalliError"}
    grew = True
    while grew:  # every subclass of WhalliError, wherever it is declared
        before = len(errors)
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id in errors for b in node.bases
                ):
                    errors.add(node.name)
        grew = len(errors) > before
    keywords: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in errors:
                    keywords |= {k.arg for k in node.keywords if k.arg is not None}
    info = msgspec.inspect.type_info(Problem)
    assert isinstance(info, msgspec.inspect.StructType)
    documented = {field.encode_name for field in info.fields}

    assert len(keywords) >= 15
    assert {camel_name(k) for k in keywords} - documented == set()


# --- what is sent ------------------------------------------------------------------------------
async def test_a_401_body_is_the_documented_problem(client: AsyncTestClient[Litestar]) -> None:
    answer = await client.get("/api/auth/me")

    await _assert_sent_as_documented(client, answer, "/api/auth/me", "get", 401)
    assert answer.json()["code"] == "unauthenticated"


async def test_a_404_body_is_the_documented_problem(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    caller = await seed_caller(container, client, "ada")

    answer = await caller.call("GET", f"/api/chats/{uuid.uuid4()}")

    await _assert_sent_as_documented(client, answer, "/api/chats/{chat_id}", "get", 404)
    assert answer.json()["code"] == "chat_not_found"


async def test_a_400_body_names_each_field_as_documented(
    client: AsyncTestClient[Litestar],
) -> None:
    answer = await client.post("/api/auth/login", json={"email": "a@example.com", "pasword": "x"})

    await _assert_sent_as_documented(client, answer, "/api/auth/login", "post", 400)
    assert answer.json()["errors"]


async def test_a_422_body_with_its_rule_is_the_documented_problem(
    client: AsyncTestClient[Litestar],
) -> None:
    body = {"email": "grace@example.com", "password": "short"}
    answer = await client.post("/api/auth/register", json=body)

    await _assert_sent_as_documented(client, answer, "/api/auth/register", "post", 422)
    assert answer.json()["rule"] == "min_length"


async def test_a_403_and_a_409_body_are_the_documented_problem(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    caller = await seed_caller(container, client, "linus", role=Role.USER)
    refused = await caller.call_signed_in("GET", "/api/admin/users")
    await _assert_sent_as_documented(client, refused, "/api/admin/users", "get", 403)

    body = {"email": caller.email, "password": "another long enough password"}
    taken = await client.post("/api/auth/register", json=body)
    await _assert_sent_as_documented(client, taken, "/api/auth/register", "post", 409)


async def test_a_429_body_with_its_retry_after_is_the_documented_problem(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    budget = container.settings.rate_limit_ip_per_min
    for _ in range(budget):
        await client.get("/api/auth/me")

    answer = await client.get("/api/auth/me")

    await _assert_sent_as_documented(client, answer, "/api/auth/me", "get", 429)
    assert answer.json()["retryAfter"] > 0


async def test_v1_error_bodies_are_the_documented_openai_error(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    anonymous = await client.post("/v1/chat/completions", json={})
    await _assert_sent_as_documented(client, anonymous, "/v1/chat/completions", "post", 401)

    caller = await seed_caller(container, client, "edsger")
    unknown = await caller.call("GET", "/v1/models/no-such-model")
    await _assert_sent_as_documented(client, unknown, "/v1/models/{model_id}", "get", 404)
    body = {"model": "dev/echo", "messages": [{"role": "user", "content": "hi"}], "n": "two"}
    mistyped = await caller.call("POST", "/v1/chat/completions", body)
    assert mistyped.status_code == 400, mistyped.text
    await _assert_sent_as_documented(
        client, mistyped, "/v1/chat/completions", "post", mistyped.status_code
    )


# --- an unexpected error -----------------------------------------------------------------------
class _BrokenBlobs(InMemoryBlobStorage):
    """Storage with a bug: what no rule maps to a status (not a domain error)."""

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, *, part_size: int = 0
    ) -> BlobInfo:
        raise RuntimeError("a bug in the storage adapter")


class _BrokenTranscriber(InMemoryTranscriber):
    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        raise RuntimeError("a bug in the transcriber")


def _multipart(data: bytes, fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    boundary = "openapi-500-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="memo.wav"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        body += value.encode() + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_every_operation_lists_a_500_in_its_error_shape(
    client: AsyncTestClient[Litestar],
) -> None:
    checked = 0
    for method, path, operation in _operations(await _document(client)):
        response = operation["responses"].get("500")
        assert response is not None, (method, path)
        openai = path.startswith("/v1/")
        expected = (
            {"application/json": OPENAI_ERROR} if openai else {"application/problem+json": PROBLEM}
        )
        content = {media: c["schema"]["$ref"] for media, c in response["content"].items()}
        assert content == expected, (method, path)
        assert "unexpected" in response["description"], (method, path)
        checked += 1
    assert checked >= 70


async def test_an_unexpected_error_on_api_is_the_documented_500_problem_leaking_nothing(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    container.blobs = _BrokenBlobs()
    caller = await seed_caller(container, client, "barbara")
    project_id = (await caller.call("POST", "/api/projects", {"name": "Notes"})).json()["id"]
    body, headers = _multipart(b"Some notes.\n", {})

    answer = await client.post(
        f"/api/files/upload?projectId={project_id}", content=body,
        headers={**caller.headers, **headers},
    )  # fmt: skip

    await _assert_sent_as_documented(client, answer, "/api/files/upload", "post", 500)
    assert answer.json()["code"] == "internal_error"
    assert "storage adapter" not in answer.text


async def test_an_unexpected_error_on_v1_is_the_documented_500_openai_error(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    container.transcriber = _BrokenTranscriber()
    caller = await seed_caller(container, client, "grace")
    body, headers = _multipart(tiny_wav(), {"model": "whisper-1"})
    bearer = {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}

    answer = await client.post(
        "/v1/audio/transcriptions", content=body, headers={**bearer, **headers}
    )

    await _assert_sent_as_documented(client, answer, "/v1/audio/transcriptions", "post", 500)
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "transcriber" not in answer.text
