"""Hunt (s31): the Markdown export of a chat (``GET /api/chats/{id}/export``) read as Markdown
is read, by a CommonMark parser (markdown-it-py), on the real app with a fake provider."""

from __future__ import annotations

import uuid
from typing import Any

from markdown_it import MarkdownIt

from tests.integration.http.test_chat_flow import Chat
from tests.support.fake_providers import Reply, openai_stream

MODEL = "openai/gpt-4o-mini"


async def _exchange(chat: Chat, auth: dict[str, str], message: str, **body: Any) -> str:
    started = await chat.start(auth, model=MODEL, message=message, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    return str(started["chatId"])


async def _markdown(chat: Chat, auth: dict[str, str], chat_id: str) -> str:
    exported = await chat.client.get(f"/api/chats/{chat_id}/export", headers=auth)
    assert exported.status_code == 200, exported.text
    return exported.content.decode("utf-8")


def _code_blocks(markdown: str) -> list[str]:
    return [t.content for t in MarkdownIt("commonmark").parse(markdown) if t.type == "fence"]


async def test_a_reply_cut_inside_a_code_block_does_not_turn_the_rest_of_the_export_into_code(
    chat: Chat,
) -> None:
    ada = await chat.world.register("ada")
    later = f"later question {uuid.uuid4().hex[:8]}"
    # a reply cut at its token cap in the middle of its code block: the fence is never closed
    cut = ["Here it is:\n\n", "```python\n", "def f():\n", "    return 1"]
    chat.provider.script(Reply(chunks=openai_stream(cut, finish_reason="length")))
    chat_id = await _exchange(chat, ada["auth"], "write f")
    await _exchange(chat, ada["auth"], later, chatId=chat_id)

    markdown = await _markdown(chat, ada["auth"], chat_id)

    # the cut reply's code is one block, as the chat shows it, and what follows is not code
    assert _code_blocks(markdown) == ["def f():\n    return 1\n"]
    html = MarkdownIt("commonmark").render(markdown)
    assert f"<p>{later}</p>" in html
    assert html.count("<strong>User</strong>") == 2
    assert html.count("<hr />") == 4  # one before each message


async def test_a_fence_closed_by_a_longer_one_or_opened_in_a_list_is_left_as_written(
    chat: Chat,
) -> None:
    ada = await chat.world.register("ada")
    closed = "````md\n```\nnot a closing fence\n```\n`````"
    listed = "1. step\n\n   ```sh\n   ls\n   ```\n\n~~~\nx\n~~~"
    chat.provider.script(
        Reply(chunks=openai_stream([closed])), Reply(chunks=openai_stream([listed]))
    )
    chat_id = await _exchange(chat, ada["auth"], "first")
    await _exchange(chat, ada["auth"], "second", chatId=chat_id)

    markdown = await _markdown(chat, ada["auth"], chat_id)

    assert closed in markdown  # nothing added to a closed fence
    assert listed in markdown
    assert _code_blocks(markdown) == ["```\nnot a closing fence\n```\n", "ls\n", "x\n"]


async def test_a_title_ending_in_a_hash_keeps_it_in_the_exports_heading(chat: Chat) -> None:
    ada = await chat.world.register("ada")
    chat_id = await _exchange(chat, ada["auth"], "which issue?")
    for title in ("Fix issue #", "#", "Tags ## #"):
        renamed = await chat.client.patch(
            f"/api/chats/{chat_id}", json={"title": title}, headers=ada["auth"]
        )
        assert renamed.status_code == 200, renamed.text

        markdown = await _markdown(chat, ada["auth"], chat_id)

        assert MarkdownIt("commonmark").render(markdown).startswith(f"<h1>{title}</h1>")
