"""Hunt (s31): ChatGPT imports (``POST /api/chats/import``) on the real app, their messages read
as Markdown is read, by a CommonMark parser (markdown-it-py)."""

from __future__ import annotations

from markdown_it import MarkdownIt

from tests.integration.http.test_chat_flow import Chat
from tests.unit.test_chatgpt_export import T, conversation, message

# code that writes a Markdown file: its own text holds fences of three and four backticks
CODE = 'readme = """\n# Demo\n\n```sh\npip install demo\n```\n\n````\nraw\n````\n"""'


async def test_imported_code_holding_backtick_fences_stays_one_code_block(chat: Chat) -> None:
    ada = await chat.world.register("ada")
    code = message("assistant", at=T + 2)
    code["content"] = {"content_type": "code", "language": "python", "text": CODE}
    export = conversation(
        [("u", None, message("user", "write the readme", at=T + 1)), ("c", "u", code)],
        current="c",
    )
    imported = await chat.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": [export]},
        headers=ada["auth"],
    )  # fmt: skip
    assert imported.status_code == 201, imported.text
    [made] = imported.json()["imported"]

    read = await chat.client.get(f"/api/chats/{made['chatId']}", headers=ada["auth"])

    assert read.status_code == 200, read.text
    content = read.json()["messages"][1]["content"]
    [block] = [t for t in MarkdownIt("commonmark").parse(content) if t.type == "fence"]
    assert (block.info, block.content) == ("python", CODE + "\n")
    exported = await chat.client.get(f"/api/chats/{made['chatId']}/export", headers=ada["auth"])
    blocks = [t for t in MarkdownIt("commonmark").parse(exported.text) if t.type == "fence"]
    assert [b.content for b in blocks] == [CODE + "\n"]
