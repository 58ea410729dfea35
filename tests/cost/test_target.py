import pytest
import tvm

from hakd.cost.target import (DeviceSpec, TargetError, TargetSpec, check_runnable, host_arch, host_target, parse_device,
                              parse_target)
from hakd.errors import HakdError


@pytest.mark.parametrize("text, key", [
    ("llvm", "llvm"),
    ("llvm -mcpu=cortex-a57", "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a57"),
    ("llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -num-cores=4", "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -num-cores=4"),
    ("llvm -mcpu=cortex-a53 -mattr=+neon,+fp-armv8", "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a53 -mattr=+neon,+fp-armv8"),
    ("llvm -mcpu=cortex-a7", "llvm -mtriple=armv7a-linux-gnueabihf -mcpu=cortex-a7"),
    ("  llvm   --mcpu=cortex-a57 ", "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a57"),
])
def test_legacy_strings_parse(text, key):
    spec = parse_target(text)
    assert spec.key() == key
    assert parse_target(spec.key()) == spec  # the key is itself an accepted form
    assert isinstance(spec.tvm_target(), tvm.target.Target)


def test_dicts_targets_and_host():
    assert parse_target({"kind": "llvm", "mcpu": "cortex-a57"}).mtriple == "aarch64-linux-gnu"
    tvm_target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4})
    assert parse_target(tvm_target).key() == "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -num-cores=4"
    host = parse_target("host")
    assert host.mcpu == tvm.target.codegen.llvm_get_system_cpu() and host.runs_here()


@pytest.mark.parametrize("bad, words", [
    ("cuda", "kind 'llvm'"), ("llvm -mcpu", "cannot read '-mcpu'"), ("llvm -foo=1", "unknown option"),
    ("", "expected a string"), ("llvm -num-cores=x", "integer"), (42, "expected a string"),
])
def test_bad_targets_list_the_accepted_forms(bad, words):
    with pytest.raises(TargetError) as info:
        parse_target(bad)
    assert words in str(info.value) and '"llvm -mcpu=cortex-a57"' in str(info.value)
    assert isinstance(info.value, HakdError)


def test_devices():
    assert parse_device(None) == DeviceSpec() and parse_device("local").kind == "local"
    d = parse_device("rpc://10.0.0.5:9190/rk3399")
    assert (d.host, d.port, d.key) == ("10.0.0.5", 9190, "rk3399") and str(d) == "rpc://10.0.0.5:9190/rk3399"
    with pytest.raises(TargetError, match="rpc://HOST:PORT/KEY"):
        parse_device("ssh://board")


@pytest.mark.skipif(host_arch() == "aarch64", reason="this host runs aarch64 code")
def test_foreign_target_without_a_board_explains_how_to_attach_one():
    with pytest.raises(TargetError, match="cannot run, and no board.*rpc_tracker.*device='rpc://"):
        check_runnable(parse_target("llvm -mcpu=cortex-a57"), parse_device(None))
    check_runnable(parse_target("llvm -mcpu=cortex-a57"), parse_device("rpc://127.0.0.1:9190/a57"))  # fine with a board


def test_host_drops_vector_extensions_the_os_does_not_report(monkeypatch):
    """A VM that hides AVX-512 keeps the CPU's model number: hakd must not compile AVX-512 for it."""
    monkeypatch.setattr(tvm.target.codegen, "llvm_get_system_cpu", lambda: "sapphirerapids")
    avx2_only = frozenset({"sse4_2", "avx", "avx2", "fma"})
    hidden = host_target(avx2_only)
    assert hidden.key() == "llvm -mcpu=sapphirerapids -mattr=-avx512f" and hidden.channel_block == 8
    assert host_target(avx2_only | {"avx512f"}) == TargetSpec(mcpu="sapphirerapids")
    assert host_target(frozenset({"sse4_2"})).mattr == ("-avx512f", "-avx2", "-fma", "-avx")
    assert host_target(frozenset()) == TargetSpec(mcpu="sapphirerapids")  # nothing to read: the name alone
