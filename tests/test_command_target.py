"""The `command` target end to end, through pytester and stand-in tools
(tests/tools/aiesim.py for an AIE make flow, tests/tools/gemmini_runner.py for
Gemmini's ONNX Runtime runner): ids, markers, outputs read from AIE-style text
and .npy files, perf figures parsed into the report, and every failure mode
(nonzero exit, signal, hang with children, missing/short/NaN/garbled output,
build failure, configuration errors)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import FAST_PYPROJECT, Project

TOOLS = Path(__file__).resolve().parent / "tools"
AIESIM = str(TOOLS / "aiesim.py")
GEMMINI = str(TOOLS / "gemmini_runner.py")


def aie_table(
    name: str,
    fail: str | None = None,
    timeout: float = 60,
    modes: str = "sw_emu,hw_emu",
    extra_run: str = "",
    build: bool = True,
) -> str:
    """A Vitis-AIE-like flow: text inputs (3 per line, last dim 8 padded to 9),
    text outputs (4 per line, 10 classes padded to 12), timestamps in hw_emu."""
    fail_arg = f', "--fail", "{fail}"' if fail else ""
    source = '"--pkg", "{workdir}/Work"' if build else '"--model", "{model}"'
    run = (
        f'["{{python}}", "{AIESIM}", "run", {source}, "--input", "{{inputs}}", '
        f'"--output", "{{outputs}}/out.txt", "--vpl-in", "3", "--vpl-out", "4"{fail_arg}{extra_run}'
    )
    build_line = (
        f'build = ["{{python}}", "{AIESIM}", "build", "--model", "{{model}}", "--workdir", "{{workdir}}"]'
        if build
        else ""
    )
    text = f"""
[tool.tinyaccel.targets.{name}]
kind = "command"
timeout = {timeout}
{build_line}
inputs = {{ format = "txt", values_per_line = 3, pad = "line" }}
outputs = {{ format = "txt", path = "{{outputs}}/out.txt", values_per_line = 4, pad = "line" }}
"""
    if "sw_emu" in modes:
        text += f"""
[tool.tinyaccel.targets.{name}.sw_emu]
run = {run}]
simulator = "x86simulator stand-in"
"""
    if "hw_emu" in modes:
        text += f"""
[tool.tinyaccel.targets.{name}.hw_emu]
run = {run}, "--timed"]
simulator = "aiesimulator stand-in"
clock_hz = 1.25e9
perf = [
  {{ parser = "aiesim_stream", file = "{{outputs}}/out.txt" }},
  {{ parser = "aie_kernel_cycles" }},
  {{ field = "resources.Kernels", regex = 'Kernels: (\\d+)', file = "{{workdir}}/Work/reports/resources.txt" }},
  {{ field = "resources.Buffers", regex = 'Buffers: (\\d+)', file = "{{workdir}}/Work/reports/resources.txt" }},
  {{ field = "resources.Stream", regex = 'Stream: (\\d+)', file = "{{workdir}}/Work/reports/resources.txt" }},
  {{ field = "resources.PLIO", regex = 'PLIO: (\\d+)', file = "{{workdir}}/Work/reports/resources.txt" }},
  {{ field = "resources.GMIO", regex = 'GMIO: (\\d+)', file = "{{workdir}}/Work/reports/resources.txt" }},
]
"""
    return text


GEMMINI_TABLE = f"""
[tool.tinyaccel.targets.gemmini_spike]
kind = "command"
description = "Gemmini ORT runner under spike (stand-in)"
modes = ["hw_emu"]
batch = 300
run = ["{{python}}", "{GEMMINI}", "-m", "{{model}}", "-i", "{{inputs}}", "-o", "{{outputs}}", "-x", "1", "-O", "99",
       "-t", "{{rundir}}/trace.json"]
simulator = "spike --extension=gemmini (stand-in)"
env = {{ GEMMINI_MODE = "{{mode}}" }}

[[tool.tinyaccel.targets.gemmini_spike.perf]]
parser = "ort_profile"
file = "{{rundir}}/trace.json"

