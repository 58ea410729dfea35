"""A Ctrl-C that a dependency swallows (TVM's lowering did, measured) is raised again at hakd's next check."""

import os
import signal
import time

import pytest

from hakd import interrupt


def test_a_swallowed_ctrl_c_is_raised_again_once():
    previous = signal.getsignal(signal.SIGINT)
    interrupt.install()
    try:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:  # lost, as inside TVM
            pass
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # once: the next check passes
    finally:
        signal.signal(signal.SIGINT, previous)
