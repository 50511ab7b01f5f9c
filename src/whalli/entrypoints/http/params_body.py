"""Sampling parameters in request bodies (a chat's start and regeneration, presets)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from whalli.domain.model.chats import (
    MAX_STOP_LENGTH,
    MAX_STOP_SEQUENCES,
    GenerationParams,
    ReasoningEffort,
)
from whalli.entrypoints.http.schemas import Inbound

Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
StopSequence = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STOP_LENGTH)]


class ParamsBody(Inbound):
    # (the ranges of GenerationParams, which refuses anything else too)
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    stop: (
        Annotated[list[StopSequence], msgspec.Meta(min_length=1, max_length=MAX_STOP_SEQUENCES)]
        | None
    ) = None
    seed: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    # minimal, low, medium, high: only for a model that reasons (its `capabilities.reasoning`)
    reasoning_effort: ReasoningEffort | None = None


def generation_params(params: ParamsBody | None) -> GenerationParams:
    """The domain's parameters from a body's (none given: all unset)."""
    if params is None:
        return GenerationParams()
    fields = msgspec.structs.asdict(params)
    if params.stop is not None:
        fields["stop"] = tuple(params.stop)
    return GenerationParams(**fields)
