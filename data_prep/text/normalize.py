"""Per-language text normalization driven by YAML rule files.

The same normalizer is used when preparing transcripts and when scoring
hypotheses, so both sides are compared on equal terms. Rules are data, in
``data_prep/text/rules/<name>.yaml``; this module only interprets them.

A rules *name* is a language code, optionally with a script subtag when a
corpus writes the language in a non-default script: ``sa``, ``pa`` (Gurmukhi),
``pa-Latn`` (romanized Punjabi), ``en``. Lookup order for ``pa-Latn``:
``pa-Latn.yaml``, then ``generic.yaml`` (never ``pa.yaml``, whose script is
different); for ``pa``: ``pa.yaml``, then ``generic.yaml``. A path to a
``.yaml`` file is accepted too, for corpora the project has no rules for.

Rule file keys (all optional; ``extends`` merges a parent file first):

``extends``          name of a rules file whose keys this one overrides
``casefold``         fold case (a no-op for uncased scripts)
``map``              {from: to} literal replacements (e.g. curly quotes)
``replace``          list of [regex, replacement] applied after ``map`` (e.g. an
                     ASCII colon right after a Devanagari letter is a visarga)
``zero_width``       {zwj: remove|keep, zwnj: remove|keep}
``punctuation``      {classes: [unicode_punct, unicode_symbols, ascii_punct,
                     danda], keep: "chars never removed", extra: "more chars"}
                     removed characters become spaces, so words do not merge
``digits``           keep | ascii (any Unicode decimal digit -> 0-9)
``allowed``          list of "XXXX-YYYY" hex code point ranges (or single
                     "XXXX") a transcript may contain after normalization;
                     absent or empty = every script allowed
``allowed_chars``    extra allowed literal characters (e.g. an apostrophe)

Vowel signs, viramas and nukta (Unicode categories Mn/Mc) are never touched:
only the classes above are removed. Every step is followed by NFC, and the
pipeline is repeated until it reaches a fixed point, which makes
``normalize`` idempotent by construction even when removing a character lets
two neighbours compose.
"""

from __future__ import annotations

import functools
import os
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import yaml

RULES_DIR = Path(__file__).parent / "rules"
GENERIC = "generic"

ZWJ, ZWNJ = "\u200d", "\u200c"
#: Invisible characters that never carry meaning in a transcript: zero-width
#: space, word joiner, BOM, soft hyphen. They are always removed.
_ALWAYS_REMOVE = "\u200b\u2060\ufeff\u00ad"
DANDAS = "\u0964\u0965"  # । ॥
PUNCT_CLASSES = ("unicode_punct", "unicode_symbols", "ascii_punct", "danda")
_MAX_PASSES = 4

_TAG = re.compile(r"^([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?$")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file."""


def canonical_name(lang: str, script: str | None = None) -> str:
    """``("pa", "latn")`` or ``"PA_latn"`` -> ``"pa-Latn"``; other names are returned stripped."""
    lang = lang.strip()
    m = _TAG.match(lang)
    if not m:
        return lang
    code, tag_script = m.group(1).lower(), m.group(2)
    script = script or tag_script
    return f"{code}-{script.title()}" if script else code


def base_language(name: str) -> str:
    """The ISO 639 code of a rules name: ``"pa-Latn"`` -> ``"pa"``."""
    m = _TAG.match(name.strip())
    return m.group(1).lower() if m else name


def _rules_path(name: str) -> Path:
    if name.endswith((".yaml", ".yml")):
        return Path(name)
    cand = RULES_DIR / f"{name}.yaml"
    return cand if cand.is_file() else RULES_DIR / f"{GENERIC}.yaml"


def _load_rules(path: Path, _seen: tuple[str, ...] = ()) -> dict:
    if str(path) in _seen:
        raise RulesError(f"{path}: circular 'extends'")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RulesError(f"{path}: cannot read text rules: {e}") from e
    if not isinstance(data, dict):
        raise RulesError(f"{path}: text rules must be a mapping")
    parent = data.pop("extends", None)
    if parent:
        parent = str(parent)
        parent_path = path.parent / parent if parent.endswith((".yaml", ".yml")) else RULES_DIR / f"{parent}.yaml"
        base = _load_rules(parent_path, _seen + (str(path),))
        for key, val in data.items():
            if isinstance(val, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **val}
            else:
                base[key] = val
        data = base
    return data


def _parse_ranges(items: list, path: Path) -> tuple[tuple[int, int], ...]:
    out = []
    for item in items or ():
        try:
            lo, _, hi = str(item).partition("-")
            out.append((int(lo, 16), int(hi or lo, 16)))
        except ValueError as e:
            raise RulesError(f"{path}: bad code point range {item!r} in 'allowed'") from e
    return tuple(out)


class _CharTable(dict):
    """A ``str.translate`` table filled on first sight of each character (the rules are per character)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, code: int) -> str:
        out = self[code] = self.fn(chr(code))
        return out


