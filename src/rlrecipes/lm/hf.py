"""The bridge to real models: any Hugging Face causal LM as a policy, and TinyGPT to and from GPT-2.

Two directions, both with local folders only (nothing is ever downloaded):

1. `--init hf:PATH` in any recipe: `load_hf` wraps an `AutoModelForCausalLM` and its tokenizer so they
   look like TinyGPT and CharTokenizer to the recipes. `HFPolicy` is the callable
   `policy(input_ids, attention_mask) -> logits (B, T, V)`; `HFTokenizer` has `encode(text, bos=, eos=)`,
   `decode(ids)` and `pad_id`, `bos_id`, `eos_id`, `vocab_size`. What is simplified:
   - sampling keeps a KV cache (transformers' own `DynamicCache`, through `new_cache`, as TinyGPT's
     `KVCache`), but `generate()` is still our plain loop: no beam search, no speculative decoding, no
     paged attention. For long completions on a real model, move to TRL and vLLM (docs/trl.md).
   - dropout stays off (the inner model is kept in eval mode), as TinyGPT's default and TRL's
     `disable_dropout`: RL wants the log-probs of the sampler and the learner to be the same numbers.
   - weights are trained in float32, whatever dtype the folder holds.
   - a run saves the policy with `save_pretrained` (safetensors) and its tokenizer into the folder
     `<run>/<stage>/`, plus `rlrecipes_state.json`; continue from it with `--init hf:<run>/<stage>`.
     Weights only: no optimizer state, so `--resume` works for TinyGPT runs only.

2. `rlrecipes export RUN --to transformers OUT` writes TinyGPT as a `GPT2LMHeadModel` folder: the same
   architecture, so the logits agree to float rounding. GPT-2's Conv1D stores weights as (in, out), the
   transpose of nn.Linear's. Exact GELU is transformers' "gelu" ("gelu_new", GPT-2's own, is the tanh
   approximation). The tokenizer becomes a `PreTrainedTokenizerFast` over the same characters with the same
   ids (pad 0, bos 1, eos 2) that adds <bos> itself. `rlrecipes import-hf DIR OUT` goes back, exactly.

transformers is an optional extra (`pip install -e '.[hf]'`), imported only here and only when used.
"""

import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from rlrecipes.lm.model import GPTConfig, TinyGPT
from rlrecipes.lm.tokenizer import BOS, EOS, PAD, SPECIALS, CharTokenizer
from rlrecipes.runs import CheckpointError, load_checkpoint, save_checkpoint


class TransformersMissing(ImportError, ValueError):
    """transformers is not installed. A ValueError too, so the CLI prints it as one line."""


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise TransformersMissing("transformers is not installed: pip install -e '.[hf]'") from None
    return transformers


# --- an HF model as a policy ---
@dataclass
class PolicyInfo:
    """The GPTConfig fields that code outside the model reads (PPO's value head, context checks)."""

    vocab_size: int
    context_len: int
    n_embd: int


