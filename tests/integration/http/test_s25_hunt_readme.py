"""Hunt S25 of the README as a user and an operator read it: the configuration table against
the settings the code reads (names, defaults, documented ranges), the routes, query parameters
and statuses it names against the OpenAPI document the running app serves, the make targets
and commands, and the Prometheus endpoint it tells operators to scrape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import CONTENT_TYPE_LATEST

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import _settings
from whalli.adapters.embedded.stack import StackUrls
from whalli.config import ConfigError, Settings, load_settings
from whalli.container import build_container
from whalli.entrypoints.cli.main import _parser
from whalli.entrypoints.http.asgi import build_app

ROOT = Path(__file__).parents[3]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FLAT = re.sub(r"\s+", " ", README)  # a route may be wrapped across two lines
VERB = "(?:GET|POST|PUT|PATCH|DELETE)"
# The routes the README names on purpose outside the document: the scrape endpoint (its own
# bearer token, not an API operation) and the docs themselves.
NOT_OPERATIONS = {"/api/metrics", "/api/docs/openapi.json"}

_DOCUMENT: dict[str, Any] = {}


@pytest.fixture
async def document(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> dict[str, Any]:
    """The OpenAPI document the real app serves (built once for the module: it is static)."""
    if not _DOCUMENT:
        container = build_container(_settings(stack_urls, unique))
        async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
            response = await client.get("/api/docs/openapi.json")
            assert response.status_code == 200, response.text
            _DOCUMENT.update(response.json())
    return _DOCUMENT


def _shape(path: str) -> str:
    """A path with its parameters unnamed: ``/api/chats/{id}`` is ``/api/chats/{chat_id}``."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0].rstrip("/") or "/")


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    for listed, item in document["paths"].items():
        if _shape(listed) == _shape(path):
            found: dict[str, Any] | None = item.get(method.lower())
            return found
    return None


def _readme_operations() -> list[tuple[str, str]]:
    """Every ``METHOD /path`` the README names, ``GET`/`PATCH`/`DELETE /path`` spread out."""
    found: set[tuple[str, str]] = set()
    for methods, path in re.findall(rf"`({VERB}(?:`/`{VERB})*) (/(?:api|v1)/[^`\s]*)`", FLAT):
        for method in methods.split("`/`"):
            found.add((method, path))
    return sorted(found)


def _readme_query_parameters() -> list[tuple[str, str, str]]:
    """``(method, path, parameter)`` for every ``METHOD /path?name=`` the README names."""
    found: set[tuple[str, str, str]] = set()
    for method, path, query in re.findall(
        r"`(GET|POST|PUT|PATCH|DELETE) (/(?:api|v1)/[^`?\s]*)\?([^`\s]*)`", FLAT
    ):
        for pair in query.split("&"):
            found.add((method, path, pair.split("=")[0]))
    return sorted(found)


def _table_rows() -> list[tuple[list[str], str, str]]:
    """The configuration table: (variable names, default cell, meaning cell) per row."""
    rows = []
    for line in README.splitlines():
        if not line.startswith("| `WHALLI_"):
            continue
        names_cell, default_cell, meaning = (c.strip() for c in line.strip("|").split("|", 2))
        names = re.findall(r"`(WHALLI_[A-Z0-9_]+)`(?:/`(_[A-Z]+)`)?", names_cell)
        expanded = []
        for name, suffix in names:
            expanded.append(name)
            if suffix:  # `WHALLI_GITHUB_CLIENT_ID`/`_SECRET`
                expanded.append(name.rsplit("_", 1)[0] + suffix)
        rows.append((expanded, default_cell, meaning))
    return rows


# --- the configuration table against config.py ------------------------------------------------


def test_every_variable_the_readme_names_is_a_setting_the_code_reads() -> None:
    fields = {name.upper() for name in Settings.__struct_fields__}
    named = set(re.findall(r"WHALLI_[A-Z0-9_]*[A-Z0-9]", README))
    named |= {name for names, _, _ in _table_rows() for name in names}
    named.discard("WHALLI_TRANSCRIPTION")  # `WHALLI_TRANSCRIPTION_*`: the family, not one
    unknown = sorted(name for name in named if name.removeprefix("WHALLI_") not in fields)
    assert unknown == []


def test_every_default_the_configuration_table_states_is_the_codes_default() -> None:
    defaults = Settings()
    compared = 0
    for names, cell, _ in _table_rows():
        stated = re.findall(r"`([^`]*)`", cell)
        if cell == "unset":
            for name in names:
                assert not getattr(defaults, name.removeprefix("WHALLI_").lower()), name
                compared += 1
            continue
        prose = re.sub(r"`[^`]*`|\(off\)|[,\s]", "", cell)
        if prose or len(stated) != len(names) or any(s.startswith("WHALLI_") for s in stated):
            continue  # prose ("embedded", "the vendors'", "generated in ...", another variable)
        for name, text in zip(names, stated, strict=True):
            value = getattr(defaults, name.removeprefix("WHALLI_").lower())
            if name == "WHALLI_CATALOG_PATH":
                from whalli.adapters.catalog.toml_catalog import default_catalog_path

                assert value == "", name
                assert str(default_catalog_path()).endswith(text), name
            elif isinstance(value, bool):
                assert str(value).lower() == text, name
            elif isinstance(value, int | float):
                assert value == float(text), (name, value, text)
            else:
                assert str(value) == text, (name, value, text)
            compared += 1
    assert compared >= 60  # the table's parse still finds its rows


