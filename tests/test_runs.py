"""The run folder and checkpoints: atomic, verified, never unpickled, clear errors."""

import hashlib
import json

import pytest
import torch

from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.runs import (
    CheckpointError,
    Run,
    RunFolderError,
    load_checkpoint,
    optimizer_tensors,
    resolve_checkpoint,
    resolve_device,
    restore_optimizer,
    save_checkpoint,
)

TOK = CharTokenizer("0123456789+=")


def model(n_embd=32, seed=0):
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=TOK.vocab_size, context_len=16, n_layer=1, n_head=2, n_embd=n_embd))


def test_checkpoint_round_trip(tmp_path):
    m = model()
    path = save_checkpoint(tmp_path / "ckpt", m, TOK, state={"step": 7})
    assert path.name == "ckpt.safetensors" and (tmp_path / "ckpt.json").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind
    loaded, tok, state, _ = load_checkpoint(path)
    assert state["step"] == 7 and tok.itos == TOK.itos
    x = torch.randint(3, TOK.vocab_size, (2, 8))
    assert torch.equal(m(x), loaded(x))
    assert loaded.lm_head.weight is loaded.tok_emb.weight  # tying survives the round trip


def test_optimizer_state_round_trip(tmp_path):
    m = model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randint(3, 10, (2, 5))).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c", m, TOK, extra_tensors=optimizer_tensors(opt, m))
    m2, _, _, extra = load_checkpoint(tmp_path / "c.safetensors")
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
    restore_optimizer(opt2, m2, extra)
    for p, p2 in zip(m.parameters(), m2.parameters()):
        assert torch.equal(opt.state[p]["exp_avg"], opt2.state[p2]["exp_avg"])


def test_corrupt_truncated_and_foreign_files_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c", model(), TOK)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    path = save_checkpoint(tmp_path / "t", model(), TOK)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    # a pickle with a forged hash still is not read: safetensors refuses it, nothing is unpickled
    pickled = tmp_path / "p.safetensors"
    torch.save({"x": torch.ones(2)}, pickled)
    meta = json.loads((tmp_path / "t.json").read_text())
    meta["sha256"] = hashlib.sha256(pickled.read_bytes()).hexdigest()
    (tmp_path / "p.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="not a .safetensors checkpoint"):
        load_checkpoint(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "nometa.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="has no nometa.json"):
        load_checkpoint(tmp_path / "nometa.safetensors")


def test_checkpoint_from_another_model_size(tmp_path):
    path = save_checkpoint(tmp_path / "c", model(n_embd=32), TOK)
    meta = json.loads((tmp_path / "c.json").read_text())
    meta["model_config"]["n_embd"] = 64  # the tensors say 32
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="from another model size"):
        load_checkpoint(path)


def test_run_folder_resolves_latest_complete_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "pretrain", model(), TOK, state={"complete": True})
    save_checkpoint(tmp_path / "sft", model(), TOK, state={"complete": True})
    save_checkpoint(tmp_path / "grpo", model(), TOK, state={"complete": False})
    assert resolve_checkpoint(tmp_path).name == "sft.safetensors"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no rlrecipes checkpoint"):
        resolve_checkpoint(tmp_path / "empty")


def test_run_folder_refuses_to_overwrite(tmp_path):
    out = tmp_path / "run"
    run = Run.create(str(out), "x")
    run.write_json("config.json", {"a": 1})
    with pytest.raises(RunFolderError, match="already holds a run; pass --resume"):
        Run.create(str(out), "x")
    assert json.loads((out / "config.json").read_text()) == {"a": 1}  # untouched
    Run.create(str(out), "x", resume=True)
    assert (out / "config.json").exists()
    Run.create(str(out), "x", overwrite=True)
    assert not (out / "config.json").exists()
    with pytest.raises(RunFolderError, match="holds no run to resume"):
        Run.create(str(tmp_path / "fresh"), "x", resume=True)
    with pytest.raises(RunFolderError, match="contradict"):
        Run.create(str(out), "x", resume=True, overwrite=True)


def test_metrics_log_and_resume_truncation(tmp_path):
    run = Run.create(str(tmp_path / "r"), "x")
    run.stage = "pretrain"
    m = model()
    opt = torch.optim.AdamW(m.parameters())
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 6):
        run.log(step, loss=torch.tensor(1.0 / step))
        if step == 3:
            run.save(m, TOK, step, complete=False, optimizer=opt, generator=gen)
    assert [r["step"] for r in run.metrics()] == [1, 2, 3, 4, 5]
    assert isinstance(run.metrics()[0]["loss"], float)
    assert run.resume(m, opt, gen) == 3
    assert [r["step"] for r in run.metrics()] == [1, 2, 3]  # steps 4 and 5 will be redone


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device='tpu' is not one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda")
