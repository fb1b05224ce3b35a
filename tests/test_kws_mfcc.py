"""The MFCC front end of the bundled kws model (training/kws/mfcc.py), checked with NumPy only.

The module is loaded from its file path: `training/` is not a package and the
training dependencies (torch, espeak-ng) are not needed for this.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

MFCC_PATH = Path(__file__).resolve().parents[1] / "training" / "kws" / "mfcc.py"


@pytest.fixture(scope="module")
def mfcc():
    spec = importlib.util.spec_from_file_location("kws_mfcc_under_test", MFCC_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tone(freq: float, amplitude: float = 0.5, samples: int = 16000, rate: int = 16000) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(samples) / rate)


# --- a slow, direct reference, written from the definitions in the module docstring ---


def reference_mfcc(audio: np.ndarray) -> np.ndarray:
    rate, length, step, nfft, nmel, ncep = 16000, 480, 320, 512, 40, 10
    low, high = 20.0, 4000.0

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    # triangle m: rises from edge m to edge m+1, falls to edge m+2 (mel domain)
    edges = [mel(low) + i * (mel(high) - mel(low)) / (nmel + 1) for i in range(nmel + 2)]
    bank = np.zeros((nfft // 2 + 1, nmel))
    for k in range(1, nfft // 2 + 1):
        m_k = mel(k * rate / nfft)
        for m in range(nmel):
            left, centre, right = edges[m], edges[m + 1], edges[m + 2]
            if left < m_k <= centre:
                bank[k, m] = (m_k - left) / (centre - left)
            elif centre < m_k < right:
                bank[k, m] = (right - m_k) / (right - centre)

    window = [0.5 - 0.5 * math.cos(2 * math.pi * n / length) for n in range(length)]
    n_idx = np.arange(nfft)
    out = []
    for start in range(0, len(audio) - length + 1, step):
        frame = np.zeros(nfft)
        frame[:length] = [audio[start + n] * window[n] for n in range(length)]
        power = np.empty(nfft // 2 + 1)
        for k in range(nfft // 2 + 1):  # direct DFT, one bin at a time
            re = np.sum(frame * np.cos(2 * np.pi * k * n_idx / nfft))
            im = -np.sum(frame * np.sin(2 * np.pi * k * n_idx / nfft))
            power[k] = re * re + im * im
        logmel = [math.log(float(power @ bank[:, m]) + 1e-6) for m in range(nmel)]
        cep = []
        for k in range(ncep):
            scale = math.sqrt(1.0 / nmel) if k == 0 else math.sqrt(2.0 / nmel)
            cep.append(scale * sum(logmel[n] * math.cos(math.pi * k * (n + 0.5) / nmel) for n in range(nmel)))
        out.append(cep)
    return np.array(out)


def test_one_second_gives_49_by_10(mfcc):
    rng = np.random.default_rng(0)
    audio = 0.1 * rng.standard_normal(16000)
    out = mfcc.mfcc(audio)
    assert out.shape == (49, 10)
    assert out.dtype == np.float32
    assert mfcc.num_frames(16000) == 49
    batch = mfcc.mfcc(np.stack([audio, 0.5 * audio, audio[::-1].copy()]))
    assert batch.shape == (3, 49, 10)
    np.testing.assert_array_equal(batch[0], out)


def test_framing_windows_and_steps(mfcc):
    audio = np.arange(16000, dtype=np.float64)
    framed = mfcc.frames(audio)
    assert framed.shape == (49, 480)
    assert framed[1, 0] == 320 and framed[48, 479] == 48 * 320 + 479
    window = mfcc.hann_window()
    assert window[0] == 0 and window[240] == pytest.approx(1.0)  # periodic Hann peaks at N/2


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 2500.0, 3700.0])
def test_pure_tone_lands_in_its_mel_band(mfcc, freq):
    logmel = mfcc.log_mel(tone(freq)).mean(axis=0)
    edges = mfcc.mel_edges_hz()
    # the band whose triangle is highest at `freq`: the peak (centre) nearest on the mel scale
    centres_mel = mfcc.hz_to_mel(edges[1:-1])
    expected = int(np.argmin(np.abs(centres_mel - mfcc.hz_to_mel(freq))))
    assert edges[expected] < freq < edges[expected + 2]  # the tone is inside that triangle
    assert int(np.argmax(logmel)) == expected
    # and the energy is concentrated: bands far from the tone are far below the peak
    far = np.abs(np.arange(40) - expected) > 4
    assert logmel[expected] - logmel[far].max() > 5.0  # more than e^5 ~ 150x in power


def test_tone_above_upper_edge_stays_out_of_the_bank(mfcc):
    inside = mfcc.log_mel(tone(2000.0)).max()
    outside = mfcc.log_mel(tone(6000.0)).max()  # only window leakage reaches the bank
    assert outside < inside - 10.0


def test_mel_filters_are_triangles_with_unit_peaks(mfcc):
    bank = mfcc.mel_filterbank()
    assert bank.shape == (257, 40)
    assert (bank >= 0).all() and bank.max() <= 1.0 + 1e-12
    assert (bank[0] == 0).all()  # no DC
    freqs = np.arange(257) * 16000 / 512
    assert (bank[freqs > 4000] == 0).all() and (bank[freqs < 20] == 0).all()
    centres = np.argmax(bank, axis=0)
    assert (np.diff(centres) >= 0).all()  # filters ordered by frequency


def test_dct_is_orthonormal_and_preserves_energy(mfcc):
    c = mfcc.dct_matrix()
    np.testing.assert_allclose(c @ c.T, np.eye(40), atol=1e-12)
    np.testing.assert_allclose(c.T @ c, np.eye(40), atol=1e-12)
    rng = np.random.default_rng(1)
    v = rng.standard_normal((5, 40))
    np.testing.assert_allclose(np.sum((v @ c.T) ** 2, axis=1), np.sum(v**2, axis=1), rtol=1e-12)
    # the first 10 coefficients of the full transform are what mfcc() keeps
    audio = 0.2 * rng.standard_normal(16000)
    full = mfcc.log_mel(audio) @ c.T
    np.testing.assert_allclose(mfcc.mfcc(audio), full[:, :10], rtol=1e-5, atol=1e-4)
    # a constant log-mel vector has all its energy in c0
    np.testing.assert_allclose(c @ np.full(40, 3.0), [3.0 * math.sqrt(40)] + [0.0] * 39, atol=1e-12)


def test_matches_slow_reference(mfcc):
    rng = np.random.default_rng(2)
    t = np.arange(16000) / 16000
    audio = 0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) * np.exp(
        -((t - 0.5) ** 2) / 0.02
    ) + 0.01 * rng.standard_normal(16000)
    expected = reference_mfcc(audio)
    assert expected.shape == (49, 10)
    np.testing.assert_allclose(mfcc.mfcc(audio), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("level", [0.0, 1e-9, 1e-6, 3e-5])
def test_silence_and_low_levels_are_finite(mfcc, level):
    rng = np.random.default_rng(3)
    audio = level * rng.standard_normal(16000)
    out = mfcc.mfcc(audio)
    assert np.isfinite(out).all()
    assert np.isfinite(mfcc.log_mel(audio)).all()
    if level == 0.0:
        floor = math.log(1e-6)
        np.testing.assert_allclose(mfcc.log_mel(audio), floor)
        np.testing.assert_allclose(out[:, 0], floor * math.sqrt(40), rtol=1e-6)
        np.testing.assert_allclose(out[:, 1:], 0.0, atol=1e-4)
    # float16 storage (what the model folder holds) keeps them finite too
    assert np.isfinite(out.astype(np.float16)).all()


def test_loudness_only_moves_c0(mfcc):
    rng = np.random.default_rng(4)
    audio = 0.05 * rng.standard_normal(16000) + tone(700.0, 0.2)
    quiet, loud = mfcc.mfcc(audio), mfcc.mfcc(10.0 * audio)
    # x10 in amplitude = +ln(100) in every log-mel band = +sqrt(40) ln(100) in c0 only
    # (the 1e-6 offset is negligible at these levels)
    np.testing.assert_allclose(loud[:, 0] - quiet[:, 0], math.sqrt(40) * math.log(100.0), rtol=1e-3)
    np.testing.assert_allclose(loud[:, 1:], quiet[:, 1:], atol=2e-3)


def test_rejects_integer_audio_and_short_clips(mfcc):
    with pytest.raises(ValueError):
        mfcc.mfcc(np.zeros(16000, dtype=np.int16))
    with pytest.raises(ValueError):
        mfcc.mfcc(np.zeros(100))
