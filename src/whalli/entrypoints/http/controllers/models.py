"""The models the caller's plan includes: /api/models."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import ReasoningEffort
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import Plan
from whalli.domain.services.models.list_models import ListModels, ListModelsHandler
from whalli.entrypoints.http.schemas import Schema, camel_name


class Capabilities(Schema):
    """What the model can be asked for beyond text (on ``/v1``: ``tools``,
    ``response_format``, ``image_url`` parts); a request it cannot answer is a 422 (on ``/v1``
    OpenAI's 400)."""

    tools: bool
    structured_outputs: bool
    # enforces a JSON Schema exactly when asked `strict` (a json_schema response_format, a
    # function); without it a schema is followed, not guaranteed
    strict_outputs: bool
    vision: bool  # also: attached images go to it as images in the chat flow
    reasoning: bool  # takes a reasoning effort (`params.reasoningEffort`, `reasoning_effort`)
    reasoning_efforts: list[ReasoningEffort]  # which ones (empty unless `reasoning`)
    # takes a `verbosity` (OpenAI's, GPT-5 and later); asked of another model it is not sent
    verbosity: bool
    # the sampling parameters (as `params` names them: `topP`...) it refuses, which are not
    # sent to it when asked (a `stop` is applied by Whalli: the reply ends where it begins)
    refused_params: list[str]
    # those it refuses only while asked an effort other than `none`
    refused_params_while_reasoning: list[str]


class Model(Schema):
    id: str
    provider: str
    context_window: int
    # no default: always present; the most tokens it writes in a reply (a larger `maxTokens`
    # is a 422), null when not known
    max_output_tokens: int | None
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    min_plan: Plan
    capabilities: Capabilities


def _model(spec: ModelSpec) -> Model:
    capabilities = Capabilities(
        tools=spec.calls_tools, structured_outputs=spec.structured_outputs,
        strict_outputs=spec.strict_outputs, vision=spec.sees_images, reasoning=bool(spec.efforts),
        reasoning_efforts=list(spec.efforts),
        verbosity=spec.verbosity,
        refused_params=[camel_name(name) for name in spec.refuses],
        refused_params_while_reasoning=[camel_name(name) for name in spec.refuses_while_reasoning],
    )  # fmt: skip
    return Model(
        id=spec.id, provider=spec.provider, context_window=spec.context_window,
        max_output_tokens=spec.max_output_tokens,
        input_usd_per_mtok=spec.input_usd_per_mtok, output_usd_per_mtok=spec.output_usd_per_mtok,
        min_plan=spec.min_plan, capabilities=capabilities,
    )  # fmt: skip


class ModelController(Controller):
    path = "/api/models"
    tags = ["models"]

    @get(
        "/",
        summary="The models the caller's plan includes",
        description="Catalog order; prices in USD per million tokens; only configured providers; "
        "`capabilities` says which models take tools, structured outputs and images (`/v1`), "
        "and a reasoning effort.",
    )
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_models: NamedDependency[ListModelsHandler],
    ) -> list[Model]:
        specs = await list_models.execute(ListModels(plan=principal.user.plan))
        return [_model(spec) for spec in specs]
