"""Loopback OpenAI and xAI servers that refuse, per model, the parameters the real APIs refuse
(with their status, error shape and wording, from their public error reports): OpenAI's
reasoning models refuse sampling parameters and stop sequences, and efforts they do not take;
xAI's reasoning models refuse the penalties and stop, and Grok 4 any reasoning effort.
Everything else is answered as ``openai_default`` answers it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tests.support.fake_providers import API_KEY, RecordedRequest, Reply, openai_default

_SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop")

# upstream model -> (the parameters it refuses always, those it refuses at an effort other
# than none, the efforts it takes or None for none at all)
OPENAI_MODELS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "o4-mini": (_SAMPLING, (), ("low", "medium", "high")),
    "gpt-5-mini": (_SAMPLING, (), ("minimal", "low", "medium", "high")),
    "gpt-5": (_SAMPLING, (), ("minimal", "low", "medium", "high")),
    "gpt-5.1": (_SAMPLING, (), ("none", "low", "medium", "high")),
    "gpt-5.2": (
        ("presence_penalty", "frequency_penalty", "stop"),
        ("temperature", "top_p"),
        ("none", "low", "medium", "high", "xhigh"),
    ),
}

XAI_MODELS: Mapping[str, tuple[tuple[str, ...], bool]] = {
    # upstream model -> (the parameters it refuses, whether it takes a reasoning effort)
    "grok-3-mini": (("presence_penalty", "frequency_penalty", "stop"), True),
    "grok-4": (("presence_penalty", "frequency_penalty", "stop"), False),
}


def _openai_refusal(message: str, param: str, code: str) -> Reply:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return Reply(status=400, body={"error": error})


def openai_documented(
    expected_key: str = API_KEY,
) -> Callable[[RecordedRequest], Reply]:
    """OpenAI, refusing for the ``OPENAI_MODELS`` what the real API refuses."""
    answer = openai_default(expected_key)

    def reply(request: RecordedRequest) -> Reply:
        body: dict[str, Any] = request.body
        model = str(body.get("model"))
        if model not in OPENAI_MODELS:
            return answer(request)
        always, reasoning, efforts = OPENAI_MODELS[model]
        effort = body.get("reasoning_effort")
        if effort is not None and effort not in efforts:
            taken = ", ".join(f"'{e}'" for e in efforts)
            return _openai_refusal(
                f"Unsupported value: '{effort}' is not supported with the '{model}' model. "
                f"Supported values are: {taken}.",
                "reasoning_effort", "unsupported_value",
            )  # fmt: skip
        refused = always + (reasoning if effort not in (None, "none") else ())
        for name in refused:
            if name not in body:
                continue
            if name == "temperature" and body[name] == 1:
                continue  # the default is taken
            if name == "temperature":
                return _openai_refusal(
                    f"Unsupported value: 'temperature' does not support {body[name]} with this "
                    "model. Only the default (1) value is supported.",
                    name, "unsupported_value",
                )  # fmt: skip
            return _openai_refusal(
                f"Unsupported parameter: '{name}' is not supported with this model.",
                name, "unsupported_parameter",
            )  # fmt: skip
        return answer(request)

    return reply


def xai_documented(expected_key: str = API_KEY) -> Callable[[RecordedRequest], Reply]:
    """xAI, refusing for the ``XAI_MODELS`` what the real API refuses (its own error shape)."""
    answer = openai_default(expected_key)
    camel = {"presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}

    def reply(request: RecordedRequest) -> Reply:
        body: dict[str, Any] = request.body
        model = str(body.get("model"))
        if model not in XAI_MODELS:
            return answer(request)
        refused, takes_effort = XAI_MODELS[model]
        names = [n for n in refused if n in body]
        if "reasoning_effort" in body and not takes_effort:
            names.insert(0, "reasoning_effort")
        if names:
            name = {"reasoning_effort": "reasoningEffort", **camel}.get(names[0], names[0])
            said = f"Model {model} does not support parameter {name}."
            return Reply(
                status=400, body={"code": "Client specified an invalid argument", "error": said}
            )
        return answer(request)

    return reply
