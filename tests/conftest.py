"""Shared fixtures: one small pretrained + SFT arithmetic model for every RL test, and one small
pretrained + SFT reviews model with its reward model for every preference test.

Training them takes about a minute each on 2 cores, so each is made once per session and cached in
pytest's cache folder under a hash of the code that produces it: an edit to the model, a task or those
recipes trains a fresh one; a clean checkout (CI) always trains them.
"""

import hashlib
import json
from pathlib import Path

import pytest

import rlrecipes

SOURCES = [
    "lm/model.py",
    "lm/tokenizer.py",
    "lm/generate.py",
    "tasks",
    "recipes/pretrain.py",
    "recipes/sft.py",
    "runs.py",
]

# Small but real: the pretrained model plateaus at the corpus's sloppy habit, SFT lifts it part way.
PRETRAIN = dict(steps=600, batch_size=64, eval_every=0, save_every=0, seed=0, device="cpu")
SFT = dict(steps=30, n_examples=300, eval_every=0, save_every=0, seed=0, device="cpu")


def _code_hash(sources=SOURCES, settings=(PRETRAIN, SFT)) -> str:
    root = Path(rlrecipes.__file__).parent
    h = hashlib.sha256(repr(settings).encode())
    for rel in sources:
        for path in sorted((root / rel).rglob("*.py")) if (root / rel).is_dir() else [root / rel]:
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def trained_models(request, tmp_path_factory) -> dict:
    """{"pretrain": path, "sft": path, "pretrain_accuracy": float, "sft_accuracy": float}."""
    from rlrecipes.recipes import pretrain, sft
    from rlrecipes.runs import load_checkpoint
    from rlrecipes.tasks import evaluate, get_task

    name = f"rlrecipes-models-{_code_hash()}"
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider: train into a temp folder
    folder = Path(cache.mkdir(name) if cache else tmp_path_factory.mktemp(name))
    if not (folder / "sft.json").exists():
        pretrain.train(pretrain.Config(out=str(folder / "pretrain"), overwrite=True, **PRETRAIN))
        sft.train(sft.Config(init=str(folder / "pretrain"), out=str(folder / "sft"), overwrite=True, **SFT))
        for stage in ("pretrain", "sft"):  # flat copies, so a half-trained cache never looks complete
            for ext in ("safetensors", "json"):
                (folder / f"{stage}.{ext}").write_bytes((folder / stage / f"{stage}.{ext}").read_bytes())
    task = get_task("arithmetic")
    out = {}
    for stage in ("pretrain", "sft"):
        model, tokenizer, _, _ = load_checkpoint(folder / f"{stage}.safetensors")
        out[stage] = str(folder / f"{stage}.safetensors")
        out[f"{stage}_accuracy"] = evaluate(model, tokenizer, task)[0]
    return out


@pytest.fixture(scope="session")
def sft_checkpoint(trained_models) -> str:
    """Path to a small arithmetic SFT checkpoint: right often enough to get reward, wrong often enough to learn."""
    return trained_models["sft"]


# Small but real (seconds of CPU time, single thread, measured on this project's machine): pretraining
# about 45 s, SFT 4 s, the reward model 30 s (pair sampling included).
REVIEWS_PRETRAIN = dict(task="reviews", steps=1500, batch_size=32, context_len=64, n_layer=2, n_head=4, n_embd=64,
                        n_documents=20000, warmup_steps=20, eval_every=0, save_every=0, seed=0, device="cpu")  # fmt: skip
REVIEWS_SFT = dict(task="reviews", steps=60, lr=1e-3, eval_every=0, save_every=0, seed=0, device="cpu")
REVIEWS_RM = dict(eval_every=0, seed=0, device="cpu")
REVIEWS_SOURCES = [*SOURCES, "recipes/reward_model.py", "preferences.py"]


def _cached_folder(request, tmp_path_factory, name: str) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider: train into a temp folder
    return Path(cache.mkdir(name) if cache else tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def reviews_sft(request, tmp_path_factory) -> str:
    """A small pretrained + SFT reviews model (its checkpoint path): sometimes warm and specific, sometimes not."""
    from rlrecipes.recipes import pretrain, sft

    settings = (REVIEWS_PRETRAIN, REVIEWS_SFT)
    folder = _cached_folder(request, tmp_path_factory, f"rlrecipes-reviews-{_code_hash(SOURCES, settings)}")
    if not (folder / "sft.json").exists():
        pretrain.train(pretrain.Config(out=str(folder / "pretrain"), overwrite=True, **REVIEWS_PRETRAIN))
        sft.train(sft.Config(init=str(folder / "pretrain"), out=str(folder / "sft"), overwrite=True, **REVIEWS_SFT))
        for ext in ("safetensors", "json"):  # a flat copy last, so a half-trained cache never looks complete
            (folder / f"sft.{ext}").write_bytes((folder / "sft" / f"sft.{ext}").read_bytes())
    return str(folder / "sft.safetensors")


@pytest.fixture(scope="session")
def reviews_rm(request, tmp_path_factory, reviews_sft) -> dict:
    """A reward model trained on the reviews SFT model's own pairs: {"dir": run folder, "summary": its summary.json,
    "history": its metrics.jsonl rows}. `--reward reward-model:<dir>` optimises it."""
    from rlrecipes.recipes import reward_model

    settings = (REVIEWS_PRETRAIN, REVIEWS_SFT, REVIEWS_RM)
    folder = _cached_folder(request, tmp_path_factory, f"rlrecipes-reviews-rm-{_code_hash(REVIEWS_SOURCES, settings)}")
    run_dir = folder / "rm"
    if not (folder / "done").exists():
        reward_model.train(reward_model.Config(init=reviews_sft, out=str(run_dir), overwrite=True, **REVIEWS_RM))
        (folder / "done").write_text("")  # last, so a half-trained cache never looks complete
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return {"dir": run_dir, "summary": json.loads((run_dir / "summary.json").read_text()), "history": history}
