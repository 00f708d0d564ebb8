"""Which corpus splits a probe trains, selects and scores on: one fold, or leave-one-out folds.

The embedded corpus has ``train``/``dev``/``test``; real corpora name their parts
their own way (LibriSpeech ``train-clean-100``/``dev-clean``/``test-clean``), and
IEMOCAP is scored SUPERB's way, leave one session out: five folds, each testing on
one session and training on the other four, with a seeded share of the training
utterances held out as dev (s3prl's ``valid_ratio``), the five test scores averaged.

- ``parse_splits("train=train-clean-100,dev=dev-clean,test=test-clean")``: one fold;
  ``+`` joins parts (``train=train-clean-100+train-clean-360``); leaving ``dev`` out
  holds out ``dev_share`` of train instead.
- ``leave_one_out(["session1", ..., "session5"], dev_share=0.2)``: the folds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import SpeechrqError

ROLES = ("train", "dev", "test")
DEV_SHARE = 0.2  # s3prl's emotion recipe holds out 20% of the training sessions as dev


@dataclass(frozen=True)
class Fold:
    """Corpus parts per role. An empty ``dev`` means: hold out ``dev_share`` of the train utterances (seeded)."""

    name: str
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]
    dev_share: float = 0.0

    @property
    def parts(self) -> list[str]:
        return sorted(set(self.train) | set(self.dev) | set(self.test))

    def assign(self, items: dict[str, list], seed: int = 0) -> dict[str, list]:
        """``{role: items}`` from ``{part: items}``; items are ``(utterance id, label)`` pairs."""
        out = {role: [x for part in getattr(self, role) for x in items[part]] for role in ROLES}
        if not self.dev:  # carve dev out of train: the same utterances whatever order the manifests list them in
            train = sorted(out["train"], key=lambda x: x[0])
            random.Random(seed).shuffle(train)
            n = max(1, round(self.dev_share * len(train))) if train else 0
            out["dev"], out["train"] = sorted(train[:n], key=lambda x: x[0]), sorted(train[n:], key=lambda x: x[0])
        return out


DEFAULT_FOLD = Fold("", ("train",), ("dev",), ("test",))


def parse_splits(spec: str, dev_share: float = DEV_SHARE) -> Fold:
    """``"train=A+B,dev=C,test=D"`` -> a :class:`Fold`; ``dev`` may be left out (held out from train)."""
    roles: dict[str, tuple[str, ...]] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        role, eq, parts = item.partition("=")
        role = role.strip()
        names = tuple(p.strip() for p in parts.split("+") if p.strip())
        if not eq or role not in ROLES or not names:
            raise SpeechrqError(f"--splits: {item!r} is not ROLE=PART[+PART...] with ROLE one of {', '.join(ROLES)}")
        if role in roles:
            raise SpeechrqError(f"--splits: {role} is given twice")
        roles[role] = names
    for role in ("train", "test"):
        if role not in roles:
            raise SpeechrqError(f"--splits: {spec!r} names no {role} part (e.g. train=train-clean-100,dev=dev-clean,test=test-clean)")
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):  # a choice on dev must not be a choice on test
        if (shared := sorted(set(roles.get(a, ())) & set(roles.get(b, ())))):
            raise SpeechrqError(f"--splits: {', '.join(shared)} is both {a} and {b}; give each part one role (choices are made "
                                "on dev and reported on test)")
    _check_share(dev_share)
    return Fold("", roles["train"], roles.get("dev", ()), roles["test"], 0.0 if "dev" in roles else dev_share)


def leave_one_out(parts: list[str], dev_share: float = DEV_SHARE) -> list[Fold]:
    """One fold per part: test on it, train on the others, dev held out from train."""
    parts = [p.strip() for p in parts if p.strip()]
    if len(parts) < 2 or len(set(parts)) != len(parts):
        raise SpeechrqError(f"--folds: needs at least two distinct parts, got {','.join(parts) or 'none'}")
    _check_share(dev_share)
    return [Fold(p, tuple(q for q in parts if q != p), (), (p,), dev_share) for p in parts]


def _check_share(share: float) -> None:
    if not 0.0 < share < 1.0:
        raise SpeechrqError(f"--dev-share: must be between 0 and 1, got {share}")
