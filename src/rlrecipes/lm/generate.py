"""Batched sampling with a KV cache, and the per-token log-probabilities every RL recipe needs.

Layout of a batch of samples (the same in every recipe):

    input_ids       <pad> <pad> <bos> 1 2 + 3 4 =  4 6 <eos> <pad>     prompts left-padded, completions right-padded
    attention_mask    0     0     1   1 1 1 1 1 1  1 1   1     0       1 on every real token
    completion_mask   0     0     0   0 0 0 0 0 0  1 1   1     0       1 on the tokens the policy chose (EOS included)

Left padding puts every prompt's last token in the same column, so one forward pass per step
serves the whole batch. The policy is any callable `policy(input_ids, attention_mask) -> logits`; one
with a `new_cache(batch_size, max_len)` method (TinyGPT, lm/hf.py's HFPolicy) is sampled with a KV cache:
`policy(new_tokens, attention_mask, cache=cache)`, O(T) work per token instead of O(T^2).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Samples:
    input_ids: torch.Tensor  # (B, T) prompt + completion
    attention_mask: torch.Tensor  # (B, T) 1 on real tokens
    completion_mask: torch.Tensor  # (B, T) 1 on sampled tokens, EOS included
    prompt_len: int  # column where completions start

    @property
    def completion_ids(self) -> list[list[int]]:
        return [row[m.bool()].tolist() for row, m in zip(self.input_ids, self.completion_mask)]

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(1)  # (B,)

    def select(self, rows: torch.Tensor) -> "Samples":
        """The samples of the given rows (a boolean mask or indices)."""
        return Samples(self.input_ids[rows], self.attention_mask[rows], self.completion_mask[rows], self.prompt_len)


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)  # padded as Python lists, then one tensor: not one small copy per row
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long, device=device)
    return ids, mask


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device="cpu") -> Samples:
    """Teacher forcing: given prompts and completions (token ids), the same layout `generate` returns."""
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    width = max(len(c) for c in completions)
    comp = torch.tensor([list(c) + [pad_id] * (width - len(c)) for c in completions], dtype=torch.long, device=device)
    comp_mask = torch.tensor(
        [[1] * len(c) + [0] * (width - len(c)) for c in completions], dtype=torch.long, device=device
    )
    completion_mask = torch.cat([torch.zeros_like(mask), comp_mask], 1)
    return Samples(torch.cat([ids, comp], 1), torch.cat([mask, comp_mask], 1), completion_mask, prompt_len=P)


def filter_logits(logits, top_k: int | None = None, top_p: float | None = None):
    """Keep the top-k tokens and/or the smallest set whose probability reaches top_p; the rest get -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # drop a token once the ones before it already reach top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()  # not inference_mode: RL trains on these tensors afterwards
def generate(
    policy,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Samples:
    """Sample up to `max_new_tokens` tokens after each prompt; a row stops at its first EOS."""
    device = next(policy.parameters()).device
    if generator is not None and generator.device != device:  # seed_everything's CPU generator, a GPU policy:
        seed = int(torch.randint(2**62, (1,), generator=generator))  # draw from it a seed for one on the GPU
        generator = torch.Generator(device).manual_seed(seed)
    ids, mask = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    cache = policy.new_cache(B, P + max_new_tokens) if use_cache and hasattr(policy, "new_cache") else None
    done = torch.zeros(B, dtype=torch.bool, device=device)
    completion = torch.zeros_like(ids)
    step_input = ids
    for _ in range(max_new_tokens):
        if cache is not None:
            logits = policy(step_input, attention_mask=mask, cache=cache)[:, -1]  # (B, V)
        else:
            logits = policy(ids, attention_mask=mask)[:, -1]  # recompute the whole prefix every step
        if greedy:
            next_tok = logits.argmax(-1)  # (B,)
        else:
            probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
            next_tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
        next_tok = torch.where(done, torch.full_like(next_tok, pad_id), next_tok)
        ids = torch.cat([ids, next_tok[:, None]], 1)
        mask = torch.cat([mask, (~done).long()[:, None]], 1)
        completion = torch.cat([completion, (~done).long()[:, None]], 1)
        done |= next_tok == eos_id
        step_input = next_tok[:, None]
        if done.all():
            break
    return Samples(input_ids=ids, attention_mask=mask, completion_mask=completion, prompt_len=P)


def sequence_logprobs(policy, samples: Samples, with_entropy: bool = False):
    """Log-probability of each completion token under `policy`, shape (B, T-1), aligned with
    `samples.completion_mask[:, 1:]` and zero elsewhere. Token t is scored by the logits at t-1.
    With `with_entropy`, also the entropy of the policy's next-token distribution at those positions."""
    logits = policy(samples.input_ids, attention_mask=samples.attention_mask)[:, :-1].float()  # (B, T-1, V)
    targets = samples.input_ids[:, 1:]  # (B, T-1)
    mask = samples.completion_mask[:, 1:].float()  # (B, T-1)
    logp_all = F.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1) * mask  # (B, T-1)
    if not with_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1) * mask  # (B, T-1)
    return logp, entropy