[[tool.tinyaccel.targets.gemmini_spike.perf]]
parser = "cycles"
"""

PERF_CHECK = """
def test_perf_layers(tinyaccel):
    perf = tinyaccel.outcome.perf
    if tinyaccel.case.target == "gemmini_spike":
        ops = " ".join(l.op for l in perf.layers)  # Conv, Gemm (fp32); QLinearConv, QGemm (int8)
        assert "Conv" in ops and "Gemm" in ops
        assert all(l.extra["calls"] == 300 and l.extra["us"] >= 0 for l in perf.layers)
        assert perf.extra["invocations"] == 2 and perf.extra["ort_runs"] == 300
    elif tinyaccel.case.mode == "hw_emu":
        assert perf.layers[0].name == "Conv<0>" and perf.layers[0].cycles == 100
        assert perf.extra["aiesim_instances"] == 540 and perf.extra["aiesim_period_ns"] == 1000
"""


def write_pyproject(project: Project, *tables: str) -> None:
    (project.path / "pyproject.toml").write_text(FAST_PYPROJECT + "".join(tables))


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """Outcome counts, without `deselected` (the cpu target's cases vary with -m/-k) and `warnings`."""
    return {k: v for k, v in result.parseoutcomes().items() if k not in ("deselected", "warnings")}


def test_ids_markers_and_unavailable_tools(project: Project) -> None:
    """Several command targets from one pyproject, each its own name and marker;
    a mode whose tool is not on PATH is skipped with that reason."""
    project.add_model("ic")
    missing = """
[tool.tinyaccel.targets.kann]
kind = "command"
hw = { run = ["kann_opencl_cnn_not_installed", "{workdir}/params.bin", "{rundir}"] }

[tool.tinyaccel.targets.vitis_hw]
kind = "command"
modes = ["hw_emu"]
requires = ["aiesimulator_not_installed"]
run = ["make", "aiesim"]
"""
    write_pyproject(project, aie_table("vitis_aie"), GEMMINI_TABLE, missing)
    result = project.run("--collect-only", "-q")
    ids = {line.split("::")[1] for line in result.outlines if "::" in line}
    assert {
        "test_golden[ic-vitis_aie-hw_emu-fp32]",
        "test_accuracy[ic-vitis_aie-sw_emu-int8]",
        "test_top5[ic-gemmini_spike-hw_emu-fp32]",
        "test_golden[ic-kann-hw-fp32]",
    } <= ids
    assert not any("gemmini_spike-sw_emu" in i for i in ids)  # a mode not configured does not exist

    result = project.run("--collect-only", "-q", "-m", "vitis_aie")
    selected = [line for line in result.outlines if "::" in line]
    assert len(selected) == 3 * 2 * 2 and all("-vitis_aie-" in line for line in selected)

    result = project.run("-m", "kann or vitis_hw", "-rs")
    assert outcomes(result)["skipped"] == 12
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*kann hw: `kann_opencl_cnn_not_installed` not found on PATH*",
            "*SKIPPED*vitis_hw hw_emu: `aiesimulator_not_installed` not found on PATH*",
        ]
    )


def test_aie_flow_end_to_end(project: Project) -> None:
    """Text inputs/outputs with padding, golden/accuracy/Top-5 pass in sw_emu and
    hw_emu; hw_emu latency, throughput, cycles and resources come from the parsers."""
    project.add_model("ic")
    write_pyproject(project, aie_table("vitis_aie"))
    project.pytester.makepyfile(test_perf=PERF_CHECK)
    result = project.run(
        "-m",
        "vitis_aie",
        "--tinyaccel-dtype",
        "fp32",
        "--tinyaccel-report",
        "out/profile.json",
        "--tinyaccel-report",
        "out/profile.md",
    )
    assert outcomes(result) == {"passed": 8}, result.stdout.str()
    result.stdout.fnmatch_lines(["vitis_aie hw_emu: aiesimulator stand-in", "vitis_aie sw_emu: x86simulator stand-in"])
    rows = {r["mode"]: r for r in json.loads((project.path / "out" / "profile.json").read_text())["rows"]}
    hw, sw = rows["hw_emu"], rows["sw_emu"]
    # tests/tools/aiesim.py: 23 kernels printing total = 100*(k+1); the first inference's
    # 3 output beats complete at 5000 + 2*2 ns; one inference per 1000 ns after that.
    assert hw["perf"]["cycles"] == 100 * 23 * 24 / 2 and hw["perf"]["clock_hz"] == 1.25e9
    assert hw["perf"]["latency_ns"] == 5004 and hw["perf"]["throughput"] == pytest.approx(1e6)
    assert hw["perf"]["resources"] == {"Kernels": 7, "Buffers": 9, "Stream": 14, "PLIO": 2, "GMIO": 0}
    assert hw["resource_columns"] == ["Kernels", "Buffers", "Stream", "PLIO", "GMIO"]  # the configured resources.<Name>
    assert hw["accuracy"] == pytest.approx(537 / 540) and hw["perf"]["simulator"] == "aiesimulator stand-in"
    assert sw["perf"]["cycles"] is None and sw["perf"]["latency_ns"] is None and sw["accuracy"] == hw["accuracy"]
    assert "27600 cycles" in (project.path / "out" / "profile.md").read_text()

    # The build is cached; the run is not (it produces the outputs being tested).
    result = project.run("-m", "vitis_aie", "--tinyaccel-dtype", "fp32", "-k", "golden")
    assert outcomes(result) == {"passed": 2}
    result.stdout.fnmatch_lines(["builds: 0 built, 2 reused from the cache"])


