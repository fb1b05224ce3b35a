"""The hls4ml target: C simulation of the bundled ic model, failures of conversion, compiler and
worker as failed tests with their logs, timeouts that kill the worker's process group, hw_emu
skipped without an HLS tool (and run through a stand-in tool). The HLS report readers: test_hlsreport.py.

Tests that convert models need the extra (`pip install -e '.[hls4ml]'`) and g++; builds are
shared between the inner sessions of one worker through a common cache folder."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import Project, alive

from pytest_tinyaccel.config import ConfigError
from pytest_tinyaccel.targets.hls4ml import (
    HLS_TOOLS,
    INSTALL_HINT,
    FixedPoint,
    Hls4mlTarget,
    calibrated_input,
    derived_atol,
    parse_fixed,
)

DATA = Path(__file__).parent / "data" / "hls"
EXPORTERS = Path(__file__).parent / "data" / "exporters"
HAVE_HLS4ML = all(importlib.util.find_spec(m) is not None for m in ("hls4ml", "qonnx")) and shutil.which("g++")
needs_hls4ml = pytest.mark.skipif(not HAVE_HLS4ML, reason="needs the hls4ml extra (pip install -e '.[hls4ml]') and g++")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pytest cache folder for the inner sessions of this module, so builds are reused."""
    return tmp_path_factory.mktemp("hls4ml-cache")


def run(project: Project, cache: Path | None, *args: str) -> pytest.RunResult:
    extra = ("-o", f"cache_dir={cache}") if cache else ()
    return project.run(*extra, *args)


# ----- tiny models written here --------------------------------------------------------------


