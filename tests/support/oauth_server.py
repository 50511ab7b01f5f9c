"""A loopback OAuth server behaving like GitHub's and Google's sign-in endpoints.

GitHub: ``GET /login/oauth/authorize``, ``POST /login/oauth/access_token`` (errors come back as
200 with ``{"error": ...}``), ``GET /user``, ``GET /user/emails``. Google:
``GET /o/oauth2/v2/auth``, ``POST /token`` (errors are 400/401 with ``{"error": ...}``),
``GET /userinfo``. Token requests are checked like the real ones: client secret, single-use
code, redirect URI, and the PKCE ``code_verifier`` against the S256 ``code_challenge``.

The authorize endpoints play a user who consents at once: they redirect (302) to the
``redirect_uri`` with ``code`` and ``state``, for the profile configured at that moment.
``failing = True`` makes every endpoint answer 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.loopback_http import LoopbackHttpServer

CLIENT_ID = "whalli-test-client"
CLIENT_SECRET = "whalli-test-secret"


@dataclass
class GitHubAccount:
    id: int
    login: str
    name: str | None = None
    # (email, primary, verified)
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)


@dataclass
class GoogleAccount:
    sub: str
    email: str | None
    email_verified: bool = True
    name: str = ""


@dataclass
class _Grant:
    provider: str
    account: GitHubAccount | GoogleAccount
    challenge: str
    redirect_uri: str


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class FakeOAuthServer(LoopbackHttpServer):
    def __init__(self) -> None:
        self.github_account = GitHubAccount(
            id=1, login="octocat", name="The Octocat", emails=[("octocat@example.com", True, True)]
        )
        self.google_account = GoogleAccount(sub="g-1", email="ada@example.com", name="Ada")
        self.failing = False
        self.token_requests: list[dict[str, str]] = []
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, GitHubAccount | GoogleAccount] = {}
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    # --- the endpoints' logic (called from the handler thread) ---------------------------
    def authorize(self, provider: str, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        redirect_uri = query.get("redirect_uri", "")
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or not query.get("state")
            or not redirect_uri
        ):
            return 400, {}
        account = self.github_account if provider == "github" else self.google_account
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._grants[code] = _Grant(provider, account, query["code_challenge"], redirect_uri)
        location = f"{redirect_uri}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"Location": location}

    def exchange(self, provider: str, form: dict[str, str]) -> tuple[str, str | None]:
        """``(error, None)`` or ``("", access_token)``."""
        self.token_requests.append(form)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return (
                "incorrect_client_credentials" if provider == "github" else "invalid_client"
            ), None
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
        bad_code = "bad_verification_code" if provider == "github" else "invalid_grant"
        if grant is None or grant.provider != provider:
            return bad_code, None
        if grant.redirect_uri != form.get("redirect_uri"):
            return "redirect_uri_mismatch", None
        if s256(form.get("code_verifier", "")) != grant.challenge:
            return bad_code, None
        token = f"{'gho' if provider == 'github' else 'ya29'}_{secrets.token_urlsafe(24)}"
        with self._lock:
            self._tokens[token] = grant.account
        return "", token

    def account_for(self, authorization: str | None) -> GitHubAccount | GoogleAccount | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            return self._tokens.get(authorization.removeprefix("Bearer "))


def _handler_for(server: FakeOAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest treats stray output as noise

        def _reply(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _form(self) -> dict[str, str]:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                return {k: str(v) for k, v in json.loads(raw or "{}").items()}
            return {k: v[0] for k, v in parse_qs(raw).items()}

        def do_GET(self) -> None:
            if server.failing:
                self._reply(500, {"message": "Server Error"})
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path in ("/login/oauth/authorize", "/o/oauth2/v2/auth"):
                provider = "github" if parts.path.startswith("/login") else "google"
                status, headers = server.authorize(provider, query)
                self._reply(status, None, headers)
                return
            account = server.account_for(self.headers.get("Authorization"))
            if parts.path in ("/user", "/user/emails") and isinstance(account, GitHubAccount):
                if parts.path == "/user":
                    body: Any = {"id": account.id, "login": account.login, "name": account.name}
                else:
                    body = [
                        {"email": e, "primary": p, "verified": v, "visibility": None}
                        for e, p, v in account.emails
                    ]
                self._reply(200, body)
            elif parts.path == "/userinfo" and isinstance(account, GoogleAccount):
                body = {"sub": account.sub, "name": account.name}
                if account.email is not None:
                    body |= {"email": account.email, "email_verified": account.email_verified}
                self._reply(200, body)
            elif parts.path in ("/user", "/user/emails", "/userinfo"):
                self._reply(401, {"message": "Bad credentials"})
            else:
                self._reply(404, {"message": "Not Found"})

        def do_POST(self) -> None:
            if server.failing:
                self._reply(500, {"message": "Server Error"})
                return
            path = urlsplit(self.path).path
            if path == "/login/oauth/access_token":
                error, token = server.exchange("github", self._form())
                # GitHub says "no" with a 200 and an error body.
                if token is None:
                    self._reply(200, {"error": error, "error_description": "The code is wrong."})
                else:
                    self._reply(
                        200, {"access_token": token, "token_type": "bearer", "scope": "user:email"}
                    )
            elif path == "/token":
                error, token = server.exchange("google", self._form())
                if token is None:
                    self._reply(401 if error == "invalid_client" else 400, {"error": error})
                else:
                    self._reply(
                        200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
                    )
            else:
                self._reply(404, {"message": "Not Found"})

    return Handler