def test_the_readme_names_the_setting_that_makes_a_deployment_production() -> None:
    table = {name for names, _, _ in _table_rows() for name in names}
    assert "WHALLI_ENV" in table


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WHALLI_ACCESS_TOKEN_TTL_S", "60"),
        ("WHALLI_ACCESS_TOKEN_TTL_S", "3600"),
        ("WHALLI_REFRESH_TOKEN_TTL_DAYS", "1"),
        ("WHALLI_REFRESH_TOKEN_TTL_DAYS", "365"),
        ("WHALLI_REFRESH_TOKEN_REUSE_GRACE_S", "0"),
        ("WHALLI_REFRESH_TOKEN_REUSE_GRACE_S", "60"),
        ("WHALLI_API_KEY_LAST_USED_INTERVAL_S", "0"),
        ("WHALLI_API_KEY_LAST_USED_INTERVAL_S", "86400"),
        ("WHALLI_PWNED_PASSWORDS_TIMEOUT_S", "30"),
        ("WHALLI_FILE_EVENTS_POLL_S", "60"),
        ("WHALLI_CHAT_HEARTBEAT_S", "3600"),
        ("WHALLI_SEARCH_TIMEOUT_S", "120"),
        ("WHALLI_SEARCH_SCHEDULE_INTERVAL_S", "0"),
        ("WHALLI_REPLY_SWEEP_INTERVAL_S", "0"),
        ("WHALLI_REPLY_ABANDONED_AFTER_S", "1"),
        ("WHALLI_CHAT_PROGRESS_EVERY_S", "0"),
        ("WHALLI_ANTHROPIC_PROMPT_CACHE_TTL", "1h"),
        # each alone: the stale threshold of a processing file follows them when it is unset
        ("WHALLI_TRANSCRIPTION_TIMEOUT_S", "3600"),
        ("WHALLI_TRANSCRIPTION_TIMEOUT_S", "1800"),
        ("WHALLI_EXTRACTION_WALL_TIME_S", "900"),
    ],
)
def test_a_value_the_readme_allows_is_accepted_on_its_own(variable: str, value: str) -> None:
    """An operator sets one documented variable to a value its row allows, nothing else."""
    try:
        settings = load_settings({variable: value}, dotenv=None)
    except ConfigError as e:
        pytest.fail(f"{variable}={value} refused: {e}")
    assert str(getattr(settings, variable.removeprefix("WHALLI_").lower())) in (value, f"{value}.0")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("WHALLI_PWNED_PASSWORDS_TIMEOUT_S", "more than 0 and at most 30"),
        ("WHALLI_FILE_EVENTS_POLL_S", "more than 0 and at most 60"),
    ],
)
def test_a_zero_the_readme_excludes_stops_start_up_saying_so(variable: str, message: str) -> None:
    row = next(meaning for names, _, meaning in _table_rows() if variable in names)
    assert "more than 0, at most" in row  # the README says 0 is not allowed
    with pytest.raises(ConfigError, match=f"{variable} must be {message}"):
        load_settings({variable: "0"}, dotenv=None)


# --- make targets and commands ----------------------------------------------------------------


def test_every_make_target_and_command_the_readme_names_exists() -> None:
    commands = re.search(r"## Commands\n(.*?)\n## ", README, re.S)
    assert commands is not None
    section = commands.group(1)
    targets = re.findall(r"`([a-z-]+)`", section.split("Make targets:")[1])
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    assert len(targets) >= 9
    assert sorted(set(targets) - defined) == []
    parser = _parser()
    for line in (
        ["services", "up"], ["services", "down"], ["services", "status"], ["migrate"],
        ["serve"], ["worker"], ["dev"],
    ):  # fmt: skip
        assert parser.parse_args(line).command == line[0]
    with pytest.raises(SystemExit, match="0"):  # the users command and its --admin flag exist
        parser.parse_args(["users", "create", "--help"])


# --- the routes, parameters and statuses against the OpenAPI document -------------------------


async def test_every_route_the_readme_names_is_an_operation_of_the_openapi_document(
    document: dict[str, Any],
) -> None:
    named = _readme_operations()
    assert len(named) >= 40
    missing = [
        (method, path)
        for method, path in named
        if _shape(path) not in NOT_OPERATIONS and _operation(document, method, path) is None
    ]
    assert missing == []


