"""Hunt S22 of files and attachments, end to end through the real app (Postgres, Redis, S3),
the real extractor (pdfplumber, Tesseract, in its sandbox) run by the container's own job
handler, and a loopback OpenAI provider that records what it was sent: the upload form's
fields, the size limit at and past it, a delete whose stored bytes cannot be removed, what a
download says about its bytes, extraction failures reaching a chat start, and the extracted text
reaching the model."""

from __future__ import annotations

import codecs
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_files import BOUNDARY, form, multipart
from tests.support.documents import encrypted_pdf, image_bytes, text_image, text_pdf
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.projects.ensure_personal_project import personal_project_id

PROBLEM = "application/problem+json"
MODEL = "openai/gpt-4o-mini"
LIMIT = 50_000
TEXT = b"Plain notes about the quarterly budget.\n" * 20


def _problem(response: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if status is not None:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


class Files:
    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.container = chat.world.container
        self.bucket = ""
        self._uploaders: dict[str, dict[str, str]] = {}

    @property
    def client(self) -> Any:
        return self.chat.client

    async def user(self, name: str) -> dict[str, Any]:
        user = await self.chat.world.register(name)
        user["project"] = personal_project_id(uuid.UUID(user["user"]["id"]))
        return user

    async def upload(
        self, auth: dict[str, str], body: bytes, *, query: str = "", client: Any = None
    ) -> Any:
        return await (client or self.client).post(
            f"/api/files/upload{query}", content=body, headers={**auth, **multipart()}
        )

    async def uploaded(self, auth: dict[str, str], data: bytes, name: str) -> dict[str, Any]:
        response = await self.upload(auth, form(data, name))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        self._uploaders[body["id"]] = auth
        return body

    async def extract(self, file_id: str) -> dict[str, Any]:
        """Run the extraction job as the worker does (the container's handler, the real
        sandboxed extractor), then read the file back through the API (as its uploader)."""
        handler = await resolved(self.container.services.extract_attachment())
        await handler.execute(ExtractAttachment(attachment_id=uuid.UUID(file_id)))
        return await self.detail(file_id, self._uploaders[file_id])

    async def detail(self, file_id: str, auth: dict[str, str]) -> dict[str, Any]:
        response = await self.client.get(f"/api/files/{file_id}", headers=auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def objects(self, project_id: uuid.UUID | str) -> list[str]:
        minio = self.container.gateways.minio()
        found = minio.list_objects(self.bucket, prefix=f"{project_id}/", recursive=True)
        uploads = minio._list_multipart_uploads(self.bucket, prefix=f"{project_id}/").uploads
        return [o.object_name for o in found] + [u.object_name for u in uploads]

    async def listed(self, auth: dict[str, str], query: str = "") -> list[str]:
        response = await self.client.get(f"/api/files{query}", headers=auth)
        assert response.status_code == 200, response.text
        return [f["id"] for f in response.json()["items"]]


@pytest.fixture
async def files(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Files]:
    env = {"WHALLI_MAX_UPLOAD_BYTES": str(LIMIT), "WHALLI_CHAT_ATTACHMENT_WAIT_S": "0"}
    async with chat_app(stack_urls, unique, **env) as chat:
        found = Files(chat)
        found.bucket = f"e2e-{unique}"
        yield found


# === the upload form ============================================================================
async def test_an_unknown_form_field_is_refused_rather_than_filing_into_another_project(
    files: Files,
) -> None:
    alice = await files.user("alice")
    team = await files.client.post("/api/projects", json={"name": "Team"}, headers=alice["auth"])
    project = team.json()["id"]
    response = await files.upload(
        alice["auth"], form(TEXT, "a.txt", fields={"project_id": project})
    )
    assert await files.listed(alice["auth"]) == []  # nothing went to the personal project
    assert files.objects(alice["project"]) == []
    body = _problem(response, 400)
    assert "project_id" in body["detail"]


async def test_two_projectid_fields_that_differ_are_refused_like_a_field_and_a_query(
    files: Files,
) -> None:
    alice = await files.user("alice")
    created = [
        (await files.client.post("/api/projects", json={"name": n}, headers=alice["auth"])).json()
        for n in ("First", "Second")
    ]
    first, second = created[0]["id"], created[1]["id"]
    both = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="projectId"\r\n\r\n{first}\r\n'
    ).encode()
    body = both + form(TEXT, "a.txt", fields={"projectId": second})
    response = await files.upload(alice["auth"], body)
    assert await files.listed(alice["auth"], f"?projectId={first}") == []
    assert await files.listed(alice["auth"], f"?projectId={second}") == []
    assert files.objects(first) == files.objects(second) == []
    assert "projectId" in _problem(response, 400)["detail"]


async def test_a_file_exactly_at_the_limit_is_stored_and_one_byte_more_is_413_leaving_nothing(
    files: Files,
) -> None:
    alice = await files.user("alice")
    at_limit = TEXT * (LIMIT // len(TEXT)) + b"x" * (LIMIT % len(TEXT))
    assert len(at_limit) == LIMIT
    over = await files.upload(alice["auth"], form(at_limit + b"y", "over.txt"))
    body = _problem(over, 413)
    assert body["code"] == "attachment_too_large"
    assert str(LIMIT) in body["detail"]
    assert await files.listed(alice["auth"]) == []
    assert files.objects(alice["project"]) == []
    stored = await files.uploaded(alice["auth"], at_limit, "at.txt")
    assert stored["sizeBytes"] == LIMIT
    assert stored["sha256"] == hashlib.sha256(at_limit).hexdigest()
    assert files.objects(alice["project"]) == [f"{alice['project']}/{stored['id']}"]


# === downloads ==================================================================================
async def test_a_utf16_text_file_is_not_downloaded_labelled_utf8(files: Files) -> None:
    alice = await files.user("alice")
    text = "Résumé of the meeting: budget approved.\n" * 10
    data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    stored = await files.uploaded(alice["auth"], data, "minutes.txt")
    assert stored["contentType"].startswith("text/")
    download = await files.client.get(f"/api/files/{stored['id']}/content", headers=alice["auth"])
    assert download.status_code == 200
    assert download.content == data
    declared = download.headers["content-type"].lower().partition("charset=")[2].strip()
    assert declared != "utf-8", download.headers["content-type"]
    if declared:  # a charset, when one is named, must be the one that reads the bytes
        assert data.decode(declared) == text


async def test_a_stranger_gets_no_presigned_url_and_a_viewer_reads_but_cannot_delete(
    files: Files,
) -> None:
    alice, bob, carol = [await files.user(n) for n in ("alice", "bob", "carol")]
    project = await team_project(files.chat, alice, bob, "viewer")
    stored = await files.upload(alice["auth"], form(TEXT, "t.txt"), query=f"?projectId={project}")
    assert stored.status_code == 201, stored.text
    file_id = stored.json()["id"]
    stranger = await files.client.get(
        f"/api/files/{file_id}/content?redirect=true", headers=carol["auth"]
    )
    assert _problem(stranger, 404)["code"] == "attachment_not_found"
    assert "location" not in stranger.headers
    viewer = await files.client.get(
        f"/api/files/{file_id}/content?redirect=true", headers=bob["auth"]
    )
    assert viewer.status_code == 302
    assert file_id in viewer.headers["location"]
    assert _problem(await files.client.delete(f"/api/files/{file_id}", headers=bob["auth"]), 403)
    assert await files.listed(bob["auth"], f"?projectId={project}") == [file_id]
    assert len(files.objects(project)) == 1


# === a delete the store cannot complete =========================================================
def _closed_port() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_a_delete_whose_object_cannot_be_removed_does_not_answer_an_error_for_a_gone_file(
    files: Files, stack_urls: StackUrls, unique: str
) -> None:
    alice = await files.user("alice")
    stored = await files.uploaded(alice["auth"], TEXT, "notes.txt")
    # the same database and bucket, served by an API process whose S3 is unreachable
    async with chat_app(stack_urls, unique, WHALLI_S3_ENDPOINT=_closed_port()) as broken:
        deleted = await broken.client.delete(f"/api/files/{stored['id']}", headers=alice["auth"])
    still_there = stored["id"] in await files.listed(alice["auth"])
    # either the delete succeeded (and says so), or it failed and the file is still there
    assert deleted.status_code == 204 or still_there, (deleted.status_code, deleted.text)


# === extraction through the container's job handler =============================================
async def test_an_uploaded_pdf_is_extracted_and_its_text_reaches_the_model_with_the_question(
    files: Files,
) -> None:
    alice = await files.user("alice")
    marker = uuid.uuid4().hex[:8]
    pdf = text_pdf(f"Budget code {marker} approved", "Second page of the plan")
    stored = await files.uploaded(alice["auth"], pdf, "plan.pdf")
    assert stored["status"] == "pending"
    done = await files.extract(stored["id"])
    assert done["status"] == "done", done
    assert marker in done["textPreview"]
    assert done["pageCount"] == 2
    started = await files.chat.start(
        alice["auth"], model=MODEL, message="What is the budget code?",
        attachmentIds=[stored["id"]],
    )  # fmt: skip
    events = await files.chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    sent = files.chat.provider.requests[-1].body["messages"][-1]["content"]
    assert sent.startswith(f"Attached file: plan.pdf\nBudget code {marker} approved")
    assert "Second page of the plan" in sent
    assert sent.endswith("What is the budget code?")


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (encrypted_pdf("Locked words"), "locked.pdf", "the PDF is encrypted"),
        (text_pdf("Cut short here")[:120], "cut.pdf", "the PDF is damaged or incomplete"),
        (
            image_bytes(text_image("Truncated scan"), "PNG")[:300],
            "cut.png",
            "the image is damaged or incomplete",
        ),
        (b"\x89PNG\r\n\x1a\n", "header-only.png", "the image is damaged or incomplete"),
    ],
    ids=["encrypted-pdf", "truncated-pdf", "truncated-png", "png-signature-only"],
)
async def test_an_unreadable_upload_ends_failed_and_a_chat_start_with_it_is_409_writing_nothing(
    files: Files, data: bytes, name: str, reason: str
) -> None:
    alice = await files.user("alice")
    stored = await files.uploaded(alice["auth"], data, name)
    failed = await files.extract(stored["id"])
    assert (failed["status"], failed["failureReason"]) == ("failed", reason)
    assert failed["textPreview"] is None
    again = await files.extract(stored["id"])  # a redelivered job changes nothing
    assert (again["status"], again["failureReason"]) == ("failed", reason)
    refused = await files.client.post(
        "/api/chat/start",
        json={"model": MODEL, "message": "Read it", "attachmentIds": [stored["id"]]},
        headers=alice["auth"],
    )
    body = _problem(refused, 409)
    assert body["code"] == "attachment_not_ready"
    assert reason in body["detail"], body
    assert (body["attachmentId"], body["filename"]) == (stored["id"], name)
    chats = await files.client.get("/api/chats", headers=alice["auth"])
    assert chats.json()["items"] == []
    # the file itself stays available to download and delete
    download = await files.client.get(f"/api/files/{stored['id']}/content", headers=alice["auth"])
    assert download.content == data


