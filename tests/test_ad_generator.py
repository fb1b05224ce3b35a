"""The `ad` model's data generator (training/ad/generate.py): deterministic, MLPerf-shaped
features, and faults that change the spectrum where the physics says they should.

NumPy only (no torch): the generator is loaded by file path, `training/` is not a package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "training" / "ad" / "generate.py"
_spec = importlib.util.spec_from_file_location("ad_generate", _PATH)
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

DURATION = 2.0
SEEDS = ([123, 0, 0, 0], [456, 0, 0, 1], [789, 1, 0, 2])
MIDS = range(len(gen.MACHINES))
FFT_F = np.linspace(0, gen.FS / 2, gen.N_FFT // 2 + 1)
CENTERS = FFT_F[np.argmax(gen.mel_filterbank(), axis=1)]  # peak frequency of each mel band


def band_mean(mel: np.ndarray, lo: float, hi: float) -> float:
    """Mean log-mel level (dB) of the bands whose peak lies in [lo, hi) Hz."""
    return float(mel[:, (CENTERS >= lo) & (CENTERS < hi)].mean())


def twins(mid: int, seed, fault: str, severity: float = 1.0, **options):
    healthy = gen.log_mel(gen.synth_clip(mid, seed, DURATION))
    faulty = gen.log_mel(gen.synth_clip(mid, seed, DURATION, fault, severity, options or None))
    return healthy, faulty


def envelope_spectrum(x: np.ndarray, fmax: float = 1000.0) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of the squared signal (the envelope analysis of vibration diagnostics)."""
    env = x**2 - np.mean(x**2)
    spec = np.abs(np.fft.rfft(env * np.hanning(len(env))))
    f = np.fft.rfftfreq(len(env), 1 / gen.FS)
    keep = f < fmax
    return f[keep], spec[keep]


# --- determinism and shapes -------------------------------------------------


@pytest.mark.parametrize("fault", [None, *gen.FAULTS])
def test_same_seed_same_features(fault):
    a = gen.clip_features(2, SEEDS[0], DURATION, fault, 0.7)
    b = gen.clip_features(2, SEEDS[0], DURATION, fault, 0.7)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    c = gen.clip_features(2, SEEDS[1], DURATION, fault, 0.7)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("mid", MIDS)
@pytest.mark.parametrize("fault", [None, *gen.FAULTS])
def test_vectors_are_640_wide_and_finite(mid, fault):
    for severity in (0.0, 1.0):
        x = gen.clip_features(mid, SEEDS[0], DURATION, fault, severity)
        frames = 1 + int(DURATION * gen.FS) // gen.HOP
        assert x.shape == (frames - gen.FRAMES + 1, 640)
        assert np.isfinite(x).all()
        assert -120 < x.min() and x.max() < 40  # dB, nowhere near log10(eps)


def test_vectors_stack_frames_frame_major():
    mel = gen.log_mel(gen.synth_clip(0, SEEDS[0], DURATION))
    assert mel.shape[1] == gen.N_MELS
    x = gen.vectors(mel)
    for t in range(gen.FRAMES):
        np.testing.assert_array_equal(x[:, 128 * t : 128 * (t + 1)], mel[t : t + len(x)].astype(np.float32))


def test_log_mel_is_10_log10_of_mel_power():
    # A pure tone at a band's peak frequency: that band is the loudest, and +6 dB amplitude is +6.02 dB.
    f0 = CENTERS[60]
    t = np.arange(gen.FS) / gen.FS
    quiet = gen.log_mel(0.1 * np.sin(2 * np.pi * f0 * t))
    loud = gen.log_mel(0.2 * np.sin(2 * np.pi * f0 * t))
    assert np.argmax(quiet[10]) == 60
    assert loud[10, 60] - quiet[10, 60] == pytest.approx(20 * np.log10(2), abs=1e-6)


def test_fault_keeps_the_healthy_twin():
    """The fault draws from its own stream: a clip's healthy part does not depend on the fault."""
    healthy = gen.synth_clip(1, SEEDS[0], DURATION)
    for fault in ("bearing", "rubbing"):  # additive faults: the difference is the fault alone
        diff = gen.synth_clip(1, SEEDS[0], DURATION, fault, 0.0) - healthy
        assert 0 < np.sqrt(np.mean(diff**2)) < 0.2 * np.sqrt(np.mean(healthy**2))


