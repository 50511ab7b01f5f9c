"""Model, admin and API key routes: plans decide the models, admins only, keys are the caller's."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.users import Plan, Role


@pytest.fixture
async def ada(container: FakeContainer, client: AsyncTestClient[Litestar]) -> Caller:
    return await seed_caller(container, client, "ada")


@pytest.fixture
async def root(container: FakeContainer, client: AsyncTestClient[Litestar]) -> Caller:
    return await seed_caller(container, client, "root", role=Role.ADMIN)


# --- models -------------------------------------------------------------------------------------
async def test_the_model_list_follows_the_callers_plan(
    container: FakeContainer, client: AsyncTestClient[Litestar], ada: Caller
) -> None:
    pro = await seed_caller(container, client, "pat", plan=Plan.PRO)

    free_models = (await ada.call("GET", "/api/models")).json()
    pro_models = (await pro.call("GET", "/api/models")).json()

    assert {m["minPlan"] for m in free_models} == {"free"}
    assert {m["minPlan"] for m in pro_models} == {"free", "pro"}
    assert {m["id"] for m in free_models} < {m["id"] for m in pro_models}
    assert "openai/gpt-4o" in {m["id"] for m in pro_models}
    assert free_models[0] == {
        "id": "openai/gpt-4o-mini", "provider": "openai", "contextWindow": 128000,
        "maxOutputTokens": 16384,
        "inputUsdPerMtok": 0.15, "outputUsdPerMtok": 0.6, "minPlan": "free",
        "capabilities": {
            "tools": True, "structuredOutputs": True, "strictOutputs": True, "vision": True,
            "reasoning": False, "reasoningEfforts": [], "verbosity": False,
            "refusedParams": [], "refusedParamsWhileReasoning": [],
        },
    }  # fmt: skip
    echo = next(m for m in pro_models if m["id"] == "dev/echo")
    assert echo["capabilities"] == {
        "tools": False,
        "structuredOutputs": False,
        "strictOutputs": False,
        "vision": False,
        "reasoning": True,
        "reasoningEfforts": ["minimal", "low", "medium", "high"],
        "verbosity": False,
        "refusedParams": [],
        "refusedParamsWhileReasoning": [],
    }
    assert echo["maxOutputTokens"] is None
    grok = next(m for m in pro_models if m["id"] == "xai/grok-3-mini")
    assert grok["capabilities"]["reasoningEfforts"] == ["low", "high"]
    assert grok["capabilities"]["refusedParams"] == ["stop", "presencePenalty", "frequencyPenalty"]
    latest = next(m for m in pro_models if m["id"] == "openai/gpt-5.2")["capabilities"]
    assert latest["reasoningEfforts"] == ["none", "low", "medium", "high", "xhigh"]
    assert latest["refusedParamsWhileReasoning"] == ["temperature", "topP"]
    assert latest["verbosity"] is True
    strict = {m["id"]: m["capabilities"]["strictOutputs"] for m in free_models}
    assert strict["anthropic/claude-haiku-4-5"] is True  # Claude's structured outputs
    assert strict["anthropic/claude-3-5-haiku"] is False  # a forced tool: followed, not enforced


async def test_models_of_unconfigured_providers_are_not_offered(
    container: FakeContainer, ada: Caller
) -> None:
    container.enabled_providers = {"dev"}
    assert [m["id"] for m in (await ada.call("GET", "/api/models")).json()] == ["dev/echo"]


# --- admin --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/api/admin/users", None), ("PATCH", "/api/admin/users/{id}", {"plan": "pro"})],
)
async def test_non_admins_are_403_on_admin_routes(
    ada: Caller, method: str, path: str, body: object
) -> None:
    response = await ada.call(method, path.format(id=ada.id), body)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert (await ada.call("GET", "/api/models")).json()[-1]["minPlan"] == "free"


async def test_an_admin_pages_through_users(
    container: FakeContainer, client: AsyncTestClient[Litestar], root: Caller, ada: Caller
) -> None:
    for name in ("adam", "adele"):
        await seed_caller(container, client, name)

    page = await root.call_signed_in("GET", "/api/admin/users?q=AD&limit=2&offset=1")
    too_big = await root.call_signed_in("GET", "/api/admin/users?limit=101")

    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 1)
    assert [u["email"] for u in body["items"]] == ["adam@example.com", "adele@example.com"]
    assert set(body["items"][0]) == {
        "id", "email", "name", "role", "plan", "disabled", "emailVerified", "createdAt",
        "updatedAt",
    }  # fmt: skip
    assert too_big.status_code == 422


async def test_an_admin_upgrades_a_plan_and_only_the_given_fields_change(
    root: Caller, ada: Caller
) -> None:
    response = await root.call_signed_in("PATCH", f"/api/admin/users/{ada.id}", {"plan": "pro"})

    assert response.status_code == 200
    assert (response.json()["plan"], response.json()["role"]) == ("pro", "user")
    assert not response.json()["disabled"]
    assert "openai/gpt-4o" in {m["id"] for m in (await ada.call("GET", "/api/models")).json()}


async def test_a_disabled_user_is_locked_out_on_their_next_request(
    root: Caller, ada: Caller
) -> None:
    assert (await ada.call("GET", "/api/projects")).status_code == 200

    response = await root.call_signed_in("PATCH", f"/api/admin/users/{ada.id}", {"disabled": True})

    assert response.json()["disabled"] is True
    assert (await ada.call("GET", "/api/projects")).status_code == 401


async def test_the_last_admin_cannot_demote_themself(root: Caller) -> None:
    response = await root.call_signed_in("PATCH", f"/api/admin/users/{root.id}", {"role": "user"})
    assert (response.status_code, response.json()["code"]) == (409, "last_admin")


async def test_an_unknown_admin_field_is_refused(root: Caller, ada: Caller) -> None:
    response = await root.call_signed_in(
        "PATCH", f"/api/admin/users/{ada.id}", {"email": "x@example.com"}
    )
    assert response.status_code == 400


# --- API keys -----------------------------------------------------------------------------------
async def test_a_new_key_shows_its_secret_once_and_works_until_revoked(
    client: AsyncTestClient[Litestar], ada: Caller
) -> None:
    created = await ada.call_signed_in(
        "POST", "/api/keys", {"name": "laptop", "expiresAt": "2031-01-01T00:00:00Z"}
    )
    assert created.status_code == 201
    key = created.json()
    secret = key["secret"]
    assert secret.startswith("whk_")
    assert key["displayPrefix"] == secret[:10]

    listed = (await ada.call("GET", "/api/keys")).json()
    assert listed[0] == {
        "id": key["id"], "name": "laptop", "displayPrefix": key["displayPrefix"],
        "createdAt": key["createdAt"], "expiresAt": "2031-01-01T00:00:00Z", "revokedAt": None,
        "lastUsedAt": None,
    }  # fmt: skip
    assert secret not in str(listed)
    assert (await client.get("/api/projects", headers={"X-API-Key": secret})).status_code == 200

    revoked = await ada.call("DELETE", f"/api/keys/{key['id']}")

    assert revoked.status_code == 204
    assert (await client.get("/api/projects", headers={"X-API-Key": secret})).status_code == 401
    assert (await ada.call("GET", "/api/keys")).json()[0]["revokedAt"] is not None


async def test_a_key_lists_only_the_callers_keys(
    container: FakeContainer, client: AsyncTestClient[Litestar], ada: Caller
) -> None:
    bob = await seed_caller(container, client, "bob")
    await ada.call_signed_in("POST", "/api/keys", {"name": "ada's"})
    names = [k["name"] for k in (await bob.call("GET", "/api/keys")).json()]
    assert names == ["tests"]


# --- the caller's account: custom instructions ----------------------------------------------------
async def test_custom_instructions_are_shown_set_kept_and_cleared_on_me(ada: Caller) -> None:
    assert (await ada.call("GET", "/api/auth/me")).json()["customInstructions"] is None

    set_ = await ada.call("PATCH", "/api/auth/me", {"customInstructions": "  Be brief.  "})
    assert (set_.status_code, set_.json()["customInstructions"]) == (200, "Be brief.")
    assert (await ada.call("GET", "/api/auth/me")).json()["customInstructions"] == "Be brief."

    renamed = await ada.call("PATCH", "/api/auth/me", {"name": "Ada L."})
    assert (renamed.json()["name"], renamed.json()["customInstructions"]) == ("Ada L.", "Be brief.")
    untouched = await ada.call("PATCH", "/api/auth/me", {})
    assert untouched.json()["customInstructions"] == "Be brief."

    cleared = await ada.call("PATCH", "/api/auth/me", {"customInstructions": None})
    assert (cleared.status_code, cleared.json()["customInstructions"]) == (200, None)
    assert (await ada.call("GET", "/api/auth/me")).json()["customInstructions"] is None
    await ada.call("PATCH", "/api/auth/me", {"customInstructions": "Be kind."})
    blank = await ada.call("PATCH", "/api/auth/me", {"customInstructions": " \n "})
    assert blank.json()["customInstructions"] is None


async def test_custom_instructions_too_long_are_a_422_problem_naming_the_limit(
    ada: Caller,
) -> None:
    await ada.call("PATCH", "/api/auth/me", {"customInstructions": "Be brief."})

    response = await ada.call("PATCH", "/api/auth/me", {"customInstructions": "x" * 20_001})

    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert (problem["code"], problem["field"], problem["limit"]) == (
        "invalid_input", "customInstructions", 20_000,
    )  # fmt: skip
    assert "at most 20000 characters" in problem["detail"]
    assert (await ada.call("GET", "/api/auth/me")).json()["customInstructions"] == "Be brief."