@dataclass(frozen=True)
class TextNormalizer:
    """A compiled rule set; build it with :func:`get_normalizer`."""

    name: str
    casefold: bool = True
    mapping: tuple[tuple[str, str], ...] = ()
    replace: tuple[tuple[re.Pattern, str], ...] = ()
    remove_zwj: bool = True
    remove_zwnj: bool = True
    punct_classes: frozenset[str] = frozenset({"unicode_punct"})
    punct_keep: str = ""
    punct_extra: str = ""
    digits: str = "keep"
    allowed: tuple[tuple[int, int], ...] = ()
    allowed_chars: str = ""

    @classmethod
    def from_file(cls, path: str | os.PathLike, name: str | None = None) -> TextNormalizer:
        """Compile the rules file at ``path``."""
        path = Path(path)
        r = _load_rules(path)
        zw = r.get("zero_width") or {}
        punct = r.get("punctuation") or {}
        classes = frozenset(punct.get("classes", ["unicode_punct"]))
        unknown = classes - set(PUNCT_CLASSES)
        if unknown:
            raise RulesError(f"{path}: unknown punctuation classes {sorted(unknown)}; known: {PUNCT_CLASSES}")
        digits = r.get("digits", "keep")
        if digits not in ("keep", "ascii"):
            raise RulesError(f"{path}: digits must be 'keep' or 'ascii', not {digits!r}")
        for key in ("zwj", "zwnj"):
            if zw.get(key, "remove") not in ("remove", "keep"):
                raise RulesError(f"{path}: zero_width.{key} must be 'remove' or 'keep'")
        mapping = tuple(
            (unicodedata.normalize("NFC", str(k)), unicodedata.normalize("NFC", str(v)))
            for k, v in (r.get("map") or {}).items()
        )
        replace = []
        for item in r.get("replace") or []:
            try:
                pattern, repl = item
                replace.append((re.compile(unicodedata.normalize("NFC", str(pattern))), str(repl)))
            except (ValueError, TypeError, re.error) as e:
                raise RulesError(f"{path}: bad 'replace' item {item!r}: {e}") from e
        return cls(
            name=name or path.stem,
            replace=tuple(replace),
            casefold=bool(r.get("casefold", True)),
            mapping=mapping,
            remove_zwj=zw.get("zwj", "remove") == "remove",
            remove_zwnj=zw.get("zwnj", "remove") == "remove",
            punct_classes=classes,
            punct_keep=str(punct.get("keep", "")),
            punct_extra=str(punct.get("extra", "")),
            digits=digits,
            allowed=_parse_ranges(r.get("allowed") or [], path),
            allowed_chars=str(r.get("allowed_chars", "")),
        )

    # -- the pipeline ---------------------------------------------------

    def _is_removed_punct(self, ch: str) -> bool:
        if ch in self.punct_keep:
            return False
        if ch in self.punct_extra:
            return True
        cat = unicodedata.category(ch)
        c = self.punct_classes
        return (
            ("unicode_punct" in c and cat[0] == "P")
            or ("unicode_symbols" in c and cat[0] == "S")
            or ("ascii_punct" in c and ch in string.punctuation)
            or ("danda" in c and ch in DANDAS)
        )

    def _char(self, ch: str) -> str:
        if ch in _ALWAYS_REMOVE or (ch == ZWJ and self.remove_zwj) or (ch == ZWNJ and self.remove_zwnj):
            return ""
        if self._is_removed_punct(ch):
            return " "
        if self.digits == "ascii" and unicodedata.category(ch) == "Nd":
            return str(unicodedata.digit(ch))
        return ch

    def _once(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if self.casefold:
            text = unicodedata.normalize("NFC", text.casefold())
        for src, dst in self.mapping:
            text = text.replace(src, dst)
        for pattern, repl in self.replace:
            text = pattern.sub(repl, text)
        text = text.translate(self._table)
        return unicodedata.normalize("NFC", " ".join(text.split()))

    @functools.cached_property
    def _table(self) -> _CharTable:
        return _CharTable(self._char)

    def normalize(self, text: str) -> str:
        """Normalize one transcript; never raises on any ``str``; result is NFC and idempotent."""
        for _ in range(_MAX_PASSES):
            out = self._once(text)
            if out == text:
                return out
            text = out
        return text

    def is_allowed(self, ch: str) -> bool:
        """Whether ``ch`` may appear in a normalized transcript of this language."""
        if not self.allowed or ch.isspace() or ch in self.allowed_chars:
            return True
        cp = ord(ch)
        return any(lo <= cp <= hi for lo, hi in self.allowed)

    @functools.cached_property
    def _allowed_seen(self) -> set[str]:
        """Characters :meth:`is_allowed` accepted so far (the rules are per character)."""
        return set()

    def foreign_chars(self, text: str, normalized: bool = False) -> set[str]:
        """Characters of the normalized ``text`` outside the allowed scripts (pass ``normalized=True``
        when ``text`` is already the output of :meth:`normalize`)."""
        seen = self._allowed_seen
        new = set(text if normalized else self.normalize(text)) - seen
        foreign = {ch for ch in new if not self.is_allowed(ch)}
        seen.update(new - foreign)
        return foreign


@functools.lru_cache(maxsize=64)
def get_normalizer(lang: str) -> TextNormalizer:
    """The (cached) normalizer for a language code, ``lang-Script`` tag or rules file path."""
    name = canonical_name(lang) if not lang.endswith((".yaml", ".yml")) else lang
    path = _rules_path(name)
    if not path.is_file():
        raise RulesError(f"{path}: text rules file not found")
    return TextNormalizer.from_file(path, name=name)


def resolved_rules(lang: str) -> dict:
    """The rules :func:`get_normalizer` compiles for ``lang`` with every ``extends`` merged in: what a
    self-contained copy of them holds (a file that normalizes the same without this package's rules)."""
    name = canonical_name(lang) if not lang.endswith((".yaml", ".yml")) else lang
    path = _rules_path(name)
    if not path.is_file():
        raise RulesError(f"{path}: text rules file not found")
    return _load_rules(path)


def normalize_text(text: str, lang: str) -> str:
    """Shorthand for ``get_normalizer(lang).normalize(text)``."""
    return get_normalizer(lang).normalize(text)


def available_rules() -> list[str]:
    """Names of the bundled rules files."""
    return sorted(p.stem for p in RULES_DIR.glob("*.yaml"))