def test_gemmini_runner_npy_outputs_and_ort_trace(project: Project) -> None:
    """.npy outputs; latency from the ORT profile, per-node layers, cycles from
    the runner's summary line; batch = 300 runs the tool twice for 540 samples."""
    project.add_model("ic")
    write_pyproject(project, GEMMINI_TABLE)
    project.pytester.makepyfile(test_perf=PERF_CHECK)
    result = project.run("-m", "gemmini_spike", "--tinyaccel-report", "out/profile.json", "-k", "not accuracy")
    assert outcomes(result) == {"passed": 6}, result.stdout.str()
    rows = {r["dtype"]: r for r in json.loads((project.path / "out" / "profile.json").read_text())["rows"]}
    for row in rows.values():
        perf = row["perf"]
        assert perf["latency_ns"] > 0 and perf["cycles"] > 0
        assert perf["simulator"] == "spike --extension=gemmini (stand-in)"
    assert set(rows) == {"fp32", "int8"}


def test_failures_are_clear(project: Project) -> None:
    """Nonzero exit, a crash by signal, a missing, short, NaN or garbled output:
    each a failed test naming the command, the status and the logs, with their tail."""
    project.add_model("ic")
    kinds = ["exit", "crash", "missing", "short", "nan", "garbage"]
    write_pyproject(project, *(aie_table(f"aie_{kind}", fail=kind, modes="sw_emu", build=False) for kind in kinds))
    result = project.run("-k", "golden", "--tinyaccel-dtype", "fp32", "-m", " or ".join(f"aie_{k}" for k in kinds))
    assert outcomes(result) == {"failed": 6}
    text = result.stdout.str()

    def failure(kind: str) -> str:
        start = text.index(f"ic-aie_{kind}-sw_emu-fp32: aie_{kind} sw_emu: run command")
        return text[start : start + 3000]

    exit_ = failure("exit")
    assert "run command exited with code 3" in exit_ and "command: " in exit_ and "aiesim.py run --model" in exit_
    assert "| ERROR: [aiesimulator] deadlock detected on port in_0" in exit_
    logs = exit_.split("logs: ", 1)[1].split()[:2]
    assert logs[0].endswith("run.stdout.log") and Path(logs[1]).read_text().startswith("ERROR: [aiesimulator]")
    assert "was killed by SIGSEGV (exit code -11)" in failure("crash")
    assert "succeeded but output 'probs': the output file" in failure(
        "missing"
    ) and "out.txt was not written" in failure("missing")
    assert (
        "found 6476 values, expected 6480 = 540 samples x 12 values of shape [10] (last dimension 10 padded to 12)"
        in failure("short")
    )
    assert "holds 1 NaN/Inf value(s), first at index [0, 5]" in failure("nan")
    assert "line 2: 'x7f' is not a number" in failure("garbage")


