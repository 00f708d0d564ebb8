"""Text utilities shared by the probes and ASR: normalisation, greedy CTC, error rates, BPE tokens."""

from __future__ import annotations

import pytest
import torch

from speechrq.errors import SpeechrqError
from speechrq.text import CHARS, BPETokenizer, char_inventory, error_rate, greedy_ctc, greedy_ctc_text, normalize_text, utterance_errors


def test_normalize_text():
    assert normalize_text("  Turn ON the Lights, please!  It's late. ") == "turn on the lights please it's late"
    assert normalize_text(None) == ""


def test_normalize_text_keeps_every_script_and_digits():
    assert normalize_text("CAFÉ NAÏVE SÃO PAULO") == "café naïve são paulo"
    assert normalize_text("ROOM 101 AT 9 PM") == "room 101 at 9 pm"  # digits kept as written
    assert normalize_text("Привет, МИР!") == "привет мир"
    assert normalize_text("नमस्ते, दुनिया।") == "नमस्ते दुनिया"  # vowel signs (marks) kept, the danda dropped
    assert normalize_text("مرحبا، بالعالم؟") == "مرحبا بالعالم"
    assert normalize_text("ＴＶ２ It’s") == "tv2 it's"  # NFKC full-width forms; the typographic apostrophe
    # no spaces between characters of scripts written without them; kept beside other scripts
    assert normalize_text("你好， 世界。") == "你好世界"
    assert normalize_text("我在 Tokyo 工作") == "我在 tokyo 工作"
    assert normalize_text("日本語の テキスト") == "日本語のテキスト"
    assert normalize_text("Straße") == "straße"  # lower case, not case folding to "ss"
    assert normalize_text("!!! ... ？") == ""


def test_chinese_cer_counts_characters():
    refs = [normalize_text("你好，世界。")]
    hyps = [normalize_text("你好 世间")]
    assert error_rate(refs, hyps, "char") == 25.0  # one substitution in four characters, no space counted
    assert utterance_errors(refs, hyps, "char") == ([1], [4])


def test_char_inventory_comes_from_the_transcripts():
    assert char_inventory(["Привет мир", "你好"]) == " веимпрт你好"
    with pytest.raises(SpeechrqError, match="no transcript"):
        char_inventory(["...", ""])


def test_greedy_ctc_merges_repeats_only_across_no_blank_and_stops_at_the_length():
    # blank=0, 'a'=2: "a a _ a" collapses to "aa" only across a blank; frame 5 is padding
    logp = torch.full((2, 6, len(CHARS) + 1), -10.0)
    for t, k in enumerate([2, 2, 0, 2, 1, 3]):
        logp[0, t, k] = 0.0
        logp[1, t, k] = 0.0
    assert greedy_ctc(logp, torch.tensor([5, 2])) == [[2, 2, 1], [2]]
    assert greedy_ctc_text(logp, torch.tensor([5, 2])) == ["aa", "a"]


def test_error_rates():
    assert error_rate(["a b c", "d"], ["a b", ""]) == 50.0  # 1 + 1 errors of 4 words, the empty hypothesis all deletions
    assert error_rate(["abc", "d"], ["ab", ""], "char") == 50.0


def test_bpe_tokens_round_trip(tmp_path):
    texts = ["turn on the lights in the kitchen", "turn off the music", "why did the heat go up"] * 20
    tok = BPETokenizer.train(texts, 40, tmp_path / "t.model")
    ids = tok.encode("Turn on the music!")
    assert tok.decode(ids) == "turn on the music" and len(ids) < len("turn on the music")
    again = BPETokenizer(proto=(tmp_path / "t.model").read_bytes())
    assert again.encode("turn off the lights") == tok.encode("turn off the lights")
    with pytest.raises(SpeechrqError, match="no transcripts"):
        BPETokenizer.train(["!!!"], 40, tmp_path / "x.model")


def test_normalize_text_drops_what_is_written_but_not_read():
    assert normalize_text("hello 😀 world 👍🏽 ❤️") == "hello world"  # no emoji modifier or variation selector left
    assert normalize_text("العـــربية") == "العربية" and normalize_text("ـ") == ""  # tatweel
    assert normalize_text("می\u200cخواهم") == "میخواهم" and normalize_text("co\xadoperate") == "cooperate"  # ZWNJ, soft hyphen
    assert normalize_text("İSTANBUL") == "istanbul"  # no dot left over as a character of its own
    assert normalize_text("½ 10⁵") == "½ 10⁵"  # not "1 2 105": other numbers are kept as written
    assert normalize_text("rock ’n’ roll, students' books") == "rock 'n' roll students' books"
    assert normalize_text("' ’ ''") == ""  # apostrophes beside no letter


def test_mandarin_is_told_written_without_spaces():
    from speechrq.text import written_without_spaces

    assert written_without_spaces(["你好，世界。", "今天 天气 很好", "hello"])
    assert not written_without_spaces(["hello world", "你好"]) and not written_without_spaces([])
