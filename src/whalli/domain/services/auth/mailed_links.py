"""The links Whalli mails to an account: a page of the web app, a token in the fragment."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def page_under(web_url: str, page: str) -> str:
    """``page`` under ``web_url``'s path, its query kept (as the OAuth sign-in keeps it):
    appended to the whole URL, the page would land in a query (``?tenant=a/reset-password``)."""
    scheme, netloc, path, query, _ = urlsplit(web_url)
    return urlunsplit((scheme, netloc, path.rstrip("/") + page, query, ""))