def test_hang_hits_the_timeout_and_kills_the_process_group(project: Project) -> None:
    project.add_model("ic")
    pidfile = project.path / "child.pid"
    write_pyproject(
        project,
        aie_table(
            "aie_hang", fail="hang", timeout=3, modes="sw_emu", extra_run=f', "--pidfile", "{pidfile}"', build=False
        ),
    )
    start = time.monotonic()
    result = project.run("-k", "golden", "--tinyaccel-dtype", "fp32", "-m", "aie_hang")
    assert outcomes(result) == {"failed": 1}
    assert time.monotonic() - start < 30
    result.stdout.fnmatch_lines(
        [
            "*aie_hang sw_emu: run command timed out after 3 s (its process group was killed)*",
            "*| INFO: [[]aiesimulator[]] waiting for input stream*",
        ]
    )
    child = int(pidfile.read_text())
    for _ in range(50):  # the child was in the tool's process group: it must be gone too
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), f"child process {child} of the hung tool survived"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_build_failure_keeps_its_logs(project: Project) -> None:
    project.add_model("ic")
    table = aie_table("aie_badbuild", modes="sw_emu").replace(
        '"--workdir", "{workdir}"]', '"--workdir", "{workdir}", "--fail", "exit"]'
    )
    write_pyproject(project, table)
    result = project.run("-k", "golden", "--tinyaccel-dtype", "fp32", "-m", "aie_badbuild")
    assert outcomes(result) == {"failed": 1}
    text = result.stdout.str()
    assert "aie_badbuild sw_emu: build command exited with code 2" in text
    assert "| ERROR: [aiecompiler 77-295] cannot map kernel conv_3 to a tile: not enough memory" in text
    log = Path(text.split("logs: ", 1)[1].split()[1])
    assert log.parent.name.endswith(".failed-build-logs") and "not enough memory" in log.read_text()


