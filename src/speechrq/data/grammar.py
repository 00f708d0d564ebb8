"""The language of the embedded corpus: read sentences for ASR, spoken commands for IC.

Sentences come from a small phrase-structure grammar over a few hundred words: it
yields well over 10^9 distinct sentences, so dev and test sentences are unseen in
training (the synthesizer also enforces it). Commands follow Fluent Speech
Commands: each is an (action, object, location) frame, said in one of several
phrasings, and the intent is the frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = "anna ben carla david emma frank grace henry iris jack karen leo maria nina oscar paula".split()
ADJECTIVES = (
    "old young small large quiet loud bright dark warm cold green red blue yellow brown "
    "heavy light quick slow happy tired clever gentle strange famous simple careful "
    "empty busy clean dusty wooden broken golden silver hidden narrow wide tall short "
    "soft sharp sweet bitter ancient modern lonely friendly proud shy"
).split()
NOUNS = (
    "dog cat horse bird farmer teacher doctor sailor child painter baker driver student "
    "captain singer neighbour king queen soldier pilot writer fox wolf rabbit mouse "
    "lion tiger bear monkey goat sheep cow duck owl fish girl boy woman man stranger "
    "musician gardener merchant miner"
).split()
THINGS = (
    "book letter box basket lamp chair table bottle coin ring map key apple orange "
    "bread cheese cake hat coat shoe bag stone flower tree boat ship wagon bell drum "
    "picture window door ladder rope candle clock mirror blanket cup plate spoon knife"
).split()
VERBS_PAST = (
    "found carried opened closed painted watched followed noticed dropped lifted pushed "
    "pulled cleaned fixed broke sold bought hid washed wrapped counted borrowed "
    "returned admired ignored touched chased visited helped called"
).split()
VERBS_BASE = (
    "find carry open close paint watch follow notice drop lift push pull clean fix "
    "sell buy hide wash wrap count borrow return admire touch chase visit help call"
).split()
ADVERBS = (
    "slowly quickly quietly carefully happily sadly suddenly finally gently proudly "
    "eagerly calmly rarely often nearly"
).split()
PREPOSITIONS = "near behind under beside inside above below across beyond".split()
PLACES = (
    "river market garden station bridge village forest castle harbour library church "
    "school kitchen mountain valley road field farm island tower"
).split()
NUMBERS = "two three four five six seven eight nine ten eleven twelve twenty".split()


def _np(rng: random.Random) -> str:
    """A noun phrase: 'the (adj) noun' or a name."""
    if rng.random() < 0.15:
        return rng.choice(NAMES)
    det = rng.choice(["the", "the", "a", "that", "every", "my", "our"])
    adj = f"{rng.choice(ADJECTIVES)} " if rng.random() < 0.6 else ""
    return f"{det} {adj}{rng.choice(NOUNS)}"


def _obj(rng: random.Random) -> str:
    det = rng.choice(["the", "a", "this", "her", "his", "their"])
    r = rng.random()
    if r < 0.15:
        return f"{rng.choice(NUMBERS)} {rng.choice(ADJECTIVES)} {rng.choice(THINGS)}s"
    adj = f"{rng.choice(ADJECTIVES)} " if r < 0.65 else ""
    return f"{det} {adj}{rng.choice(THINGS)}"


def _pp(rng: random.Random) -> str:
    return f"{rng.choice(PREPOSITIONS)} the {rng.choice(PLACES)}"


_TEMPLATES = (
    lambda r: f"{_np(r)} {r.choice(VERBS_PAST)} {_obj(r)}",
    lambda r: f"{_np(r)} {r.choice(VERBS_PAST)} {_obj(r)} {_pp(r)}",
    lambda r: f"{_np(r)} {r.choice(ADVERBS)} {r.choice(VERBS_PAST)} {_obj(r)}",
    lambda r: f"{_pp(r)} {_np(r)} {r.choice(VERBS_PAST)} {_obj(r)}",
    lambda r: f"why did {_np(r)} {r.choice(VERBS_BASE)} {_obj(r)}",
    lambda r: f"{_np(r)} will {r.choice(VERBS_BASE)} {_obj(r)} {r.choice(ADVERBS)}",
    lambda r: f"{_np(r)} {r.choice(VERBS_PAST)} {_obj(r)} and {_np(r)} {r.choice(VERBS_PAST)} {_obj(r)}",
)


def sentence(rng: random.Random) -> str:
    """One lower-case sentence of 4 to 16 words, without punctuation."""
    return rng.choice(_TEMPLATES)(rng)


@dataclass(frozen=True)
class Intent:
    action: str
    object: str
    location: str  # "none" when the command names no place, as in FSC

    @property
    def label(self) -> str:
        return f"{self.action}|{self.object}|{self.location}"


_LOCATIONS = ("none", "kitchen", "bedroom", "washroom")
_PHRASINGS = {
    "activate": ("turn on the {o}{l}", "switch on the {o}{l}", "switch the {o} on{l}", "{o} on{l}"),
    "deactivate": ("turn off the {o}{l}", "switch off the {o}{l}", "turn the {o} off{l}", "{o} off{l}"),
    "increase": ("turn up the {o}{l}", "increase the {o}{l}", "raise the {o}{l}", "more {o}{l}"),
    "decrease": ("turn down the {o}{l}", "decrease the {o}{l}", "lower the {o}{l}", "less {o}{l}"),
    "bring": ("bring me the {o}", "fetch the {o}", "go get the {o}", "i need the {o}"),
    "change language": ("switch the language to {o}", "change language to {o}", "set the language to {o}", "use {o}"),
}


def _intents() -> tuple[Intent, ...]:
    out = []
    for action in ("activate", "deactivate"):
        for obj in ("lights", "heat"):
            out += [Intent(action, obj, loc) for loc in _LOCATIONS]
        out += [Intent(action, obj, "none") for obj in ("music", "lamp")]
    for action in ("increase", "decrease"):
        out += [Intent(action, "heat", loc) for loc in _LOCATIONS]
        out.append(Intent(action, "volume", "none"))
    out += [Intent("bring", obj, "none") for obj in ("newspaper", "juice", "socks", "shoes")]
    out += [Intent("change language", obj, "none") for obj in ("chinese", "korean", "english", "german")]
    return tuple(out)


INTENTS = _intents()


def command(rng: random.Random) -> tuple[str, Intent]:
    """A spoken command and its intent frame."""
    intent = rng.choice(INTENTS)
    where = "" if intent.location == "none" else f" in the {intent.location}"
    text = rng.choice(_PHRASINGS[intent.action]).format(o=intent.object, l=where)
    return text, intent
