"""The configured MLLM judges, read from Django settings when asked (never at import).

ARENA_JUDGES            JSON list of judges, each an object with
                          name         unique, letters, digits, "-", "_" and "."
                          backend      "http" (OpenAI-compatible chat completions) or "transformers"
                          model        model name sent to the endpoint, or hub id / local folder
                          url          http only: base URL, e.g. http://gpu-host:8000/v1
                          api_key_env  http only, optional: the environment variable holding the key
                          concurrency, timeout, retries, max_tokens   optional, default: the ARENA_JUDGE_* below
ARENA_JUDGE_NAME        name of the default judge                          (default "judge")
ARENA_JUDGE_URL         default judge: OpenAI-compatible endpoint (needs ARENA_JUDGE_MODEL)
ARENA_JUDGE_MODEL       default judge: model name at the endpoint, or, without a URL, the
                        hub id or local folder of a transformers image-text-to-text model
ARENA_JUDGE_API_KEY     default judge: bearer token for the endpoint (optional)
ARENA_JUDGE_CONCURRENCY requests in flight per judge run (http)            (default 4)
ARENA_JUDGE_TIMEOUT     seconds per request (http)                         (default 120)
ARENA_JUDGE_RETRIES     retries of a timeout, 429 or 5xx, with backoff     (default 3)
ARENA_JUDGE_MAX_TOKENS  longest answer generated                           (default 512)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["HTTP", "PROMPT_VERSION", "TRANSFORMERS", "JudgeConfig", "judge_get", "judges_configured"]

HTTP = "http"
TRANSFORMERS = "transformers"
# Bumped whenever the wording the judge is sent changes, so earlier verdicts are not reused.
PROMPT_VERSION = "1"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$")


@dataclass(frozen=True)
class JudgeConfig:
    name: str
    backend: str
    model: str
    url: str = ""
    api_key_env: str = ""
    api_key: str = ""
    concurrency: int = 4
    timeout: int = 120
    retries: int = 3
    max_tokens: int = 512
    setting: str = "ARENA_JUDGES"  # where it was configured, for error messages

    @property
    def fingerprint(self) -> str:
        """What makes two verdicts comparable: backend, model, endpoint, answer length and the
        prompt wording; not the name, key, concurrency or timeouts."""
        key = json.dumps([self.backend, self.model, self.url.rstrip("/"), self.max_tokens, PROMPT_VERSION])
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    @property
    def queue_kind(self) -> str:
        """"gpu" for a model in the worker's process, "cpu" for an endpoint (no GPU needed here)."""
        return "gpu" if self.backend == TRANSFORMERS else "cpu"

    def key(self) -> str:
        """The API key, read when a run starts (never stored)."""
        if self.api_key:
            return self.api_key
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def public(self) -> dict[str, Any]:
        """What a run records of its judge (no secret)."""
        return {"name": self.name, "backend": self.backend, "model": self.model, "url": self.url,
                "max_tokens": self.max_tokens, "prompt_version": PROMPT_VERSION}


