"""Pretraining speed: TinyGPT against transformers' GPT2LMHeadModel of the same size, and how close
TinyGPT comes to the machine's matmul peak.

Both models get the same shape (the default `rlrecipes run pretrain` model: 3 layers, 4 heads, 96 wide,
context 32, vocabulary 15), the same batches from the arithmetic corpus (64 documents, cut like
pretrain.train to the longest document: T = 10 positions), the same loss code (recipes/pretrain.py's
next_token_loss), the same AdamW and gradient clipping. One step = forward, backward, clip, AdamW.

Achieved FLOP/s uses the usual estimate for a transformer's training step (Kaplan et al. 2020; PaLM, app. B):

    FLOPs/step = 6 * N * tokens  +  12 * n_layer * n_embd * T * tokens

N counts the parameters that do matmuls: everything but the position embedding (the tied token
embedding counts once, for the output projection). The second term is attention's scores and
weighted sum (forward + backward) over the full T x T square; the causal mask lets a kernel skip
about half of it, so this slightly flatters small T. Peak = 2 * n^3 / seconds of one fp32 torch.mm
of two n x n matrices at the same thread count, the best of the repeats.

Also: the same TinyGPT step with AdamW(fused=True), the fused CPU kernel, against pretrain.py's default.

Threads: the same TinyGPT step with torch.set_num_threads(1) against 2, side by side, and again in a
child process with OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning while they wait).

    python benchmarks/bench_pretrain.py [--quick]
"""

import copy
import json
import os
import random
import subprocess
import sys

import torch
from common import cli, finish, ratio, row, side_by_side, stats

from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.recipes.pretrain import Config, build_corpus, next_token_loss
from rlrecipes.tasks import get_task

MM_N = 2048  # matmul size for the peak
THREAD_RUNS = {False: (5, 4), True: (3, 2)}  # (steps, repeats) per side of the threads comparison, full / --quick


