"""The peers benchmark's figures: overheads against direct, and Whalli against LiteLLM as
ratios, from the replies it timed (made-up timings here, so every figure is known)."""

from __future__ import annotations

import os

from bench._chat_world import Timed
from bench.bench_peers import _figures, tree_cpu_seconds


def _replies(first_token_ms: float, count: int = 5) -> list[Timed]:
    replies = []
    for i in range(count):
        timed = Timed(t0=float(i))
        timed.first = timed.t0 + first_token_ms / 1000
        replies.append(timed)
    return replies


def test_overheads_and_ratios_are_taken_against_the_same_runs_direct_replies() -> None:
    c1 = {"direct": _replies(1.0), "v1": _replies(3.0), "litellm": _replies(21.0)}
    c16 = {"direct": _replies(4.0), "v1": _replies(20.0), "litellm": _replies(404.0)}
    rps = {"direct": [100.0], "v1": [90.0], "litellm": [20.0]}
    cpu = {"direct": 0.0, "v1": 0.010, "litellm": 0.150}  # seconds over the 5 c=16 replies

    figures = _figures(c1, c16, rps, cpu, {"litellm": 2})

    assert figures["v1_ttft_c1_p50_overhead_ms"] == 2.0
    assert figures["litellm_ttft_c1_p50_overhead_ms"] == 20.0
    assert figures["v1_ttft_c16_p99_overhead_ms"] == 16.0
    assert figures["litellm_ttft_c16_p99_overhead_ms"] == 400.0
    assert figures["v1_rps_c16_ratio_vs_direct"] == 0.9
    assert figures["litellm_cpu_ms_per_reply_c16"] == 30.0
    assert figures["v1_vs_litellm_ttft_c1_p50_overhead"] == 0.1
    assert figures["v1_vs_litellm_ttft_c16_p99_overhead"] == 0.04
    assert figures["v1_vs_litellm_cpu_per_reply_c16"] == round(2.0 / 30.0, 3)
    assert figures["v1_vs_litellm_rps_c16"] == 4.5
    assert (figures["litellm_failed_replies"], figures["v1_failed_replies"]) == (2, 0)


def test_without_litellm_there_is_no_comparison() -> None:
    c1 = {"direct": _replies(1.0), "v1": _replies(3.0)}
    figures = _figures(c1, c1, {"direct": [1.0], "v1": [1.0]}, {"v1": 0.0}, {})
    assert not [name for name in figures if "litellm" in name]


def test_a_process_trees_cpu_counts_the_process_itself() -> None:
    before = tree_cpu_seconds(os.getpid())
    deadline = os.times().elapsed + 0.3
    while os.times().elapsed < deadline:  # burn some CPU in this process
        sum(range(1000))
    assert tree_cpu_seconds(os.getpid()) > before