@pytest.mark.parametrize(
    "table, message",
    [
        (
            '[tool.tinyaccel.targets.x]\nkind = "command"\nhw = { run = "make run" }\n',
            "*[[]tool.tinyaccel.targets.x.hw[]]: key 'run': must be an argv list such as*not a shell string*",
        ),
        (
            '[tool.tinyaccel.targets.x]\nkind = "command"\nhw = { run = ["sim", "{modle}"] }\n'
            '[tool.tinyaccel.targets.y]\nkind = "command"\nhw = { run = ["sim", "{stdout}"] }\n',
            "*[[]tool.tinyaccel.targets.y.hw[]]: key 'run': placeholder {stdout} is not available here*",
        ),
        (
            '[tool.tinyaccel.targets.x]\nkind = "command"\nhw = { run = ["sim"], timout = 5 }\n',
            "*[[]tool.tinyaccel.targets.x.hw[]]: key 'timout': unknown key; allowed: build, run, timeout,*",
        ),
        (
            '[tool.tinyaccel.targets.x]\nkind = "command"\nrun = ["sim"]\n',
            "*[[]tool.tinyaccel.targets.x[]]: key 'modes': must be a non-empty list*",
        ),
        (
            '[tool.tinyaccel.targets.x]\nkind = "docker"\n',
            "*[[]tool.tinyaccel.targets.x[]]: key 'kind': only 'command' is known, got 'docker'*",
        ),
        (
            '[tool.tinyaccel.targets.x]\nkind = "command"\nhw = { run = ["sim"], perf = [{ parser = "vcd" }] }\n',
            "*key 'perf[[]0[]].parser': 'vcd' is not one of "
            "[[]'aiesim_stream', 'aie_kernel_cycles', 'ort_profile', 'cycles', 'regex'[]]*",
        ),
    ],
)
def test_configuration_errors_are_usage_errors(project: Project, table: str, message: str) -> None:
    project.add_model("ic")
    write_pyproject(project, table)
    result = project.run("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_model_options_fill_placeholders(project: Project, tmp_path: Path) -> None:
    """A manifest's [targets.<name>] keys are placeholders (e.g. the flow's graph name)."""
    project.add_model("ic")
    project.append_manifest("ic", '[targets.graphcheck]\ngraph = "tiny_ic"')
    record = tmp_path / "argv.txt"
    script = tmp_path / "echo.py"
    script.write_text(
        "import sys, numpy as np\n"
        f"open({str(record)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        "x = np.load(sys.argv[2])\n"
        "np.save(sys.argv[3] + '/probs.npy', np.full((len(x), 10), 0.1, np.float32))\n"
    )
    write_pyproject(
        project,
        f'[tool.tinyaccel.targets.graphcheck]\nkind = "command"\n'
        f'hw = {{ run = ["{{python}}", "{script}", "GRAPH={{graph}}", "{{inputs}}", "{{outputs}}"] }}\n',
    )
    result = project.run("-m", "graphcheck", "-k", "golden and fp32")
    assert outcomes(result) == {"failed": 1}  # uniform outputs: the golden check catches it
    result.stdout.fnmatch_lines(["*outputs on the 10 golden samples do not match ONNX Runtime*"])
    assert record.read_text().startswith("GRAPH=tiny_ic ")


def test_python_placeholder_is_this_interpreter() -> None:
    from pytest_tinyaccel.targets.command import CommandTarget

    target = CommandTarget("t", {"kind": "command", "hw": {"run": ["{python}", "-c", "pass"]}})
    assert target.availability("hw") is None and target.modes == ("hw",)
    assert target.simulator("hw") == f"t hw via `{os.path.basename(sys.executable)}` (command target)"


def test_documented_configurations_parse(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every complete example in docs/command-target.md is a valid configuration;
    without the vendor tools (a PATH that holds none: this machine may have qemu-riscv64) each mode
    is unavailable with a reason."""
    import re
    import tomllib

    monkeypatch.setenv("PATH", str(tmp_path))
    from pytest_tinyaccel.targets.command import configured_command_targets

    doc = Path(__file__).resolve().parent.parent / "docs" / "command-target.md"
    blocks = [
        b
        for b in re.findall(r"```toml\n(.*?)```", doc.read_text(), re.DOTALL)
        if b.startswith("[tool.tinyaccel.targets.") and 'kind = "command"' in b
    ]
    names = []
    for block in blocks:
        targets, rest = configured_command_targets(tomllib.loads(block)["tool"]["tinyaccel"]["targets"], doc.parent)
        assert not rest
        for target in targets:
            names.append(target.name)
            for mode in target.modes:
                assert "not found on PATH" in (target.availability(mode) or "")
    assert names == ["vitis_aie", "gemmini", "kann"]


KERNEL_DUMP = str(TOOLS / "kernel_dump.py")


def kernel_dump_table(fault: str | None) -> str:
    fault_arg = f', "--fault", "{fault}"' if fault else ""
    return f"""
[tool.tinyaccel.targets.probe_flow]
kind = "command"
modes = ["hw_emu"]
run = ["{{python}}", "{KERNEL_DUMP}", "-m", "{{model}}", "-i", "{{inputs}}", "-o", "{{outputs}}", "--layers", "{{layers}}"{fault_arg}]
layers = "{{rundir}}/kernels"
"""


def test_per_kernel_outputs_name_the_first_diverging_kernel(project: Project) -> None:
    """A flow that dumps every kernel's output is compared with the per-kernel golden
    (golden/<model>/layers.<dtype>.npz); the failure names the first kernel that is off."""
    project.add_model("ic")
    write_pyproject(project, kernel_dump_table(None))
    clean = project.run("-m", "probe_flow", "-k", "golden and fp32")
    assert outcomes(clean) == {"passed": 1}, clean.stdout.str()

    write_pyproject(project, kernel_dump_table("/stack2/conv1/conv1.0/Conv"))
    faulty = project.run("-m", "probe_flow", "-k", "golden and fp32")
    assert outcomes(faulty) == {"failed": 1}
    faulty.stdout.fnmatch_lines(
        [
            "*ic-probe_flow-hw_emu-fp32: outputs on the 10 golden samples do not match ONNX Runtime",
            "*first diverging layer: node '/stack2/conv1/conv1.0/Conv' (Conv), tensor "
            "'/stack2/conv1/conv1.0/Conv_output_0'"
            "*(per-kernel outputs in *kernels)",
        ]
    )


def test_per_kernel_comparison_says_when_the_flow_wrote_nothing(project: Project) -> None:
    project.add_model("ic")
    write_pyproject(
        project,
        kernel_dump_table("/stack2/conv1/conv1.0/Conv")
        .replace('layers = "{rundir}/kernels"', 'layers = "{rundir}/elsewhere"')
        .replace('"--layers", "{layers}"', '"--layers", "{rundir}/kernels"'),
    )
    faulty = project.run("-m", "probe_flow", "-k", "golden and fp32")
    faulty.stdout.fnmatch_lines(["*per-kernel comparison: the flow wrote no <tensor>.npy into *elsewhere"])
