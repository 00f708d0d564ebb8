"""The one exception type for user mistakes.

Anything raised as :class:`SpeechrqError` is printed by the CLI as a single line
(``speechrq: error: ...``) with no traceback; its message names the file, key or
value at fault and what is wrong with it. Programming errors stay ordinary
exceptions so that they keep their tracebacks.
"""


class SpeechrqError(Exception):
    """A problem with the user's input (a file, a key, a value), told in one line."""


class TornCacheFile(SpeechrqError):
    """A cache file that exists but does not load: a system crash's leftover (caches are written without an fsync),
    already removed, so the same command run again computes it (:func:`speechrq.io.read_cache_array`)."""


class OtherRankFailed(Exception):
    """Under torchrun, rank 0 refused the job and said why; the other ranks stop without repeating it
    (:func:`speechrq.distributed.on_main`)."""


class Terminated(BaseException):
    """A termination signal (SIGTERM, SIGHUP) raised where the process was, so that every ``finally`` runs: temporaries
    are removed and nothing half-written is left (:func:`speechrq.cli.main` installs the handler). A BaseException,
    like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def raise_terminated(signum, frame) -> None:
    """The signal handler: raise :class:`Terminated` once; a second signal ends the process at once."""
    import signal

    signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


def install_termination_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Terminated` in this process (call from the main thread)."""
    import signal

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, raise_terminated)