async def test_a_409_for_an_attached_file_says_whether_it_failed_or_is_still_pending(
    files: Files,
) -> None:
    alice = await files.user("alice")
    broken = await files.uploaded(alice["auth"], encrypted_pdf("Locked"), "locked.pdf")
    assert (await files.extract(broken["id"]))["status"] == "failed"
    waiting = await files.uploaded(alice["auth"], TEXT, "later.txt")  # never extracted
    found = {}
    for file_id in (broken["id"], waiting["id"]):
        refused = await files.client.post(
            "/api/chat/start",
            json={"model": MODEL, "message": "Read it", "attachmentIds": [file_id]},
            headers=alice["auth"],
        )
        body = _problem(refused, 409)
        found[file_id] = {k: v for k, v in body.items() if k not in ("status", "detail")}
        found[file_id]["fileStatus"] = next(
            (v for k, v in body.items() if k.endswith("tatus") and k != "status"), None
        )
    assert found[broken["id"]]["fileStatus"] == "failed"
    assert found[waiting["id"]]["fileStatus"] == "pending"


async def test_a_file_deleted_after_a_chat_used_it_leaves_a_regeneration_working_without_it(
    files: Files,
) -> None:
    alice = await files.user("alice")
    marker = uuid.uuid4().hex[:8]
    stored = await files.uploaded(alice["auth"], f"Secret code {marker}\n".encode() * 3, "s.txt")
    assert (await files.extract(stored["id"]))["status"] == "done"
    started = await files.chat.start(
        alice["auth"], model=MODEL, message=f"Code? {marker}", attachmentIds=[stored["id"]]
    )
    await files.chat.events(started["sessionId"])
    assert (
        f"Secret code {marker}" in files.chat.provider.requests[-1].body["messages"][-1]["content"]
    )
    deleted = await files.client.delete(f"/api/files/{stored['id']}", headers=alice["auth"])
    assert deleted.status_code == 204
    assert files.objects(alice["project"]) == []
    again = await files.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=alice["auth"]
    )
    assert again.status_code == 201, again.text
    events = await files.chat.events(again.json()["sessionId"])
    assert events[-1][1] == "done", events[-1]
    sent = files.chat.provider.requests[-1].body["messages"]
    assert all(f"Secret code {marker}" not in str(m["content"]) for m in sent)
    read = await files.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert read.status_code == 200, read.text


