"""Backend "transformers": plain ``generate()`` for machines where vLLM is unavailable.

A last-resort fallback, not a fast path: requests are grouped by adapter and sampling settings and
run through left-padded batched ``generate``. It cannot constrain output to a JSON schema
(``supports_json_schema`` is False), so stages parse its replies with their tolerant parsers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mentalchat.engine.base import Engine, register_backend
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult, ErrorKind, SamplingConfig
from mentalchat.errors import InputNotFoundError
from mentalchat.models.kit import resolve_model

__all__ = ["TransformersEngine"]


@register_backend("transformers")
class TransformersEngine(Engine):
    """``AutoModelForCausalLM`` with the tokenizer's chat template; PEFT adapters per request."""

    provider = "transformers"
    supports_json_schema = False
    supports_lora = True

    def __init__(self, cfg: EngineConfig) -> None:
        super().__init__(cfg)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        opts = cfg.transformers
        self.model_path = resolve_model(cfg.model)
        self.device = torch.device(opts.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, opts.dtype) if opts.dtype != "auto" else "auto"
        self.model: Any = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype).to(self.device)
        self.model.eval()
        self.max_len = int(getattr(self.model.config, "max_position_embeddings", 0) or 10**9)
        self._adapters: dict[str, str] = {}  # resolved path -> PEFT adapter name

    def _error(self, request: ChatRequest, message: str, kind: ErrorKind = "other") -> ChatResult:
        return ChatResult(
            id=request.id, provider=self.provider, model=self.cfg.label, finish_reason="error",
            error=message, error_kind=kind, metadata=dict(request.metadata),
        )

    def _activate_adapter(self, path: str | None) -> None:
        """Load (once) and select a PEFT adapter, or select none for the base model."""
        if path is None:
            return
        key = str(Path(path).resolve())
        if not (Path(key) / "adapter_config.json").is_file():
            raise InputNotFoundError(f"LoRA adapter {path!r} has no adapter_config.json", path=path)
        if key not in self._adapters:
            from peft import PeftModel

            name = f"adapter{len(self._adapters) + 1}"
            if not self._adapters:
                self.model = PeftModel.from_pretrained(self.model, key, adapter_name=name).to(self.device)
                self.model.eval()
            else:
                self.model.load_adapter(key, adapter_name=name)
            self._adapters[key] = name
        self.model.set_adapter(self._adapters[key])

    def chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)
        groups: dict[tuple[str | None, str], list[tuple[int, list[int]]]] = {}
        for i, request in enumerate(requests):
            try:
                messages = [m.model_dump() for m in request.messages]
                text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                if len(ids) >= self.max_len:
                    raise ValueError(f"prompt has {len(ids)} tokens; the model's limit is {self.max_len}")
            except Exception as exc:  # noqa: BLE001 - one bad request must not sink the batch
                results[i] = self._error(request, f"{type(exc).__name__}: {exc}", "invalid_request")
                continue
            sampling = self.sampling_for(request)
            groups.setdefault((request.lora, sampling.model_dump_json()), []).append((i, ids))

        size = self.cfg.transformers.batch_size
        for (lora, sampling_json), members in groups.items():
            sampling = SamplingConfig.model_validate_json(sampling_json)
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                try:
                    self._generate(requests, chunk, lora, sampling, results)
                except Exception as exc:  # noqa: BLE001
                    for i, _ in chunk:
                        results[i] = self._error(requests[i], f"{type(exc).__name__}: {exc}")
        return [r for r in results if r is not None]

    def _generate(
        self,
        requests: list[ChatRequest],
        chunk: list[tuple[int, list[int]]],
        lora: str | None,
        sampling: SamplingConfig,
        results: list[ChatResult | None],
    ) -> None:
        import torch

        self._activate_adapter(lora)
        batch = self.tokenizer.pad({"input_ids": [ids for _, ids in chunk]}, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        longest = max(len(ids) for _, ids in chunk)
        max_new = max(1, min(sampling.max_tokens, self.max_len - longest))
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if sampling.temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            if lora is None and self._adapters:
                with self.model.disable_adapter():
                    out = self.model.generate(**batch, **gen_kwargs)
            else:
                out = self.model.generate(**batch, **gen_kwargs)
        elapsed = time.perf_counter() - start
        width = batch["input_ids"].shape[1]
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        for row, (i, ids) in enumerate(chunk):
            new = out[row, width:].tolist()
            finish = "length"
            if eos in new:
                new = new[: new.index(eos) + 1]
                finish = "stop"
            elif pad is not None:
                while new and new[-1] == pad:  # rows that ended early are padded to the batch width
                    new.pop()
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            for stop in sampling.stop or []:
                cut = text.find(stop)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            results[i] = ChatResult(
                id=requests[i].id, text=text, finish_reason=finish, provider=self.provider,
                model=self.cfg.label, tokens_in=len(ids), tokens_out=len(new),
                latency_s=elapsed, attempts=1, metadata=dict(requests[i].metadata),
            )

    def close(self) -> None:
        self.model = None
