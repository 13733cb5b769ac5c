"""A character-level tokenizer: one token per character, plus PAD, BOS and EOS.

Characters keep the tiny LLM honest and easy to read: a learner can see every token it emits.
The vocabulary is built from the corpus; ids 0, 1, 2 are always PAD, BOS and EOS.
"""

import json
from pathlib import Path

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = [PAD, BOS, EOS]


class CharTokenizer:
    def __init__(self, chars: str):
        chars = "".join(sorted(set(chars)))
        self.itos = SPECIALS + list(chars)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def chars(self) -> str:
        return "".join(self.itos[len(SPECIALS) :])

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        try:
            ids = [self.stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the tokenizer's vocabulary {self.chars!r}; "
                "use only characters the task's corpus contains"
            ) from None
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids) -> str:
        """Text of the ids, stopping at the first EOS; PAD and BOS are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"type": "char", "chars": self.chars}))

    @classmethod
    def load(cls, path: str | Path) -> "CharTokenizer":
        data = json.loads(Path(path).read_text())
        if data.get("type") != "char" or not isinstance(data.get("chars"), str):
            raise ValueError(f"{path} is not a character tokenizer file (expected {{'type': 'char', 'chars': ...}})")
        return cls(data["chars"])