def write_tiny_model(project: Project, name: str, extra_op: str | None = None, seed: int = 0) -> Path:
    """An 8 -> 16 -> 4 MLP classifier (Gemm, Relu, Gemm, Softmax), optionally with `extra_op`
    (an elementwise op such as Sin) after the first layer; labels are ONNX Runtime's argmax."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (16, 8)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    w2 = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1)]
    hidden = "h"
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["h"], ["h2"]))
        hidden = "h2"
    nodes += [
        helper.make_node("Relu", [hidden], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every supported ONNX Runtime (NOTES.md)
    folder = project.path / "models" / name
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    x = rng.normal(0, 1, (40, 8)).astype(np.float32)
    probs = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.save(folder / "X_test.npy", x)
    np.save(folder / "y_test.npy", probs.argmax(1).astype(np.int64))
    (folder / "model.toml").write_text(
        'use_case = "Tiny"\ntask = "classification"\nmetric = "top1"\nquality_target = 0.9\n'
        'dtypes = ["fp32"]\nndata = 4\nsamples = 40\narchitecture = "MLP"\nlink = "tests/test_hls4ml_target.py"\n'
    )
    return folder


# ----- int8 through hls4ml's QONNX front end -------------------------------------------------------


def add_exporter_model(project: Project, name: str) -> Path:
    """A model of tests/data/exporters (training/exporters/make_gallery.py) in the project."""
    return Path(shutil.copytree(EXPORTERS / name, project.path / "models" / name))


@needs_hls4ml
def test_brevitas_qcdq_int8_implements_the_goldens_quantization(project: Project, shared_cache: Path) -> None:
    """Brevitas's QCDQ export (4-bit weights) converted by qonnx and built by hls4ml's QONNX front end: the
    design quantizes where the golden does, at its scales, so it agrees with ONNX Runtime's int8 golden on
    every sample (measured: max abs difference 3e-6 on the 200 test samples, docs/hls4ml.md)."""
    add_exporter_model(project, "brevitas_qcdq")
    report = project.path / "profile.json"
    args = ("-m", "hls4ml", "--target", "sw_emu", "-rA", f"--tinyaccel-report={report}", "--tinyaccel-update-golden")
    result = run(project, shared_cache, *args)
    for check in ("golden", "accuracy", "top5"):
        result.stdout.fnmatch_lines([f"PASSED test_suite.py::test_{check}[[]brevitas_qcdq-hls4ml-sw_emu-int8[]]*"])
    result.stdout.fnmatch_lines(["*hls4ml 1.3.0 C simulation (g++), QDQ w4a8 as QONNX (qonnx QCDQToQuant)*"])
    (row,) = json.loads(report.read_text())["rows"]
    assert row["agreement"] == 1.0 and row["accuracy"] == pytest.approx(0.95)
    assert row["perf"]["extra"]["quantized"] == "qdq"
    errors = row["error_stats"]["logits"]
    assert errors["max_abs"] < 1e-3  # the same quantization: float32 rounding of the last (float) layer


@needs_hls4ml
def test_torchs_default_exporter_cnn_runs_in_both_dtypes(project: Project, shared_cache: Path) -> None:
    """torch's default exporter: weights in model.onnx.data, global average pooling as ReduceMean. fp32
    converts (ReduceMean as GlobalAveragePool) at a precision wide enough for its activations; int8 is the
    QDQ twin of the plugin's QOperator model (measured: argmax agreement 100 %, max abs difference 1e-6
    on the 200 test samples)."""
    folder = add_exporter_model(project, "torch_dynamo")
    # Its activations reach 58, beyond fixed<16,6>'s +-32 (saturated: logits 0.98 off, argmax unchanged).
    with open(folder / "model.toml", "a") as handle:
        handle.write('\n[targets.hls4ml]\nprecision = "fixed<18,8,RND,SAT>"\n')
    report = project.path / "profile.json"
    args = ("-m", "hls4ml", "--target", "sw_emu", "-k", "golden or accuracy", "-rA", f"--tinyaccel-report={report}")
    result = run(project, shared_cache, *args, "--tinyaccel-update-golden")
    result.assert_outcomes(passed=4)
    rows = {r["dtype"]: r for r in json.loads(report.read_text())["rows"]}
    assert rows["int8"]["agreement"] == 1.0 and rows["int8"]["accuracy"] == pytest.approx(0.885)
    assert rows["int8"]["error_stats"]["logits"]["max_abs"] < 1e-3
    assert rows["int8"]["perf"]["extra"]["quantized"] == "qdq"
    result.stdout.fnmatch_lines(["*QDQ twin w8a8 as QONNX (qonnx QCDQToQuant), hls4ml's QONNX front end*"])


@needs_hls4ml
def test_a_qonnx_model_runs_through_hls4mls_qonnx_front_end(tmp_path: Path) -> None:
    """Brevitas's QONNX export as it is; the reference is qonnx's own executor (ONNX Runtime cannot run
    Quant nodes)."""
    import onnx
    import qonnx.core.onnx_exec as oxe
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    from pytest_tinyaccel.models import load_model
    from pytest_tinyaccel.targets.base import Build

    folder = EXPORTERS / "brevitas_qonnx"
    model = load_model(folder / "model.toml")
    build = Build(model=model, dtype="int8", mode="sw_emu", onnx_path=model.onnx_path, dir=tmp_path)
    target = Hls4mlTarget()
    target.build(build)
    x = model.load_x(100).astype(np.float32)
    got = target.run(build, {"x": x}).outputs["logits"]
    proto = onnx.load(str(model.onnx_path))
    constants = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in constants]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    reference = ModelWrapper(proto).transform(InferShapes())
    want = np.concatenate([oxe.execute_onnx(reference, {"x": s[None]})["logits"] for s in x])
    assert np.mean(got.argmax(1) == want.argmax(1)) == 1.0  # measured on all 200: 100 %
    assert np.abs(got - want).max() < 0.05  # measured 0.014: the design's fixed-point rescaling


@needs_hls4ml
def test_what_hls4ml_cannot_convert_skips_in_one_line_or_fails_when_strict(
    project: Project, shared_cache: Path
) -> None:
    """The bundled ResNet's int8 model (a residual connection of quantized tensors) and an op hls4ml has
    no layer for: skips naming why and the manifest key, refused before g++ runs; strict: failures."""
    project.add_model("ic")
    write_tiny_model(project, "sinus", extra_op="Sin")
    args = ("-m", "hls4ml", "--target", "sw_emu", "-k", "accuracy and (sinus or int8)", "-rs")
    result = run(project, shared_cache, *args)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED*hls4ml cannot convert ic (int8): quantized tensor read by several layers x3: hls4ml's QONNX "
            "front end turns a residual connection of quantized tensors into a wrong design; to record it, set "
            '[[]targets.hls4ml[]] skip = "<why>" in ic/model.toml; to fail on it, tinyaccel_strict_support = true',
            "SKIPPED*hls4ml cannot convert sinus (fp32): Sin x1: hls4ml's ONNX front end has no Sin layer; to record*",
        ],
        consecutive=False,
    )
    assert "Traceback" not in result.stdout.str()
    builds = shared_cache / "d" / "tinyaccel" / "builds"
    kept = list(builds.glob("sinus-hls4ml-sw_emu-fp32-*.failed.log"))
    log = kept[0].read_text()
    assert "ONNX normalisation" in log and "qonnx clean-up" not in log  # refused before qonnx saw it
    for path in builds.glob("*.failed.log"):
        path.unlink()
    strict = run(project, shared_cache, *args, "-o", "tinyaccel_strict_support=true")
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines(["*hls4ml cannot convert sinus (fp32): Sin x1: *"])
    # The refusals were remembered beside their cache keys: no worker ran again (it would have left a log).
    assert not list(builds.glob("*.failed.log"))
    assert len(list(builds.glob("*-hls4ml-sw_emu-*.unsupported"))) == 2


def _refusing_target(tmp_path: Path, stage: str) -> Hls4mlTarget:
    """An hls4ml target whose stand-in worker counts its starts in tmp_path/starts and fails at `stage`."""
    script = (
        "import json, pathlib, sys\n"
        f"starts = pathlib.Path({str(tmp_path / 'starts')!r})\n"
        "starts.write_text(starts.read_text() + 'x' if starts.exists() else 'x')\n"
        f"error = {{'stage': {stage!r}, 'message': 'Sin x1'}}\n"
        "(pathlib.Path(sys.argv[2]) / 'error.json').write_text(json.dumps(error))\n"
        "sys.exit(3)\n"
    )
    target = Hls4mlTarget()
    target.worker_argv = lambda *args: [sys.executable, "-c", script, *args]  # type: ignore[method-assign]
    return target


@pytest.mark.parametrize("stage", ["unsupported by hls4ml", "g++ compilation of the generated HLS C++"])
def test_a_refusal_is_remembered_by_cache_key_and_a_failure_is_not(tmp_path: Path, stage: str) -> None:
    """What hls4ml cannot convert is refused again without starting the worker, from a file beside the
    build's keyed folder; another key (another folder name) starts it; a failed build always runs again."""
    from pytest_tinyaccel.models import load_model
    from pytest_tinyaccel.targets.base import Build, TargetError, TargetUnsupported

    model = load_model(Path(__file__).parents[1] / "models" / "ic" / "model.toml")
    target = _refusing_target(tmp_path, stage)
    refused = stage == "unsupported by hls4ml"
    messages = []
    for name in ("ic-hls4ml-sw_emu-fp32-0123", "ic-hls4ml-sw_emu-fp32-0123", "ic-hls4ml-sw_emu-fp32-4567"):
        folder = tmp_path / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        build = Build(model=model, dtype="fp32", mode="sw_emu", onnx_path=model.onnx_path, dir=folder)
        with pytest.raises(TargetError) as failed:
            target.build(build)
        assert isinstance(failed.value, TargetUnsupported) == refused
        messages.append(str(failed.value).splitlines()[0])
    assert (tmp_path / "starts").read_text() == ("xx" if refused else "xxx")
    if refused:
        assert messages == ["hls4ml cannot convert ic (fp32): Sin x1"] * 3
        assert (tmp_path / "ic-hls4ml-sw_emu-fp32-0123.unsupported").read_text() == messages[0]
    assert not list(tmp_path.glob("*.tmp"))


