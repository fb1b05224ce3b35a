"""Synthetic keyword-spotting data for the bundled `kws` model, spoken by espeak-ng.

Twelve classes in MLPerf Tiny's label order: the ten keywords (alphabetical,
as in the Speech Commands / MLPerf Tiny KWS setup), then "silence" and
"unknown". Every clip is one second of 16 kHz audio, turned into a 49 x 10
MFCC matrix by `mfcc.py`.

Speakers. A speaker is an espeak-ng English voice (an accent) combined with a
voice variant (`+m3`, `+f2`, `+croak`, `+whisper`, ...), and each utterance
also draws its own speaking rate (`-s`) and pitch (`-p`). The test split holds
out whole speakers so that it measures generalization, not memory:

* two accents are never used for training (`TEST_ACCENTS`), and
* twenty variants are never used for training (`TEST_VARIANTS`);

the test split draws only from combinations that contain a held-out accent or
a held-out variant (or both); the training split only from the rest. The
babble noise of a split is spoken by that split's own speakers, so no training
sample contains a test voice, even in the background.

Clips. A keyword or "unknown" clip is one word (keywords / `UNKNOWN_WORDS`),
trimmed of espeak's leading/trailing silence, in the training split only
speed-perturbed and tilted (`perturb`), optionally reverberated, scaled
to a random level, placed at a random offset inside the 1 s window and mixed
with background noise at a random SNR. Noise is synthesized: white, pink,
brown, mains hum with harmonics, babble (several overlapping sentences from
`BABBLE_SENTENCES`, which contain no keyword), or hum plus pink noise.
"silence" clips are noise alone at a random level (including near-digital
silence).

Determinism: every sample draws from its own `numpy.random.Generator` seeded
with (seed, split, index), and espeak-ng renders the same text with the same
parameters to the same bytes, so the same seed gives bit-identical features
regardless of worker count.

Usage: ``python synth.py --split test --count 1000 --seed 1 --out DIR`` writes
``DIR/X_<split>.npy`` (float16, N x 1 x 49 x 10) and ``DIR/y_<split>.npy``
(int64). Needs the `espeak-ng` program, NumPy and SciPy (resampling).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve, resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mfcc  # noqa: E402  (sibling module, also imported by path in the tests)

KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
LABELS = KEYWORDS + ("silence", "unknown")
SILENCE, UNKNOWN = LABELS.index("silence"), LABELS.index("unknown")

# Non-keywords for "unknown": Speech Commands' auxiliary words plus a few more.
UNKNOWN_WORDS = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
    "yellow",
    "window",
    "garden",
    "music",
    "kitchen",
)

# Babble material: sentences without any keyword (checked at import).
BABBLE_SENTENCES = (
    "the weather was lovely at the seaside yesterday",
    "please bring me a cup of tea with milk",
    "she painted the kitchen a pale shade of green",
    "we had lunch with friends at the market",
    "my brother bought a new bicycle last week",
    "the children were playing in the garden all afternoon",
    "this train will call at every station",
    "he forgot his umbrella at the library",
    "they are building a bridge across the river",
    "the museum opens at nine in the morning",
    "I think the meeting was moved to thursday",
    "could you pass the salt and pepper please",
    "the dog barked at the postman again",
    "a small boat sailed slowly past the harbour",
    "her sister works as a nurse in the city",
    "the bakery sells fresh bread every morning",
    "we should paint the fence before winter",
    "the concert was louder than we expected",
    "my grandmother makes excellent apple pie",
    "there is a long queue at the ticket office",
)

# espeak-ng's own English voices (the MBROLA ones need extra packages).
ACCENTS = (
    "en",
    "en-us",
    "en-us-nyc",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
TEST_ACCENTS = ("en-gb-x-gbcwmd", "en-029")

# espeak-ng 1.51's voice variants (espeak-ng-data/voices/!v), minus "Mr serious"
# (a space in the name). Missing variants would silently fall back to the plain
# voice, so `check_espeak` verifies they are all installed.
VARIANTS = (
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "AnxiousAndy",
    "Demonic",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "RicishayMax",
    "RicishayMax2",
    "RicishayMax3",
    "Storm",
    "Tweaky",
    "UniRobot",
    "adam",
    "anika",
    "anikaRobot",
    "announcer",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "croak",
    "david",
    "ed",
    "edward",
    "edward2",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "fast",
    "grandma",
    "grandpa",
    "gustave",
    "iven",
    "iven2",
    "iven3",
    "iven4",
    "john",
    "kaukovalta",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "klatt6",
    "linda",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "robosoft",
    "robosoft2",
    "robosoft3",
    "robosoft4",
    "robosoft5",
    "robosoft6",
    "robosoft7",
    "robosoft8",
    "sandro",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "travis",
    "victor",
    "whisper",
    "whisperf",
    "zac",
)
TEST_VARIANTS = (
    "m3",
    "m7",
    "f2",
    "f4",
    "whisperf",
    "klatt3",
    "iven2",
    "steph2",
    "robosoft4",
    "Andy",
    "Annie",
    "anika",
    "aunty",
    "belinda",
    "boris",
    "edward2",
    "grandma",
    "john",
    "max",
    "norbert",
)

RATE_WPM = (120, 230)  # espeak-ng -s, uniform
PITCH = (20, 80)  # espeak-ng -p, uniform
SPEECH_DBFS = (-34.0, -10.0)  # RMS of the active speech
SNR_DB = (5.0, 30.0)  # speech RMS over noise RMS; 10 % of clips are near-clean
CLEAN_SNR_DB = 40.0
SILENCE_DBFS = (-70.0, -25.0)  # RMS of "silence" clips (noise only)
REVERB_PROB = 0.3
SPEED_PROB, SPEED_PERCENT = 0.8, (88, 112)  # training split only (see perturb)
TILT_PROB = 0.5  # training split only
NOISE_TYPES = ("white", "pink", "brown", "hum", "babble", "hum+pink")
BABBLE_POOL = 120  # sentences rendered per split for babble
UNKNOWN_SHARE = 2.0  # "unknown" gets twice the share of each other class in training
ESPEAK_RATE = 22050
SPLIT_IDS = {"train": 1, "test": 2}


def _check_lists() -> None:
    for sentence in BABBLE_SENTENCES:
        clash = set(sentence.split()) & set(KEYWORDS)
        assert not clash, f"babble sentence {sentence!r} contains keywords {clash}"
    assert not set(UNKNOWN_WORDS) & set(KEYWORDS)
    assert set(TEST_ACCENTS) <= set(ACCENTS) and set(TEST_VARIANTS) <= set(VARIANTS)


_check_lists()


def speakers(split: str) -> list[tuple[str, str]]:
    """The (accent, variant) combinations a split may use."""
    combos = [(a, v) for a in ACCENTS for v in VARIANTS]
    held_out = [(a, v) for a, v in combos if a in TEST_ACCENTS or v in TEST_VARIANTS]
    if split == "test":
        return held_out
    if split == "train":
        return [c for c in combos if c not in set(held_out)]
    raise ValueError(f"unknown split {split!r}")


def check_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found; install it (Debian: apt-get install -y espeak-ng)")
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    installed = {tok.removeprefix("!v/") for tok in listing.split() if tok.startswith("!v/")}
    missing = sorted(set(VARIANTS) - installed)
    if missing:
        raise SystemExit(f"espeak-ng lacks voice variants {missing}; espeak-ng 1.51 (Debian 12) has them all")


@dataclass(frozen=True)
class Utterance:
    """One espeak-ng rendering request."""

    accent: str
    variant: str
    rate: int
    pitch: int
    text: str

    def argv(self, path: Path) -> list[str]:
        return [
            "espeak-ng",
            "-v",
            f"{self.accent}+{self.variant}",
            "-s",
            str(self.rate),
            "-p",
            str(self.pitch),
            "-w",
            str(path),
            self.text,
        ]


def render(utterances: list[Utterance], workers: int = 2) -> list[np.ndarray]:
    """Speak each utterance with espeak-ng; float64 audio at 16 kHz, silence trimmed."""

    with tempfile.TemporaryDirectory(prefix="kws-synth-") as tmp:

        def one(i: int) -> np.ndarray:
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(utterances[i].argv(path), check=True, capture_output=True)
            audio = read_wav(path)
            path.unlink()
            return trim(resample_poly(audio, 320, 441))

        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(utterances))))


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as handle:
        if handle.getsampwidth() != 2 or handle.getnchannels() != 1 or handle.getframerate() != ESPEAK_RATE:
            raise RuntimeError(f"{path}: expected 16-bit mono {ESPEAK_RATE} Hz from espeak-ng")
        data = handle.readframes(handle.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def trim(audio: np.ndarray, floor_db: float = -40.0, hop: int = 160) -> np.ndarray:
    """Cut leading/trailing silence: 10 ms blocks below `floor_db` re the loudest block."""
    blocks = len(audio) // hop
    if blocks == 0:
        return audio
    energy = (audio[: blocks * hop].reshape(blocks, hop) ** 2).mean(axis=1)
    active = np.nonzero(energy > energy.max() * 10 ** (floor_db / 10))[0]
    if active.size == 0:
        return audio[:0]
    start = max(0, (active[0] - 1) * hop)
    stop = min(len(audio), (active[-1] + 2) * hop)
    return audio[start:stop]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2) + 1e-20))


def colored_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectral density ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / mfcc.SAMPLE_RATE)
    freqs[0] = freqs[1]
    spectrum *= freqs ** (-exponent / 2.0)
    out = np.fft.irfft(spectrum, n)
    return out / rms(out)


def hum(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / mfcc.SAMPLE_RATE
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
    out = np.zeros(n)
    for harmonic in range(1, 9):
        amp = rng.uniform(0.1, 1.0) / harmonic
        out += amp * np.sin(2 * np.pi * base * harmonic * t + rng.uniform(0, 2 * np.pi))
    out += 0.05 * rng.standard_normal(n)
    return out / rms(out)


def babble(rng: np.random.Generator, n: int, pool: list[np.ndarray]) -> np.ndarray:
    out = np.zeros(n)
    for _ in range(rng.integers(3, 7)):
        voice = pool[rng.integers(len(pool))]
        voice = np.tile(voice, int(np.ceil(2 * n / max(len(voice), 1))))
        start = rng.integers(0, len(voice) - n)
        piece = voice[start : start + n]
        out += rng.uniform(0.5, 1.0) * piece / rms(piece)
    return out / rms(out)


def noise(rng: np.random.Generator, kind: str, n: int, pool: list[np.ndarray]) -> np.ndarray:
    """Unit-RMS background noise of the given kind."""
    if kind == "white":
        return colored_noise(rng, n, 0.0)
    if kind == "pink":
        return colored_noise(rng, n, 1.0)
    if kind == "brown":
        return colored_noise(rng, n, 2.0)
    if kind == "hum":
        return hum(rng, n)
    if kind == "babble":
        return babble(rng, n, pool)
    if kind == "hum+pink":
        mix = hum(rng, n) + rng.uniform(0.3, 1.0) * colored_noise(rng, n, 1.0)
        return mix / rms(mix)
    raise ValueError(kind)


def reverb(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    """A small room: exponentially decaying noise impulse response, RT60 0.1-0.5 s."""
    rt60 = rng.uniform(0.1, 0.5)
    length = int(rt60 * mfcc.SAMPLE_RATE)
    t = np.arange(length) / mfcc.SAMPLE_RATE
    ir = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    ir[0] = 1.0 / rng.uniform(0.1, 0.4)  # direct path, direct-to-reverberant ratio
    wet = fftconvolve(audio, ir)[: len(audio) + length // 4]
    return wet * rms(audio) / rms(wet)


def perturb(rng: np.random.Generator, speech: np.ndarray) -> np.ndarray:
    """Training-only speaker augmentation: speed perturbation (resampling by 0.88-1.12,
    which moves pitch and formants together, like a different vocal tract length) and a
    first-order spectral tilt (a different microphone)."""
    if rng.uniform() < SPEED_PROB:
        speech = resample_poly(speech, 100, int(rng.integers(SPEED_PERCENT[0], SPEED_PERCENT[1] + 1)))
    if rng.uniform() < TILT_PROB:
        a = rng.uniform(-0.8, 0.8)
        speech = np.concatenate([speech[:1], speech[1:] + a * speech[:-1]])
    return speech


def class_sequence(split: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Class of each sample: test balanced over the 12 classes, train with extra 'unknown'."""
    shares = np.ones(len(LABELS))
    if split == "train":
        shares[UNKNOWN] = UNKNOWN_SHARE
    quota = np.floor(count * shares / shares.sum()).astype(int)
    quota[np.argsort(-shares, kind="stable")[: count - quota.sum()]] += 1
    labels = np.repeat(np.arange(len(LABELS)), quota)
    return labels[rng.permutation(count)]


