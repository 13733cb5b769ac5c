"""TinyGPT: a small pre-LayerNorm causal transformer with a KV cache (after nanoGPT).

Read it bottom-up like nanoGPT: attention -> MLP -> block -> model. It is GPT-2's architecture
(learned positions, pre-LN, GELU MLP, tied embeddings), shrunk to run on a laptop CPU.

Two things beyond a plain GPT, both for RL on batches of prompts:
- `attention_mask` (B, T) marks real tokens (1) and padding (0). Prompts are left-padded so every
  completion starts at the same column; positions count real tokens only, so padding changes nothing.
- `KVCache` stores every layer's keys and values, so sampling feeds one new token per step instead
  of the whole sequence again.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 32  # set from the tokenizer
    context_len: int = 64  # longest sequence (prompt + completion) the model can see
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    dropout: float = 0.0  # off by default: tiny data, short runs, and RL wants deterministic log-probs

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        for name in ("vocab_size", "context_len", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer")


class KVCache:
    """Keys and values of all layers, preallocated for `max_len` tokens: (layer, k|v, B, H, T, D)."""

    def __init__(self, cfg: GPTConfig, batch_size: int, max_len: int, device, dtype=torch.float32):
        head_dim = cfg.n_embd // cfg.n_head
        self.kv = torch.zeros(cfg.n_layer, 2, batch_size, cfg.n_head, max_len, head_dim, device=device, dtype=dtype)
        self.pos = 0  # tokens stored so far


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x, attn_mask, cache: KVCache | None, layer: int):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if cache is not None:  # append this step's keys and values, then attend over everything so far
            cache.kv[layer, 0, :, :, cache.pos : cache.pos + T] = k
            cache.kv[layer, 1, :, :, cache.pos : cache.pos + T] = v
            k, v = cache.kv[layer, 0, :, :, : cache.pos + T], cache.kv[layer, 1, :, :, : cache.pos + T]
        dropout = self.dropout if self.training else 0.0
        if attn_mask is None:  # plain causal attention over unpadded sequences: the fast path for pretraining
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.n_embd), CausalSelfAttention(cfg)
        self.ln2, self.mlp = nn.LayerNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x, attn_mask, cache, layer):
        x = x + self.attn(self.ln1(x), attn_mask, cache, layer)  # pre-LN: normalise the input of each sub-layer
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.context_len, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * cfg.n_layer) ** 0.5)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, input_ids, attention_mask=None, cache: KVCache | None = None, return_hidden: bool = False):
        """Logits (B, T, V) for `input_ids` (B, T). With a cache, `input_ids` are the new tokens only and
        `attention_mask` covers every token so far (past + new). With `return_hidden`, also the final hidden
        states (B, T, C), for heads that read them (PPO's value head, a reward model's score)."""
        B, T = input_ids.shape
        past = cache.pos if cache is not None else 0
        if past + T > self.cfg.context_len:
            raise ValueError(f"sequence of {past + T} tokens is longer than context_len={self.cfg.context_len}")
        if attention_mask is None:
            pos = torch.arange(past, past + T, device=input_ids.device).expand(B, T)
            attn_mask = None if cache is None else self._attn_mask(torch.ones(B, past + T, device=input_ids.device), T)
        else:
            pos = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]  # positions count real tokens only
            attn_mask = self._attn_mask(attention_mask, T)
        x = self.tok_emb(input_ids) + self.pos_emb(pos)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask, cache, i)
        if cache is not None:
            cache.pos += T
        hidden = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(hidden)  # (B, T, V)
        return (logits, hidden) if return_hidden else logits

    @staticmethod
    def _attn_mask(attention_mask, T):
        """(B, 1, T, S) boolean: query i (the last T of S tokens) sees key j if j is real and not in its future.
        Each token always sees itself, so a padding row never has zero keys (which would give NaN)."""
        S = attention_mask.shape[1]
        q_idx = torch.arange(S - T, S, device=attention_mask.device)[:, None]  # (T, 1)
        k_idx = torch.arange(S, device=attention_mask.device)[None, :]  # (1, S)
        causal = k_idx <= q_idx  # (T, S)
        real = attention_mask.bool()[:, None, :] | (k_idx == q_idx)  # (B, T, S)
        return (causal & real)[:, None]  # (B, 1, T, S)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for `generate`: every policy that has this method is sampled with a cache."""
        return KVCache(self.cfg, batch_size, max_len, self.tok_emb.weight.device, self.tok_emb.weight.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
