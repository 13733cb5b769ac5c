"""Sampling speed: generate() with the KV cache against recomputing the whole prefix every step.

Without a cache, step t runs the model over all P + t tokens so far, so a completion of L tokens costs
about L^2 / 2 token-forwards; with the cache each step runs one new token against stored keys and
values, about L token-forwards. The cache should therefore win by a factor that grows with L.

Also measured, because evaluate() runs it every few steps of every recipe: greedy decoding of the
500 held-out arithmetic prompts (5 new tokens), inside torch.no_grad (what generate() uses) against
inside torch.inference_mode.

    python benchmarks/bench_generate.py [--quick]
"""

import random

import torch
from common import cli, finish, ratio, row, side_by_side, stats

from rlrecipes.lm.generate import generate
from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.tasks import get_task

BATCH = 8  # prompts sampled together (32 would make the uncached L=256 side take a minute per repeat here)
LENGTHS = (16, 64, 256)  # completion lengths
PROMPT_LEN = 7  # "<bos>47+38="


def main():
    args = cli(__doc__)
    repeats = 2 if args.quick else 5
    torch.manual_seed(0)
    task = get_task("arithmetic")
    tok = CharTokenizer(task.alphabet)
    # The default pretrain shape (3 layers, 4 heads, 96 wide), with a context long enough for 256 new tokens.
    model = TinyGPT(GPTConfig(tok.vocab_size, PROMPT_LEN + max(LENGTHS), n_layer=3, n_head=4, n_embd=96)).eval()
    prompts = [tok.encode(p, bos=True) for p in task.train_prompts(BATCH, random.Random(0))]
    g = torch.Generator().manual_seed(0)

    def sample(length, use_cache):
        def fn():  # eos_id=-1 never matches, so every row runs the full length: random weights emit EOS too
            generate(model, prompts, length, eos_id=-1, pad_id=tok.pad_id, generator=g, use_cache=use_cache)
            return BATCH * length  # new tokens

        return fn

    rows, raw = [], {}
    for length in LENGTHS:
        n = repeats if length < 256 else max(1, repeats - 2)  # the uncached L=256 side takes ~20 s a repeat here
        print(f"  L={length}: {n} repeats", flush=True)
        rates = side_by_side({"cache": sample(length, True), "no_cache": sample(length, False)}, n)
        raw[f"L{length}"] = rates
        rows.append(
            row("generate", f"tokens/s with KV cache, L={length}, batch {BATCH}", stats(rates["cache"]), fmt="{:.0f}")
        )
        rows.append(row("generate", f"tokens/s without cache, L={length}", stats(rates["no_cache"]), fmt="{:.0f}"))
        rows.append(
            row(
                "generate",
                f"KV-cache speed-up, L={length}",
                ratio(rates["cache"], rates["no_cache"]),
                "x",
                "cache / no cache",
            )
        )

    # evaluate()'s shape: 500 held-out prompts, greedy, max 5 new tokens (EOS may end it sooner; random weights rarely do).
    held = [tok.encode(p, bos=True) for p in task.heldout_prompts()]

    def greedy(mode):
        def fn():
            with mode():
                generate(model, held, task.max_completion_chars + 2, tok.eos_id, tok.pad_id, greedy=True)
            return len(held)  # prompts answered

        return fn

    rates = side_by_side(
        {"inference_mode": greedy(torch.inference_mode), "no_grad": greedy(torch.no_grad)}, repeats * 2 + 1
    )
    raw["evaluate"] = rates
    rows.append(
        row("generate", "evaluate()-shaped greedy decoding, prompts/s (no_grad)", stats(rates["no_grad"]), fmt="{:.0f}")
    )
    rows.append(
        row(
            "generate",
            "inference_mode / no_grad speed, evaluate()-shaped",
            ratio(rates["inference_mode"], rates["no_grad"]),
            "x",
        )
    )
    finish(args, {"name": "generate", "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
