"""The float executor on whole models against ONNX Runtime (1 thread, default graph
optimizations), one group per model so the fastq/ORT ratio comes from one run; and the peak
memory of one float run in a fresh process per engine. Outputs are compared before timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastq

sys.path.insert(0, os.path.dirname(__file__))
from _models import MODELS, feeds_for  # noqa: E402

ort = pytest.importorskip("onnxruntime")
_sessions = {}


def sessions(name):
    if name not in _sessions:
        m = MODELS[name]()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        o = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        f = fastq.InferenceSession(m)
        feeds = feeds_for(name, m)
        got, want = f.run(None, feeds)[0], o.run(None, feeds)[0]
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
        _sessions[name] = (f, o, feeds)
    return _sessions[name]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("engine", ["fastq", "onnxruntime"])
def test_float_latency(benchmark, name, engine):
    f, o, feeds = sessions(name)
    benchmark.group = f"float {name}"
    benchmark.pedantic((f if engine == "fastq" else o).run, args=(None, feeds), rounds=10,
                       iterations=1, warmup_rounds=1)


_PEAK = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from _models import MODELS, feeds_for
name, engine = sys.argv[1], sys.argv[2]

def status(key):  # kB, from this process's own memory map (ru_maxrss survives exec)
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

m = MODELS[name]()
feeds = feeds_for(name, m)
if engine == "fastq":
    import fastq
    fastq.set_num_threads(1)
    s = fastq.InferenceSession(m)
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
del m
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark to the current RSS
before = status("VmRSS:")
s.run(None, feeds)
print(json.dumps({"run_peak_kib": status("VmHWM:") - before, "total_peak_kib": status("VmHWM:")}))
"""


@pytest.mark.parametrize("name", list(MODELS))
def test_float_run_peak_memory(benchmark, name):
    """Peak RSS growth of one run (after session creation), fastq vs ORT, fresh processes."""
    res = {}
    for engine in ("fastq", "onnxruntime"):
        out = subprocess.run([sys.executable, "-c", _PEAK, name, engine, os.path.dirname(__file__)],
                             capture_output=True, text=True, check=True)
        res[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    benchmark.group = f"memory {name}"
    benchmark.extra_info.update({f"{e}_{k}": v for e, d in res.items() for k, v in d.items()})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n{name}: run peak fastq {res['fastq']['run_peak_kib']} KiB, "
          f"ORT {res['onnxruntime']['run_peak_kib']} KiB; process peak fastq "
          f"{res['fastq']['total_peak_kib']} KiB, ORT {res['onnxruntime']['total_peak_kib']} KiB")
