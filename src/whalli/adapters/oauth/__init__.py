"""Sign-in providers over OAuth 2.0 / OpenID Connect (GitHub, Google), on httpx."""
