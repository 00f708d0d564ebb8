"""The one exception type for user mistakes.

Anything raised as :class:`SpeechrqError` is printed by the CLI as a single line
(``speechrq: error: ...``) with no traceback; its message names the file, key or
value at fault and what is wrong with it. Programming errors stay ordinary
exceptions so that they keep their tracebacks.
"""


class SpeechrqError(Exception):
    """A problem with the user's input (a file, a key, a value), told in one line."""


class OtherRankFailed(Exception):
    """Under torchrun, rank 0 refused the job and said why; the other ranks stop without repeating it
    (:func:`speechrq.distributed.on_main`)."""
