"""Audio transformations for the benchmark corpus, described as plain data so they can be logged and replayed.

A step is ``{"name": str, **parameters}`` and a chain is a list of steps. Every parameter is required,
so a JSON construction log fully determines the output (together with the seed and the backgrounds).

Fixed design choices (documented here because they are not step parameters):

* lowpass / highpass / bandpass: audiomentations Butterworth filters, zero-phase (forward-backward),
  12 dB/octave overall, -6 dB at the cutoff. Zero phase keeps the copy time-aligned with the original.
* reverb: audiomentations ``RoomSimulator`` (pyroomacoustics image-source model, no ray tracing,
  reflections up to order ``REVERB_MAX_ORDER``, air absorption on). The source sits at
  (0.3 x, 0.4 y, min(1.5, 0.5 z)) m and the microphone ``min(0.5, 0.2 min(x, y))`` m from it along +y.
  The output is cut to start at the direct-path arrival and scaled by the source-mic distance,
  so the direct sound keeps the input's time alignment and level; the length equals the input's.
  Higher-order reflections (the late tail) are not modelled: image-source cost explodes beyond order ~12.
* eq: seven fixed audiomentations biquads (low shelf, five peaking, high shelf) at ``EQ_CENTRES_HZ``, the
  geometric centres of the bands audiomentations ``SevenBandParametricEQ`` draws from (that transform
  cannot take fixed per-band gains). Peaking Q is ``EQ_PEAK_Q``, shelf Q ``EQ_SHELF_Q``.
* speed: ``soxr.resample(x, sr, sr / factor, quality="HQ")`` read back at ``sr``: tempo and pitch change together.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyroomacoustics as pra
import soxr
from audiomentations import (
    AddGaussianSNR,
    BandPassFilter,
    HighPassFilter,
    HighShelfFilter,
    LowPassFilter,
    LowShelfFilter,
    Mp3Compression,
    PeakingFilter,
    RoomSimulator,
)

FILTER_ROLLOFF_DB_PER_OCT = 12
REVERB_MAX_ORDER = 10
EQ_CENTRES_HZ = (63.0, 136.0, 294.0, 632.0, 1363.0, 2936.0, 6324.0)
EQ_PEAK_Q = 1.0
EQ_SHELF_Q = 0.707
PEAK_LIMIT = 0.99

# name -> required parameters, in the order describe() and error messages list them
_PARAMS: dict[str, tuple[str, ...]] = {
    "mp3": ("bitrate_kbps",),
    "lowpass": ("cutoff_hz",),
    "highpass": ("cutoff_hz",),
    "bandpass": ("low_hz", "high_hz"),
    "gain": ("db",),
    "noise": ("snr_db",),
    "reverb": ("room_m", "absorption"),
    "eq": ("gains_db",),
    "mix": ("snr_db", "source"),
    "speed": ("factor",),
}
TRANSFORM_NAMES: tuple[str, ...] = tuple(_PARAMS)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0


def _is_number_list(value: Any, length: int, minimum: float = -math.inf) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == length
        and all(_is_number(v) and v >= minimum for v in value)
    )


# parameter -> (check, what a valid value is)
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bitrate_kbps": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v in Mp3Compression.SUPPORTED_BITRATES,
        f"one of {Mp3Compression.SUPPORTED_BITRATES}",
    ),
    "cutoff_hz": (_is_positive, "a positive number"),
    "low_hz": (_is_positive, "a positive number"),
    "high_hz": (_is_positive, "a positive number"),
    "db": (_is_number, "a finite number"),
    "snr_db": (_is_number, "a finite number"),
    "room_m": (lambda v: _is_number_list(v, 3, minimum=1.0), "three room dimensions in metres, each >= 1"),
    "absorption": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "gains_db": (lambda v: _is_number_list(v, 7), "a list of seven finite numbers"),
    "source": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "factor": (_is_positive, "a positive number"),
}


def validate_chain(chain: Sequence[Mapping[str, Any]]) -> None:
    """Reject malformed chains up front, so a bad construction log fails before any audio is produced."""
    if isinstance(chain, (str, Mapping)) or not isinstance(chain, Sequence):
        raise ValueError(f"chain must be a list of steps, got {type(chain).__name__}")
    for index, step in enumerate(chain):
        if not isinstance(step, Mapping):
            raise ValueError(f"step {index}: must be a mapping, got {type(step).__name__}")
        name = step.get("name")
        if name not in _PARAMS:
            raise ValueError(f"step {index}: unknown transform name {name!r}; expected one of {TRANSFORM_NAMES}")
        expected = set(_PARAMS[name])
        given = set(step) - {"name"}
        if missing := sorted(expected - given):
            raise ValueError(f"step {index} ({name}): missing parameter(s) {missing}")
        if extra := sorted(given - expected):
            raise ValueError(f"step {index} ({name}): unexpected parameter(s) {extra}")
        for param in _PARAMS[name]:
            check, wanted = _CHECKS[param]
            if not check(step[param]):
                raise ValueError(f"step {index} ({name}): {param} must be {wanted}, got {step[param]!r}")
        if name == "bandpass" and step["low_hz"] >= step["high_hz"]:
            raise ValueError(f"step {index} (bandpass): low_hz must be below high_hz")


def _describe_step(step: Mapping[str, Any]) -> str:
    name = step["name"]
    if name == "mp3":
        return f"mp3 {step['bitrate_kbps']} kbps"
    if name in ("lowpass", "highpass"):
        return f"{name} {step['cutoff_hz']:g} Hz"
    if name == "bandpass":
        return f"bandpass {step['low_hz']:g}-{step['high_hz']:g} Hz"
    if name == "gain":
        return f"gain {step['db']:g} dB"
    if name == "noise":
        return f"noise at {step['snr_db']:g} dB SNR"
    if name == "reverb":
        room = "x".join(f"{d:g}" for d in step["room_m"])
        return f"reverb {room} m absorption {step['absorption']:g}"
    if name == "eq":
        return "eq " + "/".join(f"{g:g}" for g in step["gains_db"]) + " dB"
    if name == "mix":
        return f"mix {step['source']} at {step['snr_db']:g} dB"
    return f"speed x{step['factor']:g}"


def describe(chain: Sequence[Mapping[str, Any]]) -> str:
    """One-line summary for logs and reports, e.g. "mp3 32 kbps + mix speech:en_3 at -5 dB"."""
    validate_chain(chain)
    return " + ".join(_describe_step(step) for step in chain) or "identity"


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _mp3(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    kbps = step["bitrate_kbps"]
    # preserve_delay=False: the codec's encoder/decoder delay is removed, keeping the copy aligned
    return Mp3Compression(min_bitrate=kbps, max_bitrate=kbps, backend="fast-mp3-augment", preserve_delay=False, p=1.0)(
        x, sr
    )


def _one_sided(cls: type, x: np.ndarray, sr: int, cutoff: float) -> np.ndarray:
    rolloff = FILTER_ROLLOFF_DB_PER_OCT
    return cls(
        min_cutoff_freq=cutoff, max_cutoff_freq=cutoff, min_rolloff=rolloff, max_rolloff=rolloff, zero_phase=True, p=1.0
    )(x, sr)


def _lowpass(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    return _one_sided(LowPassFilter, x, sr, step["cutoff_hz"])


def _highpass(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    return _one_sided(HighPassFilter, x, sr, step["cutoff_hz"])


def _bandpass(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    # audiomentations parametrises the band by centre and bandwidth/centre; band edges are centre -/+ bandwidth/2
    centre = (step["low_hz"] + step["high_hz"]) / 2
    fraction = (step["high_hz"] - step["low_hz"]) / centre
    rolloff = FILTER_ROLLOFF_DB_PER_OCT
    return BandPassFilter(
        min_center_freq=centre,
        max_center_freq=centre,
        min_bandwidth_fraction=fraction,
        max_bandwidth_fraction=fraction,
        min_rolloff=rolloff,
        max_rolloff=rolloff,
        zero_phase=True,
        p=1.0,
    )(x, sr)


def _gain(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    return x * 10.0 ** (step["db"] / 20.0)


def _noise(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    snr = step["snr_db"]
    return AddGaussianSNR(min_snr_db=snr, max_snr_db=snr, p=1.0)(x, sr)


def _reverb(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    size_x, size_y, size_z = (float(d) for d in step["room_m"])
    source = (0.3 * size_x, 0.4 * size_y, min(1.5, 0.5 * size_z))
    mic_distance = min(0.5, 0.2 * min(size_x, size_y))
    absorption = step["absorption"]
    room = RoomSimulator(
        min_size_x=size_x,
        max_size_x=size_x,
        min_size_y=size_y,
        max_size_y=size_y,
        min_size_z=size_z,
        max_size_z=size_z,
        min_absorption_value=absorption,
        max_absorption_value=absorption,
        calculation_mode="absorption",
        min_source_x=source[0],
        max_source_x=source[0],
        min_source_y=source[1],
        max_source_y=source[1],
        min_source_z=source[2],
        max_source_z=source[2],
        min_mic_distance=mic_distance,
        max_mic_distance=mic_distance,
        # azimuth 0, elevation 0 puts the microphone at +y from the source
        min_mic_azimuth=0.0,
        max_mic_azimuth=0.0,
        min_mic_elevation=0.0,
        max_mic_elevation=0.0,
        use_ray_tracing=False,
        max_order=REVERB_MAX_ORDER,
        leave_length_unchanged=False,
        p=1.0,
    )
    wet = room(x, sr)
    sim = room.room
    distance = float(np.linalg.norm(sim.sources[0].position - sim.mic_array.R[:, 0]))
    # pyroomacoustics delays every arrival by half its fractional-delay filter; its amplitudes fall off as 1/distance
    direct = round(distance / sim.c * sr) + int(pra.constants.get("frac_delay_length")) // 2
    return wet[direct : direct + x.size] * distance


def _eq(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    if EQ_CENTRES_HZ[-1] >= 0.45 * sr:
        raise ValueError(f"eq needs a sample rate above {EQ_CENTRES_HZ[-1] / 0.45:.0f} Hz, got {sr}")
    gains = step["gains_db"]
    bands: list[tuple[type, float]] = [(LowShelfFilter, EQ_SHELF_Q)]
    bands += [(PeakingFilter, EQ_PEAK_Q)] * 5
    bands += [(HighShelfFilter, EQ_SHELF_Q)]
    for (cls, q), centre, gain in zip(bands, EQ_CENTRES_HZ, gains):
        x = cls(
            min_center_freq=centre,
            max_center_freq=centre,
            min_gain_db=gain,
            max_gain_db=gain,
            min_q=q,
            max_q=q,
            p=1.0,
        )(x, sr)
    return x


def _mix(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    # np.resize repeats a shorter background cyclically and cuts a longer one
    background = np.resize(np.asarray(backgrounds[step["source"]], dtype=np.float64), x.size)
    background_rms = _rms(background)
    scale = _rms(x) / (background_rms * 10.0 ** (step["snr_db"] / 20.0)) if background_rms > 0 else 0.0
    return x + scale * background


def _speed(x: np.ndarray, sr: int, step: Mapping[str, Any], backgrounds: Mapping[str, np.ndarray]) -> np.ndarray:
    return soxr.resample(x, sr, sr / step["factor"], quality="HQ")


_APPLY: dict[str, Callable[[np.ndarray, int, Mapping[str, Any], Mapping[str, np.ndarray]], np.ndarray]] = {
    "mp3": _mp3,
    "lowpass": _lowpass,
    "highpass": _highpass,
    "bandpass": _bandpass,
    "gain": _gain,
    "noise": _noise,
    "reverb": _reverb,
    "eq": _eq,
    "mix": _mix,
    "speed": _speed,
}


# the global RNGs are shared by every thread: chains run one at a time so a seed is never raced
_GLOBAL_RNG_LOCK = threading.Lock()


def _seed_global_rngs(seed: int, index: int) -> None:
    """audiomentations draws from `random` and numpy's global RNG; seeding per step makes each step reproducible."""
    step_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    random.seed(step_seed)
    np.random.seed(step_seed)


