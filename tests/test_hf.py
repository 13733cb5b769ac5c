"""The bridge to Hugging Face: an HF causal LM trained by the recipes (`--init hf:PATH`), and TinyGPT
exported to a transformers GPT-2 folder and imported back. Every model here is built from a config in
the test: nothing is downloaded."""

import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rlrecipes.cli import main
from rlrecipes.lm.generate import generate, left_pad, pack, sequence_logprobs
from rlrecipes.lm.hf import HFPolicy, HFTokenizer, TransformersMissing
from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer
from rlrecipes.recipes import grpo, sft
from rlrecipes.runs import load_checkpoint, save_checkpoint
from rlrecipes.tasks.arithmetic import ArithmeticTask

CHARS = ArithmeticTask.alphabet


def even_digits(self, prompts, completions) -> list[float]:
    return [float(sum(ch in "02468" for ch in c)) for c in completions]


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def llama_folder(transformers, tmp_path_factory):
    """A tiny random Llama (rotary positions: left padding must be handled) with a character tokenizer whose
    special tokens come last, unlike CharTokenizer's 0/1/2, so nothing can rely on those ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(CHARS)} | {"<s>": len(CHARS), "</s>": len(CHARS) + 1, "<pad>": len(CHARS) + 2}
    char_tok = Tokenizer(models.WordLevel(vocab=vocab))
    char_tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one token per character
    char_tok.decoder = decoders.Fuse()
    specials = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=char_tok, **specials)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_hf_tokenizer_speaks_chartokenizers_language(llama_folder):
    _, tok, state, extra = load_checkpoint(f"hf:{llama_folder}")
    assert isinstance(tok, HFTokenizer) and state == {} and extra == {}
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (12, 13, 14, 15)
    ids = tok.encode("47+38=", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == 8
    assert tok.decode(ids + [tok.pad_id, 3]) == "47+38="  # specials dropped, stops at EOS


def test_hf_policy_logprobs_match_a_plain_forward(llama_folder):
    policy, tok, _, _ = load_checkpoint(f"hf:{llama_folder}")
    assert isinstance(policy, HFPolicy) and policy.cfg.context_len == 32 and policy.cfg.n_embd == 32
    prompts = [tok.encode(p, bos=True) for p in ("1+2=", "47+38=", "9+10=")]
    completions = [tok.encode(c, eos=True) for c in ("3", "85", "19")]
    samples = pack(prompts, completions, tok.pad_id)  # left-padded prompts: positions must skip the padding
    logp = sequence_logprobs(policy, samples)  # (B, T-1)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        with torch.no_grad():  # the same sequence alone, unpadded, straight through transformers
            plain = F.log_softmax(policy.model(torch.tensor([p + c])).logits[0, :-1], -1)  # (len-1, V)
        expected = plain[len(p) - 1 :].gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        got = logp[i][samples.completion_mask[i, 1:].bool()]
        assert torch.allclose(got, expected, atol=1e-5), (got, expected)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hf_cached_generation_gives_the_uncached_tokens(arch, llama_folder, monkeypatch):
    """With transformers' KV cache, greedy and seeded sampling give the same tokens as recomputing the prefix,
    on left-padded prompts of different lengths; after the prompt, the model sees one new token per step."""
    if arch == "llama":
        policy, tok, _, _ = load_checkpoint(f"hf:{llama_folder}")
    else:  # GPT-2 (learned positions), as `rlrecipes export` writes it: what benchmarks/bench_grpo.py trains
        from rlrecipes.lm.hf import to_transformers

        torch.manual_seed(0)
        tiny = TinyGPT(GPTConfig(vocab_size=CharTokenizer(CHARS).vocab_size, context_len=32, n_layer=2, n_embd=32))
        with torch.no_grad():  # weights far from their init: peaked, varied next-token distributions
            for p in tiny.parameters():
                p.normal_(0.0, 0.3)
        tok = CharTokenizer(CHARS)
        policy = HFPolicy(to_transformers(tiny, tok)[0])
    prompts = [tok.encode(p, bos=True) for p in ("1+2=", "47+38=", "9+10=", "123+456=")]
    widths = []
    forward = policy.model.forward
    monkeypatch.setattr(policy.model, "forward", lambda **kw: widths.append(kw["input_ids"].shape[1]) or forward(**kw))
    args = (prompts, 8, tok.eos_id, tok.pad_id)
    for kw in (dict(greedy=True), dict(temperature=1.3)):
        a = generate(policy, *args, use_cache=True, generator=torch.Generator().manual_seed(3), **kw)
        cached_widths, widths[:] = list(widths), []
        b = generate(policy, *args, use_cache=False, generator=torch.Generator().manual_seed(3), **kw)
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.completion_mask, b.completion_mask)
        assert a.completion_lengths.sum() > len(prompts)  # more than one token each: decoding steps were compared
        assert cached_widths[0] == a.prompt_len and set(cached_widths[1:]) == {1}  # prefill once, then one token
        assert widths == list(range(a.prompt_len, a.prompt_len + len(widths)))  # uncached: the whole prefix
        widths.clear()


def test_sft_then_grpo_train_an_hf_policy(llama_folder, tmp_path, monkeypatch):
    held_out = ArithmeticTask.heldout_prompts
    monkeypatch.setattr(ArithmeticTask, "heldout_prompts", lambda self: held_out(self)[:32])  # a smoke test
    common = dict(eval_every=0, device="cpu")
    start = params(load_checkpoint(f"hf:{llama_folder}")[0])
    cfg = sft.Config(init=f"hf:{llama_folder}", steps=2, batch_size=8, n_examples=16, save_every=0, **common)
    out = sft.train(replace(cfg, out=str(tmp_path / "sft")))
    folder = tmp_path / "sft" / "sft"  # <run>/<stage>/: save_pretrained's folder
    assert out["checkpoint"] == str(folder)
    assert (folder / "model.safetensors").exists() and (folder / "rlrecipes_state.json").exists()
    after_sft = params(load_checkpoint(f"hf:{folder}")[0])
    assert all(not torch.equal(start[k], after_sft[k]) for k in start), "SFT left a parameter unchanged"

    # A random model never gets a sum right; a reward that varies gives GRPO non-zero advantages to follow.
    monkeypatch.setattr(ArithmeticTask, "reward", even_digits)
    cfg = grpo.Config(init=f"hf:{folder}", steps=2, batch_size=4, group_size=4, sample_every=0, **common)
    out = grpo.train(replace(cfg, out=str(tmp_path / "grpo")))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in out["history"] if "loss" in r)
    after_grpo = params(load_checkpoint(f"hf:{tmp_path / 'grpo' / 'grpo'}")[0])
    assert all(not torch.equal(after_sft[k], after_grpo[k]) for k in start), "GRPO left a parameter unchanged"


def test_missing_transformers_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails, as when it is absent
    with pytest.raises(TransformersMissing, match=r"transformers is not installed: pip install -e '\.\[hf\]'"):
        load_checkpoint(f"hf:{tmp_path}")
    assert main(["run", "grpo", "--init", f"hf:{tmp_path}", "--device", "cpu"]) == 2
    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("transformers is not installed") == 2 and "Traceback" not in err


def test_export_to_transformers_matches_tinygpt_and_imports_back(transformers, llama_folder, tmp_path, capsys):
    tok = CharTokenizer(CHARS)
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=tok.vocab_size, context_len=16, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():  # weights far from their init, so a misplaced or untransposed tensor cannot hide
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "sft", model, tok, {"complete": True})
    out, back = tmp_path / "hf", tmp_path / "back"
    assert main(["export", str(tmp_path / "run"), "--to", "transformers", str(out)]) == 0

    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(hf).__name__ == "GPT2LMHeadModel" and hf.config.activation_function == "gelu"
    ids, mask = left_pad([tok.encode(t, bos=True) for t in ("47+38=85", "1+2=3", "99+99=198", "5")], tok.pad_id, "cpu")
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
        full = torch.tensor([tok.encode(t, bos=True) for t in ("12+34=46", "99+99=19")])  # no padding, no mask
        unpadded = (model(full) - hf(full).logits).abs().max()
    padded = (ours - theirs)[mask.bool()].abs().max()  # padding positions are never scored
    with capsys.disabled():  # shown with pytest -s
        print(f"\nmax |logit difference| TinyGPT vs GPT2LMHeadModel: left-padded {padded:.2e}, unpadded {unpadded:.2e}")
    assert padded < 1e-5 and unpadded < 1e-5

    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (hf_tok.pad_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id) == (0, 1, 2)
    assert hf_tok("47+38=85").input_ids == tok.encode("47+38=85", bos=True)  # adds <bos> itself, same ids
    assert set(hf_tok("47+38=85")) == {"input_ids", "attention_mask"}  # token_type_ids would shift GPT-2's logits
    assert hf_tok.decode(hf_tok("47+38=85").input_ids, skip_special_tokens=True) == "47+38=85"

    policy, rl_tok, _, _ = load_checkpoint(f"hf:{out}")  # the export is an hf: policy too: same greedy answers
    prompts = ("47+38=", "1+2=", "99+99=")
    a = generate(model, [tok.encode(p, bos=True) for p in prompts], 4, tok.eos_id, greedy=True)
    b = generate(policy, [rl_tok.encode(p, bos=True) for p in prompts], 4, rl_tok.eos_id, greedy=True)
    assert a.completion_ids == b.completion_ids

    assert main(["import-hf", str(out), str(back)]) == 0
    again, again_tok, state, _ = load_checkpoint(back)
    assert again_tok.itos == tok.itos and state["source"] == str(out)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())  # exact round trip
    assert again.lm_head.weight is again.tok_emb.weight

    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(out)]) == 2  # OUT holds the export already
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "o1")]) == 2
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "o2"), "--to", "gguf"]) == 2
    assert main(["import-hf", str(llama_folder), str(tmp_path / "o3")]) == 2  # not GPT-2: TinyGPT cannot hold it
    err = capsys.readouterr().err
    for expected in ("already exists", "does not exist", "'gguf'", "model_type='llama'"):
        assert expected in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()
