"""``fastq saturation MODEL --data DATA.npz [--json] [--plot]``: the per-layer table sorted by
harm on stdout, the JSON file, the bar chart (only where matplotlib is installed; its absence
is a one-line error before any work), and bad input as exit status 2 with one error line."""

import json
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fastq import cli

from _sat_models import saturating_net


@pytest.fixture()
def files(tmp_path):
    net = saturating_net()
    model = tmp_path / "m.onnx"
    onnx.save(net.model(), str(model))
    data = tmp_path / "d.npz"
    np.savez(data, x=np.concatenate(net.data(3)))               # (3, 6, 8, 8): x[i:i+1]
    return tmp_path, str(model), str(data)


def test_table_and_json(files, capsys):
    d, model, data = files
    out = d / "a.json"
    assert cli.main(["saturation", model, "--data", data, "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["layer", "op", "K", "saturated", "pairs", "outputs", "changed",
                                "max", "abs", "err", "mean", "abs", "err", "SQNR", "dB"]
    assert lines[2].split()[:3] == ["conv_sat", "Conv", "72"]
    # 3 samples x 8*8*8 outputs, 36 pairs each: all saturate, all outputs change
    assert "55296 (100%)" in lines[2] and "1536 (100%)" in lines[2]
    assert any(line.startswith("sat16pair vs exact32") for line in lines)
    j = json.loads(out.read_text())
    assert [r["layer"] for r in j["layers"]][0] == "conv_sat" and j["samples"] == 3
    assert cli.main(["saturation", model, "--data", data, "--limit", "1", "--pairing",
                     "flat"]) == 0
    assert "1 samples" in capsys.readouterr().out


def test_metric(files, tmp_path, capsys):
    d, model, data = files
    x = np.load(data)["x"]
    lab = tmp_path / "lab.npz"
    np.savez(lab, x=x, labels=np.arange(len(x)) % 10)
    assert cli.main(["saturation", model, "--data", str(lab), "--metric", "top1",
                     "--json", str(d / "m.json")]) == 0
    assert "metric top1: exact32 " in capsys.readouterr().out
    m = json.loads((d / "m.json").read_text())["metric"]
    assert m["name"] == "top1" and m["drop"] == pytest.approx(m["baseline"] - m["target"])
    assert cli.main(["saturation", model, "--data", data, "--metric", "top1"]) == 2
    assert "no array named 'labels'" in capsys.readouterr().err


def test_plot(files, capsys):
    pytest.importorskip("matplotlib")
    d, model, data = files
    png = d / "p.png"
    assert cli.main(["saturation", model, "--data", data, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_error(files, capsys, monkeypatch):
    d, model, data = files
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib fails
    assert cli.main(["saturation", model, "--data", data, "--plot", str(d / "p.png")]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "matplotlib" in cap.err and "fastq[plot]" in cap.err
    assert not (d / "p.png").exists()


def test_bad_inputs(files, tmp_path, capsys):
    d, model, data = files
    bad = tmp_path / "bad.npz"
    np.savez(bad, y=np.zeros((2, 6, 8, 8), np.float32))
    assert cli.main(["saturation", model, "--data", str(bad)]) == 2
    assert "no array for input(s) ['x']" in capsys.readouterr().err
    np.savez(bad, x=np.zeros((2, 6, 7, 8), np.float32))
    assert cli.main(["saturation", model, "--data", str(bad)]) == 2
    assert "sample 0: input 'x' expects shape" in capsys.readouterr().err
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])
    f = tmp_path / "float.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])],
                                                  "f", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 13)]), str(f))
    assert cli.main(["saturation", str(f), "--data", data]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastq: error: the model has no int8 layers") and err.count("\n") == 1


def test_missing_output_directory_fails_before_the_analysis(files, capsys, monkeypatch):
    d, model, data = files
    import fastq

    def no_work(*a, **k):
        raise AssertionError("the analysis ran")
    monkeypatch.setattr(fastq, "analyze_saturation", no_work)
    out = d / "no_dir" / "a.json"
    assert cli.main(["saturation", model, "--data", data, "--json", str(out)]) == 2
    assert capsys.readouterr().err == (f"fastq: error: cannot write {str(out)!r}: directory "
                                       f"{str(d / 'no_dir')!r} does not exist\n")
    assert cli.main(["saturation", model, "--data", str(d / "nope.npz")]) == 2
    assert "cannot read data" in capsys.readouterr().err