def apply_chain(
    audio: np.ndarray,
    sample_rate: int,
    chain: Sequence[Mapping[str, Any]],
    seed: int,
    backgrounds: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Apply `chain` to mono `audio`; the same inputs and seed give bit-identical float32 output.

    `backgrounds` maps the `source` keys of "mix" steps to mono signals at `sample_rate`.
    Python's `random` and numpy's global RNG are left reseeded (not restored) as a side effect.
    If the result peaks above 1.0 it is scaled down to peak 0.99 rather than clipped.
    """
    validate_chain(chain)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"audio must be a non-empty finite 1-D array, got shape {x.shape}")
    backgrounds = backgrounds or {}
    for index, step in enumerate(chain):
        if step["name"] != "mix":
            continue
        if step["source"] not in backgrounds:
            raise ValueError(f"step {index} (mix): background {step['source']!r} not supplied")
        background = np.asarray(backgrounds[step["source"]])
        if background.ndim != 1 or not np.all(np.isfinite(background)):
            raise ValueError(f"step {index} (mix): background {step['source']!r} must be a finite 1-D array")

    with _GLOBAL_RNG_LOCK:
        for index, step in enumerate(chain):
            _seed_global_rngs(int(seed), index)
            x = np.ascontiguousarray(_APPLY[step["name"]](x, int(sample_rate), step, backgrounds), dtype=np.float32)

    if not np.all(np.isfinite(x)):
        raise RuntimeError(f"chain {describe(chain)!r} produced non-finite samples")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = (x * (PEAK_LIMIT / peak)).astype(np.float32)
    return x