def test_test_plan_is_balanced_and_disjoint_from_training():
    plan = gen.test_plan(7, 3, 4)
    assert plan == gen.test_plan(7, 3, 4)
    assert len(plan) == len(gen.MACHINES) * 7
    assert sum(f is None for _, _, f, _ in plan) == len(gen.MACHINES) * 3
    assert {f for _, _, f, _ in plan if f} == set(gen.FAULTS)
    assert all(0 <= s <= 1 for *_, s in plan)
    train_seeds = {tuple(gen.clip_seed(7, "train", m, i)) for m in MIDS for i in range(10)}
    assert not train_seeds & {tuple(s) for _, s, _, _ in plan}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        gen.synth_clip(0, 1, 0.5, fault="cavitation")
    with pytest.raises(ValueError, match="severity"):
        gen.synth_clip(0, 1, 0.5, fault="bearing", severity=1.5)


# --- physics of the faults ------------------------------------------------


@pytest.mark.parametrize("mid", MIDS)
def test_bearing_impulses_raise_high_frequency_energy(mid):
    m = gen.MACHINES[mid]
    for seed in SEEDS:
        healthy, faulty = twins(mid, seed, "bearing")
        res_lo, res_hi = 0.8 * m.bearing_res_hz, 1.2 * m.bearing_res_hz
        assert band_mean(faulty, res_lo, res_hi) - band_mean(healthy, res_lo, res_hi) > 3.0
        assert abs(band_mean(faulty, 0, 500) - band_mean(healthy, 0, 500)) < 0.5
        peak = CENTERS[np.argmax((faulty - healthy).mean(axis=0))]
        assert 0.7 * m.bearing_res_hz < peak < 1.3 * m.bearing_res_hz


@pytest.mark.parametrize("mid", MIDS)
def test_bearing_impulses_repeat_at_the_defect_frequency(mid):
    m = gen.MACHINES[mid]
    seed = SEEDS[0]
    diff = gen.synth_clip(mid, seed, DURATION, "bearing", 1.0) - gen.synth_clip(mid, seed, DURATION)
    f, spec = envelope_spectrum(diff)
    bpf = m.bearing_ratio * m.f_rot
    window = (f > 0.7 * bpf) & (f < 1.3 * bpf)
    peak = f[window][np.argmax(spec[window])]
    assert abs(peak / bpf - 1) < 0.06  # operating point is within +-4 %, drift +-2 %


@pytest.mark.parametrize("severity", [0.0, 0.5])
def test_bearing_severity_is_monotonic(severity):
    m = gen.MACHINES[0]
    lo, hi = 0.8 * m.bearing_res_hz, 1.2 * m.bearing_res_hz
    healthy, weaker = twins(0, SEEDS[0], "bearing", severity)
    _, stronger = twins(0, SEEDS[0], "bearing", severity + 0.5)
    assert band_mean(healthy, lo, hi) < band_mean(weaker, lo, hi) < band_mean(stronger, lo, hi)


@pytest.mark.parametrize("mid", MIDS)
def test_imbalance_raises_1x_and_leaves_high_bands(mid):
    m = gen.MACHINES[mid]
    for seed in SEEDS:
        healthy, faulty = twins(mid, seed, "imbalance")
        b = gen.mel_band_of(m.f_rot)
        one_x = slice(max(b - 1, 0), b + 2)
        assert faulty[:, one_x].mean() - healthy[:, one_x].mean() > 5.0
        assert abs(band_mean(faulty, 4000, 8000) - band_mean(healthy, 4000, 8000)) < 0.5


@pytest.mark.parametrize("mid", MIDS)
def test_missing_harmonic_removes_energy_in_its_band(mid):
    m = gen.MACHINES[mid]
    for rank, k in enumerate(gen.strongest_orders(mid)):
        healthy, faulty = twins(mid, SEEDS[0], "harmonic", 1.0, mode="missing", order=int(k))
        drop = (faulty - healthy).mean(axis=0)
        # the operating point (+-4 %) and drift move a harmonic by up to a band or two
        family = [gen.mel_band_of(j * k * m.f_rot) for j in range(1, gen.HARMONIC_FAMILY + 1)]
        if rank == 0:  # the strongest harmonic stands well above the noise: a deep dip at its band
            assert drop[max(family[0] - 1, 0) : family[0] + 2].min() < -4.0
        # the deepest dip is at k or one of its overtones 2k, 3k, 4k
        assert drop.min() < -2.0
        assert min(abs(int(np.argmin(drop)) - fb) for fb in family) <= 2
        assert drop.max() < 0.5  # nothing gets louder
        assert abs(band_mean(faulty, 3000, 8000) - band_mean(healthy, 3000, 8000)) < 0.2


