"""Targets as users type them, and where their kernels can be timed.

Accepted target forms (TVM 0.27 itself only takes the dict form):

- legacy strings: ``"llvm"``, ``"llvm -mcpu=cortex-a57"``,
  ``"llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon -num-cores=4"``;
- ``"host"``: this machine's CPU (``-mcpu`` set to what LLVM detects, less the vector extensions
  the operating system does not report: see :func:`host_target`);
- a dict ``{"kind": "llvm", "mcpu": ...}`` or a ``tvm.target.Target``.

A known ARM core implies its triple (``cortex-a57`` -> ``aarch64-linux-gnu``). Devices:
``"local"`` (this host) or ``"rpc://HOST:PORT/KEY"`` (a board behind a TVM RPC tracker).

>>> parse_target("llvm -mcpu=cortex-a57").key()
'llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a57'
>>> parse_device("rpc://127.0.0.1:9190/rk3399")
DeviceSpec(kind='rpc', host='127.0.0.1', port=9190, key='rk3399')
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import re
import shlex
from typing import Optional, Tuple, Union

import tvm

from hakd.errors import HakdError

__all__ = ["TargetSpec", "DeviceSpec", "TargetError", "parse_target", "parse_device", "host_target", "os_cpu_flags",
           "host_arch", "check_runnable"]

FORMS = ('"llvm"', '"llvm -mcpu=cortex-a57"', '"llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -num-cores=4"',
         '"host"', '{"kind": "llvm", "mcpu": "cortex-a57"}', "a tvm.target.Target")

ARM_TRIPLES = {
    **{f"cortex-a{n}": "aarch64-linux-gnu" for n in (35, 53, 55, 57, 65, 72, 73, 75, 76, 77, 78, 710, 715)},
    "cortex-x1": "aarch64-linux-gnu", "neoverse-n1": "aarch64-linux-gnu", "neoverse-n2": "aarch64-linux-gnu",
    "neoverse-v1": "aarch64-linux-gnu", "carmel": "aarch64-linux-gnu",
    **{f"cortex-a{n}": "armv7a-linux-gnueabihf" for n in (7, 8, 9, 15, 17)},
}


class TargetError(HakdError, ValueError):
    """A target or device hakd cannot use, or a target this host cannot run without a board."""


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """An LLVM CPU target: what to compile for."""

    mtriple: Optional[str] = None
    mcpu: Optional[str] = None
    mattr: Tuple[str, ...] = ()
    num_cores: Optional[int] = None

    def key(self) -> str:
        """The canonical legacy string, used as the latency table's target key."""
        parts = ["llvm"]
        if self.mtriple:
            parts.append(f"-mtriple={self.mtriple}")
        if self.mcpu:
            parts.append(f"-mcpu={self.mcpu}")
        if self.mattr:
            parts.append(f"-mattr={','.join(self.mattr)}")
        if self.num_cores:
            parts.append(f"-num-cores={self.num_cores}")
        return " ".join(parts)

    def tvm_target(self) -> tvm.target.Target:
        config = {"kind": "llvm"}
        if self.mtriple:
            config["mtriple"] = self.mtriple
        if self.mcpu:
            config["mcpu"] = self.mcpu
        if self.mattr:
            config["mattr"] = list(self.mattr)
        if self.num_cores:
            config["num-cores"] = self.num_cores
        return tvm.target.Target(config)

    @property
    def arch(self) -> str:
        """The CPU architecture of the triple (``aarch64``, ``x86_64`` ...), host's if no triple."""
        return self.mtriple.split("-")[0] if self.mtriple else host_arch()

    @functools.cached_property  # an LLVM query (~150 us): Profiler.target_key reads it at every table lookup
    def channel_block(self) -> int:
        """Floats in one vector register of this target: the channel block of hakd's activation
        layout (:mod:`hakd.cost.layout`): 16 with AVX-512, 8 with AVX or AVX2, 4 otherwise (NEON, SSE).

        >>> TargetSpec(mcpu="znver3").channel_block, TargetSpec("aarch64-linux-gnu", "cortex-a57").channel_block
        (8, 4)
        """
        features = set(tvm.target.codegen.llvm_get_cpu_features(self.tvm_target()))
        return 16 if "avx512f" in features else 8 if "avx" in features else 4

    def runs_here(self) -> bool:
        return self.arch == host_arch()


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """Where kernels are timed: ``local`` or an RPC tracker's device ``key``."""

    kind: str = "local"
    host: Optional[str] = None
    port: Optional[int] = None
    key: Optional[str] = None

    def __str__(self) -> str:
        return "local" if self.kind == "local" else f"rpc://{self.host}:{self.port}/{self.key}"


VECTOR_FEATURES = ("avx512f", "avx2", "fma", "avx")  # LLVM's and Linux's names alike


def host_target(cpu_flags: Optional[frozenset] = None) -> TargetSpec:
    """This CPU as LLVM names it, with ``-mattr=-FEATURE`` for each vector extension that name implies
    but the operating system does not report (``cpu_flags``: /proc/cpuinfo's, read when None).

    LLVM names the CPU from its model number, so a VM that hides AVX-512 from its guest still reads
    as, say, ``rocketlake``; compiled for that name, kernels would use instructions the OS has not
    enabled. With no flags to read (not Linux), the name alone.

    >>> from unittest import mock
    >>> with mock.patch("tvm.target.codegen.llvm_get_system_cpu", return_value="skylake-avx512"):
    ...     spec = host_target(frozenset({"avx", "avx2", "fma"}))
    >>> spec.key(), spec.channel_block
    ('llvm -mcpu=skylake-avx512 -mattr=-avx512f', 8)
    """
    spec = TargetSpec(mcpu=tvm.target.codegen.llvm_get_system_cpu())
    flags = os_cpu_flags() if cpu_flags is None else cpu_flags
    if not flags or spec.arch != "x86_64":
        return spec
    implied = set(tvm.target.codegen.llvm_get_cpu_features(spec.tvm_target()))
    hidden = tuple(f"-{f}" for f in VECTOR_FEATURES if f in implied and f not in flags)
    return dataclasses.replace(spec, mattr=hidden) if hidden else spec


