"""The run folder: everything a run leaves behind, written so that nothing is ever half-written.

    runs/bake-20261126-101500/
        config.json        the configuration of every stage, as run
        metrics.jsonl      one JSON object per logged step, every stage ({"stage": "grpo", "step": 10, ...})
        samples.jsonl      sample completions, as text
        pretrain.safetensors + pretrain.json    one checkpoint per stage: tensors, then model config and state
        summary.json       the headline numbers
        *.png, report.md   plots and a report (see plots.py)

Checkpoints are safetensors (tensors only, nothing is unpickled) plus a JSON file that carries the model
config, the tokenizer and a SHA-256 of the tensors, so a truncated or corrupt file is caught before use.
Both files are written to a temporary name and renamed into place: a crash or Ctrl-C mid-write leaves
the previous checkpoint intact.
"""

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, not safetensors, or the wrong size."""


class RunFolderError(ValueError):
    """A run folder that would be overwritten, or cannot be resumed."""


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    valid = ("auto", "cpu", "cuda", "mps")
    if name not in valid:
        raise ValueError(f"device={name!r} is not one of {', '.join(valid)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but PyTorch sees no CUDA GPU; use --device cpu (or auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' but PyTorch sees no Apple GPU; use --device cpu (or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python and PyTorch, and return a CPU generator for data and sampling draws.

    It also sets one intra-op CPU thread unless OMP_NUM_THREADS says otherwise: TinyGPT's matrices are
    too small to split, and on a 2-core machine two threads that spin-wait on each other ran up to 10x
    slower (benchmarks/results.md). A fixed thread count also keeps float reductions, and so runs, identical."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_finite(loss: torch.Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise Diverged(
            f"{stage}: the loss became {loss.item()} at step {step}; the last good checkpoint is kept. "
            "Lower --lr or raise --grad-clip's strength (a smaller value) and run again."
        )


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one


def save_checkpoint(
    path: str | Path,
    model: TinyGPT,
    tokenizer: CharTokenizer,
    state: dict | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `path` (.safetensors) and its .json sidecar atomically. `state` is any JSON-able training state
    (step, stage, complete...); `extra_tensors` holds optimizer moments or RNG state for resuming."""
    if not isinstance(model, TinyGPT):  # a Hugging Face policy (--init hf:PATH): a save_pretrained folder instead
        from rlrecipes.lm.hf import save_hf

        return save_hf(path, model, tokenizer, state)
    path = Path(path).with_suffix(".safetensors")
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    del tensors["model.lm_head.weight"]  # tied to tok_emb.weight; safetensors refuses shared memory
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().cpu().contiguous()
    _write_atomic(path, lambda tmp: save_file(tensors, str(tmp)))
    meta = {
        "format": "rlrecipes-checkpoint-v1",
        "model_config": asdict(model.cfg),
        "tokenizer": {"type": "char", "chars": tokenizer.chars},
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "saved_at": time.time(),
        "state": state or {},
    }
    _write_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    return path