async def test_the_readme_documents_how_to_sign_in_with_a_password_and_sign_out(
    document: dict[str, Any],
) -> None:
    for path in ("/api/auth/login", "/api/auth/logout", "/api/auth/logout-all"):
        assert _operation(document, "post", path) is not None  # the app has them
    named = {(method, _shape(path)) for method, path in _readme_operations()}
    assert ("POST", "/api/auth/login") in named
    assert ("POST", "/api/auth/logout") in named
    assert ("POST", "/api/auth/logout-all") in named


@pytest.mark.parametrize(("method", "path", "name"), _readme_query_parameters())
async def test_a_query_parameter_the_readme_names_is_one_of_its_operation(
    document: dict[str, Any], method: str, path: str, name: str
) -> None:
    operation = _operation(document, method, path)
    assert operation is not None, (method, path)
    accepted = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
    assert name in accepted, (method, path, sorted(accepted))


def test_the_readme_names_the_query_parameters_it_is_checked_for() -> None:
    found = {(path, name) for _, path, name in _readme_query_parameters()}
    assert {
        ("/api/chats/search", "q"),
        ("/api/usage", "from"),
        ("/api/files/{id}/content", "redirect"),
    } <= (found)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/auth/oauth/{provider}/authorize", "302"),
        ("delete", "/api/auth/me", "204"),
        ("post", "/api/chats/import", "201"),
        ("post", "/api/chat/regenerate", "201"),
        ("get", "/api/health/ready", "503"),
        ("post", "/api/searches", "409"),
        ("delete", "/api/auth/oauth/{provider}/link", "409"),
        ("post", "/api/files/upload", "415"),
        ("post", "/v1/audio/transcriptions", "415"),
        ("get", "/api/chat/stream", "204"),
        ("get", "/api/files/{file_id}/content", "302"),
        ("get", "/api/auth/oauth/{provider}/callback", "302"),
    ],
)
async def test_a_status_the_readme_documents_is_listed_by_its_operation(
    document: dict[str, Any], method: str, path: str, status: str
) -> None:
    operation = _operation(document, method, path)
    assert operation is not None, (method, path)
    assert status in operation["responses"], sorted(operation["responses"])


@pytest.mark.parametrize("path", ["/api/files/upload", "/v1/audio/transcriptions"])
async def test_an_upload_operation_declares_its_multipart_body_with_its_file_part(
    document: dict[str, Any], path: str
) -> None:
    operation = _operation(document, "post", path)
    assert operation is not None
    content = operation.get("requestBody", {}).get("content", {})
    assert "multipart/form-data" in content, sorted(content)
    assert "file" in content["multipart/form-data"]["schema"].get("properties", {})


# --- the scrape endpoint operators point Prometheus at ----------------------------------------


async def test_the_metrics_endpoint_answers_one_well_formed_content_type(chat: Chat) -> None:
    response = await chat.client.get("/api/metrics")
    assert response.status_code == 200, response.text
    assert "whalli_" in response.text or "python_gc" in response.text
    media_type, *parameters = (p.strip() for p in response.headers["content-type"].split(";"))
    assert media_type == "text/plain"
    names = [p.split("=", 1)[0].lower() for p in parameters]
    assert len(names) == len(set(names)), response.headers["content-type"]
    assert response.headers.get_list("content-type") == [CONTENT_TYPE_LATEST]


# --- error codes and the admin audit trail ------------------------------------------------------


def _error_codes() -> set[str]:
    from whalli.domain.model.errors import WhalliError

    found: set[str] = set()
    pending: list[type[WhalliError]] = [WhalliError]
    while pending:
        cls = pending.pop()
        found.add(cls.code)
        pending.extend(cls.__subclasses__())
    return found


def test_every_problem_code_the_readme_names_is_one_the_api_raises() -> None:
    named = {
        "search_limit_reached", "attachment_not_ready", "transcription_not_configured",
        "model_not_in_plan", "reply_in_progress", "not_the_last_reply", "owns_shared_projects",
        "last_admin", "reauthentication_required", "provider_rejected_request",
        "searches_not_configured",
    }  # fmt: skip
    assert all(f"`{code}`" in FLAT for code in named)  # the README still names them
    assert sorted(named - _error_codes()) == []


async def test_an_admins_change_is_logged_with_both_ids_and_no_address(chat: Chat) -> None:
    from structlog.testing import capture_logs

    admin = await chat.world.create_admin()
    bob = await chat.world.register("bob")
    with capture_logs() as logs:
        changed = await chat.client.patch(
            f"/api/admin/users/{bob['user']['id']}", json={"plan": "pro"}, headers=admin
        )
        missing = await chat.client.patch(
            "/api/admin/users/00000000-0000-0000-0000-000000000000",
            json={"plan": "pro"}, headers=admin,
        )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert missing.status_code == 404, missing.text
    audit = [entry for entry in logs if entry["event"] == "admin_user_updated"]
    assert len(audit) == 1, audit  # a refused change is no change
    me = await chat.client.get("/api/auth/me", headers=admin)
    assert audit[0]["admin_id"] == me.json()["id"]
    assert audit[0]["user_id"] == bob["user"]["id"]
    assert audit[0]["plan"] == "pro"
    assert bob["email"] not in repr(audit[0])
