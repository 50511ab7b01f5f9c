"""Presets (/api/presets) and starts with ``presetId``, through the real app, Postgres and Redis,
the provider on loopback."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_chat_regenerate import messages

MODEL = "openai/gpt-4o-mini"


async def create(chat: Chat, auth: dict[str, str], **body: Any) -> Any:
    return await chat.client.post("/api/presets", json=body, headers=auth)


async def preset(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await create(chat, auth, **({"name": "Coder", "model": MODEL} | body))
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def test_a_preset_is_saved_listed_changed_and_deleted_by_its_owner(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = await preset(
        chat, alice["auth"], name="  Terse  coder ", systemPrompt="Code only.",
        params={"temperature": 0.2, "maxTokens": 300, "stop": ["END"]},
    )  # fmt: skip

    assert (made["name"], made["model"], made["systemPrompt"]) == (
        "Terse coder", MODEL, "Code only."
    )  # fmt: skip
    assert made["params"] == {"temperature": 0.2, "maxTokens": 300, "stop": ["END"]}
    listed = await chat.client.get("/api/presets", headers=alice["auth"])
    assert listed.json() == [made]

    changed = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"name": "Coder", "systemPrompt": None,
                                            "params": {"seed": 7}},
        headers=alice["auth"],
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["systemPrompt"], body["params"]) == ("Coder", None, {"seed": 7})
    assert (body["model"], body["createdAt"]) == (MODEL, made["createdAt"])
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [body]

    gone = await chat.client.delete(f"/api/presets/{made['id']}", headers=alice["auth"])
    assert gone.status_code == 204
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == []


async def test_a_start_with_a_preset_sends_its_model_instructions_and_parameters(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await preset(
        chat, alice["auth"], systemPrompt="Answer in French.",
        params={"temperature": 0.3, "maxTokens": 50},
    )  # fmt: skip
    calls = len(chat.provider.requests)

    started = await chat.start(
        alice["auth"], presetId=made["id"], message=f"hello {uuid.uuid4()}", cache=False,
        params={"temperature": 1.1},
    )  # fmt: skip
    events = await chat.events(started["sessionId"])

    assert events[-1][1] == "done"
    sent = chat.provider.requests[calls].body
    assert sent["model"] == "gpt-4o-mini"  # the catalog's upstream name for MODEL
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert (sent["temperature"], sent["max_completion_tokens"]) == (1.1, 50)  # the start wins
    reply = (await messages(chat, started["chatId"], alice["auth"]))[1]
    assert reply["model"] == MODEL
    read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert read.json()["systemPrompt"] == "Answer in French."


async def test_a_model_in_the_start_overrides_the_preset_s_and_an_existing_chat_keeps_its_own(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"], systemPrompt="Be formal.")
    first = await chat.start(alice["auth"], model="dev/echo", message="one")
    await chat.events(first["sessionId"])

    second = await chat.start(
        alice["auth"], presetId=made["id"], model="dev/echo", message="two",
        chatId=first["chatId"],
    )  # fmt: skip
    events = await chat.events(second["sessionId"])

    assert events[-1][1] == "done"
    read = (await chat.client.get(f"/api/chats/{first['chatId']}", headers=alice["auth"])).json()
    assert read["systemPrompt"] is None
    assert [m["model"] for m in read["messages"] if m["role"] == "assistant"] == [
        "dev/echo", "dev/echo"
    ]  # fmt: skip


async def test_nobody_else_sees_uses_or_changes_a_preset(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    made = await preset(chat, alice["auth"])

    listed = await chat.client.get("/api/presets", headers=bob["auth"])
    used = await chat.client.post(
        "/api/chat/start", json={"presetId": made["id"], "message": "hi"}, headers=bob["auth"]
    )
    changed = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"name": "mine"}, headers=bob["auth"]
    )
    deleted = await chat.client.delete(f"/api/presets/{made['id']}", headers=bob["auth"])

    assert listed.json() == []
    for response in (used, changed, deleted):
        assert (response.status_code, response.json()["code"]) == (404, "preset_not_found")
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [made]
    assert (await chat.client.get("/api/chats", headers=bob["auth"])).json()["items"] == []


async def test_models_are_checked_when_saved_and_a_start_needs_a_model_or_a_preset(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"])

    above_plan = await create(chat, alice["auth"], name="Big", model="openai/gpt-4o")
    unknown = await create(chat, alice["auth"], name="X", model="nobody/nothing")
    changed_above = await chat.client.patch(
        f"/api/presets/{made['id']}", json={"model": "openai/gpt-4o"}, headers=alice["auth"]
    )
    neither = await chat.client.post(
        "/api/chat/start", json={"message": "hi"}, headers=alice["auth"]
    )

    assert (above_plan.status_code, above_plan.json()["code"]) == (403, "model_not_in_plan")
    assert unknown.status_code == 404
    assert (changed_above.status_code, changed_above.json()["code"]) == (403, "model_not_in_plan")
    assert (neither.status_code, neither.json()["field"]) == (422, "model")
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == [made]
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"] == []


async def test_bad_presets_are_refused_with_a_problem_and_write_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")

    cases = [
        ({"name": "   ", "model": MODEL}, 422, "name"),
        ({"name": "x" * 81, "model": MODEL}, 422, "name"),
        ({"name": "n", "model": MODEL, "systemPrompt": "x" * 20_001}, 422, "systemPrompt"),
        ({"name": "n", "model": MODEL, "params": {"temperature": 3}}, 400, None),
        ({"name": "n", "model": MODEL, "colour": "red"}, 400, None),
        ({"name": "n"}, 400, None),
    ]
    for body, status, field in cases:
        response = await create(chat, alice["auth"], **body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        if field is not None:
            assert response.json()["field"] == field
    assert (await chat.client.get("/api/presets", headers=alice["auth"])).json() == []


async def test_a_regeneration_with_a_preset_uses_its_model_and_parameters_not_its_prompt(
    chat: Chat,
) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    made = await preset(
        chat, alice["auth"], systemPrompt="Answer in French.",
        params={"temperature": 0.3, "maxTokens": 50},
    )  # fmt: skip
    first = await chat.start(alice["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}")
    await chat.events(first["sessionId"])
    calls = len(chat.provider.requests)

    again = await chat.client.post(
        "/api/chat/regenerate", headers=alice["auth"],
        json={"chatId": first["chatId"], "presetId": made["id"], "params": {"maxTokens": 20}},
    )  # fmt: skip
    assert again.status_code == 201, again.text
    assert (await chat.events(again.json()["sessionId"]))[-1][1] == "done"

    sent = chat.provider.requests[calls].body  # the preset's model, not the replaced reply's
    assert sent["model"] == "gpt-4o-mini"
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 20)  # params win
    assert [m["role"] for m in sent["messages"]] == ["user"]  # the chat keeps its own prompt
    reply = (await messages(chat, first["chatId"], alice["auth"]))[1]
    assert reply["model"] == MODEL

    # someone else's preset is not found, and nothing is replaced
    refused = await chat.client.post(
        "/api/chat/regenerate", headers=bob["auth"],
        json={"chatId": first["chatId"], "presetId": made["id"]},
    )  # fmt: skip
    assert refused.status_code == 404, refused.text
    own_chat = await chat.start(bob["auth"], model="dev/echo", message="mine")
    await chat.events(own_chat["sessionId"])
    theirs = await chat.client.post(
        "/api/chat/regenerate", headers=bob["auth"],
        json={"chatId": own_chat["chatId"], "presetId": made["id"]},
    )  # fmt: skip
    assert (theirs.status_code, theirs.json()["code"]) == (404, "preset_not_found")
    kept = (await messages(chat, own_chat["chatId"], bob["auth"]))[1]
    assert kept["model"] == "dev/echo"


async def test_a_regeneration_asks_again_with_the_replaced_replys_parameters(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"one two three four {uuid.uuid4().hex[:4]}",
        params={"temperature": 0.3, "maxTokens": 2, "stop": ["END"]},
    )  # fmt: skip
    await chat.events(first["sessionId"])

    async def regenerate(**body: Any) -> list[tuple[str | None, str, dict[str, Any]]]:
        again = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": first["chatId"], **body},
            headers=alice["auth"],
        )  # fmt: skip
        assert again.status_code == 201, again.text
        return await chat.events(again.json()["sessionId"])

    await regenerate()
    sent = chat.provider.requests[-1].body
    assert (sent["temperature"], sent["max_completion_tokens"], sent["stop"]) == (0.3, 2, ["END"])

    await regenerate(params={"temperature": 1.0})  # what is given wins, the rest carries on
    sent = chat.provider.requests[-1].body
    assert (sent["temperature"], sent["max_completion_tokens"], sent["stop"]) == (1.0, 2, ["END"])

    # null unsets: the provider's default, not the replaced reply's (and it stays unset after)
    await regenerate(params={"maxTokens": None, "stop": None})
    sent = chat.provider.requests[-1].body
    assert sent["temperature"] == 1.0
    assert not {"max_completion_tokens", "stop"} & sent.keys(), sent
    await regenerate()
    sent = chat.provider.requests[-1].body
    assert not {"max_completion_tokens", "stop"} & sent.keys(), sent

    # another model is not asked with the parameters chosen for this one
    echoed = await regenerate(model="dev/echo")
    assert echoed[-1][2]["finishReason"] == "stop"  # maxTokens 2 would have cut it: length
    assert "".join(d["delta"] for _, e, d in echoed if e == "token").startswith("one two three")