@needs_hls4ml
def test_library_exit_is_a_failed_test_with_the_log_and_others_keep_running(
    project: Project, shared_cache: Path
) -> None:
    for name, seed in (("tiny_a", 1), ("tiny_b", 2)):
        write_tiny_model(project, name, seed=seed)
    args = ("-m", "hls4ml", "--target", "sw_emu")
    result = run(project, shared_cache, *args, "--tinyaccel-update-golden")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*hls4ml 1.3.0 C simulation (g++), fixed<16,6,RND,SAT>*"])
    # The compiled library exit(1)s when a weight file is gone (NOTES.md): the worker dies,
    # the session does not.
    build = next(
        p for p in (shared_cache / "d" / "tinyaccel" / "builds").glob("tiny_a-hls4ml-sw_emu-fp32-*") if p.is_dir()
    )
    weights = sorted((build / "hls" / "firmware" / "weights").glob("w*.txt"))
    # Deleted before the run, after the build cache checked the build (a file deleted while it sits
    # in the cache would make the cache build it again instead).
    project.pytester.makeconftest(
        """
        from pytest_tinyaccel.targets.hls4ml import Hls4mlTarget

        class Fragile(Hls4mlTarget):
            def deterministic(self, mode):  # fault injection: never served from the result cache
                return False

            def run(self, build, inputs):
                if build.model.name == "tiny_a" and build.dtype == "fp32":
                    sorted((build.dir / "hls" / "firmware" / "weights").glob("w*.txt"))[0].unlink()
                return super().run(build, inputs)

        def pytest_tinyaccel_targets(config):
            return [Fragile]
        """
    )
    result = run(project, shared_cache, *args)
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*tiny_a-hls4ml-sw_emu-fp32: hls4ml C simulation of tiny_a (fp32, sw_emu): the worker exited with "
            "status 1*",
            "*--- last lines of *run.log ---*",
            f"*ERROR: file *{weights[0].name} does not exist*",
        ]
    )
    assert "tiny_b-hls4ml" not in "\n".join(line for line in result.outlines if line.startswith("FAILED"))


