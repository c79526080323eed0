"""Bad input to fastq.quantize / Result.save / the CLI fails cleanly: a FastqError naming the
thing at fault (sample index, op type, path), no partial file, exit status 2 with one line."""

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import fastq
from fastq.cli import main
from models import builders as B
from models.util import ort_session, run_all


@pytest.fixture(scope="module")
def small():
    m, make = B.resnet_like()
    return m, make(6, seed=1)


def test_malformed_model():
    with pytest.raises(fastq.ModelError, match="not an ONNX model"):
        fastq.quantize(b"\x00garbage\xff" * 10, [np.zeros(1)], progress=False)
    with pytest.raises(fastq.ModelError, match="does not exist"):
        fastq.quantize("/nonexistent/model.onnx", [np.zeros(1)], progress=False)
    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["nope"], ["z"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(fastq.ModelError, match="checker"):
        fastq.quantize(bad, [np.zeros(1, np.float32)], progress=False)


def _exp_mlp(batch, w1=None, mask=None):
    """x -> Exp -> MatMul(w1) -> Add(mask) -> y: Exp overflows to +inf on a large input."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((16, 8)).astype(np.float32) if w1 is None else w1
    mask = np.zeros((1, 8), np.float32) if mask is None else mask
    g = helper.make_graph(
        [helper.make_node("Exp", ["x"], ["e"], name="exp"),
         helper.make_node("MatMul", ["e", "w1"], ["h"], name="mm"),
         helper.make_node("Add", ["h", "mask"], ["y"], name="add")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(mask, "mask")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("batch", [1, "N"])
def test_nonfinite_activation_names_the_sample_and_its_own_index(batch):
    """Stacked (dynamic batch, or a fixed batch 1 made symbolic) or not, the error names the
    calibration sample whose float activations overflow and the index within its tensor."""
    rng = np.random.default_rng(1)
    cal = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(10)]
    cal[6][0, 3] = 200.0                          # exp(200) = inf in float32
    for data, k in ((cal, 6), (cal[:7], 6), (cal[6:7], 0)):   # [:7]: the bad sample ends a group
        with pytest.raises(fastq.DataError, match=rf"^calibration sample {k}: .*tensor 'e' "
                                                  r"\(shape \(1, 16\)\) holds 1 NaN/Inf value\(s\), "
                                                  r"first at index \(0, 3\)"):
            fastq.quantize(_exp_mlp(batch), data, progress=False)


def test_a_scalar_input_stays_a_scalar():
    """A rank-0 model input (a scale factor) fed as a 0-d array: calibration, the saturation
    analysis and AccuracyAware's validation took it as shape (1,) (np.ascontiguousarray makes
    0-d arrays 1-d) and the session then refused the sample."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["xs"], name="mul"),
         helper.make_node("MatMul", ["xs", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    data = [{"x": rng.random((1, 4)).astype(np.float32), "s": np.array(2.0, np.float32)}
            for _ in range(4)]
    r = fastq.quantize(m, data, progress=False)
    assert "mm" in r.report.layers
    a = fastq.analyze_saturation(r.model, data)
    assert a.samples == 4
    val = [(d, 0) for d in data]
    r2 = fastq.quantize(m, data, {"name": "AccuracyAwareQuantization",
                                  "params": {"maximal_drop": 1.0}},
                        validation_data=val, metric=lambda out, label: 1.0, progress=False)
    assert r2.report.accuracy_aware["reached"]


@pytest.mark.parametrize("batch", [1, "N"])
def test_a_node_error_in_a_stacked_run_names_the_sample(batch):
    """An embedding index out of range in sample 2 of 5: the stacked statistics run fails,
    the samples are re-run alone to name it, and the error is that sample's own."""
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["e"], name="gather"),
         helper.make_node("MatMul", ["e", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 6, 8])],
        [numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "emb"),
         numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    ids = [rng.integers(0, 50, (1, 6)) for _ in range(5)]
    ids[2][0, 4] = 50
    own = rf"min {ids[2].min()}, max 50$"              # sample 2's own indices
    with pytest.raises(fastq.DataError, match=r"^calibration sample 2: node 'gather' "
                                              r"\(Gather.*" + own):
        fastq.quantize(m, ids, progress=False)


@pytest.mark.filterwarnings("error::RuntimeWarning")    # the -inf output in batch_verdict
def test_nan_initializer_and_inf_weight_are_named_but_inf_masks_pass():
    w = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    cal = [np.zeros((1, 16), np.float32)] * 3
    bad = w.copy()
    bad[2, 5] = np.nan
    with pytest.raises(fastq.ModelError, match=r"initializer 'w1' \(shape \(16, 8\)\) holds 1 "
                                               r"NaN value\(s\), first at index \(2, 5\)"):
        fastq.quantize(_exp_mlp(1, w1=bad), cal, progress=False)
    mask = np.zeros((1, 8), np.float32)
    mask[0, 7] = np.nan
    with pytest.raises(fastq.ModelError, match="initializer 'mask'"):
        fastq.quantize(_exp_mlp(1, mask=mask), cal, progress=False)
    bad[2, 5] = -np.inf
    with pytest.raises(fastq.ModelError, match=r"layer 'mm': weight 'w1' .* Inf .*\(2, 5\)"):
        fastq.quantize(_exp_mlp(1, w1=bad), cal, progress=False)
    mask[0, 7] = -np.inf                          # a masking constant: legitimate
    r = fastq.quantize(_exp_mlp(1, mask=mask), cal, progress=False)
    y = fastq.InferenceSession(r.model).run(None, {"x": cal[0]})[0]
    assert y[0, 7] == -np.inf and np.isfinite(y[0, :7]).all()