class HFPolicy(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        c = model.config
        # Most configs name their context max_position_embeddings (GPT-2 maps n_positions to it); none: no limit
        self.cfg = PolicyInfo(c.vocab_size, getattr(c, "max_position_embeddings", None) or 2**31 - 1, c.hidden_size)
        # transformers 5 renamed the forward's `past_key_values` to `cache`; older versions know only the old name
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # dropout off whatever the recipe asks: gradients flow the same in eval mode
        return self

    def new_cache(self, batch_size: int, max_len: int):
        """An empty KV cache for `generate` (transformers' DynamicCache grows as it goes: the sizes are unused)."""
        return require_transformers().DynamicCache()

    def forward(self, input_ids, attention_mask=None, cache=None, return_hidden: bool = False):
        """Logits (B, T, V), and with `return_hidden` the final hidden states (B, T, C), as TinyGPT. With a cache
        (from `new_cache`), `input_ids` are the new tokens only and `attention_mask` covers every token so far."""
        past = cache.get_seq_length() if cache is not None else 0
        T = past + input_ids.shape[1]
        if T > self.cfg.context_len:
            raise ValueError(f"sequence of {T} tokens is longer than context_len={self.cfg.context_len}")
        position_ids = None
        if attention_mask is not None:  # left padding: positions count real tokens only, as in TinyGPT
            position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]  # (B, T - past)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            output_hidden_states=return_hidden,
            **{self.cache_arg: cache},  # filled in place with this call's keys and values
        )
        # hidden_states[-1] is the last layer's output after the final norm, as TinyGPT's `hidden`
        return (out.logits, out.hidden_states[-1]) if return_hidden else out.logits

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class HFTokenizer:
    """A transformers tokenizer with CharTokenizer's interface. Special tokens are added by `encode`'s flags
    only, never by the tokenizer's own template, so prompts look the same as with TinyGPT."""

    def __init__(self, tok):
        if tok.eos_token_id is None:
            raise CheckpointError(f"tokenizer {tok.name_or_path!r} has no eos_token: sampling stops at EOS; set one")
        self.tok = tok
        self.eos_id = tok.eos_token_id
        self.bos_id = tok.bos_token_id  # None for tokenizers without one (Qwen): encode(bos=True) adds nothing
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id  # only ever masked

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        return ([self.bos_id] if bos and self.bos_id is not None else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        """Text of the ids, stopping at the first EOS; special tokens are dropped."""
        ids = [int(i) for i in ids]
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        return self.tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def load_hf(path: str | Path, device="cpu") -> tuple[HFPolicy, HFTokenizer]:
    """A local Hugging Face folder (config, weights, tokenizer) as (policy, tokenizer), in float32."""
    transformers = require_transformers()
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"hf:{path} is not a folder: --init hf:PATH takes a local Hugging Face model folder "
            "(config.json, weights, tokenizer); nothing is downloaded"
        )
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"hf:{path} could not be loaded by transformers: {err}") from None
    return HFPolicy(model).to(device=device, dtype=torch.float32), HFTokenizer(tok)


def save_hf(path: str | Path, policy: HFPolicy, tokenizer: HFTokenizer, state: dict | None = None) -> Path:
    """Write the folder `path` (suffix dropped): save_pretrained's config + safetensors, the tokenizer, and
    rlrecipes_state.json. Written beside it first and swapped in, so a crash leaves the last one whole."""
    folder = Path(path).with_suffix("")
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    policy.model.save_pretrained(tmp)
    tokenizer.tok.save_pretrained(tmp)
    meta = {"format": "rlrecipes-hf-checkpoint-v1", "saved_at": time.time(), "state": state or {}}
    (tmp / "rlrecipes_state.json").write_text(json.dumps(meta, indent=2, default=str))
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


# --- TinyGPT <-> GPT2LMHeadModel ---
_TOP = {"tok_emb": "transformer.wte", "pos_emb": "transformer.wpe", "ln_f": "transformer.ln_f", "lm_head": "lm_head"}
_BLOCK = {"ln1": "ln_1", "ln2": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj"}
_BLOCK |= {"mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}


def gpt2_name(name: str) -> tuple[str, bool]:
    """TinyGPT parameter name -> (GPT2LMHeadModel's name, whether the tensor is transposed)."""
    module, kind = name.rsplit(".", 1)  # e.g. "blocks.3.attn.qkv", "weight"
    if module in _TOP:
        return f"{_TOP[module]}.{kind}", False
    _, layer, sub = module.split(".", 2)
    transpose = kind == "weight" and not sub.startswith("ln")  # a Linear's weight: Conv1D keeps it as (in, out)
    return f"transformer.h.{layer}.{_BLOCK[sub]}.{kind}", transpose


def _empty_out(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose another OUT or remove it")
    return out


def to_transformers(model: TinyGPT, tokenizer: CharTokenizer):
    """(GPT2LMHeadModel, PreTrainedTokenizerFast) computing what `model` computes, in memory."""
    transformers = require_transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    c = model.cfg
    config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.context_len, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        n_inner=4 * c.n_embd, activation_function="gelu", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=c.dropout,  # TinyGPT's only dropout is in attention
        pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
    )  # fmt: skip
    gpt2 = transformers.GPT2LMHeadModel(config)
    weights = {}
    for name, tensor in model.state_dict().items():
        new, transpose = gpt2_name(name)
        weights[new] = tensor.t().contiguous() if transpose else tensor.clone()
    expected = set(gpt2.state_dict())
    if set(weights) != expected:
        raise RuntimeError(f"GPT-2 names do not match: {sorted(set(weights) ^ expected)}")
    gpt2.load_state_dict(weights)
    gpt2.tie_weights()

    # One token per character: split every character off, look it up; an unknown one is an error, as in CharTokenizer.
    char_tok = Tokenizer(models.WordLevel(vocab=dict(tokenizer.stoi)))
    char_tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    char_tok.decoder = decoders.Fuse()  # join characters with nothing between them
    bos = [(BOS, tokenizer.bos_id)]  # tok(text) starts with <bos>, as every text the model was trained on
    char_tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=bos)
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=char_tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
        padding_side="left", clean_up_tokenization_spaces=False, model_max_length=c.context_len,
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: GPT-2 would add them as embeddings
    )  # fmt: skip
    return gpt2, hf_tok