def _int(entry: dict, key: str, default: int, where: str, minimum: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ImproperlyConfigured(f"{where}.{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def _text(entry: dict, key: str, where: str, *, required: bool = False) -> str:
    value = entry.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"{where}.{key} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ImproperlyConfigured(f"{where}.{key} is required")
    return value


def _check(cfg: JudgeConfig, where: str) -> JudgeConfig:
    if not _NAME_RE.match(cfg.name):
        raise ImproperlyConfigured(f"{where}: judge name {cfg.name!r} must be 1-60 letters, digits, '-', '_' or '.'")
    if cfg.backend not in (HTTP, TRANSFORMERS):
        raise ImproperlyConfigured(f'{where}.backend must be "http" or "transformers", got {cfg.backend!r}')
    if not cfg.model:
        raise ImproperlyConfigured(f"{where}: no model (the model name at the endpoint, or a hub id or local folder)")
    if cfg.backend == HTTP and not re.match(r"^https?://[^/\s]+", cfg.url):
        raise ImproperlyConfigured(f"{where}: url must be an http(s) URL of an OpenAI-compatible endpoint, got {cfg.url!r}")
    return cfg


_LIMITS = ("concurrency", "timeout", "retries", "max_tokens")


def _limits(source: Any) -> dict[str, int]:
    """ARENA_JUDGE_CONCURRENCY, _TIMEOUT, _RETRIES and _MAX_TOKENS: the default judge's limits and
    the defaults of every judge in ARENA_JUDGES that does not set its own."""
    base = JudgeConfig(name="", backend="", model="")
    return {k: int(getattr(source, f"ARENA_JUDGE_{k.upper()}", getattr(base, k))) for k in _LIMITS}


def judges_configured(source: Any = None) -> dict[str, JudgeConfig]:
    """Every configured judge by name: ARENA_JUDGES, then the default judge (ARENA_JUDGE_*).

    Raises ImproperlyConfigured naming the setting at fault.
    """
    if source is None:
        from django.conf import settings as source

    judges: dict[str, JudgeConfig] = {}
    limits = _limits(source)
    entries = getattr(source, "ARENA_JUDGES", None) or []
    if not isinstance(entries, (list, tuple)):
        raise ImproperlyConfigured(f"ARENA_JUDGES must be a list of judges, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        where = f"ARENA_JUDGES[{i}]"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f"{where} must be an object with name, backend and model")
        unknown = set(entry) - {"name", "backend", "model", "url", "api_key_env", "concurrency", "timeout", "retries", "max_tokens"}
        if unknown:
            raise ImproperlyConfigured(f"{where} has unknown key(s) {', '.join(sorted(unknown))}")
        backend = _text(entry, "backend", where) or (HTTP if entry.get("url") else TRANSFORMERS)
        cfg = _check(JudgeConfig(
            name=_text(entry, "name", where, required=True), backend=backend, model=_text(entry, "model", where),
            url=_text(entry, "url", where), api_key_env=_text(entry, "api_key_env", where),
            **{k: _int(entry, k, limits[k], where, 0 if k == "retries" else 1) for k in _LIMITS},
            setting=where,
        ), where)
        if cfg.name in judges:
            raise ImproperlyConfigured(f"{where}: a judge named {cfg.name!r} is configured twice")
        judges[cfg.name] = cfg
    url = (getattr(source, "ARENA_JUDGE_URL", "") or "").strip()
    model = (getattr(source, "ARENA_JUDGE_MODEL", "") or "").strip()
    if url or model:
        name = (getattr(source, "ARENA_JUDGE_NAME", "") or "judge").strip()
        where = "ARENA_JUDGE_URL" if url else "ARENA_JUDGE_MODEL"
        if url and not model:
            raise ImproperlyConfigured("ARENA_JUDGE_URL is set but ARENA_JUDGE_MODEL (the model name at the endpoint) is not")
        cfg = _check(JudgeConfig(
            name=name, backend=HTTP if url else TRANSFORMERS, model=model, url=url,
            api_key=(getattr(source, "ARENA_JUDGE_API_KEY", "") or "").strip(),
            **limits,
            setting=where,
        ), where)
        if cfg.name in judges:
            raise ImproperlyConfigured(f"ARENA_JUDGE_NAME={name!r} is also the name of a judge in ARENA_JUDGES")
        judges[cfg.name] = cfg
    return judges


def judge_get(name: str) -> JudgeConfig:
    """The judge ``name``; ImproperlyConfigured when no judge or no judge of that name is configured."""
    judges = judges_configured()
    if not judges:
        raise ImproperlyConfigured(
            "No judge is configured: set ARENA_JUDGE_URL and ARENA_JUDGE_MODEL (an OpenAI-compatible endpoint), "
            "ARENA_JUDGE_MODEL alone (a transformers model), or ARENA_JUDGES"
        )
    try:
        return judges[name]
    except KeyError:
        raise ImproperlyConfigured(f"No judge named {name!r}; configured: {', '.join(sorted(judges))}") from None