def test_unsupported_op_is_named():
    g = helper.make_graph(
        [helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.example", 1)])
    with pytest.raises(fastq.UnsupportedOpError, match="FancyOp"):
        fastq.quantize(m, [np.zeros((1, 4), np.float32)], progress=False)


def test_bad_samples_name_the_index(small):
    m, data = small
    bad = list(data)
    bad[3] = {"input": np.zeros((1, 3, 15, 16), np.float32)}
    with pytest.raises(fastq.DataError, match=r"sample 3.*shape"):
        fastq.quantize(m, bad, progress=False)
    bad = list(data)
    x = data[2]["input"].copy()
    x[0, 1, 2, 3] = np.nan
    bad[2] = {"input": x}
    with pytest.raises(fastq.DataError, match=r"sample 2.*NaN.*\(0, 1, 2, 3\)"):
        fastq.quantize(m, bad, progress=False)
    with pytest.raises(fastq.DataError, match="sample 1.*missing"):
        fastq.quantize(m, [data[0], {"other": 1}], progress=False)
    with pytest.raises(fastq.DataError, match="sample 0.*expects float32, got int"):
        fastq.quantize(m, [{"input": np.zeros((1, 3, 16, 16), np.int32)}], progress=False)
    with pytest.raises(fastq.DataError, match="empty"):
        fastq.quantize(m, [], progress=False)
    with pytest.raises(fastq.DataError, match="empty"):
        fastq.quantize(m, (x for x in []), progress=False)
    with pytest.raises(fastq.DataError, match="iterable"):
        fastq.quantize(m, 3, progress=False)


def test_sample_forms(small):
    m, data = small
    a = fastq.quantize(m, data, progress=False)
    b = fastq.quantize(m, [d["input"] for d in data], progress=False)       # one array
    c = fastq.quantize(m, iter([(d["input"],) for d in data]), progress=False)  # tuples
    stacked = np.concatenate([d["input"] for d in data])                    # (N, 3, 16, 16)
    d_ = fastq.quantize(m, stacked, progress=False)
    assert a.model.SerializeToString() == b.model.SerializeToString() == \
        c.model.SerializeToString() == d_.model.SerializeToString()
    one = fastq.quantize(m, data, {"name": "DefaultQuantization",
                                   "params": {"stat_subset_size": 2}}, progress=False)
    assert one.report.samples == 2


def _leftovers(d):
    return [f for f in os.listdir(d) if f.startswith(".fastq-")]


def test_save_is_atomic_and_errors_leave_nothing(small, tmp_path):
    m, data = small
    res = fastq.quantize(m, data, progress=False)
    out = tmp_path / "q.onnx"
    res.save(out)
    onnx.checker.check_model(onnx.load(str(out)))
    assert _leftovers(tmp_path) == []
    with pytest.raises(fastq.FastqError, match="does not exist"):
        res.save(tmp_path / "missing" / "q.onnx")
    (tmp_path / "adir").mkdir()
    with pytest.raises(fastq.FastqError, match="cannot write"):
        res.save(tmp_path / "adir")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(fastq.FastqError):
        res.save(tmp_path / "afile" / "q.onnx")
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == \
        ["adir", "afile", "q.onnx"]


def test_external_data_path(small, tmp_path):
    m, data = small
    res = fastq.quantize(m, data, progress=False)
    files = res.save(tmp_path / "big.onnx", external_threshold=1)
    assert [os.path.basename(f) for f in files] == ["big.onnx", "big.onnx.data"]
    loaded = onnx.load(str(tmp_path / "big.onnx"))
    assert any(t.data_location == TensorProto.EXTERNAL for t in
               onnx.load(str(tmp_path / "big.onnx"), load_external_data=False).graph.initializer)
    np.testing.assert_array_equal(run_all(ort_session(loaded), data),
                                  run_all(ort_session(res.model), data))
    assert _leftovers(tmp_path) == []


def test_old_opset_is_upgraded():
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3))
                                .astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    res = fastq.quantize(m, [np.ones((1, 3, 5, 5), np.float32)], progress=False)
    assert res.model.opset_import[0].version >= 13
    onnx.checker.check_model(res.model)


def test_bad_config_key(small):
    m, data = small
    with pytest.raises(fastq.ConfigError, match="preset"):
        fastq.quantize(m, data, {"name": "DefaultQuantization", "params": {"preset": "fast"}},
                       progress=False)


# ---- CLI -----------------------------------------------------------------------------------


