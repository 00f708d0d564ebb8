"""What the command groups share: the audio-length note, the output lock, list flags, the encoder-layer flags' help.

Nothing here imports torch or lhotse: ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

from ..errors import SpeechrqError

# The shortest audio each encoder kind reads, quoted by the help of every command that reads audio at inference.
# Defined by speechrq.encoders.frozen.MIN_SAMPLES and speechrq.encoders.hf.hf_min_samples (not imported here: --help
# stays free of torch); tests/test_cli.py checks that these numbers are theirs.
MIN_AUDIO_HELP = ("Audio shorter than the encoder reads is refused in one line naming each file (nothing is dropped or "
                  "transcribed as empty): at least 560 samples (35 ms at 16 kHz) for a speechrq checkpoint, 720 samples (45 ms) "
                  "for a standard Hugging Face wav2vec2/HuBERT/WavLM/data2vec-audio front end.")

CONFIG_HELP = "a YAML config file, or a shipped {kind} config's name (e.g. {example}; speechrq configs list)"

# The flags naming an encoder layer: `units fit`, `units report` and `asr compare`
ENCODER_HELP = ("a speechrq checkpoint (or tiny_bestrq, the shipped reference), a local Hugging Face model folder, or a "
                "corpus's feature_stats.json (the stacked log-Mel, 320 dimensions, --layer -1)")
LAYER_HELP = "-1 = front end, k = block k"
FRAME_MS_HELP = ("frame shift of the units in ms (default: the source's own: 20 for a Hugging Face model, as in the RPQ paper; "
                 "40 for a speechrq checkpoint or the log-Mel). 40 puts a Hugging Face model's 20 ms frames on speechrq's 40 ms "
                 "grid (pairs averaged, the last one padded), the grid evaluation uses; 60, 80, ... average 3, 4, ... frames")


def train_holding(out_dir: str, what: str, train, *, quiet: bool):
    """Run a trainer (``train(progress=...)``, one process or a torchrun rank) holding ``out_dir`` for its whole run,
    shut the process group down however it ends, and return ``(is rank 0, the last checkpoint)``."""
    import os

    from .. import distributed
    from ..lock import hold

    try:
        with hold(out_dir, what):
            last = train(progress=not quiet)
    finally:
        distributed.shutdown()
    return int(os.environ.get("RANK", "0")) == 0, last


def _holds(output, what: str):
    """Run the command holding its output (``output(args)``: a folder or file, None for none) for its whole lifetime:
    a second process writing the same output is refused in one line (:func:`speechrq.lock.hold`)."""
    import functools

    def wrap(cmd):
        @functools.wraps(cmd)
        def run(args):
            path = output(args)
            if path is None:
                return cmd(args)
            from ..lock import hold

            with hold(path, what):
                return cmd(args)
        return run
    return wrap


def int_list(text: str, flag: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (empty items skipped); anything else is a one-line error naming ``flag``."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of integers") from None


def float_list(text: str, flag: str) -> list[float]:
    """``"0.5,1"`` -> ``[0.5, 1.0]`` (empty items skipped); anything else is a one-line error naming ``flag``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of numbers") from None
