"""The tiny LLM: tokenizer, TinyGPT, sampling and log-probs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrecipes.lm.generate import filter_logits, generate, pack, sequence_logprobs
from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import CharTokenizer

ALPHABET = "0123456789+="


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=len(ALPHABET) + 3, context_len=24, n_layer=2, n_head=2, n_embd=32)
    return TinyGPT(GPTConfig(**{**cfg, **kw})).eval()


# --- tokenizer ---


@given(st.text(alphabet=ALPHABET, max_size=30))
def test_tokenizer_round_trip(text):
    tok = CharTokenizer(ALPHABET)
    assert tok.decode(tok.encode(text, bos=True, eos=True)) == text


def test_tokenizer_specials_and_unknown_character():
    tok = CharTokenizer(ALPHABET)
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    ids = tok.encode("1+1=", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and len(ids) == 6
    assert tok.decode(tok.encode("12") + [tok.eos_id] + tok.encode("34")) == "12"  # stops at EOS
    with pytest.raises(ValueError, match="'x' is not in the tokenizer's vocabulary"):
        tok.encode("1+x")


def test_tokenizer_save_load(tmp_path):
    tok = CharTokenizer(ALPHABET)
    tok.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.itos == tok.itos
    (tmp_path / "bad.json").write_text('{"type": "bpe"}')
    with pytest.raises(ValueError, match="not a character tokenizer"):
        CharTokenizer.load(tmp_path / "bad.json")


# --- model ---


def test_same_seed_same_weights():
    a, b, c = tiny_model(0), tiny_model(0), tiny_model(1)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_model_config_errors():
    with pytest.raises(ValueError, match="n_embd=30 must be divisible by n_head=4"):
        GPTConfig(n_embd=30, n_head=4)
    model = tiny_model()
    with pytest.raises(ValueError, match="longer than context_len=24"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_causal_future_tokens_do_not_change_past_logits():
    model = tiny_model()
    x = torch.randint(3, 15, (2, 10))
    y = x.clone()
    y[:, 6:] = torch.randint(3, 15, (2, 4))
    assert torch.allclose(model(x)[:, :6], model(y)[:, :6], atol=1e-5)


def test_left_padding_changes_nothing():
    """A prompt's logits are the same alone and left-padded inside a batch with a longer prompt."""
    model = tiny_model()
    short, long = [1, 4, 5, 13, 6], [1, 7, 8, 9, 13, 10, 11]
    alone = model(torch.tensor([short]))[0]
    samples = pack([short, long], [[3], [3]], pad_id=0)
    batched = model(samples.input_ids, attention_mask=samples.attention_mask)[0]
    pad = len(long) - len(short)
    assert torch.allclose(alone, batched[pad : pad + len(short)], atol=1e-5)


# --- generation ---


def test_cached_and_uncached_generation_agree():
    model = tiny_model()
    prompts = [[1, 4, 13, 5, 14], [1, 7, 8, 13, 9, 10, 14], [1, 3]]
    kw = dict(max_new_tokens=8, eos_id=2, greedy=True)
    cached = generate(model, prompts, use_cache=True, **kw)
    uncached = generate(model, prompts, use_cache=False, **kw)
    assert torch.equal(cached.input_ids, uncached.input_ids)
    assert torch.equal(cached.completion_mask, uncached.completion_mask)
    gen = dict(max_new_tokens=8, eos_id=2, temperature=1.3)
    a = generate(model, prompts, generator=torch.Generator().manual_seed(3), use_cache=True, **gen)
    b = generate(model, prompts, generator=torch.Generator().manual_seed(3), use_cache=False, **gen)
    assert torch.equal(a.input_ids, b.input_ids)


def test_generation_stops_at_eos_and_masks_are_right():
    model = tiny_model()
    with torch.no_grad():  # make EOS overwhelmingly likely after 2 tokens: bias its logit
        model.lm_head.weight.data[2] *= 0
    prompts = [[1, 4, 5], [1, 6, 7, 8, 9]]
    s = generate(
        model, prompts, max_new_tokens=6, eos_id=2, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    assert s.prompt_len == 5
    assert s.attention_mask[0, :2].sum() == 0 and s.attention_mask[1, :5].sum() == 5  # left padding
    assert s.completion_mask[:, :5].sum() == 0  # prompt tokens are never completion tokens
    for row, mask in zip(s.input_ids, s.completion_mask):
        comp = row[mask.bool()].tolist()
        assert 2 not in comp[:-1]  # nothing after the first EOS
        assert (row[5:][~mask[5:].bool()] == 0).all()  # everything after it is padding


def test_same_generator_seed_same_samples():
    model = tiny_model()
    prompts = [[1, 4, 5]] * 4
    a = generate(model, prompts, 6, eos_id=2, generator=torch.Generator().manual_seed(7))
    b = generate(model, prompts, 6, eos_id=2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.input_ids, b.input_ids)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.85)).tolist() == [[False, False, False, True]]  # 0.8 < 0.85
    model = tiny_model()
    s = generate(model, [[1, 4]] * 16, 5, eos_id=2, top_k=1, generator=torch.Generator().manual_seed(0))
    greedy = generate(model, [[1, 4]] * 16, 5, eos_id=2, greedy=True)
    assert torch.equal(s.input_ids, greedy.input_ids)  # top-1 sampling is greedy


def test_sequence_logprobs_match_a_plain_loop():
    model = tiny_model()
    prompts, completions = [[1, 4, 13, 5, 14], [1, 7, 14]], [[6, 2], [8, 9, 2]]
    batch = pack(prompts, completions, pad_id=0)
    logp, entropy = sequence_logprobs(model, batch, with_entropy=True)
    mask = batch.completion_mask[:, 1:]
    for i, (p, c) in enumerate(zip(prompts, completions)):
        full = torch.tensor([p + c])
        ref = torch.log_softmax(model(full)[0], -1)
        expected = [ref[len(p) - 1 + j, tok].item() for j, tok in enumerate(c)]
        assert logp[i][mask[i].bool()].tolist() == pytest.approx(expected, abs=1e-5)
    assert (logp[mask == 0] == 0).all() and (entropy[mask == 0] == 0).all()  # padding and prompt excluded
    assert (entropy[mask == 1] > 0).all()


@settings(deadline=None, max_examples=10)
@given(st.integers(0, 1000))
def test_sampled_tokens_are_in_vocabulary(seed):
    model = tiny_model()
    s = generate(model, [[1, 4]], 5, eos_id=2, generator=torch.Generator().manual_seed(seed))
    assert ((s.input_ids >= 0) & (s.input_ids < model.cfg.vocab_size)).all()
