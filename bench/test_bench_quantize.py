"""Quantizer benchmark, one run per tool: fastq.quantize (DefaultQuantization) against
onnxruntime.quantization.quantize_static (QDQ, per-channel, MinMax) on the three test models
at 300 calibration samples. Each tool runs in its own subprocess (wall time around the call,
peak RSS from VmHWM); then ONNX Runtime (1 thread) runs each tool's output. Both outputs are
checked (checker, runs, SQNR vs float) before anything is timed. Ratios are printed.
Targets: fastq time <= 0.5x ORT's quantizer; fastq model latency in ORT <= 1.05x ORT's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES = 300
MODELS = ["resnet_like", "mobilenet_like", "bert_like"]

_WORKER = r"""
import json, sys, time, os
sys.path.insert(0, sys.argv[1])
import numpy as np, onnx
from models import builders as B
tool, name, src, dst, n = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
_, make = getattr(B, name)()
data = make(n, seed=1)
import fastq
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
before = rss("VmRSS:")
t = time.perf_counter()
if tool == "fastq":
    cfg = ({"name": "DefaultQuantization", "params": {"model_type": "transformer"}}
           if name == "bert_like" else None)
    fastq.quantize(src, data, cfg, progress=False).save(dst)
else:
    class R(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)
        def get_next(self):
            return next(self.it, None)
    quantize_static(src, dst, R(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
sec = time.perf_counter() - t
print(json.dumps({"seconds": sec, "peak_kb": rss("VmHWM:"), "before_kb": before}))
"""


def _run_tool(tool, name, src, dst):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _WORKER, str(ROOT / "tests"), tool, name,
                          str(src), str(dst), str(N_SAMPLES)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _latency(sess, feeds, reps=200):
    for _ in range(10):
        sess.run(None, feeds)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps // 5):
            sess.run(None, feeds)
        best = min(best, (time.perf_counter() - t) / (reps // 5))
    return best


@pytest.mark.parametrize("name", MODELS)
def test_quantize_vs_ort(benchmark, name, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from models import builders as B
    m, make = getattr(B, name)()
    src = tmp_path / "float.onnx"
    onnx.save(m, str(src))
    res = {tool: _run_tool(tool, name, src, tmp_path / f"{tool}.onnx")
           for tool in ("fastq", "ort")}
    ev = make(20, seed=2)
    sess = {k: _session(tmp_path / f"{k}.onnx") for k in ("float", "fastq", "ort")}
    ref = np.concatenate([sess["float"].run(None, e)[0].ravel() for e in ev])
    for tool in ("fastq", "ort"):
        onnx.checker.check_model(str(tmp_path / f"{tool}.onnx"))
        got = np.concatenate([sess[tool].run(None, e)[0].ravel() for e in ev])
        res[tool]["sqnr_db"] = float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2)))
    assert res["fastq"]["sqnr_db"] > 25, res["fastq"]    # ORT's output is only checked to run
    lat = {k: _latency(sess[k], ev[0]) for k in ("float", "fastq", "ort")}
    t_ratio = res["fastq"]["seconds"] / res["ort"]["seconds"]
    l_ratio = lat["fastq"] / lat["ort"]
    mem = {k: (res[k]["peak_kb"] - res[k]["before_kb"]) / 1024 for k in ("fastq", "ort")}
    print(f"\n{name} @ {N_SAMPLES} samples: quantize fastq {res['fastq']['seconds']:.2f} s "
          f"vs ORT {res['ort']['seconds']:.2f} s (ratio {t_ratio:.2f}); peak RSS growth "
          f"fastq {mem['fastq']:.0f} MiB vs ORT {mem['ort']:.0f} MiB; output latency in ORT "
          f"fastq {lat['fastq'] * 1e3:.3f} ms vs ORT-quantizer {lat['ort'] * 1e3:.3f} ms "
          f"(ratio {l_ratio:.2f}; float {lat['float'] * 1e3:.3f} ms); SQNR fastq "
          f"{res['fastq']['sqnr_db']:.1f} dB, ORT {res['ort']['sqnr_db']:.1f} dB")
    benchmark.group = f"quantize {name}"
    benchmark.extra_info.update(time_ratio=t_ratio, latency_ratio=l_ratio,
                                fastq_s=res["fastq"]["seconds"], ort_s=res["ort"]["seconds"],
                                fastq_peak_mib=mem["fastq"], ort_peak_mib=mem["ort"])
    benchmark.pedantic(sess["fastq"].run, (None, ev[0]), rounds=1, iterations=1)
