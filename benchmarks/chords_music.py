"""The musical checks of `bench chords`: progressions the composer would play, model against
rules, `bars` bars in each of the seven modes, through the composer's own harmony classes
(bci/live/harmony.py), each bar's chord drawn with the bar's own seeded generator.

- key consistency: the share of chord notes inside the selected mode's scale. The model plays
  with its choice restricted to in-scale chords (1.0 by construction); "model (free)" lets it
  choose any chord, which measures what the mode token alone has learned.
- cadences: the share of phrase ends (the last bar of each 4 bars) that cadence: IV, V or
  vii resolving to I at the next phrase, or a half cadence on V. As played, both the rules
  and the model start each phrase on the tonic; "model (free)" need not.
- genre: a logistic regression on chord 1- and 2-gram counts, trained on 16-chord segments of
  the real training pieces, tells which genre 16 bars of the model's music came from (chance
  is 1 / genres); the same classifier on the held-out real pieces shows how far chords alone
  tell the genres apart at all. The rules play one progression for every genre, so they can
  only score chance here.
- time: each model chord's call (onnxruntime, one thread), the composer's cost per bar.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from bci.live.harmony import (
    PHRASE_BARS,
    HarmonyConfig,
    ModelHarmony,
    RuleHarmony,
)
from bci.live.mapping import MODE_INTERVALS, MODES
from benchmarks.report import distribution_ms

SEGMENT = 8  # chords per classifier example
MAX_SEGMENTS = 400  # per genre and split: the quartets alone have thousands
CADENCE_ENDS = {5, 7, 11}  # IV, V, vii: roots that resolve to I at a phrase start


def rule_progression(mode: str, bars: int, seed: int) -> list[tuple[int, ...]]:
    intervals, harmony = MODE_INTERVALS[mode], RuleHarmony()
    chords = []
    for bar in range(bars):
        steps = harmony.chord_steps(_bar_rng(seed, bar), bar, mode, intervals)
        chords.append(tuple(intervals[s % 7] for s in steps))
    return chords


def model_progression(
    config: HarmonyConfig, mode: str, bars: int, seed: int, times_ms: list[float]
) -> tuple[list[tuple[int, ...]], list[str]]:
    """(pitch classes, token) of each bar's chord; each call's time goes to times_ms."""
    harmony = ModelHarmony(config)
    chords, tokens = [], []
    for bar in range(bars):
        rng = _bar_rng(seed, bar)
        started = time.perf_counter()
        token = harmony.next_chord(rng, mode, phrase_start=bar % PHRASE_BARS == 0)
        times_ms.append((time.perf_counter() - started) * 1e3)
        chords.append(harmony.table.chord_pitch_classes[token])
        tokens.append(harmony.table.tokens[token])
    return chords, tokens


def _bar_rng(seed: int, bar: int) -> random.Random:
    return random.Random(f"bandmate-bci:{seed}:{bar}")  # as the composer seeds each bar


def key_consistency(chords: list[tuple[int, ...]], mode: str) -> float:
    scale = set(MODE_INTERVALS[mode])
    notes = [pc for chord in chords for pc in chord]
    return sum(pc in scale for pc in notes) / len(notes)


def cadence_share(chords: list[tuple[int, ...]]) -> float:
    ends = range(PHRASE_BARS - 1, len(chords) - 1, PHRASE_BARS)
    cadences = sum((chords[e][0] in CADENCE_ENDS and chords[e + 1][0] == 0) or chords[e][0] == 7
                   for e in ends)  # fmt: skip
    return cadences / len(ends)


def segments(tokens: list[str]) -> list[str]:
    return [" ".join(tokens[i : i + SEGMENT]) for i in range(0, len(tokens) - SEGMENT + 1, SEGMENT)]


def genre_classifier(data_dir: Path) -> tuple[Any, dict[str, float]]:
    """The classifier, fitted on the real training pieces, and its accuracy on the held-out
    real pieces (overall and per genre)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    from models.chords.dataset import load_chord_data

    data = load_chord_data(data_dir)

    def examples(split: str) -> tuple[list[str], list[str]]:
        texts, labels = [], []
        for genre in data.genres:
            found = [t for s in data.split(split, genre)  # type: ignore[arg-type]
                     for t in segments([f"{r}:{q}" for r, q, _ in s.chords])]  # fmt: skip
            texts += found[:MAX_SEGMENTS]
            labels += [genre] * len(found[:MAX_SEGMENTS])
        return texts, labels

    vectoriser = CountVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False,
                                 min_df=2)  # fmt: skip
    # Balanced: the band's styles have a few segments each, the masses hundreds. Each segment's
    # counts are scaled to unit length, which lets the solver converge in a few hundred steps.
    regression = LogisticRegression(max_iter=1000, class_weight="balanced")
    classifier = make_pipeline(vectoriser, Normalizer(), regression)
    classifier.fit(*examples("train"))
    texts, labels = examples("test")
    return classifier, _accuracies(classifier, texts, labels)


def _accuracies(classifier: Any, texts: list[str], labels: list[str]) -> dict[str, float]:
    predicted = classifier.predict(texts)
    right = np.array(predicted) == np.array(labels)
    found = {"all": float(right.mean())}
    for genre in dict.fromkeys(labels):
        found[genre] = float(right[np.array(labels) == genre].mean())
    return found


def musical_checks(data_dir: Path, model_dir: Path, genres: list[str], bars: int,
                   seed: int = 0) -> dict[str, Any]:  # fmt: skip
    times_ms: list[float] = []
    rules = {m: rule_progression(m, bars, seed) for m in MODES}
    sources = ("rules", "model (as played)", "model (free)")
    by_source: dict[str, dict[str, dict[str, float]]] = {s: {} for s in sources}
    for mode in MODES:
        by_source["rules"][mode] = {"key_consistency": key_consistency(rules[mode], mode),
                                    "cadences": cadence_share(rules[mode])}  # fmt: skip
    generated: dict[str, list[str]] = {}
    for source, scale_only in (("model (as played)", True), ("model (free)", False)):
        for mode in MODES:
            consistency, cadences = [], []
            for genre in genres:
                config = HarmonyConfig("model", genre, model_dir, scale_only=scale_only)
                chords, tokens = model_progression(config, mode, bars, seed, times_ms)
                consistency.append(key_consistency(chords, mode))
                cadences.append(cadence_share(chords))
                if scale_only:
                    generated.setdefault(genre, []).extend(segments(tokens))
            by_source[source][mode] = {"key_consistency": float(np.mean(consistency)),
                                       "cadences": float(np.mean(cadences))}  # fmt: skip
    classifier, real = genre_classifier(data_dir)
    texts = [t for g in genres for t in generated[g]]
    labels = [g for g in genres for _ in generated[g]]
    return {
        "bars_per_mode": bars,
        "by_mode": by_source,
        "mean": {
            s: {
                k: float(np.mean([v[k] for v in by_source[s].values()]))
                for k in ("key_consistency", "cadences")
            }
            for s in by_source
        },
        "genre_classifier": {
            "chance": 1 / len(genres),
            "real_held_out": real,
            "model": _accuracies(classifier, texts, labels),
            "rules": 1 / len(genres),
        },
        "chord_time": distribution_ms(np.array(times_ms)),
    }
