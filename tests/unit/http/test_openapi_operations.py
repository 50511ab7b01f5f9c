"""What the document adds to Litestar's own view of a handler: the multipart bodies the upload
routes parse themselves, and the statuses a route answers only in some cases (a 302, a 204);
and the routes answer as documented: a form of the documented parts is taken, another refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openapi_spec_validator
import pytest
from litestar import Litestar
from litestar.openapi.spec import OpenAPIResponse, RequestBody
from litestar.testing import AsyncTestClient

from tests.support.fake_transcription import tiny_wav
from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.config import Settings
from whalli.entrypoints.http.controllers.openai_audio import FIELDS, FORMATS
from whalli.entrypoints.http.openapi_operations import documented, multipart_form, redirect

Client = AsyncTestClient[Litestar]
WAV = tiny_wav()
BOUNDARY = "documented-form-boundary"
# A valid value for each text part a route's document lists ("project" is filled in per test).
VALUES = {"model": "whisper-1", "language": "en", "response_format": "json"}


@pytest.fixture
def container(probes: list[FakeProbe], tmp_path: Path) -> FakeContainer:
    settings = Settings(
        env="test", transcription_model="large-v3", extraction_temp_dir=str(tmp_path)
    )
    found = FakeContainer(settings, probes)
    assert found.transcriber is not None
    found.transcriber.by_content[WAV] = "Hello."
    return found


async def _document(client: Client) -> dict[str, Any]:
    response = await client.get("/api/docs/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _form_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"multipart/form-data"}
    schema: dict[str, Any] = body["content"]["multipart/form-data"]["schema"]
    return schema


def _form(
    parts: dict[str, str], data: bytes, filename: str = "memo.wav"
) -> tuple[bytes, dict[str, str]]:
    """The parts in order, ``file`` (``data``) among them where it is named."""
    body = b""
    for name, value in parts.items():
        disposition = f'form-data; name="{name}"'
        if name == "file":
            disposition += f'; filename="{filename}"'
        head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += head + (data if name == "file" else value.encode()) + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def _post_documented_form(
    client: Client, headers: dict[str, str], path: str, values: dict[str, str], extra: bool
) -> Any:
    """A form of every part the document lists for ``path``, in its order (one more when
    ``extra``), posted to it."""
    properties = _form_schema(await _document(client), path)["properties"]
    parts = {name: values.get(name, "") for name in properties}
    if extra:
        parts = {"temperature": "0", **parts}
    body, content_type = _form(parts, WAV)
    return await client.post(path, content=body, headers={**headers, **content_type})


# --- the helpers -----------------------------------------------------------------------------
def test_a_documented_operation_adds_its_body_and_responses_and_keeps_litestars_others() -> None:
    body = multipart_form("A form.", "The file.", {})
    operation_class = documented(body=body, responses={302: redirect("Elsewhere.")})

    operation = operation_class(
        responses={
            "200": OpenAPIResponse(description="Litestar's 200."),
            "302": OpenAPIResponse(description="Litestar's 302."),
        }
    )

    assert operation.request_body is body
    assert operation.responses is not None
    assert sorted(operation.responses) == ["200", "302"]
    assert operation.responses["200"].description == "Litestar's 200."
    found = operation.responses["302"]
    assert isinstance(found, OpenAPIResponse)
    assert found.description == "Elsewhere."
    assert set(found.headers or {}) == {"Location"}


def test_a_multipart_form_requires_its_binary_file_and_the_parts_named_required() -> None:
    body = multipart_form("A form.", "The file.", {}, required=("model",))

    assert isinstance(body, RequestBody)
    assert body.required
    schema = body.content["multipart/form-data"].schema
    assert schema is not None
    assert list(getattr(schema, "required", [])) == ["file", "model"]


# --- the served document ---------------------------------------------------------------------
async def test_the_document_with_its_forms_and_redirects_validates_as_openapi_3_1(
    client: Client,
) -> None:
    openapi_spec_validator.validate(await _document(client))


async def test_the_upload_documents_a_binary_file_last_after_an_optional_project(
    client: Client,
) -> None:
    schema = _form_schema(await _document(client), "/api/files/upload")

    assert list(schema["properties"]) == ["projectId", "file"]
    assert schema["properties"]["file"]["format"] == "binary"
    assert schema["properties"]["projectId"]["format"] == "uuid"
    assert schema["required"] == ["file"]
    assert schema["additionalProperties"] is False


async def test_the_transcription_documents_each_part_the_route_reads(client: Client) -> None:
    schema = _form_schema(await _document(client), "/v1/audio/transcriptions")

    assert set(schema["properties"]) == {"file", *FIELDS}
    assert schema["properties"]["file"]["format"] == "binary"
    assert set(schema["required"]) == {"file", "model"}  # no model is a 400
    assert schema["properties"]["response_format"]["enum"] == list(FORMATS)
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/chat/stream", "204"),
        ("get", "/api/files/{file_id}/content", "302"),
        ("get", "/api/auth/oauth/{provider}/callback", "302"),
    ],
)
async def test_a_status_a_route_answers_in_some_cases_is_listed(
    client: Client, method: str, path: str, status: str
) -> None:
    responses = (await _document(client))["paths"][path][method]["responses"]

    assert "200" in responses  # its usual answer stays
    assert responses[status]["description"]
    if status == "302":
        assert set(responses[status]["headers"]) == {"Location"}


# --- the routes take what the document says --------------------------------------------------
async def _caller_and_project(client: Client, container: FakeContainer) -> tuple[Caller, str]:
    caller = await seed_caller(container, client, "ada")
    created = await caller.call("POST", "/api/projects", {"name": "Notes"})
    assert created.status_code == 201, created.text
    return caller, str(created.json()["id"])


async def test_an_upload_of_the_documented_parts_is_taken_and_one_more_part_refused(
    client: Client, container: FakeContainer
) -> None:
    caller, project_id = await _caller_and_project(client, container)
    values = {"projectId": project_id}

    taken = await _post_documented_form(client, caller.headers, "/api/files/upload", values, False)
    refused = await _post_documented_form(client, caller.headers, "/api/files/upload", values, True)

    assert taken.status_code == 201, taken.text
    assert taken.json()["projectId"] == project_id
    assert refused.status_code == 400, refused.text
    assert "temperature" in refused.json()["detail"]


async def test_a_transcription_of_the_documented_parts_is_taken_and_one_more_part_refused(
    client: Client, container: FakeContainer
) -> None:
    caller = await seed_caller(container, client, "grace")
    bearer = {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}
    path = "/v1/audio/transcriptions"

    taken = await _post_documented_form(client, bearer, path, VALUES, False)
    refused = await _post_documented_form(client, bearer, path, VALUES, True)

    assert taken.status_code == 200, taken.text
    assert taken.json() == {"text": "Hello."}
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "temperature"


async def test_a_file_asked_for_with_redirect_is_the_documented_302_with_its_location(
    client: Client, container: FakeContainer
) -> None:
    caller, project_id = await _caller_and_project(client, container)
    body, content_type = _form({"file": ""}, b"Some notes.\n", "notes.txt")
    uploaded = await client.post(
        f"/api/files/upload?projectId={project_id}", content=body,
        headers={**caller.headers, **content_type},
    )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text

    answer = await client.get(
        f"/api/files/{uploaded.json()['id']}/content?redirect=true", headers=caller.headers,
        follow_redirects=False,
    )  # fmt: skip

    assert answer.status_code == 302, answer.text
    assert answer.headers["location"]
    documented_302 = (await _document(client))["paths"]["/api/files/{file_id}/content"]["get"]
    assert set(documented_302["responses"]["302"]["headers"]) == {"Location"}
