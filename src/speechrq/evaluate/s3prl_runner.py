"""``python -m speechrq.evaluate.s3prl_runner ARGS``: s3prl 0.4.18's ``run_downstream.py`` beside huggingface_hub >= 1.0.

s3prl 0.4.18's runner imports ``HfFolder`` and ``Repository`` from ``huggingface_hub`` (``run_downstream.py`` and
``downstream/runner.py``), names that huggingface_hub 1.0 removed; transformers 5, which speechrq needs, needs a
huggingface_hub past 1.0, so no pin makes both import. s3prl uses the two names only to upload results to the Hugging
Face Hub (``--hub huggingface``, ``--push_to_hf_hub``): here they are stood in by ``None`` where missing, and s3prl's
own runner then runs unchanged with the same arguments (uploading to the Hub is then unavailable). Tested with torch
and torchaudio 2.6.0 and s3prl 0.4.18 (``docs/guide/evaluate.md``, "Official SUPERB with s3prl").

Without s3prl installed it exits with one line saying so. speechrq itself never imports this module.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys

HUB_NAMES = ("HfFolder", "Repository")  # removed in huggingface_hub 1.0; s3prl 0.4.18 imports them for Hub uploads only


def stand_in_hub_names() -> list[str]:
    """Set the :data:`HUB_NAMES` huggingface_hub lacks to ``None``; returns the names it set."""
    import huggingface_hub

    missing = [n for n in HUB_NAMES if not hasattr(huggingface_hub, n)]
    for name in missing:
        setattr(huggingface_hub, name, None)
    return missing


def main(argv: list[str] | None = None) -> int:
    if importlib.util.find_spec("s3prl") is None:
        print("speechrq: error: s3prl is not installed in this environment (pip install s3prl==0.4.18 tensorboardX, beside "
              "torch and torchaudio 2.6.0: docs/guide/evaluate.md, Official SUPERB with s3prl)", file=sys.stderr)
        return 2
    stand_in_hub_names()
    sys.argv = ["run_downstream.py", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("s3prl.run_downstream", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