def build(quick: bool):
    """TinyGPT and GPT-2 of the default pretrain size, their optimisers, and a batch sampler."""
    import transformers

    cfg = Config()
    task = get_task(cfg.task)
    tok = CharTokenizer(task.alphabet)
    corpus = build_corpus(task, tok, 20_000, cfg.context_len, seed=0)  # (N, context_len + 1), padded with PAD
    corpus = corpus[:, : int((corpus != tok.pad_id).sum(1).max())]  # as pretrain.train: no column that is padding only
    g = torch.Generator().manual_seed(0)

    def batch():
        return corpus[torch.randint(0, len(corpus), (cfg.batch_size,), generator=g)]  # (B, T + 1)

    torch.manual_seed(0)
    tiny = TinyGPT(GPTConfig(tok.vocab_size, cfg.context_len, cfg.n_layer, cfg.n_head, cfg.n_embd))
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=tok.vocab_size,
            n_positions=cfg.context_len,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            activation_function="gelu",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=tok.bos_id,
            eos_token_id=tok.eos_id,
            pad_token_id=tok.pad_id,
        )  # fmt: skip
    )
    assert tiny.num_params() == gpt2.num_parameters(), (tiny.num_params(), gpt2.num_parameters())
    fused = copy.deepcopy(tiny)  # the same TinyGPT, with AdamW's fused CPU kernel (one op instead of a foreach chain)
    models = {
        "tinygpt": (tiny, lambda x: tiny(x), False),
        "gpt2": (gpt2, lambda x: gpt2(input_ids=x).logits, False),
        "tinygpt_fused_adamw": (fused, lambda x: fused(x), True),
    }
    steps = {}
    for name, (model, forward, use_fused) in models.items():
        model.train()
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay, fused=use_fused or None
        )

        def step(model=model, forward=forward, opt=opt):
            rows = batch()
            loss = next_token_loss(forward(rows[:, :-1]), rows[:, 1:], tok.pad_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()

        steps[name] = step
    return cfg, tiny, steps, corpus.shape[1] - 1  # T: the length each step really trains on


def flops_per_step(model: TinyGPT, batch_size: int, T: int) -> float:
    c = model.cfg
    n = model.num_params() - model.pos_emb.weight.numel()  # matmul parameters (tied embedding counted once)
    tokens = batch_size * T
    return 6 * n * tokens + 12 * c.n_layer * c.n_embd * T * tokens


def threads_in_child(quick: bool) -> dict:
    """1 vs 2 threads in a fresh process with OMP_WAIT_POLICY=PASSIVE (it must be set before torch loads)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, __file__, "--threads-only"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def thread_rates(step, n_steps: int, repeats: int) -> dict[str, list[float]]:
    def at(threads):
        def fn():
            torch.set_num_threads(threads)
            for _ in range(n_steps):
                step()
            return n_steps

        return fn

    before = torch.get_num_threads()
    rates = side_by_side({"1": at(1), "2": at(2)}, repeats)
    torch.set_num_threads(before)
    return rates


def main():
    if "--threads-only" in sys.argv:  # the child of threads_in_child()
        quick = "--quick" in sys.argv
        _, _, steps, _ = build(quick)
        steps["tinygpt"]()  # warm-up
        print(json.dumps(thread_rates(steps["tinygpt"], *THREAD_RUNS[quick])))
        return
    args = cli(__doc__)
    quick = args.quick
    repeats, n_steps = (3, 5) if quick else (5, 10)
    random.seed(0)
    cfg, tiny, steps, T = build(quick)
    for s in steps.values():
        s()  # warm-up: first-call allocations, AdamW state
    tokens = cfg.batch_size * T  # positions trained on per step (padding after EOS included: it is computed)
    a, b = torch.randn(MM_N, MM_N), torch.randn(MM_N, MM_N)

    def run_steps(step):
        def fn():
            for _ in range(n_steps):
                step()
            return n_steps * tokens

        return fn

    def matmul():
        torch.mm(a, b)
        return 2 * MM_N**3  # FLOPs

    sides = {name: run_steps(step) for name, step in steps.items()} | {"matmul": matmul}
    rates = side_by_side(sides, repeats)
    flops = flops_per_step(tiny, cfg.batch_size, T)
    achieved = [r / tokens * flops for r in rates["tinygpt"]]  # FLOP/s, per repeat
    peak = max(rates["matmul"])
    mfu = [x / m for x, m in zip(achieved, rates["matmul"])]  # against the matmul measured in the same repeat
    rows = [
        row(
            "pretrain",
            f"TinyGPT training tokens/s (B={cfg.batch_size}, T={T}, {tiny.num_params():,} params)",
            stats(rates["tinygpt"]),
            fmt="{:.0f}",
        ),
        row("pretrain", "GPT2LMHeadModel (same size) training tokens/s", stats(rates["gpt2"]), fmt="{:.0f}"),
        row("pretrain", "TinyGPT / GPT2LMHeadModel speed", ratio(rates["tinygpt"], rates["gpt2"]), "x"),
        row(
            "pretrain",
            "TinyGPT with AdamW(fused=True) / as pretrain.py (foreach)",
            ratio(rates["tinygpt_fused_adamw"], rates["tinygpt"]),
            "x",
            "same model, same batches",
        ),
        row(
            "pretrain",
            f"TinyGPT achieved GFLOP/s ({flops / 1e9:.2f} GFLOP/step)",
            stats([x / 1e9 for x in achieved]),
            fmt="{:.2f}",
        ),
        row(
            "pretrain",
            f"fp32 torch.mm {MM_N}x{MM_N} GFLOP/s (peak = best)",
            stats([x / 1e9 for x in rates["matmul"]]),
            note=f"peak {peak / 1e9:.1f}",
            fmt="{:.1f}",
        ),
        row("pretrain", "TinyGPT share of matmul peak (same repeat)", stats([100 * x for x in mfu]), "%", fmt="{:.1f}"),
    ]
    raw = {"rates": rates, "flops_per_step": flops, "peak_flops": peak}

    t = thread_rates(steps["tinygpt"], *THREAD_RUNS[quick])
    raw["threads"] = t
    rows.append(row("threads", "TinyGPT pretrain steps/s, 1 thread", stats(t["1"]), fmt="{:.2f}"))
    rows.append(row("threads", "TinyGPT pretrain steps/s, 2 threads", stats(t["2"]), fmt="{:.2f}"))
    rows.append(
        row(
            "threads", "2 threads / 1 thread speed (default OpenMP)", ratio(t["2"], t["1"]), "x", ">1: two threads help"
        )
    )
    if not quick:  # a second process: torch, transformers and the corpus again (~20 s here)
        p = threads_in_child(quick)
        raw["threads_passive"] = p
        passive = ratio(p["2"], p["1"])
        rows.append(row("threads", "2 threads / 1 thread, OMP_WAIT_POLICY=PASSIVE", passive, "x", "child process"))
    finish(args, {"name": "pretrain", "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