def generate(split: str, count: int, seed: int, workers: int = 2, verbose: bool = True):
    """Features (N, 1, 49, 10) float16, labels (N,) int64 and per-sample metadata."""
    check_espeak()
    started = time.perf_counter()
    root = np.random.SeedSequence([seed, SPLIT_IDS[split]])
    plan_rng, babble_rng, *sample_seeds = [np.random.default_rng(s) for s in root.spawn(count + 2)]
    combos = speakers(split)
    labels = class_sequence(split, count, plan_rng)

    def speaker(rng: np.random.Generator, text: str) -> Utterance:
        accent, variant = combos[rng.integers(len(combos))]
        return Utterance(
            accent,
            variant,
            int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
            int(rng.integers(PITCH[0], PITCH[1] + 1)),
            text,
        )

    babble_requests = [
        speaker(babble_rng, BABBLE_SENTENCES[babble_rng.integers(len(BABBLE_SENTENCES))]) for _ in range(BABBLE_POOL)
    ]
    word_requests: dict[int, Utterance] = {}
    for i, label in enumerate(labels):
        if label == SILENCE:
            continue
        rng = sample_seeds[i]
        word = KEYWORDS[label] if label < len(KEYWORDS) else UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))]
        word_requests[i] = speaker(rng, word)
    order = sorted(word_requests)
    audio = render(babble_requests + [word_requests[i] for i in order], workers)
    pool = [a for a in audio[:BABBLE_POOL] if len(a) > 0]
    words = dict(zip(order, audio[BABBLE_POOL:]))
    rendered = time.perf_counter() - started

    n = mfcc.CLIP_SAMPLES
    clips = np.zeros((count, n))
    meta: list[dict] = []
    cropped = 0
    for i, label in enumerate(labels):
        rng = sample_seeds[i]
        kind = NOISE_TYPES[rng.integers(len(NOISE_TYPES))]
        if label == SILENCE:
            level = rng.uniform(*SILENCE_DBFS)
            if rng.uniform() < 0.1:
                kind, level = "dither", -90.0 + rng.uniform(0, 5)
                background = rng.standard_normal(n)
            else:
                background = noise(rng, kind, n, pool)
            clips[i] = background * 10 ** (level / 20)
            meta.append({"label": LABELS[label], "noise": kind, "level_dbfs": round(level, 1)})
            continue
        request = word_requests[i]
        speech = words[i]
        if split == "train":
            speech = perturb(rng, speech)
        if rng.uniform() < REVERB_PROB:
            speech = reverb(rng, speech)
        if len(speech) > n:
            cropped += 1
            speech = speech[:n]
        level = rng.uniform(*SPEECH_DBFS)
        speech = speech * (10 ** (level / 20) / rms(speech))
        offset = int(rng.integers(0, n - len(speech) + 1))
        snr = CLEAN_SNR_DB if rng.uniform() < 0.1 else rng.uniform(*SNR_DB)
        clip = noise(rng, kind, n, pool) * (10 ** (level / 20) / 10 ** (snr / 20))
        clip[offset : offset + len(speech)] += speech
        clips[i] = clip
        meta.append(
            {
                "label": LABELS[label],
                "word": request.text,
                "accent": request.accent,
                "variant": request.variant,
                "rate": request.rate,
                "pitch": request.pitch,
                "noise": kind,
                "snr_db": round(snr, 1),
                "offset": offset,
            }
        )
    peak = np.abs(clips).max(axis=1, keepdims=True)
    clips *= np.minimum(1.0, 0.99 / np.maximum(peak, 1e-12))  # no clipping
    clips = np.round(clips * 32767) / 32768  # 16-bit audio, as a recording would be
    features = mfcc.mfcc(clips)[:, None].astype(np.float16)
    if verbose:
        print(
            f"[synth] {split}: {count} clips, {len(audio)} espeak-ng renderings in {rendered:.1f} s, "
            f"total {time.perf_counter() - started:.1f} s ({cropped} words cropped to 1 s)",
            flush=True,
        )
    return features, labels.astype(np.int64), meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SPLIT_IDS), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    x, y, _ = generate(args.split, args.count, args.seed, args.workers)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / f"X_{args.split}.npy", x)
    np.save(args.out / f"y_{args.split}.npy", y)


if __name__ == "__main__":
    main()
