"""A real TVM RPC tracker and server on 127.0.0.1, started and stopped by their own PIDs."""

import os
import signal
import socket
import subprocess
import sys
import time

from tvm import rpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRpc:
    def __init__(self, key="hakd-test"):
        self.key = key
        self.tracker_port = free_port()
        self.procs = {}

    def _spawn(self, name, args, cpu=None):
        env = {**os.environ, "TVM_NUM_THREADS": "1"}
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []  # a board of its own: one core
        self.procs[name] = subprocess.Popen([*pin, sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            env=env, start_new_session=True)

    def start(self, cpu=None):
        self._spawn("tracker", ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(self.tracker_port),
                                "--port-end", str(self.tracker_port + 1), "--silent"])
        self.wait(lambda: socket.create_connection(("127.0.0.1", self.tracker_port), timeout=1).close() is None)
        self.start_server(cpu=cpu)
        return self

    def start_server(self, name="server", cpu=None):
        """One more board under the key (``cpu``: pinned to that core), registered before this returns."""
        port = free_port()
        before = self.boards()
        self._spawn(name, ["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1),
                           "--tracker", f"127.0.0.1:{self.tracker_port}", "--key", self.key, "--silent"], cpu)
        self.wait(lambda: self.boards() > before)

    def boards(self) -> int:
        """Boards registered with the tracker under the key."""
        try:
            summary = rpc.connect_tracker("127.0.0.1", self.tracker_port).summary()
        except Exception:
            return 0
        return sum(1 for s in summary["server_info"] if s["key"].endswith(self.key))

    @staticmethod
    def wait(ready, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        raise TimeoutError("RPC tracker/server did not come up")

    @property
    def device(self) -> str:
        return f"rpc://127.0.0.1:{self.tracker_port}/{self.key}"

    def stop(self, name):
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group led by the PID we started (the server forks)
            proc.wait(timeout=10)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)
