"""Sampling parameters in request bodies (a chat's start and regeneration, presets)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from whalli.domain.model.chats import (
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    GenerationParams,
    ReasoningEffort,
    Verbosity,
)
from whalli.entrypoints.http.schemas import Inbound

Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
StopSequence = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STOP_LENGTH)]


class ParamsBody(Inbound):
    # (the ranges of GenerationParams, which refuses anything else too). Left out or null:
    # unset; in a regeneration, null also means "not the replaced reply's" (``cleared_params``)
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | UnsetType | None = UNSET
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | UnsetType | None = UNSET
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | UnsetType | None = UNSET
    stop: (
        Annotated[list[StopSequence], msgspec.Meta(min_length=1, max_length=MAX_STOP_SEQUENCES)]
        | UnsetType
        | None
    ) = UNSET
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | UnsetType | None = UNSET
    presence_penalty: Penalty | UnsetType | None = UNSET
    frequency_penalty: Penalty | UnsetType | None = UNSET
    # none ... xhigh: only for a model that reasons (its `capabilities.reasoning`)
    reasoning_effort: ReasoningEffort | UnsetType | None = UNSET
    # low, medium, high: sent to a model that takes it (its `capabilities.verbosity`)
    verbosity: Verbosity | UnsetType | None = UNSET


def generation_params(params: ParamsBody | None) -> GenerationParams:
    """The domain's parameters from a body's (none given: all unset)."""
    if params is None:
        return GenerationParams()
    fields = {k: v for k, v in msgspec.structs.asdict(params).items() if v is not UNSET}
    if isinstance(params.stop, list):
        fields["stop"] = tuple(params.stop)
    return GenerationParams(**fields)


def cleared_params(params: ParamsBody | None) -> frozenset[str]:
    """The parameters a body sets to null on purpose (``GenerationParams`` field names)."""
    if params is None:
        return frozenset()
    return frozenset(k for k, v in msgspec.structs.asdict(params).items() if v is None)
