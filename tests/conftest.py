"""Shared fixtures: one small pretrained + SFT arithmetic model for every RL test.

Training it takes about a minute on 2 cores, so it is made once per session and cached in pytest's
cache folder under a hash of the code that produces it: an edit to the model, a task or those two
recipes trains a fresh one; a clean checkout (CI) always trains it.
"""

import hashlib
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


def _code_hash() -> str:
    root = Path(rlrecipes.__file__).parent
    h = hashlib.sha256(repr((PRETRAIN, SFT)).encode())
    for rel in SOURCES:
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