def os_cpu_flags() -> frozenset:
    """The first CPU's flags in /proc/cpuinfo (what the kernel found and enabled); empty elsewhere.

    >>> isinstance(os_cpu_flags(), frozenset)
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _bad(target, why: str) -> TargetError:
    return TargetError(f"cannot use target {target!r}: {why}. Accepted forms: {'; '.join(FORMS)}")


def _from_options(target, options: dict) -> TargetSpec:
    if options.get("kind", "llvm") != "llvm":
        raise _bad(target, f"hakd supports CPU targets of kind 'llvm', not {options.get('kind')!r}")
    mcpu = options.get("mcpu")
    mtriple = options.get("mtriple") or (ARM_TRIPLES.get(mcpu) if mcpu else None)
    mattr = options.get("mattr") or ()
    if isinstance(mattr, str):
        mattr = tuple(a for a in mattr.split(",") if a)
    cores = options.get("num-cores", options.get("num_cores"))
    try:
        cores = int(cores) if cores is not None else None
    except (TypeError, ValueError):
        raise _bad(target, f"-num-cores must be an integer, got {cores!r}") from None
    if cores is not None and cores < 1:
        raise _bad(target, f"-num-cores is the board's core count, at least 1; got {cores}")
    unknown = set(options) - {"kind", "mcpu", "mtriple", "mattr", "num-cores", "num_cores", "tag", "keys"}
    unknown = {k for k in unknown if not k.startswith("feature.")}
    if unknown:
        raise _bad(target, f"unknown option(s) {sorted(unknown)} (hakd understands -mtriple, -mcpu, -mattr, -num-cores)")
    if mcpu and not tvm.target.codegen.llvm_is_valid_cpu(str(mcpu), mtriple or ""):
        raise _bad(target, f"LLVM knows no CPU {mcpu!r} for {mtriple or 'this host'}{_nearest_cpus(mcpu, mtriple)}")
    return TargetSpec(mtriple, mcpu, tuple(mattr), cores)


def _nearest_cpus(mcpu: str, mtriple: Optional[str]) -> str:
    """'; nearest names: ...' from LLVM's list of CPUs for the triple."""
    import difflib

    config = {"kind": "llvm", **({"mtriple": mtriple} if mtriple else {})}
    names = [str(n) for n in tvm.target.codegen.llvm_get_cpu_archlist(tvm.target.Target(config))]
    near = difflib.get_close_matches(str(mcpu), names, n=6, cutoff=0.4)
    return f"; nearest names: {', '.join(near)}" if near else f"; e.g. {', '.join(names[:8])}"


def parse_target(target: Union[str, dict, "tvm.target.Target", TargetSpec]) -> TargetSpec:
    """A TargetSpec from any accepted form; a bad one raises TargetError listing the forms."""
    if isinstance(target, TargetSpec):
        return target
    if isinstance(target, tvm.target.Target):
        if target.kind.name != "llvm":
            raise _bad(str(target), f"hakd supports CPU targets of kind 'llvm', not {target.kind.name!r}")
        return _from_options(str(target), {k: v for k, v in dict(target.attrs).items()})
    if isinstance(target, dict):
        return _from_options(target, dict(target))
    if not isinstance(target, str) or not target.strip():
        raise _bad(target, "expected a string, a dict or a tvm.target.Target")
    text = target.strip()
    if text == "host":
        return host_target()
    try:
        words = shlex.split(text)
    except ValueError as e:  # an unclosed quote
        raise _bad(target, f"it does not read as options ({e})") from None
    if not words:
        raise _bad(target, "it holds no target kind")
    options = {"kind": words[0]}
    for word in words[1:]:
        m = re.fullmatch(r"--?([A-Za-z][\w-]*)=(.+)", word)
        if not m:
            raise _bad(target, f"cannot read {word!r} (options look like -mcpu=cortex-a57)")
        options[m.group(1)] = m.group(2)
    return _from_options(target, options)


def parse_device(device: Union[str, DeviceSpec, None]) -> DeviceSpec:
    """``None``/``"local"`` or ``"rpc://HOST:PORT/KEY"``."""
    if isinstance(device, DeviceSpec):
        return device
    if device in (None, "local"):
        return DeviceSpec()
    m = re.fullmatch(r"rpc://([^:/]+):(\d+)/(.+)", str(device))
    if not m:
        raise TargetError(f"cannot use device {device!r}: use 'local' or 'rpc://HOST:PORT/KEY' (a TVM RPC tracker and device key)")
    return DeviceSpec("rpc", m.group(1), int(m.group(2)), m.group(3))


def check_runnable(target: TargetSpec, device: DeviceSpec) -> None:
    """Refuse to time a target on a host that cannot run it: hakd never invents a latency."""
    if device.kind == "local" and not target.runs_here():
        raise TargetError(
            f"target '{target.key()}' builds {target.arch} code, which this {host_arch()} host cannot run, and no board "
            "was given. Attach one through TVM's RPC: on any machine start `python -m tvm.exec.rpc_tracker --host 0.0.0.0 "
            "--port 9190`; on the board `python -m tvm.exec.rpc_server --tracker TRACKER:9190 --key KEY`; then pass "
            "device='rpc://TRACKER:9190/KEY' (CLI: --device)"
        )