@pytest.mark.parametrize("mid", MIDS)
def test_shifted_harmonic_moves_energy(mid):
    m = gen.MACHINES[mid]
    k = int(gen.strongest_orders(mid)[0])
    healthy, faulty = twins(mid, SEEDS[0], "harmonic", 1.0, mode="shifted", order=k)
    change = (faulty - healthy).mean(axis=0)
    b = gen.mel_band_of(k * m.f_rot)
    near = change[max(b - 2, 0) : b + 3]
    assert near.min() < -1.0 and near.max() > 1.0  # left its band for a neighbouring one
    assert abs(band_mean(faulty, 3000, 8000) - band_mean(healthy, 3000, 8000)) < 0.2


@pytest.mark.parametrize("mid", MIDS)
def test_rubbing_adds_band_limited_noise(mid):
    for seed in SEEDS:
        healthy, faulty = twins(mid, seed, "rubbing")
        rise = (faulty - healthy).mean(axis=0)
        # the rubbing band starts between 600 and 1500 Hz and ends below 6 kHz
        assert rise.max() > 2.0
        assert 600 * 0.85 < CENTERS[np.argmax(rise)] < 6000 * 1.15
        # short bursts widen the band a little (gating spreads the spectrum), but not down to the 1x-10x region
        assert abs(band_mean(faulty, 0, 300) - band_mean(healthy, 0, 300)) < 1.0
        assert abs(band_mean(faulty, 7000, 8000) - band_mean(healthy, 7000, 8000)) < 0.5


@pytest.mark.parametrize("mid", MIDS)
def test_rubbing_bursts_are_synchronous_with_rotation(mid):
    m = gen.MACHINES[mid]
    diff = gen.synth_clip(mid, SEEDS[0], DURATION, "rubbing", 1.0) - gen.synth_clip(mid, SEEDS[0], DURATION)
    f, spec = envelope_spectrum(diff, 400.0)
    window = (f > 0.5 * m.f_rot) & (f < 400.0)
    peak = f[window][np.argmax(spec[window])]
    ratio = peak / m.f_rot
    assert abs(ratio - round(ratio)) < 0.08 * round(ratio) and round(ratio) >= 1  # a harmonic of 1x


def test_faults_are_subtle_at_low_severity():
    """Severity 0 must not already be a loud fault: the test set needs hard cases."""
    for fault in gen.FAULTS:
        healthy = gen.clip_features(3, SEEDS[0], DURATION)
        faint = gen.clip_features(3, SEEDS[0], DURATION, fault, 0.0)
        strong = gen.clip_features(3, SEEDS[0], DURATION, fault, 1.0)
        faint_mse = float(np.mean((faint - healthy) ** 2))
        strong_mse = float(np.mean((strong - healthy) ** 2))
        assert faint_mse < strong_mse
        assert faint_mse < 2.0  # dB^2, below the frame-to-frame noise of a healthy clip


def test_generator_reproduces_the_committed_calibration_rows():
    """models/ad/X_calib.npy holds training rows: regenerating their clips gives them back,
    so `training/ad/train.py` still trains on the data the shipped model was trained on."""
    import json

    root = Path(__file__).resolve().parents[1]
    metrics = json.loads((root / "training" / "ad" / "metrics.json").read_text(encoding="utf-8"))
    calib = np.load(root / "models" / "ad" / "X_calib.npy", allow_pickle=False)
    seed, duration = metrics["seed"], metrics["args"]["duration"]
    # the same draw as train.py: sorted row indices into the id-major, clip-major training matrix
    picked = np.sort(np.random.default_rng([seed, 13]).choice(metrics["train_vectors"], len(calib), replace=False))
    per_clip = 1 + int(duration * gen.FS) // gen.HOP - gen.FRAMES + 1
    per_id = metrics["train_clips"] // len(gen.MACHINES)
    for row in (0, len(calib) // 2, len(calib) - 1):
        clip, offset = divmod(int(picked[row]), per_clip)
        mid, index = divmod(clip, per_id)
        x = gen.clip_features(mid, gen.clip_seed(seed, "train", mid, index), duration)[offset]
        x = (x - metrics["feature_mean_db"]) / metrics["feature_std_db"]
        np.testing.assert_allclose(calib[row].astype(np.float32), x, atol=5e-3, rtol=0)
