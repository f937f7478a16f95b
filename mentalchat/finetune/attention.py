"""Document-aware attention for packed, padding-free batches without the flash-attn package.

TRL's padding-free collator flattens a micro-batch into one sequence and passes the documents'
boundaries (``cu_seq_lens_q``). ``flash_attention_2`` uses them but needs the ``flash-attn`` wheel;
``sdpa`` instead gets a dense block-diagonal mask over the whole flattened sequence, so attention
cost grows with the square of the micro-batch's token count. ``mentalchat_varlen`` hands the
boundaries to PyTorch's own variable-length flash kernel (``torch.nn.attention.varlen``, CUDA) and
on CPU runs causal SDPA document by document, so each token only ever attends within its own
example. Select it with ``train.attn_implementation: mentalchat_varlen`` (packing required).
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["VARLEN", "register_varlen_attention", "varlen_attention_forward"]

VARLEN = "mentalchat_varlen"
_REGISTERED = False


def _boundaries(kwargs: dict[str, Any], length: int, device: Any) -> tuple[Any, int]:
    import torch

    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None:
        max_len = kwargs.get("max_length_q")
        cu = cu.to(device=device, dtype=torch.int32)
        return cu, int(max_len) if max_len is not None else int(cu.diff().max())
    pos = kwargs.get("position_ids")
    if pos is not None:
        starts = (pos.reshape(-1) == 0).nonzero().flatten().to(torch.int32)
        if starts.numel() == 0 or int(starts[0]) != 0:
            starts = torch.cat([torch.zeros(1, dtype=torch.int32, device=starts.device), starts])
        cu = torch.cat([starts, torch.tensor([length], dtype=torch.int32, device=starts.device)]).to(device)
        return cu, int(cu.diff().max())
    cu = torch.tensor([0, length], dtype=torch.int32, device=device)
    return cu, length


def _torch_varlen(q: Any, k: Any, v: Any, cu: Any, max_len: int, scale: float | None, groups: int) -> Any:
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    kw: dict[str, Any] = {"scale": scale} if "scale" in params else {}
    if "is_causal" in params:
        kw["is_causal"] = True
    else:
        kw["window_size"] = (-1, 0)  # causal
    if groups > 1:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, **kw)


def varlen_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention function: (batch, heads, seq, dim) in, (batch, seq, heads, dim) out."""
    import torch
    import torch.nn.functional as F

    if attention_mask is not None:
        raise ValueError(f"{VARLEN} takes padding-free batches only (set train.packing: true)")
    batch, heads, length, dim = query.shape
    if batch != 1:
        raise ValueError(f"{VARLEN} expects one flattened sequence per batch, got batch size {batch}")
    groups = heads // key.shape[1]
    cu, max_len = _boundaries(kwargs, length, query.device)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (seq, heads, dim)
    if query.is_cuda and dropout == 0.0:
        out = _torch_varlen(q.contiguous(), k.contiguous(), v.contiguous(), cu, max_len, scaling, groups)
    else:
        pieces = []
        for start, end in zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True):
            if end <= start:
                continue
            qs, ks, vs = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
            o = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, scale=scaling, is_causal=True,
                                               enable_gqa=groups > 1)
            pieces.append(o[0].transpose(0, 1))
        out = torch.cat(pieces, dim=0)
    return out.unsqueeze(0), None


def register_varlen_attention() -> str:
    """Make ``attn_implementation="mentalchat_varlen"`` known to transformers (idempotent)."""
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface

        AttentionInterface.register(VARLEN, varlen_attention_forward)
        _REGISTERED = True
    return VARLEN
