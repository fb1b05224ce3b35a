"""MFCC front end of the bundled `kws` model (MLPerf Tiny keyword spotting layout), NumPy only.

One second of 16 kHz audio becomes a 49 x 10 matrix (frames x coefficients),
the input layout of MLPerf Tiny's DS-CNN. The stages, in order:

1. **Framing** — 30 ms frames (480 samples) every 20 ms (320 samples), no
   padding at either end: ``1 + (16000 - 480) // 320 = 49`` frames. No DC
   removal and no pre-emphasis (MLPerf Tiny's TensorFlow pipeline uses
   neither); the input is float audio in [-1, 1] (int16 / 32768).
2. **Window** — periodic Hann, ``w[n] = 0.5 - 0.5 cos(2 pi n / 480)`` (the
   periodic form, as ``tf.signal.hann_window`` uses for STFTs).
3. **Power spectrum** — 512-point real FFT of each windowed frame
   (zero-padded from 480 samples), ``|X[k]|^2`` for the 257 bins 0..256,
   unnormalized (no division by the FFT length).
4. **Mel filter bank** — 40 triangular filters, with edges evenly spaced on
   the HTK mel scale ``mel(f) = 1127 ln(1 + f / 700)`` between 20 Hz and
   4000 Hz (42 edge points; filter ``m`` rises from edge ``m`` to peak ``m+1``
   and falls to edge ``m+2``). Weights are evaluated on the mel scale at each
   FFT bin's centre frequency ``k * 16000 / 512``; the DC bin gets no weight.
   The upper edge is 4 kHz rather than 7.6 kHz because nearly all the
   information that tells these short words apart (formants F1-F3) lies below
   4 kHz, and 40 filters over 20 Hz-4 kHz give finer resolution there. The
   filters are not area-normalized (peak height 1).
5. **Log** — natural log of the mel energies plus ``LOG_OFFSET = 1e-6``, so
   digital silence gives a finite floor (``ln 1e-6 ~ -13.8``), never ``-inf``.
6. **DCT** — orthonormal DCT-II over the 40 log-mel values of a frame
   (``C[k, n] = s_k cos(pi k (n + 1/2) / 40)``, ``s_0 = sqrt(1/40)``,
   ``s_k = sqrt(2/40)``), of which the first 10 coefficients are kept.

`mfcc(audio)` takes one clip (16000 samples) or a batch (N, 16000) and returns
(49, 10) or (N, 49, 10) float32. The intermediate stages are public so that
tests and tools can check them one by one.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
FRAME_LENGTH = 480  # 30 ms
FRAME_STEP = 320  # 20 ms
FFT_LENGTH = 512
NUM_BINS = FFT_LENGTH // 2 + 1
NUM_MEL = 40
LOWER_HZ = 20.0
UPPER_HZ = 4000.0
NUM_MFCC = 10
LOG_OFFSET = 1e-6


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale (natural-log form)."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def num_frames(samples: int) -> int:
    if samples < FRAME_LENGTH:
        raise ValueError(f"need at least {FRAME_LENGTH} samples, got {samples}")
    return 1 + (samples - FRAME_LENGTH) // FRAME_STEP


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    n = np.arange(FRAME_LENGTH, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / FRAME_LENGTH)


@lru_cache(maxsize=1)
def mel_edges_hz() -> np.ndarray:
    """The 42 filter edge frequencies (Hz): lower edge, 40 peaks, upper edge."""
    return mel_to_hz(np.linspace(hz_to_mel(LOWER_HZ), hz_to_mel(UPPER_HZ), NUM_MEL + 2))


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(257, 40) weights: power spectrum (bins) @ filterbank -> mel energies."""
    bin_mel = hz_to_mel(np.arange(NUM_BINS) * SAMPLE_RATE / FFT_LENGTH)
    edges = hz_to_mel(mel_edges_hz())
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bin_mel[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no speech information
    return weights


@lru_cache(maxsize=1)
def dct_matrix() -> np.ndarray:
    """(40, 40) orthonormal DCT-II: row k is basis function k (log-mel @ C.T -> cepstrum)."""
    n = np.arange(NUM_MEL, dtype=np.float64)
    k = n[:, None]
    c = np.cos(np.pi * k * (n + 0.5) / NUM_MEL) * np.sqrt(2.0 / NUM_MEL)
    c[0] /= np.sqrt(2.0)
    return c


def frames(audio: np.ndarray) -> np.ndarray:
    """(..., samples) -> (..., frames, 480) overlapping frames (a copy)."""
    audio = np.asarray(audio, dtype=np.float64)
    count = num_frames(audio.shape[-1])
    index = np.arange(count)[:, None] * FRAME_STEP + np.arange(FRAME_LENGTH)
    return audio[..., index]


def power_spectrum(audio: np.ndarray) -> np.ndarray:
    """(..., samples) -> (..., frames, 257) |FFT_512(hann * frame)|^2."""
    spectrum = np.fft.rfft(frames(audio) * hann_window(), n=FFT_LENGTH, axis=-1)
    return spectrum.real**2 + spectrum.imag**2


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(..., samples) -> (..., frames, 40) ln(mel energy + 1e-6)."""
    return np.log(power_spectrum(audio) @ mel_filterbank() + LOG_OFFSET)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """(16000,) -> (49, 10), or (N, 16000) -> (N, 49, 10); float32."""
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise ValueError(f"expected one clip (samples,) or a batch (N, samples), got shape {audio.shape}")
    if audio.dtype.kind in "iu":
        raise ValueError("expected float audio in [-1, 1]; divide int16 samples by 32768")
    cepstrum = log_mel(audio) @ dct_matrix()[:NUM_MFCC].T
    return cepstrum.astype(np.float32)
