"""The LiteLLM proxy as ``bench_peers`` runs it: in its own virtualenv (``make bench`` installs
it into ``bench/.peers/litellm``; its many dependencies stay out of Whalli's), in front of the
fake provider, configured as light as it goes: one model, no database, no cache, no callbacks,
a master key as its only credential, its access log off (as Whalli's is in the bench)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from bench._chat_world import API_KEY, _free_port

VENV = Path(__file__).resolve().parent / ".peers" / "litellm"
MASTER_KEY = "sk-litellm-bench-0123456789"
MODEL = "gpt-4o-mini"


def installed_version() -> str | None:
    """The LiteLLM installed for the bench, or ``None``."""
    if not (VENV / "bin" / "litellm").exists():
        return None
    found = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return found.stdout.strip() or None


def _config(provider_url: str, root: Path) -> tuple[Path, Path]:
    config = root / "litellm.json"  # YAML is a superset of JSON: LiteLLM reads it as YAML
    config.write_text(json.dumps({
        "model_list": [{
            "model_name": MODEL,
            "litellm_params": {"model": f"openai/{MODEL}", "api_base": provider_url, "api_key": API_KEY},
        }],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": MASTER_KEY},
    }))  # fmt: skip
    quiet = {"level": "WARNING", "handlers": ["stderr"], "propagate": False}
    logging = root / "litellm-logging.json"
    logging.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {name: quiet for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }))  # fmt: skip
    return config, logging


def start_litellm(provider_url: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The proxy, listening; its output in ``root / "litellm.log"``."""
    config, logging = _config(provider_url, root)
    port = _free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list at start-up
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST"):
        env.pop(name, None)
    log = (root / "litellm.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port), "--num_workers", "1", "--log_config", str(logging)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"LiteLLM exited; see {root / 'litellm.log'}")
        try:
            if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("LiteLLM did not answer within 180 s")