def export_transformers(checkpoint: str | Path, out: str | Path) -> Path:
    """A TinyGPT checkpoint or run folder -> a transformers folder that AutoModelForCausalLM loads."""
    require_transformers()
    if not Path(checkpoint).exists():
        raise CheckpointError(f"{checkpoint} does not exist: give a run folder or a .safetensors checkpoint")
    out = _empty_out(out)
    model, tokenizer, _, _ = load_checkpoint(checkpoint)
    gpt2, hf_tok = to_transformers(model, tokenizer)
    gpt2.save_pretrained(out)  # config.json + model.safetensors
    hf_tok.save_pretrained(out)
    return out


def from_transformers(folder: str | Path) -> tuple[TinyGPT, CharTokenizer]:
    """A GPT-2 folder with TinyGPT's choices (exact GELU, tied, a character vocabulary as `export` writes)."""
    transformers = require_transformers()
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise CheckpointError(f"{folder} is not a transformers model folder (no config.json)")
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    ours = {"model_type": "gpt2", "activation_function": "gelu", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}  # fmt: skip
    for key, value in ours.items():
        if getattr(config, key, None) != value:
            raise CheckpointError(f"{folder}: {key}={getattr(config, key, None)!r}, TinyGPT needs {value!r}")
    if config.n_inner not in (None, 4 * config.n_embd):
        raise CheckpointError(f"{folder}: n_inner={config.n_inner}, TinyGPT's MLP is 4 * n_embd = {4 * config.n_embd}")
    vocab = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True).get_vocab()
    chars = "".join(t for t in vocab if t not in SPECIALS)
    tokenizer = CharTokenizer(chars)
    if vocab != tokenizer.stoi or config.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"{folder}: the tokenizer is not a character vocabulary with {PAD} 0, {BOS} 1, {EOS} 2 and sorted "
            "single characters after them (what `rlrecipes export` writes), so CharTokenizer cannot stand in for it"
        )
    hf_weights = transformers.GPT2LMHeadModel.from_pretrained(folder, local_files_only=True).float().state_dict()
    c = config
    model = TinyGPT(GPTConfig(c.vocab_size, c.n_positions, c.n_layer, c.n_head, c.n_embd, c.attn_pdrop))
    weights = {}
    for name in model.state_dict():
        new, transpose = gpt2_name(name)
        weights[name] = hf_weights[new].t().contiguous() if transpose else hf_weights[new].clone()
    model.load_state_dict(weights)
    model.lm_head.weight = model.tok_emb.weight  # load_state_dict copies into both; keep them one tensor
    return model, tokenizer


def import_transformers(folder: str | Path, out: str | Path) -> Path:
    """A GPT-2 folder -> OUT/imported.safetensors + .json, a TinyGPT checkpoint for `--init OUT`."""
    require_transformers()
    out = _empty_out(out)
    model, tokenizer = from_transformers(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {"stage": "imported", "complete": True, "source": str(folder)}
    return save_checkpoint(out / "imported", model, tokenizer, state)
