"""Ctrl-C that a dependency swallowed, raised again where hakd can see it.

Python raises KeyboardInterrupt in whatever runs when SIGINT arrives. Inside TVM's lowering
(measured: the first seconds of an export) that is a callback from C++, and the exception is lost
on its way back: the run went on to its end and exited 0. :func:`install` (the CLI does it) notes
every SIGINT before raising KeyboardInterrupt as Python would; :func:`check`, called after each
lowering and build, raises it again if it was lost::

    install()
    ...            # TVM swallows a Ctrl-C here
    check()        # KeyboardInterrupt
"""

from __future__ import annotations

import signal
import threading

__all__ = ["install", "check"]

_seen = threading.Event()


def _handler(signum, frame) -> None:
    _seen.set()
    signal.default_int_handler(signum, frame)


def install() -> None:
    """Note every SIGINT (in the main thread; a no-op where SIGINT is ignored, as in a background job)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _handler)


def check() -> None:
    """Raise KeyboardInterrupt if a SIGINT was noted (once: the next check passes)."""
    if _seen.is_set():
        _seen.clear()
        raise KeyboardInterrupt
