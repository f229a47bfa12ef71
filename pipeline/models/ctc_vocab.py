"""The character vocabulary of a CTC model: ``vocab.json`` <-> label ids <-> text.

The file is the one :mod:`data_prep.vocab` writes from the TRAIN split
(token -> id; ``<pad>`` is id 0 and doubles as the CTC blank, ``<unk>`` 1, the
word delimiter ``|`` stands for the space). A model directory carries a copy, so
the ids a model was trained with travel with its weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from data_prep.outputs import atomic_write_text
from data_prep.vocab import PAD, UNK, WORD, char_tokens


class VocabError(ValueError):
    """A ``vocab.json`` that a CTC model cannot use; the message names the file."""


class CTCVocab:
    """Token <-> id mapping with the CTC conventions of this project.

    ``blank`` is the id of ``<pad>``; ``unk`` the id of ``<unk>`` (or None);
    ``word`` the id of ``|`` (or None when the language has no spaces).
    """

    def __init__(self, token_to_id: dict[str, int], source: str = "<dict>"):
        ids = sorted(token_to_id.values())
        if ids != list(range(len(ids))):
            raise VocabError(f"{source}: ids must be 0..{len(ids) - 1} without gaps or duplicates")
        if PAD not in token_to_id:
            raise VocabError(f"{source}: no {PAD!r} token (the CTC blank)")
        self.token_to_id = dict(token_to_id)
        self.tokens = [""] * len(ids)
        for tok, i in token_to_id.items():
            self.tokens[i] = tok
        self.blank = token_to_id[PAD]
        self.unk = token_to_id.get(UNK)
        self.word = token_to_id.get(WORD)
        self.source = source

    # ------------------------------------------------------------------ I/O

    @classmethod
    def load(cls, path: str | Path) -> CTCVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise VocabError(f"{path}: cannot read vocabulary: {e}") from e
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise VocabError(f"{path}: expected a JSON object token -> integer id")
        return cls(data, source=str(path))

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.token_to_id, ensure_ascii=False, indent=1) + "\n")

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CTCVocab) and self.token_to_id == other.token_to_id

    def __repr__(self) -> str:
        return f"CTCVocab({len(self)} tokens from {self.source})"

    # ------------------------------------------------------------------ text -> ids

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Label ids of a normalized transcript (spaces -> ``|``).

        A character outside the vocabulary becomes ``<unk>``; with ``strict`` (or
        without an ``<unk>`` token) it is an error, because silently dropping it
        would misalign the labels.
        """
        out = []
        for tok in char_tokens(text):
            i = self.token_to_id.get(tok)
            if i is None:
                if strict or self.unk is None:
                    raise VocabError(f"character {tok!r} (U+{ord(tok[0]):04X}) of {text!r} is not in {self.source}")
                i = self.unk
            out.append(i)
        return out

    # ------------------------------------------------------------------ ids -> text

    def special_ids(self) -> set[int]:
        """Ids that never appear in output text (blank, unk and other ``<...>`` tokens)."""
        return {i for i, t in enumerate(self.tokens) if len(t) > 2 and t.startswith("<") and t.endswith(">")}

    def ids_to_text(self, ids: Iterable[int]) -> str:
        """Label ids (already CTC-collapsed) to text: ``|`` -> space, specials dropped, spaces squeezed."""
        drop = self.special_ids()
        chars = [" " if i == self.word else self.tokens[i] for i in ids if i not in drop]
        return " ".join("".join(chars).split())

    def collapse(self, frame_ids: Sequence[int]) -> list[int]:
        """CTC collapse of a frame-wise best path: merge repeats, then drop blanks."""
        out, prev = [], None
        for i in frame_ids:
            i = int(i)
            if i != prev and i != self.blank:
                out.append(i)
            prev = i
        return out

    def labels_for_decoder(self) -> list[str]:
        """One string per id for pyctcdecode: blank "", ``|`` " ", ``<unk>`` "⁇", other specials unique placeholders."""
        out = []
        for i, t in enumerate(self.tokens):
            if i == self.blank:
                out.append("")
            elif i == self.word:
                out.append(" ")
            elif i == self.unk:
                out.append("⁇")
            elif i in self.special_ids():
                out.append(chr(0xF0000 + i))  # private-use code point, removed from the output text
            else:
                out.append(t)
        return out
