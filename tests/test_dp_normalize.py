"""Text normalizer: per-language rules, Indic marks kept, and properties for every rules file."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_prep.text.normalize import (
    RulesError,
    TextNormalizer,
    available_rules,
    base_language,
    canonical_name,
    get_normalizer,
    normalize_text,
)

RULES = available_rules()


def test_bundled_rules_cover_required_languages():
    assert {"sa", "hi", "pa", "pa-Latn", "en", "generic"} <= set(RULES)


def test_sanskrit_keeps_marks_and_removes_punctuation():
    raw = "मृद्\u200dघटे स:, धौ\u200dम्यः ।  अहो-दौर्भाग्यम्! ॥ १२ `~_"
    out = normalize_text(raw, "sa")
    assert out == "मृद्घटे सः धौम्यः अहो दौर्भाग्यं १२"  # word-final म् -> ं (nasal rule)
    for mark in "\u094d\u0903\u093e\u094c\u0943":  # virama, visarga, vowel signs
        assert mark in out or mark not in raw


def test_sanskrit_nasal_spellings_compare_equal():
    # Both spellings occur for the same words in the corpus (अहम् / अहं): one canonical form.
    for a, b in [("अहम्", "अहं"), ("सम्पूर्णम्", "संपूर्णं"), ("मञ्जरी", "मंजरी"), ("भवन्ति", "भवंति"),
                 ("कङ्कणम्।", "कंकणं")]:
        assert normalize_text(a, "sa") == normalize_text(b, "sa") == b.rstrip("।")
    # Not homorganic, or not before a consonant: untouched.
    for word in ("अन्यः", "नम्रः", "मन्मथः", "जन्म", "सम्यक्", "ब्रह्मन्"):
        assert normalize_text(word, "sa") == word
    assert normalize_text("रामम् अहम्", "hi") == "रामम् अहम्"  # Hindi keeps its own rules


def test_nukta_precomposed_and_decomposed_are_unified():
    pre, dec = "\u095c", "\u0921\u093c"  # ड़ as one code point and as DDA + NUKTA
    assert normalize_text(pre, "hi") == normalize_text(dec, "hi") == dec
    assert "\u093c" in normalize_text("फ़ िल्म", "hi")  # nukta never stripped


def test_danda_and_double_danda_are_punctuation():
    assert normalize_text("रामः वनं गच्छति।सीता ॥", "sa") == "रामः वनं गच्छति सीता"


def test_foreign_chars_after_normalization():
    sa = get_normalizer("sa")
    assert sa.foreign_chars("रामः, १२३ 45") == set()
    assert sa.foreign_chars("राम abc") == {"a", "b", "c"}
    assert get_normalizer("generic").foreign_chars("राम abc ਸਤ") == set()


def test_punjabi_gurmukhi_and_romanized_are_different_rule_sets():
    assert get_normalizer("pa").foreign_chars("sifar ikk") == set("sifarik")
    assert get_normalizer("pa-Latn").foreign_chars("sifar ikk") == set()
    assert get_normalizer("pa-Latn").foreign_chars("ਸਤਿ") == set("ਸਤਿ")
    assert normalize_text("ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ। ੧੨", "pa") == "ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ ੧੨"
    assert normalize_text("Sifar, IKK do!", "pa-Latn") == "sifar ikk do"


def test_rules_names_and_fallback():
    assert canonical_name("pa", "latn") == canonical_name("PA_latn") == "pa-Latn"
    assert base_language("pa-Latn") == "pa"
    assert get_normalizer("pa_latn").name == "pa-Latn"
    # unknown language, and a known language in an unknown script: the generic default
    assert get_normalizer("xx").punct_classes == get_normalizer("generic").punct_classes
    assert get_normalizer("sa-Latn").allowed == ()
    assert normalize_text("Ünïcode, «test»!  X", "xx") == "ünïcode test x"


def test_english_keeps_apostrophes_and_maps_digits():
    assert normalize_text("Don’t STOP at ٣, rock-n-roll.", "en") == "don't stop at 3 rock n roll"


def test_rules_file_path_and_errors(tmp_path):
    good = tmp_path / "x.yaml"
    good.write_text("extends: generic\ncasefold: false\n")
    assert normalize_text("AbC", str(good)) == "AbC"
    bad = tmp_path / "bad.yaml"
    bad.write_text("digits: spell\n")
    with pytest.raises(RulesError, match="bad.yaml"):
        TextNormalizer.from_file(bad)
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(RulesError, match="circular"):
        TextNormalizer.from_file(loop)


def test_get_normalizer_is_cached():
    assert get_normalizer("sa") is get_normalizer("sa")


# Text mixing the scripts of the bundled rules with combining marks, joiners,
# punctuation and arbitrary code points -- where normalizers typically break.
_ALPHABET = st.sampled_from(
    list("अआकखगङचजञटडणतदनपबमयरलवशषसह") + ["\u093e", "\u093f", "\u094d", "\u093c", "\u0902", "\u0903",
    "\u0958", "\u095c", "\u0964", "\u0965", "\u0966", "ਸ", "ਤ", "\u0a3f", "\u0a4d", "\u0a3c", "\u0a33", "ੴ",
    "a", "Z", "ß", "İ", "ǅ", "é", "e\u0301", "\u0345", "ﬁ", "'", "’", ":", ",", "-", " ", "\t", "\n", "\u200c",
    "\u200d", "\u200b", "\ufeff", "\u00ad", "٣", "1", "¹", "Ⅻ", "😀", "\u0301", "\u0327"]
)
TEXTS = st.one_of(st.text(), st.lists(_ALPHABET, max_size=40).map("".join))


@pytest.mark.parametrize("rules", RULES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_normalizer_properties(rules, text):
    norm = get_normalizer(rules)
    out = norm.normalize(text)  # never raises
    assert isinstance(out, str)
    assert unicodedata.is_normalized("NFC", out)
    assert norm.normalize(out) == out  # idempotent
    assert out == out.strip() and "  " not in out
    foreign = norm.foreign_chars(text)  # never raises
    assert foreign == {ch for ch in out if not norm.is_allowed(ch)}  # also with what it remembers
