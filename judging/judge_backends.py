"""Two ways to ask an MLLM judge, behind one interface: ``backend.answer_many(requests)``.

- ``HttpBackend``: any OpenAI-compatible chat-completions endpoint with image input (vLLM,
  SGLang, TGI, Ollama, a hosted API). Images go as base64 data URLs in ``image_url`` content
  parts, temperature 0; at most ``concurrency`` requests in flight; a timeout, 429 or 5xx is
  retried with exponential backoff, then fails the run naming the setting and the response. The
  serving engine scales a large judge across GPUs, not the arena.
- ``TransformersBackend``: a transformers image-text-to-text model in this worker process (the
  loading path VQAScore uses), greedy decoding.

Both return the answer text and its token counts; reading the verdict is ``judge_prompts``.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .judge_conf import HTTP, JudgeConfig
from .scorers import WeightsUnavailable
from .scorers.vqa import image_text_model_load

__all__ = ["JudgeBackendError", "JudgeReply", "JudgeRequest", "backend_for"]

BACKOFF_SECONDS = 0.5


class JudgeBackendError(Exception):
    """The judge cannot answer (unreachable, refused, timed out, not an image-text model):
    the run fails with this message; retrying the run will not help until the setting is fixed."""


@dataclass(frozen=True)
class JudgeRequest:
    images: tuple[bytes, ...]  # encoded image files (the display renditions), in the order shown
    text: str
    mime: str = "image/webp"
    followup: tuple[str, str] | None = None  # (the judge's previous answer, what it is asked again)


@dataclass(frozen=True)
class JudgeReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0


class HttpBackend:
    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.endpoint = cfg.url.rstrip("/") + "/chat/completions"
        self._key = cfg.key()

    def _where(self) -> str:
        return f"{self.cfg.setting} ({self.endpoint})" if self.cfg.setting != "ARENA_JUDGE_URL" else f"ARENA_JUDGE_URL={self.cfg.url}"

    def body(self, req: JudgeRequest) -> dict:
        content = [
            {"type": "image_url", "image_url": {"url": f"data:{req.mime};base64," + base64.b64encode(img).decode()}}
            for img in req.images
        ]
        content.append({"type": "text", "text": req.text})
        messages = [{"role": "user", "content": content}]
        if req.followup:
            previous, again = req.followup
            messages += [{"role": "assistant", "content": previous}, {"role": "user", "content": again}]
        return {"model": self.cfg.model, "messages": messages, "temperature": 0, "max_tokens": self.cfg.max_tokens}

    def answer(self, req: JudgeRequest) -> JudgeReply:
        data = json.dumps(self.body(req)).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            t0 = time.perf_counter()
            try:
                request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.cfg.timeout) as res:
                    raw = res.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace").strip()
                last = f"answered HTTP {exc.code} {exc.reason}: {detail or '(empty body)'}"
                if exc.code in (408, 429) or exc.code >= 500:
                    continue
                hint = " (check the API key)" if exc.code in (401, 403) else ""
                raise JudgeBackendError(f"The judge endpoint {self._where()} {last}{hint}") from None
            except (TimeoutError, socket.timeout):
                last = f"gave no answer within {self.cfg.timeout} s (the judge's timeout)"
                continue
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = f"gave no answer within {self.cfg.timeout} s (the judge's timeout)"
                    continue
                last = f"could not be reached: {exc.reason}"
                continue
            except (ConnectionError, OSError) as exc:
                last = f"could not be reached: {exc}"
                continue
            return self._reply(raw, t0)
        tries = self.cfg.retries + 1
        raise JudgeBackendError(f"The judge endpoint {self._where()} {last} ({tries} tr{'y' if tries == 1 else 'ies'})")

    def _reply(self, raw: bytes, t0: float) -> JudgeReply:
        try:
            payload = json.loads(raw)
            text = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeBackendError(
                f"The judge endpoint {self._where()} sent no chat completion: {raw[:300].decode('utf-8', 'replace')!r}"
            ) from None
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        usage = payload.get("usage") or {}
        return JudgeReply(
            text=text or "", prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0), latency_ms=int((time.perf_counter() - t0) * 1000),
        )

    def answer_many(self, requests: list[JudgeRequest]) -> list[JudgeReply]:
        if len(requests) <= 1 or self.cfg.concurrency == 1:
            return [self.answer(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(requests))) as pool:
            return list(pool.map(self.answer, requests))


class TransformersBackend:
    """A transformers image-text-to-text model in this process; one request at a time."""

    _lock = threading.Lock()

    def __init__(self, cfg: JudgeConfig, device=None):
        self.cfg = cfg
        try:
            model, processor, dev = image_text_model_load(cfg.model, device, setting=cfg.setting, what="judge model")
        except WeightsUnavailable as exc:
            raise JudgeBackendError(str(exc)) from None
        tokenizer = processor.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.processor, self.model, self.device = processor, model.to(dev).eval(), dev

    def _text(self, messages: list[dict]) -> str:
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        token = getattr(self.processor, "image_token", "<image>")
        out = []
        for m in messages:
            parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
            out.append(m["role"].upper() + ": " + "".join(token + "\n" if p["type"] == "image" else p["text"] for p in parts))
        return "\n".join(out) + "\nASSISTANT:"

    def answer(self, req: JudgeRequest) -> JudgeReply:
        import torch
        from PIL import Image

        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in req.images]
        messages = [{"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": req.text}]}]
        if req.followup:
            previous, again = req.followup
            messages += [{"role": "assistant", "content": [{"type": "text", "text": previous}]},
                         {"role": "user", "content": [{"type": "text", "text": again}]}]
        t0 = time.perf_counter()
        inputs = self.processor(text=[self._text(messages)], images=images, return_tensors="pt")
        dtype = self.model.dtype
        batch = {k: (v.to(device=self.device, dtype=dtype) if v.is_floating_point() else v.to(self.device))
                 for k, v in inputs.items() if isinstance(v, torch.Tensor)}
        pad = self.processor.tokenizer.pad_token_id
        with torch.inference_mode():
            out = self.model.generate(**batch, do_sample=False, max_new_tokens=self.cfg.max_tokens, pad_token_id=pad)
        n_in = batch["input_ids"].shape[1]
        new = out[0, n_in:]
        text = self.processor.tokenizer.decode(new, skip_special_tokens=True)
        return JudgeReply(text=text, prompt_tokens=int(n_in), completion_tokens=int(new.shape[0]),
                          latency_ms=int((time.perf_counter() - t0) * 1000))

    def answer_many(self, requests: list[JudgeRequest]) -> list[JudgeReply]:
        with self._lock:
            return [self.answer(r) for r in requests]


_LOADED: dict[tuple, TransformersBackend] = {}
_LOADED_LOCK = threading.Lock()


def backend_for(cfg: JudgeConfig, *, device=None):
    """The backend of a judge; an in-process model is loaded once per worker process."""
    if cfg.backend == HTTP:
        return HttpBackend(cfg)
    key = (cfg.model, str(device))
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = TransformersBackend(cfg, device)
        return _LOADED[key]


def backends_clear() -> None:
    with _LOADED_LOCK:
        _LOADED.clear()