FAKE_WORKER = r"""
import os, signal, subprocess, sys, time
fault = {fault!r}
print("fake worker", sys.argv[1:], flush=True)
if fault == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open({pids!r}, "w") as handle:
    handle.write(f"{{os.getpid()}} {{child.pid}}")
print("hanging", flush=True)
time.sleep(600)
"""

FAULTY_CONFTEST = '''
import sys
from pytest_tinyaccel.targets.hls4ml import Hls4mlTarget

class FaultyWorker(Hls4mlTarget):
    """The hls4ml target with its worker replaced by a script that hangs or crashes."""

    def availability(self, mode):
        return None

    def worker_argv(self, *args):
        return [sys.executable, {script!r}, *args]

def pytest_tinyaccel_targets(config):
    return [FaultyWorker]
'''


@pytest.mark.parametrize("fault", ["hang", "segv"])
def test_hang_and_crash_of_the_worker(project: Project, fault: str) -> None:
    """A hang hits build_timeout and its whole process group (the worker and what it started)
    is killed; a segfault is reported with its signal. The cpu cases of the session still run."""
    pids = project.path / "pids.txt"
    script = project.path / "fake_worker.py"
    script.write_text(FAKE_WORKER.format(fault=fault, pids=str(pids)))
    project.pytester.makeconftest(FAULTY_CONFTEST.format(script=str(script)))
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write("\n[tool.tinyaccel.targets.hls4ml]\nbuild_timeout = 3\n")
    project.add_model("ic")
    start = time.monotonic()
    result = project.run("-m", "hls4ml or cpu", "--target", "hls4ml:sw_emu,cpu", "--tinyaccel-dtype", "fp32")
    result.assert_outcomes(passed=3, failed=3)
    if fault == "hang":
        result.stdout.fnmatch_lines(
            [
                (
                    "*ic-hls4ml-sw_emu-fp32: hls4ml build of ic (fp32, sw_emu) timed out after 3 s; "
                    "its process group was killed*"
                ),
                "*hanging*",
            ]
        )
        worker, child = map(int, pids.read_text().split())
        deadline = time.monotonic() + 10
        while (alive(worker) or alive(child)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker) and not alive(child)
        assert time.monotonic() - start < 60
    else:
        result.stdout.fnmatch_lines(
            [
                ("*ic-hls4ml-sw_emu-fp32: hls4ml build of ic (fp32, sw_emu): the worker was killed by signal SIGSEGV*"),
                "*fake worker*build*",
            ]
        )


