"""Install hakd: Hardware Aware Knowledge Distillation for convolutional networks."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', Path("hakd/__init__.py").read_text()).group(1)

setup(
    name="hakd",
    version=VERSION,
    description="Prune CNNs to the latency staircase of the target's compiler, then distil.",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["hakd", "hakd.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.13.0",  # the CPU wheel on this machine's disk; newer ranges pull a CUDA build
        "apache-tvm==0.27.0.post1",
        "apache-tvm-ffi==0.1.14.post1",  # 0.1.15.post* segfault in tvm.ir.save_json
        "numpy>=1.24",
        "networkx>=3.0",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "onnx==1.23.1",  # the student is also written as ONNX (torch.onnx.export needs it)
    ],
    extras_require={
        "rpc": ["tornado", "psutil", "cloudpickle"],
        "dev": ["pytest>=7", "hypothesis>=6", "onnxruntime==1.30.0"],  # ONNX Runtime checks the exported ONNX
        "bench": ["torch-pruning==1.6.1", "onnxruntime==1.30.0"],  # the peers the benchmarks compare with
    },
    entry_points={"console_scripts": ["hakd = hakd.cli:main"]},
)
