"""Reader passes as ``<reply id>.<user id>.<credential>.<expiry>.<HMAC-SHA256>`` (URL-safe, no
padding), the credential being ``s<login session id>``, ``k<API key id>`` or ``-`` (not known).

- The key is derived from the server's secret for this one purpose (HMAC of a fixed label),
  so a pass's signature is never valid as anything else signed with that secret.
- A pass holds no secret: it names the reply (whose session the store finds), never the
  session id, which would admit its holder on its own.
- Session ids are URL-safe base64 (no ``.``), so a value with a ``.`` is a pass and any other
  value is a session id.
- The signature covers the reply, the reader, their credential and the expiry; it is compared
  in constant time and truncated to 128 bits.
- Passes of the previous format (``v1``: no credential) are signed under another label, so
  they no longer verify: refused as forged (404), which a client answers by reading the chat
  again; they lived ``STREAM_PASS_TTL`` at most.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from uuid import UUID

from whalli.domain.model.chat_sessions import StreamPass
from whalli.domain.model.errors import ChatSessionNotFound
from whalli.domain.model.principal import CredentialId
from whalli.ports.stream_passes import StreamPasses

_LABEL = b"whalli stream pass v2"
_MAC_BYTES = 16
_MAX_LENGTH = 256


class HmacStreamPasses(StreamPasses):
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a stream pass needs a secret")
        self._key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()

    def issue(self, granted: StreamPass) -> str:
        expires = int(granted.expires_at.timestamp())
        credential = _credential(granted.credential)
        body = f"{granted.reply_message_id.hex}.{granted.user_id.hex}.{credential}.{expires}"
        return f"{body}.{self._sign(body)}"

    def open(self, value: str, now: datetime) -> StreamPass | None:
        if "." not in value:
            return None
        body, _, mac = value.rpartition(".")
        if len(value) > _MAX_LENGTH or not hmac.compare_digest(
            _bytes(mac), self._sign(body).encode()
        ):
            raise ChatSessionNotFound()
        try:
            reply_hex, user_hex, credential, expires = body.split(".")
            granted = StreamPass(
                reply_message_id=UUID(hex=reply_hex),
                user_id=UUID(hex=user_hex),
                expires_at=datetime.fromtimestamp(int(expires), UTC),
                credential=_opened_credential(credential),
            )
        except ValueError:  # (signed by us, so only if the format changed)
            raise ChatSessionNotFound() from None
        if now >= granted.expires_at:
            raise ChatSessionNotFound()
        return granted

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, _bytes(body), hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _credential(credential: CredentialId) -> str:
    if credential.login_session_id is not None:
        return f"s{credential.login_session_id.hex}"
    if credential.api_key_id is not None:
        return f"k{credential.api_key_id.hex}"
    return "-"


def _opened_credential(text: str) -> CredentialId:
    """Raises ``ValueError`` for anything ``_credential`` does not write."""
    if text == "-":
        return CredentialId()
    if text[:1] == "s":
        return CredentialId(login_session_id=UUID(hex=text[1:]))
    if text[:1] == "k":
        return CredentialId(api_key_id=UUID(hex=text[1:]))
    raise ValueError("not a credential")


def _bytes(text: str) -> bytes:
    # (a query string can carry anything, a lone surrogate included: it must not raise here)
    return text.encode("utf-8", "surrogatepass")