# === listing ====================================================================================
async def test_the_files_past_one_page_of_the_list_can_still_be_reached(files: Files) -> None:
    # GET /api/files pages as GET /api/chats does: {items, nextCursor}, ?cursor=nextCursor
    alice = await files.user("alice")
    ids = [(await files.uploaded(alice["auth"], TEXT, f"{n}.txt"))["id"] for n in range(3)]
    first = await files.client.get("/api/files?limit=2", headers=alice["auth"])
    assert [f["id"] for f in first.json()["items"]] == ids[:0:-1]  # newest first
    following = first.json()["nextCursor"]
    assert following, ("no way to the next page", first.json())
    rest = await files.client.get(f"/api/files?limit=2&cursor={following}", headers=alice["auth"])
    assert [f["id"] for f in rest.json()["items"]] == [ids[0]]
    assert rest.json()["nextCursor"] is None


# === attaching to an existing chat ==============================================================
async def test_another_users_file_sent_to_an_existing_chat_is_404_and_adds_nothing_to_it(
    files: Files,
) -> None:
    alice, bob = await files.user("alice"), await files.user("bob")
    bobs = await files.uploaded(bob["auth"], TEXT, "bob.txt")
    assert (await files.extract(bobs["id"]))["status"] == "done"
    started = await files.chat.start(alice["auth"], model=MODEL, message=f"Hi {uuid.uuid4()}")
    await files.chat.events(started["sessionId"])
    before = await files.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    asked = len(files.chat.provider.requests)
    refused = await files.client.post(
        "/api/chat/start",
        json={"model": MODEL, "message": "Read Bob's", "chatId": started["chatId"],
              "attachmentIds": [bobs["id"]]},
        headers=alice["auth"],
    )  # fmt: skip
    assert _problem(refused, 404)["code"] == "attachment_not_found"
    after = await files.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert after.json()["messages"] == before.json()["messages"]
    assert len(files.chat.provider.requests) == asked
