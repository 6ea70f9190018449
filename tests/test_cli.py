"""The command line through typer's CliRunner: each command's happy path and its exit codes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import nnspec
from nnspec.activations import REGISTRY
from nnspec.layers import LAYERS


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and nnspec.__version__ in result.stdout


def test_validate_ok(cli, write_spec, party):
    result = cli("validate", write_spec(party))
    assert result.exit_code == 0
    assert "valid" in result.stdout and "3 parameters" in result.stdout


def test_schema_is_json_with_every_layer_type(cli):
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"Dense", "ActivationLayer"} <= set(schema["$defs"])


def test_compile_default_output_is_name_in_cwd(cli, write_spec, party, tmp_path, monkeypatch):
    spec = write_spec(party, "spec.json")
    work = tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("compile", spec)
    assert result.exit_code == 0, result.output
    assert "cross-check passed" in result.stdout
    model = onnx.load(work / "party.onnx")
    assert model.opset_import[0].version == 17
    assert [p.key for p in model.metadata_props] == ["nnspec.version", "nnspec.spec_sha256", "nnspec.spec"]


def test_compile_opset_and_no_check(cli, write_spec, party, tmp_path):
    out = tmp_path / "p.onnx"
    assert cli("compile", write_spec(party), "-o", out, "--opset", "13", "--no-check").exit_code == 0
    assert onnx.load(out).opset_import[0].version == 13
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind


def test_compile_overwrites_atomically(cli, write_spec, party, tmp_path):
    out = tmp_path / "p.onnx"
    out.write_bytes(b"old")
    assert cli("compile", write_spec(party), "-o", out).exit_code == 0
    assert onnx.load(out).graph.name == "party"


def test_compile_refuses_unsupported_opset(cli, write_spec, party, tmp_path):
    result = cli("compile", write_spec(party), "-o", tmp_path / "p.onnx", "--opset", "12")
    assert result.exit_code == 2 and "opset" in result.stderr
    assert not (tmp_path / "p.onnx").exists()


def test_compile_fails_and_writes_nothing_when_check_fails(cli, write_spec, three_layer, tmp_path, monkeypatch):
    import dataclasses

    from nnspec.layers import LAYERS

    original = LAYERS["dense"]

    def transposed(node, g, inputs, out):  # a classic exporter bug: W instead of W^T
        return original.onnx(node, g, inputs, out) if node.name != "l2" else _wrong(node, g, inputs, out)

    def _wrong(node, g, inputs, out):
        w = node.params["weights"]
        swapped = np.ascontiguousarray(w[::-1])
        return original.onnx(dataclasses.replace(node, params={**node.params, "weights": swapped}), g, inputs, out)

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, onnx=transposed))
    out = tmp_path / "three.onnx"
    result = cli("compile", write_spec(three_layer), "-o", out)
    assert result.exit_code == 1
    assert "FAIL" in result.stderr and "not written" in result.stderr
    assert not out.exists()


def test_run_prints_outputs(cli, write_spec, party, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1.0, 3.0], [0.0, 0.0]]))
    result = cli("run", write_spec(party), "--input", x)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("decide = [[1.]")


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_run_writes_npz_keyed_by_output(cli, write_spec, three_layer, tmp_path, backend):
    three_layer["outputs"] = ["l1", "l3"]
    x = tmp_path / "x.npz"
    np.savez(x, p=np.ones((5, 3)))
    out = tmp_path / "y.npz"
    result = cli("run", write_spec(three_layer), "--input", x, "--output", out, "--backend", backend)
    assert result.exit_code == 0, result.output
    with np.load(out) as y:
        assert set(y.files) == {"l1", "l3"}
        assert y["l3"].shape == (5, 2) and y["l3"].dtype == np.float32
        expected = nnspec.to_numpy(nnspec.from_dict(three_layer))(np.ones((5, 3)))
        np.testing.assert_allclose(y["l3"], expected["l3"], rtol=1e-5)


def test_run_npy_output_for_single_output(cli, write_spec, party, tmp_path):
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, np.array([[1, 3]]))  # integers are cast to the spec's dtype
    assert cli("run", write_spec(party), "-i", x, "-o", y).exit_code == 0
    assert np.load(y).tolist() == [[1.0]]


def test_run_cuda_without_gpu_is_a_clear_error(cli, write_spec, party, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider; the error path cannot be exercised")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2)))
    result = cli("run", write_spec(party), "-i", x, "--backend", "onnxruntime", "--provider", "cuda")
    assert result.exit_code == 2
    assert "cuda provider is not available" in result.stderr and "Traceback" not in result.output


def test_check_passes_and_writes_reports(cli, write_spec, three_layer, tmp_path):
    report, md = tmp_path / "r.json", tmp_path / "r.md"
    result = cli("check", write_spec(three_layer), "--json", report, "--markdown", md)
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout
    assert json.loads(report.read_text())["passed"] is True
    assert "passed" in md.read_text()


def test_check_json_to_stdout(cli, write_spec, party):
    result = cli("check", write_spec(party), "--json", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["outputs"][0]["name"] == "decide"


def test_check_onnx_file_with_changed_weight_exits_1(cli, write_spec, party, tmp_path):
    spec = write_spec(party)
    model_path = tmp_path / "party.onnx"
    assert cli("compile", spec, "-o", model_path).exit_code == 0
    model = onnx.load(model_path)
    w = model.graph.initializer[0]
    changed = numpy_helper.to_array(w).copy()
    changed[0, 0] = -4.5
    w.CopyFrom(numpy_helper.from_array(changed, w.name))
    onnx.save(model, model_path)
    result = cli("check", spec, "--onnx", model_path, "--json", tmp_path / "r.json")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "decide" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is False


def test_check_with_inputs_file(cli, write_spec, party, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1.0, 3.0], [0.0, 5.0], [1.0, 0.0]]))
    result = cli("check", write_spec(party), "--inputs", x)
    assert result.exit_code == 0 and "given" in result.stdout


def test_check_tolerance_flags(cli, write_spec, three_layer):
    spec = write_spec(three_layer)
    assert cli("check", spec, "--rtol", "0", "--atol", "0.5").exit_code == 0
    result = cli("check", spec, "--rtol", "-1")
    assert result.exit_code == 2 and "--rtol" in result.stderr


def test_check_unreadable_onnx_is_exit_2(cli, write_spec, party, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not a model")
    result = cli("check", write_spec(party), "--onnx", bad)
    assert result.exit_code == 2 and "not a valid ONNX model" in result.stderr
    missing = cli("check", write_spec(party), "--onnx", tmp_path / "missing.onnx")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_python_dash_m_entry_point(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "nnspec", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and nnspec.__version__ in result.stdout


def test_run_prints_brackets_and_nan_verbatim(cli, write_spec, party, tmp_path):
    """Output arrays are printed as text, never interpreted as terminal markup."""
    x = tmp_path / "x.npy"
    np.save(x, np.array([[np.inf, np.inf]]))  # -4·inf + inf = nan
    result = cli("run", write_spec(party), "-i", x)
    assert result.exit_code == 0 and result.stdout.strip() == "decide = [[nan]]"


@pytest.mark.parametrize("data", [[], "spec", 3, None], ids=["list", "string", "number", "null"])
def test_from_dict_refuses_non_objects_cleanly(data):
    with pytest.raises(nnspec.SpecError, match="expected a JSON object at the top level"):
        nnspec.from_dict(data)


def test_batch_too_large_for_memory_limit(monkeypatch, three_layer):
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "1000")  # read when the model is built
    model = nnspec.to_numpy(nnspec.from_dict(three_layer))
    with pytest.raises(nnspec.InputDataError, match="split the batch"):
        model(np.zeros((100, 3)))
    assert model(np.zeros((10, 3))).shape == (10, 2)  # 10 samples x 5 floats x 4 bytes fits


def test_random_batches_shrink_to_the_memory_limit(monkeypatch, three_layer):
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "400")  # the widest value is 5 float32 = 20 bytes
    report = nnspec.check(nnspec.from_dict(three_layer))
    assert report.passed and [c.split(",")[0] for c in report.cases][:3] == ["batch 1", "batch 7", "batch 20"]


@pytest.mark.parametrize("command", ["compile", "check", "run"])
def test_unwritable_output_is_a_clear_error(cli, write_spec, party, tmp_path, command):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    spec = write_spec(party)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2)))
    args = {
        "compile": ["compile", spec, "-o", blocker / "m.onnx"],
        "check": ["check", spec, "--json", blocker / "r.json"],
        "run": ["run", spec, "-i", x, "-o", blocker / "y.npy"],
    }[command]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(blocker) in result.stderr


def test_check_writes_junit_and_html(cli, write_spec, three_layer, tmp_path):
    from xml.etree import ElementTree as ET

    junit, page = tmp_path / "r.xml", tmp_path / "r.html"
    result = cli(
        "check",
        write_spec(three_layer),
        "--junit",
        junit,
        "--html",
        page,
        "--runner",
        "onnxruntime",
        "--runner",
        "onnx-reference",
    )
    assert result.exit_code == 0, result.output
    suite = ET.parse(junit).getroot()[0]
    # per runner: 1 output, 3 layer steps and the parameters of 3 dense layers
    assert suite.get("tests") == "14" and suite.get("failures") == "0"
    assert "<svg" in page.read_text() and "onnx-reference" in page.read_text()


def test_check_folder_writes_one_junit_suite_per_spec(cli, write_spec, party, three_layer, tmp_path):
    from xml.etree import ElementTree as ET

    write_spec(party, "a.json")
    write_spec(three_layer, "b.json")
    write_spec("{not json", "c.json")
    junit = tmp_path / "out.xml"
    result = cli("check", tmp_path, "--junit", junit, "--jobs", "1")
    assert result.exit_code == 2, result.output  # c.json is invalid, nothing disagrees
    suites = ET.parse(junit).getroot()
    assert [s.get("name") for s in suites] == ["a.json", "b.json", "c.json"]
    assert suites[2].get("errors") == "1" and "malformed JSON" in suites[2][0][0].get("message")


def compiled_and_changed(cli, spec, model_path, initializer, change):
    """`nnspec compile SPEC -o MODEL`, then one initializer of the written model replaced by change(it)."""
    assert cli("compile", spec, "-o", model_path).exit_code == 0
    model = onnx.load(model_path)
    init = next(i for i in model.graph.initializer if i.name == initializer)
    init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init)), init.name))
    onnx.save(model, model_path)
    return model_path


def test_check_repro_flag_writes_a_folder_on_failure(cli, write_spec, three_layer, tmp_path):
    spec = write_spec(three_layer)
    model_path = compiled_and_changed(cli, spec, tmp_path / "m.onnx", "l1.bias", lambda b: b + np.float32(0.5))
    result = cli("check", spec, "--onnx", model_path, "--repro", tmp_path / "repro")
    assert result.exit_code == 1
    assert "first divergence: layer 'l1' (layers[0], dense)" in result.stdout
    assert (tmp_path / "repro" / "onnx" / "test_data_set_0" / "input_0.pb").is_file()


def test_check_unknown_runner_exits_2(cli, write_spec, party):
    result = cli("check", write_spec(party), "--runner", "tensorrt")
    assert result.exit_code == 2 and "expected one of onnxruntime, onnx-reference; found 'tensorrt'" in result.stderr


@pytest.mark.parametrize("flag", ["--html", "--repro"])
def test_one_spec_flags_refuse_a_folder(cli, write_spec, party, tmp_path, flag):
    write_spec(party, "a.json")
    result = cli("check", tmp_path, flag, tmp_path / "x")
    assert result.exit_code == 2 and flag in result.stderr


def test_check_cuda_without_gpu_is_a_clear_error(cli, write_spec, party):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider; the error path cannot be exercised")
    result = cli("check", write_spec(party), "--provider", "cuda")
    assert result.exit_code == 2 and "onnxruntime-gpu" in result.stderr and "Traceback" not in result.output


# --- nnspec show -----------------------------------------------------------------------------------


def test_show_reads_like_the_seed(cli, write_spec, three_layer, tmp_path):
    """Each layer as a = f(W p + b) over its own source, its numbers' origin, and the network's hash,
    which is the hash a compiled model carries: a reviewer can tie a model file to the spec shown."""
    result = cli("show", write_spec(three_layer))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for fragment in ("three (nnspec/1, float32); inputs: p [N, 3]", "tanh(W p + b)", "[N, 5]"):
        assert fragment in text, fragment
    info = json.loads(cli("show", write_spec(three_layer), "--json").stdout)
    assert [layer["computes"] for layer in info["layers"]] == ["tanh(W p + b)", "relu(W l1 + b)", "sigmoid(W l2)"]
    sources = [p["source"] for layer in info["layers"] for p in layer["params"].values()]
    assert sources == [
        "glorot_uniform(seed=1)",
        "normal(seed=2, mean=0, std=0.05)",
        "he_normal(seed=3)",
        "zeros",
        "uniform(seed=4, low=-1, high=1)",
    ]
    assert info["parameters"] == sum(layer["parameters"] for layer in info["layers"]) == 51
    assert "51 parameters (204 B as float32)" in text
    assert cli("compile", write_spec(three_layer), "-o", tmp_path / "m.onnx").exit_code == 0
    metadata = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert metadata["nnspec.spec_sha256"] == info["sha256"] and info["sha256"] in text


def test_show_names_files_parameters_and_ranges(cli, tmp_path, party):
    np.save(tmp_path / "w.npy", np.array([[-4.0, 1.0]]))
    spec = dict(party)
    spec["layers"] = [
        {**party["layers"][0], "weights": {"file": "w.npy"}, "activation": {"name": "leaky_relu", "alpha": 0.2}}
    ]
    (tmp_path / "m.json").write_text(json.dumps(spec))
    info = json.loads(cli("show", tmp_path / "m.json", "--json").stdout)
    (layer,) = info["layers"]
    assert layer["computes"] == "leaky_relu[alpha=0.2](W p + b)"
    assert layer["params"]["weights"] == {
        "shape": [1, 2],
        "source": "file w.npy",
        "min": -4.0,
        "max": 1.0,
        "mean_abs": 2.5,
    }
    assert layer["params"]["bias"]["source"] == "inline"


def test_show_counts_multiply_adds_per_sample(cli, write_spec, three_layer):
    """three_layer is 3 -> 4 -> 5 -> 2: a dense layer does one multiply-add per weight for each sample."""
    info = json.loads(cli("show", write_spec(three_layer), "--json").stdout)
    assert [layer["multiply_adds"] for layer in info["layers"]] == [12, 20, 10]
    assert info["multiply_adds"] == 42
    text = " ".join(cli("show", write_spec(three_layer)).stdout.split())
    assert "mult-adds" in text and "42 multiply-adds per sample" in text


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # 8 filters of 2 x 3 x 3 over a 2 x 6 x 6 image, 'same': 8 x 6 x 6 outputs, each 18 taps
        ({"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same"}, [2, 6, 6], 8 * 36 * 18),
        # groups of 2 channels, stride 2: 4 x 3 x 3 outputs, each (4 / 2) x 3 x 3 taps
        (
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "groups": 2},
            [4, 6, 6],
            4 * 9 * 18,
        ),
        ({"type": "conv1d", "filters": 3, "kernel_size": 2}, [2, 5], 3 * 4 * 4),  # 'valid': 4 positions
        ({"type": "dense", "units": 3}, [4, 5], 4 * 3 * 5),  # a dense layer over [T, in] acts at each of T
        ({"type": "layer_norm"}, [4, 5], 3 * 20),  # mean, variance, scale and shift per element
        (
            {"type": "batch_norm", "mean": [0, 0, 0], "variance": [1, 1, 1]},
            [3, 4, 4],
            48,
        ),  # x * factor + shift per element
        ({"type": "max_pool2d", "pool_size": 2}, [3, 4, 4], 0),
        ({"type": "activation", "activation": "tanh"}, [7], 0),
    ],
)
def test_multiply_adds_of_each_layer_type(cli, write_spec, layer, shape, expected):
    seeded = (
        {"weights": {"init": "glorot_uniform", "seed": 1}} if layer["type"] in ("conv1d", "conv2d", "dense") else {}
    )
    spec = {"format": "nnspec/1", "name": "m", "inputs": [{"name": "x", "shape": shape}], "layers": [layer | seeded]}
    result = cli("show", write_spec(spec), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layers"][0]["multiply_adds"] == info["multiply_adds"] == expected


def test_show_refuses_a_bad_spec(cli, write_spec, party):
    party["layers"][0]["weights"] = [[1.0, 2.0, 3.0]]
    result = cli("show", write_spec(party))
    assert result.exit_code == 2 and "layers[0].weights" in result.stderr


@pytest.mark.parametrize("activation", sorted(REGISTRY))
def test_every_activation_reads_in_a_formula(activation, party):
    party["layers"][0]["activation"] = activation
    party["layers"].append({"type": "activation", "name": "again", "activation": activation})
    graph = nnspec.graph(nnspec.from_dict(party))
    dense, alone = (LAYERS[n.op].formula(n) for n in graph.nodes)
    if activation == "linear":
        assert dense == "W p + b" and alone == "linear(decide)"
    else:
        assert dense == f"{activation}(W p + b)" and alone == f"{activation}(decide)"


def test_check_junit_has_a_failure_per_failing_output_and_step(cli, write_spec, three_layer, tmp_path):
    from xml.etree import ElementTree as ET

    from test_harness import failed_cases, junit_failures

    spec = write_spec(three_layer)
    model_path = compiled_and_changed(cli, spec, tmp_path / "m.onnx", "l3.weights", lambda w: w * np.float32(1.01))
    junit, report = tmp_path / "out.xml", tmp_path / "r.json"
    result = cli("check", spec, "--onnx", model_path, "--junit", junit, "--json", report)
    assert result.exit_code == 1, result.output
    suite = ET.parse(junit).getroot()[0]
    # the output l3, layer l3's own step and its parameters fail; the file against the spec's export and the other
    # layers' parameters are cases of their own
    assert suite.get("tests") == "8" and suite.get("failures") == "3"
    assert failed_cases(suite) == junit_failures(json.loads(report.read_text()))
    assert failed_cases(suite) == [
        "l3 [onnxruntime vs numpy]",
        "layer l3 step [onnxruntime]",
        "layer l3 parameters [onnxruntime]",
    ]
