"""Tests of the Gemmini library-tiling timing model: the library's tile rules, the
configuration as data, the FireSim CSV reader, the fit and its recorded held-out error,
and what `gemmini_perf` and the target say about the figure."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Project
from test_costmodel import conv1d_model, lstm_model, tiny_residual_model

from pytest_tinyaccel.costmodel.gemmini import gemmini_perf
from pytest_tinyaccel.costmodel.gemmini_config import GemminiConfig, config_file, from_arch, load_config
from pytest_tinyaccel.costmodel.gemmini_fit import error_stats, fit, predict, read_rows
from pytest_tinyaccel.costmodel.gemmini_tiling import Layer, _conv_rows, conv_tile, layer_work, matmul_tile
from pytest_tinyaccel.costmodel.gemmini_timing import load_timing

ROOT = Path(__file__).resolve().parents[1]
FIRESIM = ROOT.parent / "shared" / "gemmini_profiles" / "dosa_firesim_layers.csv"
needs_firesim = pytest.mark.skipif(not FIRESIM.is_file(), reason="../shared/gemmini_profiles not present")
DEFAULT = load_config(config_file("int8"))


def sized(sp_rows: int, acc_rows: int) -> GemminiConfig:
    return from_arch({"meshX": 16, "mem1_depth": acc_rows, "mem2_depth": sp_rows, "mem2_width": 128}, DEFAULT)


# --------------------------------------------------------------------------- the library's tiles


def test_matmul_tile_is_tiled_matmul_autos():
    # 128 x 64 -> 128 on the default: sqrt(512/16) = 5 blocks square, then J grows to 6 (5*6*16 = 480 <= 512)
    assert matmul_tile(128, 128, 64, DEFAULT) == {"i": 5, "j": 6, "k": 4}
    # a 16 KiB accumulator (256 rows): 2 x 2 blocks to start, J grows to 4 (2*4*16 = 128 rows)
    assert matmul_tile(128, 128, 64, sized(6912, 256)) == {"i": 2, "j": 4, "k": 4}
    # K grows until A + B fill half the scratchpad: (5 + 5) * k * 16 <= 8192 rows
    tile = matmul_tile(128, 768, 3072, DEFAULT)
    assert tile == {"i": 5, "j": 5, "k": 51} and (5 * 51 + 51 * 5) * 16 <= DEFAULT.sp_rows // 2


@pytest.mark.parametrize(
    "layer, config",
    [
        (
            Layer("conv", in_channels=64, out_channels=64, out_rows=56, out_cols=56, kernel_rows=3, kernel_cols=3),
            DEFAULT,
        ),
        (Layer("conv", in_channels=1024, out_channels=256, out_rows=14, out_cols=14), sized(8128, 512)),
        (
            Layer(
                "conv",
                in_channels=3,
                out_channels=64,
                out_rows=112,
                out_cols=112,
                kernel_rows=7,
                kernel_cols=7,
                stride=2,
            ),
            DEFAULT,
        ),
    ],
)
def test_conv_tile_fills_half_the_memories_and_cannot_grow(layer, config):
    tile = conv_tile(layer, config)
    args = list(tile.values())
    full = [layer.n, layer.out_rows, layer.out_cols, layer.out_channels, layer.kernel_rows, layer.kernel_cols]
    full.append(layer.in_channels)

    def fits(candidate):
        sp, acc = _conv_rows(layer, config, candidate, False)
        return sp <= config.sp_rows // 2 and acc <= config.acc_rows // 2

    assert fits(args)
    for i in range(7):  # the library's last loop stops when no argument can take one more
        bigger = [*args[:i], args[i] + 1, *args[i + 1 :]]
        assert bigger[i] > full[i] or not fits(bigger)


def test_conv_tile_known_case():
    # 3x3 64 -> 64 at 56x56 with 127 KiB of scratchpad and 32 KiB of accumulator (a FireSim row)
    layer = Layer("conv", in_channels=64, out_channels=64, out_rows=56, out_cols=56, kernel_rows=3, kernel_cols=3)
    assert conv_tile(layer, sized(8128, 512)) == {
        "batches": 1,
        "orows": 16,
        "ocols": 16,
        "ochs": 16,
        "krows": 3,
        "kcols": 3,
        "kchs": 64,
    }


def test_tiles_cover_the_layer_once():
    layer = Layer("conv", in_channels=100, out_channels=70, out_rows=30, out_cols=20, kernel_rows=3, kernel_cols=3)
    work = layer_work(layer, sized(4096, 512))
    rows = sum(t.compute_rows * t.count for t in work.tiles)
    # every output pixel, every kernel position, every 16-channel block of in and out channels, once
    assert rows == 30 * 20 * 9 * 7 * 5
    stored = sum(t.st_bytes * t.count for t in work.tiles)
    assert stored == 30 * 20 * 70  # outputs written once, whatever the split of the reduction
    assert work.n_tiles > 1


def test_a_layer_that_cannot_be_tiled_says_so():
    tiny = GemminiConfig("tiny", 16, 16, 32 * 64, 4, 2, 128, 64, 16, 1, 4)  # not checked: no scratchpad row
    layer = Layer("conv", in_channels=8, out_channels=8, out_rows=4, out_cols=4, kernel_rows=3, kernel_cols=3)
    with pytest.raises(ValueError, match="no tile of this layer fits"):
        conv_tile(layer, tiny)


# --------------------------------------------------------------------------- configuration as data


def test_default_configuration_is_gemminis_default():
    assert (DEFAULT.dim, DEFAULT.sp_capacity_bytes, DEFAULT.acc_capacity_bytes) == (16, 256 * 1024, 64 * 1024)
    assert (DEFAULT.sp_rows, DEFAULT.acc_rows, DEFAULT.max_block_len, DEFAULT.bus_bytes) == (16384, 1024, 4, 16)
    text = config_file("int8").read_text()
    assert "Configs.scala" in text and "8c3f9923a44a2fe2c7930587be297d6d4f8c09ca" in text
    fp32 = load_config(config_file("fp32"))
    assert (fp32.dim, fp32.input_bytes, fp32.peak_macs_per_cycle) == (4, 4, 16)
    # DOSA's arch.* columns of the default rows give the same memories
    assert sized(16384, 1024).sp_capacity_bytes == DEFAULT.sp_capacity_bytes
    assert sized(16384, 1024).acc_capacity_bytes == DEFAULT.acc_capacity_bytes


@pytest.mark.parametrize(
    "text, message",
    [
        ("[gemmini]\ndim = 16\n", "lacks sp_banks"),
        ("[other]\n", "missing the [gemmini] table"),
        ("not toml [", "not a TOML Gemmini configuration"),
        (config_file("int8").read_text() + "bogus = 1\n", "unknown keys ['bogus']"),
    ],
)
def test_bad_configuration_files_name_the_problem(tmp_path, text, message):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"g\.toml") as info:
        load_config(path)
    assert message in str(info.value)


def test_configuration_values_are_checked(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(config_file("int8").read_text().replace("acc_capacity_kib = 64", "acc_capacity_kib = 1"))
    with pytest.raises(ValueError, match="small.toml.*accumulator.*needs at least 32"):
        load_config(path)
    path.write_text(config_file("int8").read_text().replace("dim = 16 ", 'dim = "16" '))
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        load_config(path)
    with pytest.raises(ValueError, match="cannot read Gemmini configuration"):
        load_config(tmp_path / "missing.toml")


# --------------------------------------------------------------------------- the FireSim CSV, the fit


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def csv_row(c, k, p, q, r, stride, cycles, sp_rows=16384, acc_rows=1024) -> dict[str, str]:
    row = {f"prob.{x}": "1" for x in ("N", "Hdilation", "Wdilation")}
    row |= {"prob.C": c, "prob.K": k, "prob.P": p, "prob.Q": q, "prob.R": r, "prob.S": r}
    row |= {"prob.Hstride": stride, "prob.Wstride": stride, "arch.meshX": 16, "arch.mem1_depth": acc_rows}
    row |= {"arch.mem2_depth": sp_rows, "arch.mem2_width": 128, "target.gemmini_auto_cycle": cycles}
    row["target.cycle"] = cycles
    return {key: str(value) for key, value in row.items()}


def test_read_rows_skips_malformed_rows_with_reasons(tmp_path):
    rows = [
        csv_row(64, 128, 128, 1, 1, 1, 6706),
        csv_row(256, 256, 7, 7, 3, 1, 206000, 14464, 1792),
        csv_row("x", 1, 1, 1, 1, 1, 5),
        csv_row(64, 64, 8, 8, 3, 1, ""),
        csv_row(64, 64, 8, 8, 3, 1, 100, acc_rows=0),
        csv_row(64, 64, 8, 8, 3, 1, 100, sp_rows=3),
    ]
    rows[-1]["prob.S"] = "1"
    found, skipped = read_rows(write_csv(tmp_path / "f.csv", rows))
    assert [r.kind for r in found] == ["matmul", "conv"] and found[0].layer.out_rows == 128
    assert found[1].config.acc_capacity_bytes == 1792 * 64
    assert skipped == [
        "line 4: prob.C is 'x', not a number",
        "line 5: target.gemmini_auto_cycle is '', not a positive number of cycles",
        "line 6: arch.mem1_depth is '0', not a positive integer",
        "line 7: prob.R 3 != prob.S 1: the library takes square kernels",
    ]
    bad = [{k: v for k, v in rows[0].items() if k != "arch.mem2_depth"}]
    with pytest.raises(ValueError, match="no column arch.mem2_depth"):
        read_rows(write_csv(tmp_path / "g.csv", bad))


def test_fit_recovers_constants_that_made_the_cycles(tmp_path):
    shapes = [(64, 128, 128, 1, 1, 1), (256, 256, 7, 7, 3, 1), (64, 64, 56, 56, 1, 1), (3, 64, 30, 30, 7, 2)]
    shapes += [(512, 128, 14, 14, 3, 2), (1024, 256, 7, 7, 1, 1), (32, 32, 100, 100, 3, 1), (768, 768, 128, 1, 1, 1)]
    rows = [csv_row(*shape, 1) for shape in shapes] + [csv_row(*shape, 1, 8128, 512) for shape in shapes]
    found, _ = read_rows(write_csv(tmp_path / "f.csv", rows))
    truth = load_timing()
    for row, cycles in zip(found, predict(found, truth), strict=False):
        row.measured = cycles
    start = {name: value * 1.6 for name, value in truth.params.items()}
    fitted = fit(found, truth, start=start)
    assert error_stats(predict(found, fitted), [r.measured for r in found])["p90"] < 1.02


@needs_firesim
def test_shipped_constants_reproduce_their_recorded_error_and_meet_the_bounds():
    timing = load_timing()
    rows, skipped = read_rows(FIRESIM)
    assert len(rows) == timing.source["rows"] == 147 and not skipped
    stats = error_stats(predict(rows, timing), [r.measured for r in rows])
    assert stats["median"] == pytest.approx(timing.error["in_sample"]["median"], rel=1e-3)
    held, small = timing.error["held_out"], timing.error["held_out_under_10M_macs"]
    assert held["median"] <= 1.25 and held["p90"] <= 1.6
    assert small["median"] <= 1.25 and small["p90"] <= 1.6 and small["rows"] == 24


def test_validation_script_runs_on_another_csv(tmp_path):
    rows = [csv_row(32, 48, 20, 20, 3, 1, 90000), csv_row(96, 24, 9, 9, 1, 1, 30000, 8128, 512)]
    rows += [csv_row(300, 100, 128, 1, 1, 1, 60000), csv_row("?", 1, 1, 1, 1, 1, 1)]
    path = write_csv(tmp_path / "other.csv", rows)
    script = ROOT / "benchmarks" / "gemmini_validation.py"
    done = subprocess.run([sys.executable, str(script), "--csv", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "skipped line 5: prob.C is '?', not a number" in done.stdout
    assert "| kind conv" in done.stdout and "| kind matmul" in done.stdout and "Traceback" not in done.stderr
    missing = subprocess.run([sys.executable, str(script), "--csv", str(tmp_path / "none.csv")], capture_output=True)
    assert missing.returncode == 2 and b"cannot read" in missing.stderr


# --------------------------------------------------------------------------- what gemmini_perf says


def test_gemmini_perf_says_the_figure_is_predicted_with_its_error():
    perf = gemmini_perf(tiny_residual_model(), "int8")
    assert "predicted" in perf.simulator and "gemmini-default-int8" in perf.simulator
    assert "held-out median |error| x1." in perf.simulator and "147 FireSim layers" in perf.simulator
    assert "; " not in perf.simulator  # the report splits a section's simulators on "; "
    timing = perf.extra["timing"]
    assert timing["figure"] == "predicted" and timing["error"]["held_out"]["rows"] == 147
    matrix = [layer for layer in perf.layers if layer.extra.get("rule") == "gemmini-library"]
    assert {layer.name for layer in matrix} == {"conv1", "dw", "pw", "fc"}
    assert next(layer for layer in matrix if layer.name == "fc").extra["library_call"] == "tiled_matmul_auto"
    assert all(layer.cycles > layer.extra["ideal_cycles"] for layer in matrix)
    assert perf.cycles == pytest.approx(sum(layer.cycles for layer in perf.layers))
    assert 0 < perf.efficiency < 1 and perf.resources["PEs"] == 256


def test_gemmini_perf_on_another_configuration_and_shapes(tmp_path):
    small = tmp_path / "small.toml"
    text = config_file("int8").read_text().replace("sp_capacity_kib = 256", "sp_capacity_kib = 8")
    small.write_text(text.replace("acc_capacity_kib = 64", "acc_capacity_kib = 4"))
    one, two = (gemmini_perf(conv1d_model(d), "int8") for d in (False, True))
    assert [layer.cycles for layer in one.layers] == [layer.cycles for layer in two.layers]
    assert gemmini_perf(lstm_model(), "int8").cycles > 0
    big = gemmini_perf(tiny_residual_model(), "fp32")
    assert big.resources["PEs"] == 16 and "gemmini-fp32" in big.simulator
    assert "error not measured on a 4x4 array of 4-byte elements" in big.simulator and not big.extra["timing"]["error"]
    assert "8x8" not in gemmini_perf(tiny_residual_model(), "int8", config=small).simulator
    with pytest.raises(ValueError, match="unknown Gemmini timing model 'exact'"):
        gemmini_perf(tiny_residual_model(), "int8", timing="exact")


def test_hw_emu_header_says_predicted_and_bad_settings_are_named(project: Project) -> None:
    project.add_model("ic")
    result = project.run("-m", "gemmini", "--target", "hw_emu", "-k", "int8 and golden")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "gemmini hw_emu: tinyaccel emulator + Gemmini library-tiling model on gemmini-default-int8"
            " (predicted: held-out*"
        ]
    )
    project.path.joinpath("pyproject.toml").write_text('[tool.tinyaccel.targets.gemmini]\nconfig = "nowhere.toml"\n')
    result = project.run("-m", "gemmini", "--target", "hw_emu")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*cannot read Gemmini configuration nowhere.toml*"])
