"""The model catalog from a TOML file (``catalog/models.toml``): a ``[[model]]`` table per chat
model, a ``[[transcription]]`` table per speech-to-text model (optional)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from whalli.domain.model.catalog import KNOWN_PROVIDERS, ModelCatalog, ModelSpec
from whalli.domain.model.errors import InvalidCatalog
from whalli.domain.model.transcription_models import TranscriptionSpec

T = TypeVar("T")


def default_catalog_path() -> Path:
    """The repository's ``catalog/models.toml`` (settings may point elsewhere)."""
    return Path(__file__).resolve().parents[4] / "catalog" / "models.toml"


def load_catalog(path: Path | str, *, providers: frozenset[str] = KNOWN_PROVIDERS) -> ModelCatalog:
    """Read and validate the catalog; every error names the file and the entry at fault.

    Raises ``InvalidCatalog`` (an ``InvalidInput``) for an unreadable file, malformed TOML, an
    entry with missing, unknown or mistyped fields, and anything ``ModelCatalog`` refuses.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise InvalidCatalog(f"{path}: the catalog cannot be read ({e.strerror}).") from e
    except tomllib.TOMLDecodeError as e:
        raise InvalidCatalog(f"{path}: not valid TOML ({e}).") from e
    specs = [_spec(path, n, entry) for n, entry in enumerate(_entries(path, document), 1)]
    transcription = [
        _transcription(path, n, entry)
        for n, entry in enumerate(_transcription_entries(path, document), 1)
    ]
    try:
        return ModelCatalog(specs, providers=providers, transcription=transcription)
    except InvalidCatalog as e:
        raise InvalidCatalog(f"{path}: {e.message}", **e.details) from e


def _entries(path: Path, document: dict[str, Any]) -> list[Any]:
    unknown = sorted(set(document) - {"model", "transcription"})
    if unknown:
        raise InvalidCatalog(
            f"{path}: unknown top-level keys {unknown}; expected [[model]] and [[transcription]]."
        )
    entries = document.get("model")
    if not isinstance(entries, list) or not entries:
        raise InvalidCatalog(f"{path}: no models; expected one [[model]] table per model.")
    return entries


def _spec(path: Path, number: int, entry: Any) -> ModelSpec:
    return _converted(path, "model", number, entry, ModelSpec)


def _converted(path: Path, table: str, number: int, entry: Any, type_: type[T]) -> T:
    """``entry``, the ``number``-th ``[[table]]``, as a ``type_``; ``InvalidCatalog`` naming it
    (and its id, when it has one) and what is wrong."""
    where = f"{table} entry {number}"
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        where += f" ({entry['id']!r})"
    try:
        return msgspec.convert(entry, type_)
    except msgspec.ValidationError as e:
        raise InvalidCatalog(f"{path}: {where}: {e}.", entry=number) from e


def _transcription_entries(path: Path, document: dict[str, Any]) -> list[Any]:
    entries = document.get("transcription", [])
    if not isinstance(entries, list):
        raise InvalidCatalog(f"{path}: expected one [[transcription]] table per model.")
    return entries


def _transcription(path: Path, number: int, entry: Any) -> TranscriptionSpec:
    return _converted(path, "transcription", number, entry, TranscriptionSpec)
