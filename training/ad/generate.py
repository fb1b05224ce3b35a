"""Synthetic rotating-machine sounds (normal and faulty) and MLPerf Tiny AD features.

NumPy only (so the CI tests can run it without torch or scipy), deterministic:
the same (seed, split, machine id, clip index) always gives the same samples.

Signal model (16 kHz, mono)
---------------------------
A clip of one machine id is the sum of

* a rotational tonal part: the shaft rotation frequency f_rot(t) and its
  harmonics k*f_rot (amplitudes follow the id's fixed "signature" profile,
  jittered by +-1.5 dB per clip), plus a blade-pass / gear-mesh tone at
  N*f_rot (N blades or teeth) and its second harmonic; the whole tonal part is
  slightly amplitude modulated once per revolution (depth 0-3 %, the residual
  imbalance of a healthy machine);
* broadband noise with the id's spectral slope (1/f^alpha power) and one
  structural resonance;
* operating-speed variation: a per-clip operating point (+-4 %) and a slow
  drift (two slow sinusoids, up to 1.5 % and 0.5 %). All rotational components
  are synthesised from the integrated phase, so they follow the speed exactly.

A per-clip gain (+-3 dB) and a per-clip tonal-to-noise ratio (+-2 dB around
the id's value) complete the normal variability. The four ids (MACHINES) are a
fan (24 Hz, 7 blades, nearly white airflow noise), a pump (29.5 Hz, 5 vanes),
a gearbox (49 Hz, 31-tooth mesh) and a compressor (37 Hz, 23-tooth mesh),
each with its own harmonic signature, noise slope and resonances.

Faults (each scaled by a severity in [0, 1], linear in FAULT_RANGES)
---------------------------------------------------------------------
* ``bearing``: a localized bearing defect. Short decaying resonant impulses
  (the id's bearing/housing resonance x 0.85-1.1, i.e. 2.3-4.6 kHz, decay
  0.4-1.2 ms) repeating at the bearing's defect frequency (a non-integer
  multiple of f_rot, e.g. BPFO 3.58x), with 1 % timing jitter, log-normal
  impulse strengths and load-zone amplitude modulation at f_rot. Level -22 to
  -4 dB re the healthy RMS. Raises the high mel bands around the resonance.
* ``imbalance``: mass imbalance. The 1x component grows by 7-20 dB and the
  tonal part is amplitude modulated once per revolution with depth 0.25-0.70
  (sidebands at +-f_rot around the harmonics and the mesh tone).
* ``harmonic``: one of the id's three strongest harmonics k (order >= 2, not
  a multiple of the mesh order), with its overtones 2k, 3k, 4k, is either
  attenuated by 10-40 dB ("missing": the part that makes that k-fold pattern
  broke or decoupled) or moved off the shaft orders by 0.2-0.5 f_rot at order
  k ("shifted": a loosened or slipping part running at a non-synchronous
  speed, its overtones follow).
* ``rubbing``: rotor/stator contact. One burst of band-limited noise per
  revolution at a fixed angle (burst 8-25 % of a revolution, band starting at
  0.6-1.5 kHz and 2-4x wide, at most 6 kHz), per-revolution amplitude
  variation; level -20 to -4 dB re the healthy RMS.

Severity 0 is a barely audible fault (several are near chance for the
autoencoder), severity 1 an obvious one; the test set draws it uniformly.

The normal part of a faulty clip is bit-identical to the normal clip of the
same seed (the fault draws from its own random stream), which lets the tests
check each fault against its own healthy twin.

Features (MLPerf Tiny anomaly_detection / DCASE 2020 task 2 baseline)
----------------------------------------------------------------------
Hann-windowed STFT, n_fft=1024, hop=512, centred (zero padding of n_fft/2
on both sides); power spectrum; 128 Slaney mel filters (area normalised,
0-8 kHz), i.e. librosa's defaults; log as in the baseline,
``20 / power * log10(mel + eps)`` with power = 2, i.e. ``10 * log10`` of the
mel power, eps = float64 machine epsilon. Five consecutive frames are
concatenated frame-major (frame t occupies columns 128*t .. 128*t + 127), one
vector per frame offset: a 10 s clip has 313 frames and gives 309 vectors.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np

FS = 16_000
N_FFT = 1024
HOP = 512
N_MELS = 128
FRAMES = 5
DIM = N_MELS * FRAMES
CLIP_SECONDS = 10.0
EPS = sys.float_info.epsilon

FAULTS = ("bearing", "imbalance", "harmonic", "rubbing")
SPLITS = {"train": 0, "test": 1}

# Severity 0 -> first value, 1 -> second (linear in the listed unit).
FAULT_RANGES = {
    # RMS of the impulse train relative to the healthy clip's RMS, dB
    "bearing_level_db": (-22.0, -4.0),
    # 1x amplitude growth (dB) and once-per-revolution modulation depth
    "imbalance_1x_db": (7.0, 20.0),
    "imbalance_depth": (0.25, 0.70),
    # attenuation of the missing harmonic family (dB) / its shift in units of f_rot
    "harmonic_drop_db": (10.0, 40.0),
    "harmonic_shift": (0.20, 0.50),
    # RMS of the rubbing noise relative to the healthy clip's RMS, dB
    "rubbing_level_db": (-20.0, -4.0),
}
HARMONIC_FAMILY = 4  # the harmonic fault changes order k and its overtones 2k, 3k, 4k


class Machine(NamedTuple):
    """Fixed physical parameters of one machine id."""

    name: str
    f_rot: float  # nominal shaft rotation, Hz
    decay: float  # harmonic amplitude ~ k**-decay
    n_harmonics: int
    mesh_order: int  # blades / teeth: mesh tone at mesh_order * f_rot
    mesh_db: float  # mesh tone level relative to the 1x component
    alpha: float  # noise power slope 1/f**alpha
    res_hz: float  # structural resonance of the noise
    res_gain: float  # linear amplitude gain at the resonance
    tnr_db: float  # tonal-to-noise ratio, dB
    bearing_ratio: float  # bearing defect frequency / f_rot
    bearing_res_hz: float


MACHINES = (
    Machine("fan", 24.0, 0.8, 40, 7, -4.0, 0.6, 1200.0, 2.0, 8.0, 3.58, 3200.0),
    Machine("pump", 29.5, 0.7, 40, 5, -2.0, 1.2, 700.0, 3.0, 6.0, 4.12, 4100.0),
    Machine("gearbox", 49.0, 1.0, 40, 31, -8.0, 1.2, 2200.0, 2.5, 5.0, 5.07, 4200.0),
    Machine("compressor", 37.0, 0.6, 40, 23, -6.0, 1.0, 3500.0, 2.0, 3.0, 3.05, 2700.0),
)


def signature(machine_id: int) -> np.ndarray:
    """The id's harmonic amplitude profile (orders 1..n_harmonics), fixed per id."""
    m = MACHINES[machine_id]
    k = np.arange(1, m.n_harmonics + 1)
    wobble = np.random.default_rng([7919, machine_id]).normal(0.0, 4.0, m.n_harmonics)
    return k**-m.decay * 10 ** (wobble / 20)