# ----- hw_emu ------------------------------------------------------------------------------------


def test_hw_emu_is_skipped_without_an_hls_tool(project: Project) -> None:
    if any(shutil.which(tool) for tool in HLS_TOOLS):
        pytest.skip("an HLS tool is on PATH here")
    project.add_model("ic")
    result = project.run("-m", "hls4ml", "--target", "hw_emu", "-rs")
    result.assert_outcomes(skipped=6)
    reason = (
        "hw_emu needs Vitis HLS or Vivado HLS on PATH (vitis_hls / vitis-run / vivado_hls not found)"
        if HAVE_HLS4ML
        else INSTALL_HINT
    )
    result.stdout.fnmatch_lines([f"*SKIPPED*{reason}*"])


FAKE_VITIS_HLS = r'''#!{python}
"""Stands in for vitis_hls -f build_prj.tcl: writes the reports Vitis HLS writes."""
import pathlib, re, shutil, sys
status = {status!r}
assert sys.argv[1:] == ["-f", "build_prj.tcl"], sys.argv
opts = pathlib.Path("build_opt.tcl").read_text()
assert re.search(r"synth\s+1", opts) and re.search(r"cosim\s+1", opts), opts
top = re.search(r'set project_name "([^"]+)"', pathlib.Path("project.tcl").read_text()).group(1)
solution = pathlib.Path(f"{{top}}_prj/solution1")
for sub, name, target in (("syn", "vitis_csynth.xml", f"{{top}}_csynth.xml"), ("sim", status, f"{{top}}_cosim.rpt")):
    (solution / sub / "report").mkdir(parents=True, exist_ok=True)
    text = pathlib.Path({data!r}, name).read_text().replace("myproject", top)
    (solution / sub / "report" / target).write_text(text)
print("INFO: [HLS 200-111] Finished Command csynth_design", flush=True)
sys.exit(0)
'''


