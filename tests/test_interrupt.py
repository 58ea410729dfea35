"""A Ctrl-C that a dependency swallows (TVM's lowering did, measured) is raised again at hakd's next check."""

import os
import signal
import time

import pytest

from hakd import interrupt


def test_a_swallowed_ctrl_c_is_raised_again_once():
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if pytest runs in a background job
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


def test_install_leaves_an_ignored_ctrl_c_ignored():
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's SIGINT: hakd must not start catching it
    try:
        interrupt.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