def strongest_orders(machine_id: int, count: int = 3) -> np.ndarray:
    """Orders (>= 2) of the id's strongest harmonics, strongest first (the mesh order excluded)."""
    profile = signature(machine_id)
    order = np.argsort(profile[1:])[::-1] + 2
    return order[order % MACHINES[machine_id].mesh_order != 0][:count]


def _lerp(key: str, severity: float) -> float:
    lo, hi = FAULT_RANGES[key]
    return lo + (hi - lo) * float(severity)


def _colored_noise(
    rng: np.random.Generator, n: int, alpha: float, res_hz: float, res_gain: float, res_bw: float
) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    shape = (np.maximum(f, 20.0) / 1000.0) ** (-alpha / 2)
    shape *= 1 + res_gain / (1 + ((f - res_hz) / (res_bw / 2)) ** 2)
    out = np.fft.irfft(spec * shape, n)
    return out / np.sqrt(np.mean(out**2))


def _bandpass_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / FS)
    edge = 0.15 * lo
    mask = np.clip((f - lo + edge) / edge, 0, 1) * np.clip((hi + edge - f) / edge, 0, 1)
    out = np.fft.irfft(spec * mask, n)
    return out / np.sqrt(np.mean(out**2))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def synth_clip(
    machine_id: int,
    seed: int | list[int],
    duration: float = CLIP_SECONDS,
    fault: str | None = None,
    severity: float = 0.5,
    fault_options: dict | None = None,
) -> np.ndarray:
    """One clip (float64, 16 kHz) of machine `machine_id`, healthy or with `fault`.

    `seed` fixes the healthy part; the fault uses an independent stream derived
    from it, so `synth_clip(i, s)` is the healthy twin of
    `synth_clip(i, s, fault=...)`. `fault_options` pins fault details the
    tests need (``mode`` "missing"/"shifted" and ``order`` for ``harmonic``).
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; use one of {FAULTS}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    seeds = list(np.atleast_1d(seed))
    m = MACHINES[machine_id]
    rng = np.random.default_rng(seeds + [machine_id, 0])
    n = int(round(duration * FS))
    t = np.arange(n) / FS

    # --- healthy machine: all random draws happen here, in a fixed order
    op = rng.uniform(0.96, 1.04)
    d1, d2 = rng.uniform(0, 0.015), rng.uniform(0, 0.005)
    p1, p2 = rng.uniform(3.0, 8.0), rng.uniform(0.7, 2.0)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    f_rot = m.f_rot * op * (1 + d1 * np.sin(2 * np.pi * t / p1 + ph1) + d2 * np.sin(2 * np.pi * t / p2 + ph2))
    phi = 2 * np.pi * np.cumsum(f_rot) / FS + rng.uniform(0, 2 * np.pi)

    amps = signature(machine_id) * 10 ** (rng.normal(0, 1.5, m.n_harmonics) / 20)
    phases = rng.uniform(0, 2 * np.pi, m.n_harmonics)
    orders = np.arange(1, m.n_harmonics + 1, dtype=float)
    mesh_amp = amps[0] * 10 ** ((m.mesh_db + rng.normal(0, 1.0)) / 20)
    mesh_phase = rng.uniform(0, 2 * np.pi, 2)
    resid_depth = rng.uniform(0.0, 0.03)
    resid_phase = rng.uniform(0, 2 * np.pi)
    tnr_db = m.tnr_db + rng.uniform(-2, 2)
    gain_db = rng.uniform(-3, 3)
    noise = _colored_noise(rng, n, m.alpha, m.res_hz * rng.uniform(0.95, 1.05), m.res_gain, 0.3 * m.res_hz)

    healthy_amps = amps

    # --- fault parameters (own stream; may change the healthy parameters)
    frng = np.random.default_rng(seeds + [machine_id, 1])
    opts = dict(fault_options or {})
    depth, depth_phase = resid_depth, resid_phase
    if fault == "imbalance":
        amps = amps.copy()
        amps[0] *= 10 ** (_lerp("imbalance_1x_db", severity) / 20)
        depth = resid_depth + _lerp("imbalance_depth", severity)
        depth_phase = frng.uniform(0, 2 * np.pi)
    elif fault == "harmonic":
        mode = opts.get("mode", frng.choice(["missing", "shifted"]))
        k = int(opts.get("order", frng.choice(strongest_orders(machine_id))))
        family = np.arange(1, HARMONIC_FAMILY + 1) * k
        family = family[family <= m.n_harmonics]
        if mode == "missing":
            amps = amps.copy()
            amps[family - 1] *= 10 ** (-_lerp("harmonic_drop_db", severity) / 20)
        elif mode == "shifted":
            orders = orders.copy()
            orders[family - 1] *= 1 + frng.choice([-1.0, 1.0]) * _lerp("harmonic_shift", severity) / k
        else:
            raise ValueError(f"harmonic fault mode must be 'missing' or 'shifted', got {mode!r}")

    # --- synthesis
    nyq_ok = orders * m.f_rot * 1.1 < 0.45 * FS
    tonal = np.zeros(n)
    for a, k, p in zip(amps[nyq_ok], orders[nyq_ok], phases[nyq_ok]):
        tonal += a * np.cos(k * phi + p)
    for h in (1, 2):
        tonal += mesh_amp / (2 * h - 1) * np.cos(h * m.mesh_order * phi + mesh_phase[h - 1])
    tonal *= 1 + depth * np.cos(phi + depth_phase)
    # Normalise with the healthy amplitudes (not the faulty signal's RMS), so a
    # fault changes only what it physically changes.
    tonal /= np.sqrt(0.5 * (np.sum(healthy_amps[nyq_ok] ** 2) + mesh_amp**2 * (1 + 1 / 9)))
    healthy = tonal + noise * 10 ** (-tnr_db / 20)
    ref = np.sqrt(1 + 10 ** (-tnr_db / 10))  # RMS of the healthy mix

    if fault == "bearing":
        cycles = m.bearing_ratio * phi / (2 * np.pi)
        idx = np.flatnonzero(np.diff(np.floor(cycles)) > 0) + 1
        period = FS / (m.bearing_ratio * m.f_rot)
        idx = np.clip(np.round(idx + frng.normal(0, 0.01 * period, idx.size)).astype(int), 0, n - 1)
        load_mod = frng.uniform(0.0, 1.0)
        strength = frng.lognormal(0, 0.3, idx.size) * (1 + load_mod * np.cos(phi[idx]))
        train = np.zeros(n)
        np.add.at(train, idx, strength)
        f_res = m.bearing_res_hz * frng.uniform(0.85, 1.1)
        tau = frng.uniform(0.4e-3, 1.2e-3)
        tk = np.arange(int(6 * tau * FS)) / FS
        kernel = np.exp(-tk / tau) * np.sin(2 * np.pi * f_res * tk)
        extra = np.convolve(train, kernel)[:n]
        healthy = healthy + extra / _rms(extra) * ref * 10 ** (_lerp("bearing_level_db", severity) / 20)
    elif fault == "rubbing":
        lo = frng.uniform(600.0, 1500.0)
        hi = min(lo * frng.uniform(2.0, 4.0), 6000.0)
        width = frng.uniform(0.08, 0.25)
        angle = frng.uniform(0, 1)
        rev = phi / (2 * np.pi) - angle
        u = rev - np.floor(rev)
        env = np.where(u < width, np.sin(np.pi * u / width) ** 2, 0.0)
        revs = np.floor(rev).astype(int)
        env *= frng.lognormal(0, 0.4, revs.max() - revs.min() + 1)[revs - revs.min()]
        extra = _bandpass_noise(frng, n, lo, hi) * env
        healthy = healthy + extra / _rms(extra) * ref * 10 ** (_lerp("rubbing_level_db", severity) / 20)

    return healthy * (0.05 / ref) * 10 ** (gain_db / 20)


def mel_filterbank(sr: int = FS, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-style mel filterbank (librosa's default), shape (n_mels, n_fft//2 + 1)."""

    f_sp, brk = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0

    def to_mel(f):
        f = np.asarray(f, dtype=float)
        return np.where(f >= brk, brk / f_sp + np.log(np.maximum(f, brk) / brk) / logstep, f / f_sp)

    def to_hz(mel):
        mel = np.asarray(mel, dtype=float)
        return np.where(mel >= brk / f_sp, brk * np.exp(logstep * (mel - brk / f_sp)), f_sp * mel)

    fft_f = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sr / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_f[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


_MEL = mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def mel_band_of(freq_hz: float) -> int:
    """Index of the mel band whose filter peaks closest to `freq_hz`."""
    fft_f = np.linspace(0, FS / 2, N_FFT // 2 + 1)
    return int(np.argmax(_MEL[:, int(np.argmin(np.abs(fft_f - freq_hz)))]))


def log_mel(signal: np.ndarray) -> np.ndarray:
    """(frames, 128) log-mel energies in dB, frames = 1 + len // 512."""
    padded = np.pad(np.asarray(signal, dtype=float), N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, (count, N_FFT), (padded.strides[0] * HOP, padded.strides[0]), writeable=False
    )
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    return 20.0 / 2.0 * np.log10(power @ _MEL.T + EPS)


def vectors(logmel: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """Stack `frames` consecutive frames, frame-major: (frames_total - frames + 1, 128 * frames)."""
    count = logmel.shape[0] - frames + 1
    return np.concatenate([logmel[t : t + count] for t in range(frames)], axis=1).astype(np.float32)


def clip_features(
    machine_id: int,
    seed: int | list[int],
    duration: float = CLIP_SECONDS,
    fault: str | None = None,
    severity: float = 0.5,
    fault_options: dict | None = None,
) -> np.ndarray:
    """The 640-dim vectors of one clip, float32."""
    return vectors(log_mel(synth_clip(machine_id, seed, duration, fault, severity, fault_options)))


def clip_seed(seed: int, split: str, machine_id: int, index: int) -> list[int]:
    """Seed of one clip: splits never share clips."""
    return [seed, SPLITS[split], machine_id, index]


def test_plan(seed: int, normal_per_id: int, anomalous_per_id: int) -> list[tuple[int, list[int], str | None, float]]:
    """Test clips: (machine id, clip seed, fault or None, severity), normal first per id.

    Faults cycle through FAULTS; severities are uniform in [0, 1].
    """
    rng = np.random.default_rng([seed, SPLITS["test"], 99])
    plan = []
    for mid in range(len(MACHINES)):
        for i in range(normal_per_id):
            plan.append((mid, clip_seed(seed, "test", mid, i), None, 0.0))
        for j in range(anomalous_per_id):
            fault = FAULTS[j % len(FAULTS)]
            plan.append((mid, clip_seed(seed, "test", mid, normal_per_id + j), fault, float(rng.uniform(0, 1))))
    return plan
