"""``speechrq synth``: the embedded corpora, spoken offline by espeak-ng.

The English corpus carries every label the rest of speechrq needs: speakers (SID),
transcripts (ASR), command intents with slots (IC), four prosody styles (ER) and
phone/word alignments from espeak's own events (target analyses).

The multilingual corpus (``--languages en,fr,ru,cmn,...``, the analogue of ML-SUPERB
for the RPQ paper's multilingual column) reads sentences of each language, drawn from
wordfreq's list of its most frequent words, in espeak-ng's voice for that language;
each utterance carries its language id (``supervision.language``, the LID label),
speaker, style and espeak's phone alignment in that language (:data:`LANGUAGES`).

How it is made, in three steps:

1. **Plan** (pure Python, seeded): speakers, then every utterance's speaker, style,
   text, labels and split. Nothing here depends on the number of workers.
2. **Synthesize** in fixed shards. espeak-ng's output depends on every call made
   since the library was loaded, so each shard runs in a freshly forked process
   that loads the library, speaks its utterances in plan order and exits. A shard
   is therefore a pure function of the plan: byte-identical for a seed, whatever
   the worker count, and resumable shard by shard (finished shards are kept).
3. **Assemble** lhotse manifests per split. Audio paths are absolute, under the corpus
   directory (recorded in ``paths.json``), so lhotse alone opens them from anywhere; two
   corpora made with one seed are byte-identical but for the folder's path, with one
   fingerprint, and a moved corpus reads in speechrq as it is and elsewhere once
   :func:`speechrq.data.corpus.relocate` rewrote it (see :mod:`speechrq.data.corpus`).
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import time
import wave
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import SpeechrqError
from ..frames import SAMPLE_RATE
from ..io import atomic_path, atomic_write_json, atomic_write_text
from . import grammar

SPLITS = ("train", "dev", "test")

# Accents are espeak-ng English voices; variants are voices/!v files (case-sensitive).
ACCENTS = ("en", "en-us", "en-029", "en-gb-scotland", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
# Voice variants set the timbre (formants, breath, tone), which is what tells speakers
# apart; accents change pronunciation. These are the human-sounding variants that
# run on espeak's fast formant synthesizer (the klatt ones are 2x slower).
# f2, f3, f5 and victor speak without their breath noise, which espeak-ng does not reproduce
# from one process to the next (see speechrq.data.espeak.BREATHLESS).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2-still", "f3-still", "f4", "f5-still",
    "Andrea", "Annie", "Jacky", "Nguyen", "anika", "aunty", "belinda", "ed", "grandma", "linda",
    "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob",
    "robert", "steph", "victor-still", "zac",
)
PITCH_BANDS = {"low": 28, "mid": 45, "high": 62}
RATES = {"slow": 150, "medium": 172, "fast": 195}
MAX_SPEAKERS = len(ACCENTS) * len(VARIANTS) * len(PITCH_BANDS) * len(RATES)

# The four emotion labels, as offsets from the speaker's own prosody.
STYLES = {
    # name: (pitch offset, range offset, rate factor, volume)
    "neutral": (0, 0, 1.00, 100),
    "happy": (14, 30, 1.10, 115),
    "sad": (-12, -30, 0.82, 75),
    "angry": (4, 15, 1.18, 150),
}
# The multilingual corpus's languages: id -> (espeak-ng voice, wordfreq word list). Each is one that wordfreq lists
# and espeak-ng speaks in its own voice, checked by speaking ten of its frequent words: ja is left out (espeak reads
# kanji as English), fil and sh have no espeak voice. cmn and yue read wordfreq's Chinese (simplified) words.
LANGUAGES = {code: (code, code) for code in (
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hu", "id", "is", "it",
    "ko", "lt", "lv", "mk", "ms", "nb", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "ta", "tr", "uk", "ur", "vi",
)} | {"cmn": ("cmn", "zh"), "yue": ("yue", "zh")}
VOCABULARY = 3000  # the most frequent words of a language that sentences are drawn from
SENTENCE_WORDS = (4, 10)  # words per sentence (characters-words in a script without spaces count the same)
COMMAND_SHARE = 0.3  # default share of utterances that are spoken commands (IC), the rest read sentences
NOISE_FLOOR = 10.0  # standard deviation, int16 units
NOISE_TABLE = 1 << 20  # samples of the seeded noise table (65 s at 16 kHz)
SHARD_SIZE = 256  # utterances per forked process: amortises the fork and library start-up


@dataclass(frozen=True)
class SynthConfig:
    hours: float = 1.0
    speakers: int = 32
    seed: int = 0
    shard_size: int = SHARD_SIZE
    # 1.0 makes a command corpus for IC probes, as SUPERB probes IC on Fluent Speech
    # Commands rather than on the pre-training corpus: at 0.3, an hour holds ~400
    # training commands for 38 intents, too few for any utterance-level probe.
    command_share: float = COMMAND_SHARE
    # Per-utterance prosody on top of the speaker's own, so a speaker is not one fixed pitch
    # and rate: each utterance's rate times a factor in [1 - rate_jitter, 1 + rate_jitter],
    # its pitch moved by up to pitch_jitter on espeak's 0-100 scale (drawn from a generator of
    # their own: the defaults leave every existing corpus byte-identical).
    rate_jitter: float = 0.0
    pitch_jitter: float = 0.0
    # White noise at this SNR (dB) to the utterance's speech power; None: only the faint floor.
    snr_db: float | None = None
    # "" makes the English corpus; comma-separated ids of LANGUAGES make the multilingual one (read sentences only)
    languages: str = ""

    @property
    def language_list(self) -> list[str]:
        return [c.strip() for c in self.languages.split(",") if c.strip()]

    def validate(self) -> None:
        if not (self.hours > 0):
            raise SpeechrqError(f"--hours: must be > 0, got {self.hours}")
        if not (2 <= self.speakers <= MAX_SPEAKERS):
            raise SpeechrqError(f"--speakers: must be between 2 and {MAX_SPEAKERS}, got {self.speakers}")
        if not (0.0 <= self.command_share <= 1.0):
            raise SpeechrqError(f"--command-share: must be between 0 and 1, got {self.command_share}")
        if self.shard_size < 1:
            raise SpeechrqError(f"shard_size: must be >= 1, got {self.shard_size}")
        if not (0.0 <= self.rate_jitter < 0.5):
            raise SpeechrqError(f"--rate-jitter: must be in [0, 0.5), got {self.rate_jitter}")
        if not (0.0 <= self.pitch_jitter <= 30.0):
            raise SpeechrqError(f"--pitch-jitter: must be in [0, 30], got {self.pitch_jitter}")
        if self.snr_db is not None and not (-10.0 <= self.snr_db <= 60.0):
            raise SpeechrqError(f"--snr: must be between -10 and 60 dB, got {self.snr_db}")
        if self.languages:
            codes = self.language_list
            if not codes or len(codes) != len(self.languages.split(",")):
                raise SpeechrqError(f"--languages: {self.languages!r} holds an empty item; give ids separated by commas (e.g. en,fr,cmn)")
            if (unknown := [c for c in codes if c not in LANGUAGES]):
                why = " (ja: espeak-ng reads kanji as English)" if "ja" in unknown else ""
                raise SpeechrqError(f"--languages: {', '.join(map(repr, unknown))} not spoken here{why} "
                                    f"(choose from {', '.join(sorted(LANGUAGES))})")
            if len(set(codes)) != len(codes):
                raise SpeechrqError(f"--languages: {self.languages!r} names a language twice")
            if self.speakers < 2 * len(codes):
                raise SpeechrqError(f"--speakers: {self.speakers} speakers for {len(codes)} languages; each language needs "
                                    f"at least 2 (ask for >= {2 * len(codes)})")
            if self.command_share:
                raise SpeechrqError(f"--command-share: the multilingual corpus holds read sentences only (commands are "
                                    f"English); got {self.command_share}")


@dataclass(frozen=True)
class Speaker:
    id: str
    accent: str
    variant: str
    pitch_band: str
    rate_band: str

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


@dataclass(frozen=True)
class Utterance:
    id: str
    speaker: str
    split: str
    kind: str  # "sentence" or "command"
    style: str
    text: str
    intent: dict | None = None
    pitch_jitter: int = 0
    rate_factor: float = 1.0  # SynthConfig.rate_jitter's draw
    pitch_offset: int = 0  # SynthConfig.pitch_jitter's draw
    language: str = "English"  # the supervision's language: an id of LANGUAGES in the multilingual corpus


@dataclass
class Plan:
    config: SynthConfig
    speakers: list[Speaker]
    utterances: list[Utterance] = field(default_factory=list)

    def shards(self) -> list[list[Utterance]]:
        """Fixed groups of utterances, each spoken by one process in this order.

        Inside a shard utterances are grouped by speaker, so the voice is loaded
        once per speaker rather than once per utterance.
        """
        n = self.config.shard_size
        groups = [self.utterances[i : i + n] for i in range(0, len(self.utterances), n)]
        return [sorted(g, key=lambda u: (u.speaker, u.id)) for g in groups]


def _estimated_seconds(text: str, rate_wpm: float) -> float:
    # Measured on espeak-ng's English voices: ~0.72 of a word per rate_wpm-minute
    # (short words dominate the grammar) plus ~0.3 s of edge silence.
    return 0.72 * len(text.split()) * 60.0 / rate_wpm + 0.3


def word_list(language: str) -> tuple[list[str], list[float]]:
    """The :data:`VOCABULARY` most frequent words of ``language`` (an id of :data:`LANGUAGES`) by wordfreq, with
    cumulative weights (the square root of each word's frequency, so that sentences are not all function words).

    A word is kept when :func:`speechrq.text.normalize_text` leaves it as it is (no digits-only or punctuation
    tokens) and, in a script written with spaces, when it is longer than one character (wordfreq splits French
    ``l'`` and ``d'`` into single letters).
    """
    import wordfreq

    from ..text import normalize_text

    source = LANGUAGES[language][1]
    words = []
    for w in wordfreq.top_n_list(source, 3 * VOCABULARY, wordlist="best"):
        norm = normalize_text(w)
        if norm == w and not w.isdigit() and (len(w) > 1 or _spaceless(w)):
            words.append(w)
        if len(words) == VOCABULARY:
            break
    freq = wordfreq.get_frequency_dict(source, wordlist="best")  # the list's own frequencies, no tokenizer needed
    cum, total = [], 0.0
    for w in words:
        total += freq[w] ** 0.5
        cum.append(total)
    return words, cum


def _spaceless(text: str) -> bool:
    from ..text import normalize_text

    return " " not in normalize_text(f"{text} {text}")  # two words of a spaceless script lose the space between them


def _sentence(rng: random.Random, words: list[str], cum: list[float]) -> str:
    picked = rng.choices(words, cum_weights=cum, k=rng.randint(*SENTENCE_WORDS))
    return ("" if _spaceless(picked[0]) else " ").join(picked)


def _new_speaker(rng: random.Random, taken: set, i: int, accent: str, variant: str) -> Speaker:
    """Speaker ``i``: a pitch band and rate drawn until the (voice, variant, band, rate) is one no speaker has."""
    while True:
        band, rate = rng.choice(sorted(PITCH_BANDS)), rng.choice(sorted(RATES))
        if (accent, variant, band, rate) not in taken:
            break
    taken.add((accent, variant, band, rate))
    return Speaker(f"spk{i:03d}", accent, variant, band, rate)


def _split_of(i: int, num_speakers: int) -> str:
    """Utterance ``i``'s split: its speaker's k-th utterance (speakers take turns); 8 of 10 go to train, 1 to dev, 1 to
    test, and a speaker with 3 utterances is already in every split (SID needs that)."""
    k = i // num_speakers
    return "dev" if k % 10 == 1 else "test" if k % 10 == 2 else "train"


def _plan_multilingual(config: SynthConfig) -> Plan:
    """Speakers spread over the languages in turn; each utterance a read sentence in its speaker's language."""
    rng = random.Random(config.seed)
    codes = config.language_list
    vocab = {c: word_list(c) for c in codes}
    speakers, taken, language = [], set(), {}
    variants = rng.sample(VARIANTS, len(VARIANTS))
    for i in range(config.speakers):
        code = codes[i % len(codes)]
        speakers.append(_new_speaker(rng, taken, i, LANGUAGES[code][0], variants[i % len(variants)]))
        language[speakers[-1].id] = code
    target = config.hours * 3600.0
    total, utterances = 0.0, []
    while total < target:
        i = len(utterances)
        spk, split = speakers[i % len(speakers)], _split_of(i, len(speakers))
        style = rng.choice(sorted(STYLES))
        code = language[spk.id]
        text = _sentence(rng, *vocab[code])
        utterances.append(Utterance(f"{spk.id}-{i:06d}", spk.id, split, "sentence", style, text, None, rng.randint(-3, 3),
                                    language=code))
        # measured on espeak-ng at 172 words/min: ~0.047 s per letter (0.040 fr to 0.051 en), ~0.23 s per Chinese character
        per_char = 0.23 if _spaceless(text) else 0.047
        total += per_char * len(text) * 172.0 / (RATES[spk.rate_band] * STYLES[style][2]) + 0.3
    train_texts = {u.text for u in utterances if u.split == "train"}
    for i, u in enumerate(utterances):
        if u.split != "train" and u.text in train_texts:  # dev and test sentences are unseen in training
            text = u.text
            while text in train_texts:
                text = _sentence(rng, *vocab[u.language])
            utterances[i] = Utterance(u.id, u.speaker, u.split, u.kind, u.style, text, None, u.pitch_jitter, language=u.language)
    return Plan(config, speakers, utterances)


def plan_corpus(config: SynthConfig) -> Plan:
    """Decide every speaker and utterance of the corpus from the seed alone."""
    config.validate()
    if config.languages:
        plan = _plan_multilingual(config)
        return _jittered(plan) if config.rate_jitter or config.pitch_jitter else plan
    rng = random.Random(config.seed)
    speakers, taken = [], set()
    variants = rng.sample(VARIANTS, len(VARIANTS))
    for i in range(config.speakers):
        # Every speaker has a variant of its own while they last (37); accents rotate.
        speakers.append(_new_speaker(rng, taken, i, ACCENTS[i % len(ACCENTS)], variants[i % len(variants)]))

    target = config.hours * 3600.0
    total, utterances = 0.0, []
    while total < target:
        i = len(utterances)
        spk, split = speakers[i % len(speakers)], _split_of(i, len(speakers))
        style = rng.choice(sorted(STYLES))
        if rng.random() < config.command_share:
            text, intent = grammar.command(rng)
            kind, intent_d = "command", {"intent": intent.label, "action": intent.action, "object": intent.object, "location": intent.location}
        else:
            text, kind, intent_d = grammar.sentence(rng), "sentence", None
        utt = Utterance(f"{spk.id}-{i:06d}", spk.id, split, kind, style, text, intent_d, rng.randint(-3, 3))
        utterances.append(utt)
        total += _estimated_seconds(text, RATES[spk.rate_band] * STYLES[style][2])

    # Read sentences of dev and test must be unseen in training.
    train_texts = {u.text for u in utterances if u.split == "train" and u.kind == "sentence"}
    for i, u in enumerate(utterances):
        if u.split != "train" and u.kind == "sentence":
            text = u.text
            while text in train_texts:
                text = grammar.sentence(rng)
            if text != u.text:
                utterances[i] = Utterance(u.id, u.speaker, u.split, u.kind, u.style, text, u.intent, u.pitch_jitter)
    plan = Plan(config, speakers, utterances)
    return _jittered(plan) if config.rate_jitter or config.pitch_jitter else plan


def _jittered(plan: Plan) -> Plan:
    from dataclasses import replace

    config = plan.config
    vary = random.Random(f"speechrq-prosody-{config.seed}")  # its own stream: the plan above is unchanged
    utterances = [replace(u, rate_factor=round(1.0 + vary.uniform(-config.rate_jitter, config.rate_jitter), 4),
                          pitch_offset=round(vary.uniform(-config.pitch_jitter, config.pitch_jitter))) for u in plan.utterances]
    return Plan(config, plan.speakers, utterances)


# --------------------------------------------------------------------------- shards


def _prosody(spk: Speaker, utt: Utterance):
    from .espeak import Prosody

    dp, dr, fr, vol = STYLES[utt.style]
    clamp = lambda v: max(0, min(100, v))
    return Prosody(
        rate=int(round(RATES[spk.rate_band] * fr * utt.rate_factor)),
        pitch=clamp(PITCH_BANDS[spk.pitch_band] + dp + utt.pitch_jitter + utt.pitch_offset),
        range=clamp(50 + dr),
        volume=vol,
    )


def _phone_symbol(mnemonic: str) -> str | None:
    # espeak marks stress inside the mnemonic ('oU, ,a); pauses are _ , _: , _!
    if mnemonic.startswith("_"):
        return "sil"
    if mnemonic.startswith("("):  # a switch of language, "(en)": no phone of its own
        return None
    return mnemonic.replace("'", "").replace(",", "") or "sil"


def _alignments(syn, text: str, rate_in: int) -> dict:
    """Phone and word alignments in seconds from espeak's phoneme and word events."""
    n = len(syn.samples)
    phones = []
    events = [(name, start) for name, start in syn.phones if _phone_symbol(name) is not None]
    for j, (name, start) in enumerate(events):
        end = events[j + 1][1] if j + 1 < len(events) else n
        if end > start:
            phones.append([_phone_symbol(name), round(start / rate_in, 5), round((end - start) / rate_in, 5)])
    # espeak sends no word event for clitics it speaks with a neighbour ("on the"),
    # so a word item covers the text up to the next event: its symbol may hold two words.
    pauses = [s for name, s in syn.phones if name.startswith("_")]
    words = []
    for j, (pos, length, start) in enumerate(syn.words):
        end = syn.words[j + 1][2] if j + 1 < len(syn.words) else n
        end = min([p for p in pauses if start < p < end] + [end])
        text_end = syn.words[j + 1][0] - 1 if j + 1 < len(syn.words) else len(text)
        word = text[pos - 1 : text_end].strip()
        if end > start and word:
            words.append([word, round(start / rate_in, 5), round((end - start) / rate_in, 5)])
    return {"phone": phones, "word": words}


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    # The stdlib writer: a 16-bit mono RIFF file costs one write, where libsndfile's
    # open/flush/close costs more than the resampling of a short utterance.
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


@functools.lru_cache(maxsize=2)
def _resampler(rate_in: int) -> tuple[int, int, np.ndarray]:
    """Polyphase factors and the anti-aliasing filter, designed once per process.

    The filter is scipy's default design for resample_poly (Kaiser window, beta 5)
    at 8 rather than 10 zero crossings a side and in float32: resampling is a third
    of the synthesis time, and this keeps the stop band below -50 dB. Designing it
    anew for every utterance would cost as much as the resampling itself.
    """
    from scipy.signal import firwin

    g = math.gcd(SAMPLE_RATE, rate_in)
    up, down = SAMPLE_RATE // g, rate_in // g
    max_rate = max(up, down)
    return up, down, firwin(16 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


SHARD_DISK_FULL = 28  # a shard's exit status when its disk was full (errno ENOSPC)


def _shard_process(out_dir: str, shard_index: int, utterances: list[Utterance], speakers: dict[str, Speaker], seed: int,
                   snr_db: float | None = None, parent: int | None = None) -> None:
    """Body of a shard's process: synthesize, then write the shard's rows atomically. It ends with ``parent`` (a killed
    `synth` leaves no shard writing into the corpus, nor holding its lock)."""
    from ..parallel import die_with_parent

    die_with_parent(parent)
    shard_dir = Path(out_dir) / "shards"
    (shard_dir / f"{shard_index:04d}.error").unlink(missing_ok=True)  # from an earlier failed run
    try:
        rows = _synthesize_shard(out_dir, shard_index, utterances, speakers, seed, snr_db)
        atomic_write_text(shard_dir / f"{shard_index:04d}.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    except BaseException as e:  # reported by the parent, which names the shard
        from ..io import is_disk_full

        if is_disk_full(e, shard_dir / "x"):
            raise SystemExit(SHARD_DISK_FULL)  # no room for an .error file either
        atomic_write_text(shard_dir / f"{shard_index:04d}.error", f"{type(e).__name__}: {e}\n")
        raise SystemExit(1)


@functools.lru_cache(maxsize=2)
def _noise_table(seed: int, stream: int = 0) -> np.ndarray:
    """Seeded white noise: stream 0 is the floor (std NOISE_FLOOR), stream 1 the --snr noise (std 1)."""
    scale = np.float32(NOISE_FLOOR if stream == 0 else 1.0)
    return np.random.default_rng([seed, 0x5EED, stream] if stream else [seed, 0x5EED]).standard_normal(NOISE_TABLE, dtype=np.float32) * scale


def _added_noise(audio: np.ndarray, snr_db: float, seed: int, utt_number: int) -> np.ndarray:
    """White noise at ``snr_db`` below the utterance's speech power (samples above 1% of its peak:
    espeak's pauses are silent and would otherwise lower the power the SNR refers to)."""
    noise = _window(_noise_table(seed, 1), utt_number * 7919 + 12345, len(audio))
    active = audio[np.abs(audio) > 0.01 * np.abs(audio).max()]
    power = float(np.mean(active.astype(np.float64) ** 2)) if active.size else 0.0
    return noise * np.float32(math.sqrt(power / 10 ** (snr_db / 10)))


def _noise_floor(seed: int, utt_number: int, n: int) -> np.ndarray:
    """A faint noise floor (about -70 dBFS) for one utterance, from the seed alone.

    espeak's pauses are digital zeros, which no microphone records and which drive
    log-Mel energies to the floor of the log. Drawing fresh noise per utterance
    costs a third of the synthesis, so each utterance takes its own window of one
    seeded table (a window longer than the table wraps around).
    """
    return _window(_noise_table(seed), utt_number * 104729, n)


def _window(table: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of ``table`` from ``start`` (modulo its length), wrapping around at its end."""
    start %= len(table)
    return table[(start + np.arange(n)) % len(table)] if start + n > len(table) else table[start : start + n]


def _utt_number(utt_id: str) -> int:
    return int(utt_id.rsplit("-", 1)[1])


def _synthesize_shard(out_dir: str, shard_index: int, utterances: list[Utterance], speakers: dict[str, Speaker], seed: int,
                      snr_db: float | None = None) -> list[dict]:
    """Runs in a fresh process: the library's hidden state starts from its initial value."""
    from scipy.signal import resample_poly

    from .espeak import Espeak

    engine = Espeak()
    up, down, fir = _resampler(engine.sample_rate)
    rel_dir = Path("audio") / f"{shard_index:04d}"
    (Path(out_dir) / rel_dir).mkdir(parents=True, exist_ok=True)
    rows = []
    for utt in utterances:
        spk = speakers[utt.speaker]
        syn = engine.synthesize(utt.text, spk.voice, _prosody(spk, utt))
        if len(syn.samples) == 0:
            raise RuntimeError(f"espeak-ng produced no audio for {utt.id}: {utt.text!r}")
        audio = resample_poly(syn.samples.astype(np.float32), up, down, window=fir)
        if snr_db is not None:
            audio = audio + _added_noise(audio, snr_db, seed, _utt_number(utt.id))
        pcm = np.clip(np.round(audio + _noise_floor(seed, _utt_number(utt.id), len(audio))), -32768, 32767).astype(np.int16)
        rel = rel_dir / f"{utt.id}.wav"
        _write_wav(Path(out_dir) / rel, pcm)
        num_samples = len(pcm)
        duration = num_samples / SAMPLE_RATE
        ali = _alignments(syn, utt.text, engine.sample_rate)
        # Alignment ends must not pass the (resampled) recording's end.
        for items in ali.values():
            for it in items:
                it[2] = round(max(0.0, min(it[2], duration - it[1])), 5)
        recording = {
            "id": utt.id,
            "sources": [{"type": "file", "channels": [0], "source": str(rel)}],
            "sampling_rate": SAMPLE_RATE,
            "num_samples": num_samples,
            "duration": duration,
            "channel_ids": [0],
        }
        custom = {"kind": utt.kind, "emotion": utt.style, "accent": spk.accent}
        if utt.intent:
            custom.update(utt.intent)
        supervision = {
            "id": utt.id,
            "recording_id": utt.id,
            "start": 0.0,
            "duration": duration,
            "channel": 0,
            "text": utt.text,
            "language": utt.language,
            "speaker": spk.id,
            "custom": custom,
            "alignment": {
                kind: [[s, st, du] for s, st, du in items]
                for kind, items in ali.items()
            },
        }
        rows.append({"split": utt.split, "recording": recording, "supervision": supervision})
    return rows


# --------------------------------------------------------------------------- driver


def _config_record(config: SynthConfig) -> dict:
    record = asdict(config)
    if not record["languages"]:  # the English corpus's plan.json as before the multilingual corpus
        del record["languages"]
    return record


def _plan_record(plan: Plan) -> dict:
    return {"config": _config_record(plan.config), "speakers": [asdict(s) | {"voice": s.voice} for s in plan.speakers], "num_utterances": len(plan.utterances)}


def synthesize_corpus(
    out_dir: str | Path, config: SynthConfig, workers: int = 1, progress: bool = True, timings: dict | None = None
) -> dict:
    """Make (or finish) the corpus in ``out_dir``; returns its summary.

    Finished shards of an interrupted run are reused; a finished corpus is
    returned as it is. A directory holding a corpus of another config is refused.
    """
    from tqdm import tqdm

    timings = {} if timings is None else timings
    out = Path(out_dir)
    plan = plan_corpus(config)
    from ..identity import versions

    record = _plan_record(plan) | {"versions": versions(*(("espeakng-loader", "wordfreq") if config.languages else ("espeakng-loader",)))}
    plan_file = out / "plan.json"
    if plan_file.exists():
        old = json.loads(plan_file.read_text())
        # a field added since the corpus was made reads as its default, so the corpus stays valid
        defaults = {f.name: f.default for f in fields(SynthConfig)}
        if {**defaults, **(old.get("config") or {})} != asdict(config):
            from ..identity import describe_difference

            raise SpeechrqError(f"{out}: holds a corpus made with other settings "
                                f"({describe_difference({**defaults, **(old.get('config') or {})}, asdict(config))}); "
                                "use another directory or delete this one")
        summary_file = out / "summary.json"
        if summary_file.exists():  # finished: used as it is, whichever speechrq made it
            return json.loads(summary_file.read_text())
        if old.get("speakers") != record["speakers"]:
            raise SpeechrqError(f"{out}: an unfinished corpus planned with other speakers (an older speechrq's voices); "
                                "finish it with that version, or delete it and synthesize again")
        if old.get("versions", record["versions"]) != record["versions"]:  # shards of two synthesizers never mix
            raise SpeechrqError(f"{out}: an unfinished corpus begun with {old['versions']}, not {record['versions']}; "
                                "finish it with that version, or delete it and synthesize again")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan_file, record)

    shard_dir = out / "shards"
    shard_dir.mkdir(exist_ok=True)
    shards = plan.shards()
    todo = [i for i in range(len(shards)) if not (shard_dir / f"{i:04d}.jsonl").exists()]
    speakers = {s.id: s for s in plan.speakers}
    bar = tqdm(total=len(shards), initial=len(shards) - len(todo), desc="synth", unit="shard", disable=not progress)

    # Load what the workers use once, here, so that forked workers inherit it. The
    # library is only dlopen()ed, never initialised, so its state stays pristine.
    import ctypes

    import espeakng_loader
    import scipy.signal  # noqa: F401

    ctypes.CDLL(espeakng_loader.get_library_path())
    t0 = time.perf_counter()

    # One forked process per shard (the parent never loads libespeak-ng), so every
    # shard's library starts from its initial state. Processes are managed by hand
    # rather than by multiprocessing.Pool(maxtasksperchild=1), whose worker
    # handler polls every 0.1 s and would idle the cores between shards.
    ctx = multiprocessing.get_context("fork")
    running: dict[int, multiprocessing.Process] = {}
    pending = list(todo)
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                i = pending.pop(0)
                proc = ctx.Process(target=_shard_process, args=(str(out), i, shards[i], speakers, config.seed, config.snr_db, os.getpid()),
                                   daemon=True)
                proc.start()
                running[i] = proc
            ready = multiprocessing.connection.wait([p.sentinel for p in running.values()])
            for i, proc in list(running.items()):
                if proc.sentinel in ready:
                    proc.join()
                    del running[i]
                    if proc.exitcode == SHARD_DISK_FULL:
                        raise SpeechrqError(f"{out}: no space left on the device while writing shard {i}'s audio; nothing "
                                            "half-written is kept: free space and run the same command again (it continues "
                                            "from the finished shards)")
                    if proc.exitcode != 0:
                        err = shard_dir / f"{i:04d}.error"
                        why = err.read_text().strip() if err.exists() else f"exit code {proc.exitcode}"
                        raise SpeechrqError(f"{out}: synthesis of shard {i} failed: {why}")
                    bar.update(1)
    finally:
        for proc in running.values():
            proc.kill()
    bar.close()
    timings["synthesis_seconds"] = time.perf_counter() - t0
    return _assemble(out, len(shards))


def _assemble(out: Path, num_shards: int) -> dict:
    from lhotse import CutSet, RecordingSet, SupervisionSet
    from lhotse.supervision import SupervisionSegment
    from lhotse.audio import Recording

    by_split: dict[str, tuple[list, list]] = {s: ([], []) for s in SPLITS}
    for i in range(num_shards):
        for line in (out / "shards" / f"{i:04d}.jsonl").read_text().splitlines():
            row = json.loads(line)
            recs, sups = by_split[row["split"]]
            recs.append(Recording.from_dict(row["recording"]))
            sups.append(SupervisionSegment.from_dict(row["supervision"]))
    from .corpus import record_root

    record_root(out)  # the manifests' audio paths are absolute (lhotse reads them from anywhere): under this folder, recorded
    for split, (recs, sups) in by_split.items():
        if not recs:
            continue
        cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs), supervisions=SupervisionSet.from_segments(sups))
        # Plain JSONL, not gzip: gzip headers hold a timestamp, and the corpus is byte-identical per seed (and folder).
        cuts = cuts.sort_by_recording_id().with_recording_path_prefix(out.resolve())
        with atomic_path(out / f"cuts_{split}.jsonl") as tmp:
            cuts.to_file(tmp)
    from .corpus import summarize

    summary = summarize(out)
    atomic_write_json(out / "summary.json", summary)
    return summary
