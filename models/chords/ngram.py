"""The n-gram baseline: next chord from the previous n - 1 chords, per genre, with backoff.

Counts are kept per (genre, mode) and pooled over all genres. A prediction takes the longest
context seen in the genre's own counts, then in the pooled counts, down to the genre's most
common chord (ties go to the smaller token id, so the baseline is deterministic).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from models.chords.extract import ChordSequence, binned
from models.chords.vocab import Vocabulary

Context = tuple[int, ...]


class NGram:
    def __init__(self, vocab: Vocabulary, order: int = 3):
        self.vocab, self.order = vocab, order
        self.counts: dict[tuple[str, Context], Counter[int]] = defaultdict(Counter)

    def chords(self, sequence: ChordSequence) -> list[int]:
        return [self.vocab.chord_id(c) for c in binned(sequence)]

    def contexts(self, genre: str, mode: str, history: Sequence[int]) -> list[tuple[str, Context]]:
        """Keys from the longest context down, the genre's own before the pool's."""
        keys = []
        for n in range(min(self.order - 1, len(history)), -1, -1):
            context = (hash(mode), *history[len(history) - n :]) if n else (hash(mode),)
            keys += [(genre, context), ("*", context)]
        return keys

    def fit(self, sequences: Sequence[ChordSequence]) -> NGram:
        for s in sequences:
            chords = self.chords(s)
            for i, chord in enumerate(chords):
                for key in self.contexts(s.genre, s.mode, chords[:i]):
                    self.counts[key][chord] += 1
        return self

    def predict(self, genre: str, mode: str, history: Sequence[int]) -> int:
        for key in self.contexts(genre, mode, history):
            if counts := self.counts.get(key):
                return min(counts, key=lambda c: (-counts[c], c))
        return self.vocab.chord_ids()[0]

    def hits(self, sequences: Sequence[ChordSequence]) -> tuple[int, int]:
        correct = total = 0
        for s in sequences:
            chords = self.chords(s)
            for i, chord in enumerate(chords):
                correct += int(self.predict(s.genre, s.mode, chords[:i]) == chord)
                total += 1
        return correct, total