def checkpoint_meta(meta_path: str | Path) -> dict | None:
    """A checkpoint's JSON sidecar, or None where the file is missing, unreadable or not an rlrecipes checkpoint's."""
    try:
        meta = json.loads(Path(meta_path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == "rlrecipes-checkpoint-v1" else None


def checkpoint_complete(meta: dict | None) -> bool:
    """Whether a checkpoint marks its stage finished (an interrupted stage saves complete=False)."""
    return bool(meta and meta.get("state", {}).get("complete", False))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its most recently completed checkpoint)."""
    path = Path(path)
    if path.is_dir():
        metas = []
        for meta_path in path.glob("*.json"):
            if (meta := checkpoint_meta(meta_path)) is not None:
                metas.append((checkpoint_complete(meta), meta.get("saved_at", 0), meta_path))
        if not metas:
            raise CheckpointError(f"{path} holds no rlrecipes checkpoint (*.safetensors with a .json beside it)")
        return max(metas)[2].with_suffix(".safetensors")
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path} is not a .safetensors checkpoint or a run folder")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path: str | Path, device="cpu"):
    """Returns (model, tokenizer, state, extra_tensors). Every way a file can be bad is a CheckpointError.
    `hf:PATH` loads a local Hugging Face model folder instead (lm/hf.py), with no state or extra tensors."""
    if str(path).startswith("hf:"):
        from rlrecipes.lm.hf import load_hf

        return (*load_hf(str(path)[3:], device), {}, {})
    path = resolve_checkpoint(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise CheckpointError(f"{path} has no {meta_path.name} beside it (model config and tokenizer live there)")
    try:
        meta = json.loads(meta_path.read_text())
        model_cfg = GPTConfig(**meta["model_config"])
        tokenizer = CharTokenizer(meta["tokenizer"]["chars"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{meta_path} is not a valid checkpoint config ({err!r})") from None
    if hashlib.sha256(path.read_bytes()).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{path} is corrupt or truncated: its SHA-256 does not match {meta_path.name}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    model = TinyGPT(model_cfg)
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    weights["lm_head.weight"] = weights.get("tok_emb.weight")
    load_weights(model, weights, str(path))
    extra = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    return model.to(device), tokenizer, meta.get("state", {}), extra


def load_weights(model: TinyGPT, weights: dict, source: str) -> None:
    """load_state_dict with a message that names the mismatch instead of a wall of keys."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if weights.get(name) is None:
            raise CheckpointError(f"{source} has no tensor {name!r}: it is not a TinyGPT checkpoint")
        if weights[name].shape != tensor.shape:
            raise CheckpointError(
                f"{source} is from another model size: {name} is {tuple(weights[name].shape)} there, "
                f"{tuple(tensor.shape)} here; start from a matching checkpoint or change the model flags"
            )
    model.load_state_dict(weights)


def optimizer_tensors(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Adam's moments as named tensors (safetensors holds tensors only, so no pickled optimizer state)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for p, s in optimizer.state.items():
        for k, v in s.items():
            out[f"optim.{names[id(p)]}.{k}"] = torch.as_tensor(v)
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, tensors: dict) -> None:
    for name, p in model.named_parameters():
        state = {
            k.rsplit(".", 1)[1]: v.to(p.device) for k, v in tensors.items() if k.rsplit(".", 1)[0] == f"optim.{name}"
        }
        if state:
            optimizer.state[p] = state


def run_dir_for(out: str | Path | None, name: str) -> Path:
    """`out` if given, else runs/<name>-<timestamp>: known before the folder is made, so settings that name
    files inside it can be checked first."""
    return Path(out) if out else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class Run:
    """A run folder with its open logs. Create it with `Run.create`; recipes log through it."""

    dir: Path
    stage: str = "run"
    history: list = field(default_factory=list)

    @classmethod
    def create(cls, out: str | None, name: str, resume: bool = False, overwrite: bool = False) -> "Run":
        run_dir = run_dir_for(out, name)
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite contradict each other; pick one")
        has_run = run_dir.exists() and any(run_dir.iterdir())
        if has_run and not (resume or overwrite):
            raise RunFolderError(
                f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        if resume and not has_run:
            raise RunFolderError(f"--resume: {run_dir} holds no run to resume")
        if has_run and overwrite:
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(dir=run_dir)

    def write_json(self, name: str, obj) -> None:
        _write_atomic(self.dir / name, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, default=str)))

    def read_json(self, name: str, default=None):
        path = self.dir / name
        return json.loads(path.read_text()) if path.exists() else default

    def log(self, step: int, **metrics) -> None:
        row = {"stage": self.stage, "step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.history.append(row)
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def log_samples(self, step: int, prompts, completions, rewards=None) -> None:
        with open(self.dir / "samples.jsonl", "a") as f:
            for i, (p, c) in enumerate(zip(prompts, completions)):
                row = {"stage": self.stage, "step": step, "prompt": p, "completion": c}
                if rewards is not None:
                    row["reward"] = float(rewards[i])
                f.write(json.dumps(row) + "\n")

    def save(
        self, model, tokenizer, step: int, complete: bool, optimizer=None, generator=None, name=None, **state
    ) -> Path:
        """This stage's checkpoint, `<run>/<stage>.safetensors`; with the optimizer and data generator when
        the stage is not complete yet, so `--resume` continues exactly where it stopped. `name` keeps a
        snapshot beside it instead (`<run>/<name>.safetensors`, e.g. grpo-step-0010), which resume ignores."""
        extra = optimizer_tensors(optimizer, model) if optimizer is not None else {}
        if generator is not None:
            extra["rng.generator"] = generator.get_state()
        state = {"stage": self.stage, "step": step, "complete": complete, **state}
        return save_checkpoint(self.dir / (name or self.stage), model, tokenizer, state, extra)

    def resume(self, model, optimizer, generator) -> int:
        """Load this stage's last checkpoint into model, optimizer and generator; returns the step to start
        from (0 when there is none). Metrics logged after that checkpoint are dropped: they will be redone."""
        if not isinstance(model, TinyGPT):
            raise RunFolderError("--resume works for TinyGPT runs only: an hf: checkpoint holds weights, no optimizer")
        path = self.dir / f"{self.stage}.safetensors"
        if not path.exists():
            return 0
        saved, _, state, extra = load_checkpoint(path, device=next(model.parameters()).device)
        if saved.cfg != model.cfg:
            raise CheckpointError(f"{path} is from another model size ({saved.cfg}); this run asks for {model.cfg}")
        model.load_state_dict(saved.state_dict())
        restore_optimizer(optimizer, model, extra)
        if "rng.generator" in extra:
            generator.set_state(extra["rng.generator"])
        step = state["step"]
        kept = [r for r in self.metrics() if not (r["stage"] == self.stage and r["step"] > step)]
        _write_atomic(
            self.dir / "metrics.jsonl", lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        )
        return step

    def metrics(self) -> list[dict]:
        path = self.dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _plain(v):
    return v.item() if isinstance(v, torch.Tensor) else v