def test_cli_quantize(small, tmp_path, capsys):
    m, data = small
    onnx.save(m, str(tmp_path / "f.onnx"))
    np.savez(tmp_path / "cal.npz", input=np.concatenate([d["input"] for d in data]))
    (tmp_path / "cfg.json").write_text('{"name": "DefaultQuantization", '
                                       '"params": {"preset": "mixed"}}')
    rc = main(["quantize", str(tmp_path / "f.onnx"), "-o", str(tmp_path / "q.onnx"),
               "--data", str(tmp_path / "cal.npz"), "--config", str(tmp_path / "cfg.json"),
               "--report", str(tmp_path / "r.json")])
    assert rc == 0
    import json
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["calibration_samples"] == len(data)
    assert rep["config"]["compression"]["algorithms"][0]["params"]["preset"] == "mixed"
    onnx.checker.check_model(onnx.load(str(tmp_path / "q.onnx")))


def test_cli_threads(small, tmp_path, capsys):
    """--threads N sets the thread count (one thread gives the same model as all cores);
    --threads 0 is an argparse usage error."""
    m, data = small
    onnx.save(m, str(tmp_path / "f.onnx"))
    np.savez(tmp_path / "cal.npz", input=np.concatenate([d["input"] for d in data]))
    before = fastq.get_num_threads()
    try:
        outs = []
        for n in ("1", "2"):
            out = tmp_path / f"q{n}.onnx"
            assert main(["quantize", str(tmp_path / "f.onnx"), "-o", str(out), "--data",
                         str(tmp_path / "cal.npz"), "--no-progress", "--threads", n]) == 0
            assert fastq.get_num_threads() == int(n)
            outs.append(onnx.load(str(out)))
        assert outs[0].graph.initializer == outs[1].graph.initializer
        with pytest.raises(SystemExit):
            main(["quantize", str(tmp_path / "f.onnx"), "-o", str(tmp_path / "x.onnx"),
                  "--data", str(tmp_path / "cal.npz"), "--threads", "0"])
        assert "--threads must be at least 1" in capsys.readouterr().err
    finally:
        fastq.set_num_threads(0)
        assert fastq.get_num_threads() == before


@pytest.mark.parametrize("problem", ["missing_data", "bad_shape", "nan", "bad_out"])
def test_cli_errors_one_line(small, tmp_path, capsys, problem):
    m, data = small
    onnx.save(m, str(tmp_path / "f.onnx"))
    x = np.concatenate([d["input"] for d in data])
    if problem == "bad_shape":
        x = x[:, :, :8]
    if problem == "nan":
        x[4, 0, 0, 0] = np.inf
    np.savez(tmp_path / "cal.npz", input=x)
    data_path = tmp_path / ("nope.npz" if problem == "missing_data" else "cal.npz")
    out = tmp_path / ("no_dir/q.onnx" if problem == "bad_out" else "q.onnx")
    rc = main(["quantize", str(tmp_path / "f.onnx"), "-o", str(out), "--data", str(data_path),
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("fastq: error: "), err
    if problem == "nan":
        assert "sample 4" in err[0]
    assert not out.exists() and _leftovers(tmp_path) == []


def test_cli_missing_output_directory_fails_before_any_work(small, tmp_path, capsys,
                                                           monkeypatch):
    """-o or --report in a directory that does not exist: one error line before quantizing,
    and neither output is written (the report used to be written before the model failed)."""
    m, data = small
    onnx.save(m, str(tmp_path / "f.onnx"))
    np.savez(tmp_path / "cal.npz", input=np.concatenate([d["input"] for d in data]))

    def no_work(*a, **k):
        raise AssertionError("quantize ran")
    monkeypatch.setattr(fastq, "quantize", no_work)
    for out, rep in [(tmp_path / "no_dir" / "q.onnx", tmp_path / "r.json"),
                     (tmp_path / "q.onnx", tmp_path / "no_dir" / "r.json")]:
        rc = main(["quantize", str(tmp_path / "f.onnx"), "-o", str(out), "--data",
                   str(tmp_path / "cal.npz"), "--report", str(rep), "--no-progress"])
        bad = out if out.parent.name == "no_dir" else rep
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"fastq: error: cannot write {str(bad)!r}: directory "
                                   f"{str(bad.parent)!r} does not exist"]
        assert not out.exists() and not rep.exists()


def test_demo_accuracy(tmp_path, capsys):
    out = tmp_path / "demo.onnx"
    assert main(["demo", "-o", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    acc = {line.split("accuracy")[1].rsplit(None, 2)[0].strip():
           float(line.rsplit(None, 2)[1]) / 100 for line in text.splitlines()
           if line.strip().startswith("accuracy ")}
    assert set(acc) == {"float", "int8 exact32", "int8 sat16pair"}, text
    assert acc["float"] > 0.95
    assert acc["int8 exact32"] >= acc["float"] - 0.01
    assert acc["int8 sat16pair"] >= acc["float"] - 0.01
    assert out.exists() and f"written to {out}" in text and "quantization took" in text