@needs_hls4ml
@pytest.mark.parametrize("status", ["cosim.rpt", "cosim_fail.rpt"])
def test_hw_emu_through_a_stand_in_hls_tool(
    project: Project, shared_cache: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """hw_emu end to end with a stand-in `vitis_hls` that writes Vitis-format reports:
    latency, II, clock and resources reach the profile; a failed co-simulation fails the test."""
    tools = project.path / "bin"
    tools.mkdir()
    fake = tools / "vitis_hls"
    fake.write_text(FAKE_VITIS_HLS.format(python=sys.executable, status=status, data=str(DATA)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    write_tiny_model(project, "tiny_hw", seed=3)
    report = project.path / "profile.json"
    result = run(
        project,
        shared_cache,
        "-m",
        "hls4ml",
        "--target",
        "hw_emu",
        "--tinyaccel-update-golden",
        f"--tinyaccel-report={report}",
    )
    if status == "cosim_fail.rpt":
        result.assert_outcomes(failed=3)
        result.stdout.fnmatch_lines(["*C/RTL co-simulation failed: Verilog co-simulation status 'Fail'*"])
        return
    result.assert_outcomes(passed=3)
    perf = json.loads(report.read_text())["rows"][0]["perf"]
    # Vitis sample: cosim latency max 1191 cycles at 5 ns, II 1026; resources from csynth.
    assert perf["cycles"] == 1191 and perf["clock_hz"] == pytest.approx(2e8)
    assert perf["latency_ns"] == pytest.approx(5955.0) and perf["throughput"] == pytest.approx(2e8 / 1026)
    assert perf["resources"] == {"LUT": 13216, "FF": 5424, "DSP": 52, "BRAM": 0, "URAM": 0}
    assert "vitis_hls C/RTL co-simulation" in perf["simulator"]


# ----- options, precisions, tolerance, lazy import ----------------------------------------------


def test_fixed_point_parsing_and_calibrated_input() -> None:
    assert parse_fixed("fixed<16,6,RND,SAT>") == FixedPoint(True, 16, 6, "RND", "SAT")
    assert str(parse_fixed(" ufixed< 8 , 0 > ")) == "ufixed<8,0,TRN,WRAP>"
    assert parse_fixed("fixed<16,6>").fractional == 10
    for bad, why in (
        ("fixed<16>", "not a fixed-point type"),
        ("fixed<0,0>", "width"),
        ("fixed<8,9>", "integer bits"),
        ("fixed<8,3,ROUND>", "rounding mode"),
        ("fixed<8,3,RND,CLIP>", "saturation mode"),
        (16, "string"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_fixed(bad)
    base = parse_fixed("fixed<16,6,RND,SAT>")
    assert str(calibrated_input(base, 85.56)) == "fixed<16,8,RND,SAT>"  # +-128 holds 85.56
    assert str(calibrated_input(base, 1.0)) == "fixed<16,2,RND,SAT>"  # +-2 holds 1.0
    assert str(calibrated_input(base, 0.0)) == "fixed<16,1,RND,SAT>"
    with pytest.raises(ValueError, match="NaN"):
        calibrated_input(base, float("nan"))


def test_default_tolerance_is_derived_from_the_precision() -> None:
    model = SimpleNamespace(manifest_path=Path("model.toml"), target_options=lambda target: {})  # no own options
    # 32 LSB of fixed<16,6> (2**-5) + two steps of a 4096-entry exp table over [0, 16).
    assert Hls4mlTarget().default_tolerance_for(model, "fp32")["atol"] == pytest.approx(2**-5 + 2 * 16 / 4096)
    # int8: the golden's own quantization, a fixed budget of about two 8-bit output steps (docs/hls4ml.md).
    assert Hls4mlTarget().default_tolerance_for(model, "int8")["atol"] == 0.25
    assert Hls4mlTarget(precision="fixed<32,16>").default_tolerance_for(model, "int8")["atol"] == 0.25
    target = Hls4mlTarget(precision="fixed<32,16>", softmax_table_size=16384)
    assert target.default_tolerance_for(model, "fp32")["atol"] == pytest.approx(2**-11 + 2 * 16 / 16384)
    assert derived_atol(parse_fixed("fixed<18,8>"), None) == pytest.approx(2**-5)


def test_settings_are_validated() -> None:
    target = Hls4mlTarget(strategy="resource", io_type="IO_PARALLEL", reuse_factor=4, precision="fixed<18,8>")
    assert target.settings["strategy"] == "Resource" and target.settings["io_type"] == "io_parallel"
    assert target.settings["precision"] == "fixed<18,8,TRN,WRAP>" and target.settings["reuse_factor"] == 4
    for settings, why in (
        ({"precison": "fixed<16,6>"}, "key 'precison': unknown key; allowed: precision, "),
        ({"reuse_factor": 0}, "key 'reuse_factor': must be at least 1"),
        ({"strategy": "Fast"}, r"key 'strategy': 'Fast' is not one of \['Latency', 'Resource'\]"),
        ({"softmax_table_size": 1000}, "power of two"),
        ({"build_timeout": -1}, "positive number"),
        ({"precision": "float"}, "not a fixed-point type"),
    ):
        with pytest.raises(ConfigError, match=r"\[tool.tinyaccel.targets.hls4ml\]: .*" + why):
            Hls4mlTarget(**settings)


def test_manifest_options_are_validated(project: Project) -> None:
    project.add_model("ic")
    project.append_manifest("ic", '[targets.hls4ml]\nprecision = "fixed<12,4,RND,SAT>"\nio_typ = "io_stream"')
    from pytest_tinyaccel.models import load_model

    model = load_model(project.manifest("ic"))
    with pytest.raises(ConfigError, match=r"model.toml: key 'targets.hls4ml.io_typ': unknown key"):
        Hls4mlTarget().options(model)
    project.edit_manifest("ic", 'io_typ = "io_stream"', "reuse_factor = 2")
    model = load_model(project.manifest("ic"))
    options = Hls4mlTarget(reuse_factor=8).options(model)
    assert options["precision"] == "fixed<12,4,RND,SAT>" and options["reuse_factor"] == 2
    # The model's precision sets its derived tolerance: 32 LSB of 8 fractional bits = 1/8.
    assert Hls4mlTarget().default_tolerance_for(model, "fp32")["atol"] == pytest.approx(1 / 8 + 2 * 16 / 4096)


def test_bad_settings_are_a_usage_error(project: Project) -> None:
    with open(project.path / "pyproject.toml", "a") as handle:
        handle.write('\n[tool.tinyaccel.targets.hls4ml]\nio_type = "axi"\n')
    result = project.run("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.tinyaccel.targets.hls4ml[]]: key 'io_type': 'axi' is not one of*"])


def test_missing_extra_is_a_skip_reason_and_the_plugin_does_not_import_it(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import sys, pytest_tinyaccel.plugin, pytest_tinyaccel.targets.hls4ml; "
        "print(sorted(m for m in ('hls4ml', 'qonnx', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "hls4ml" else real(name, *a))
    assert Hls4mlTarget().availability("sw_emu") == INSTALL_HINT
    assert Hls4mlTarget().availability("hw_emu") == INSTALL_HINT


def _design(fail_at: int | None = None):
    """A stand-in for the compiled design's C function: output = (sum of the sample's 4 inputs, pid)."""
    import ctypes

    def fn(x_address: int, out_address: int) -> None:
        x = np.ctypeslib.as_array((ctypes.c_float * 4).from_address(x_address))
        out = np.ctypeslib.as_array((ctypes.c_float * 2).from_address(out_address))
        if fail_at is not None and x[0] == fail_at:
            raise RuntimeError("design crashed")
        out[:] = [x.sum(), os.getpid()]

    return fn


@pytest.mark.parametrize("jobs", [1, 3, 50])
def test_c_simulation_shares_samples_between_processes_and_keeps_their_order(tmp_path: Path, jobs: int) -> None:
    from pytest_tinyaccel.targets.hls4ml.worker import _simulate_in_parallel

    x = np.arange(40 * 4, dtype=np.float32).reshape(40, 4)
    out = np.lib.format.open_memmap(tmp_path / "output_0.npy", mode="w+", dtype=np.float32, shape=(40, 2))
    _simulate_in_parallel(_design(), [x], [out], jobs)
    out.flush()
    written = np.load(tmp_path / "output_0.npy")
    np.testing.assert_array_equal(written[:, 0], x.sum(1))
    assert len(set(written[:, 1].tolist())) == min(jobs, 40)  # each share ran in its own process
    assert written[0, 1] == os.getpid()  # the first share in this one


def test_c_simulation_process_that_fails_fails_the_run(tmp_path: Path) -> None:
    from pytest_tinyaccel.targets.hls4ml.build import StageError
    from pytest_tinyaccel.targets.hls4ml.worker import _simulate_in_parallel

    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    out = np.lib.format.open_memmap(tmp_path / "output_0.npy", mode="w+", dtype=np.float32, shape=(10, 2))
    with pytest.raises(StageError, match="1 of 2 simulation processes failed"):
        _simulate_in_parallel(_design(fail_at=36), [x], [out], 2)  # sample 9, in the second share


def _fake_build(folder: Path, failing: str | None) -> str:
    """hls4ml's vivado build_lib.sh template with a stand-in compiler: it logs its start and end, sleeps
    (so the two compilations overlap only when run side by side), and exits 3 on `failing`."""
    template = Path(importlib.util.find_spec("hls4ml").origin).parent / "templates" / "vivado" / "build_lib.sh"
    (folder / "cc").write_text(
        "#!/bin/bash\n"
        'for a; do [ "$prev" = -c ] && src=$a; [ "$prev" = -o ] && out=$a; prev=$a; done\n'
        'for a; do [ "$a" = -shared ] && link=1; done\n'
        '[ -n "$link" ] && { touch "$out"; exit 0; }\n'
        '[ -z "$src" ] && exit 0  # the script probing for flags\n'
        'echo "start $src" >> log; sleep 1; [ "$src" = "' + (failing or "-") + '" ] && exit 3\n'
        'echo "end $src" >> log; touch "$out"\n'
    )
    (folder / "cc").chmod(0o755)
    (folder / "firmware").mkdir()
    return template.read_text().replace("CC=g++", f"CC={folder / 'cc'}").replace("mystamp", "0")


@needs_hls4ml
@pytest.mark.parametrize("failing", [None, "firmware/myproject.cpp", "myproject_bridge.cpp"])
def test_build_script_compiles_design_and_bridge_side_by_side(tmp_path: Path, failing: str | None) -> None:
    from pytest_tinyaccel.targets.hls4ml.build import side_by_side

    script = side_by_side(_fake_build(tmp_path, failing))
    assert script is not None, "hls4ml's build_lib.sh no longer has its two compilations on consecutive lines"
    (tmp_path / "build.sh").write_text(script)
    code = subprocess.run(["bash", "build.sh"], cwd=tmp_path, capture_output=True).returncode
    log = (tmp_path / "log").read_text().splitlines()
    # both started before either ended
    assert sorted(log[:2]) == ["start firmware/myproject.cpp", "start myproject_bridge.cpp"], log
    libraries = list((tmp_path / "firmware").glob("*.so"))
    if failing is None:
        assert code == 0 and len(libraries) == 1
    else:  # either compilation failing fails the script before the link
        assert code == 3 and not libraries


def test_build_script_of_another_shape_runs_as_it_is() -> None:
    from pytest_tinyaccel.targets.hls4ml.build import side_by_side

    assert side_by_side("set -e\n${CC} -c a.cpp -o a.o\necho\n${CC} -c b.cpp -o b.o\n") is None
    assert side_by_side("set -e\n${CC} -c a.cpp -o a.o\n") is None


@needs_hls4ml
def test_the_library_is_compiled_at_the_c_simulations_optimisation_level(tmp_path: Path) -> None:
    """hls4ml's own build_lib.sh has the one flags line `optimised` rewrites; compile_library runs the
    rewritten script (settings.CSIM_OPTIMISATION: -O1 on x86-64, hls4ml's -O3 elsewhere)."""
    from pytest_tinyaccel.targets.hls4ml.build import HLS4ML_CFLAGS, SIDE_BY_SIDE, compile_library, optimised
    from pytest_tinyaccel.targets.hls4ml.settings import CSIM_OPTIMISATION

    script = _fake_build(tmp_path, None)
    assert script.count(HLS4ML_CFLAGS) == 1, "hls4ml's build_lib.sh no longer sets CFLAGS in one known line"
    assert 'CFLAGS="-O1 -fPIC"' in optimised(script, "-O1") and "-O3" not in optimised(script, "-O1")
    assert optimised(script, None) == script
    other = 'CFLAGS="-O2 -g"\n${CC} ${CFLAGS} -c a.cpp\n'
    assert optimised(other, "-O1") == other  # another release's script: as it is
    (tmp_path / "build_lib.sh").write_text(script)
    library = compile_library(tmp_path, "myproject")
    assert library.parent == tmp_path / "firmware" and library.name.startswith("myproject-")
    ran = (tmp_path / SIDE_BY_SIDE).read_text()
    assert f'CFLAGS="{CSIM_OPTIMISATION or "-O3"} -fPIC"' in ran
