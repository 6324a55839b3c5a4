"""The chord data, the chord model and its export: extraction, splits, a short training run,
ONNX parity, the n-gram baseline and the shipped model's files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from models.chords.chord_checkpoint import (
    GRAPH,
    TOKENS,
    export_onnx,
    load_chord_model,
    mode_tokens,
    save_chord_model,
)
from models.chords.dataset import ChordDataConfig, build_chord_data, load_chord_data, plan
from models.chords.extract import band_sequence, corpus_paths, match_chord, score_sequence
from models.chords.model import CHORD_PRESETS, ChordModel
from models.chords.ngram import NGram
from models.chords.train import FitConfig, fit, new_model, next_chord_hits, train_split
from models.chords.vocab import MODES, QUALITIES, Vocabulary, beat_bin
from tests.helpers import BANDMATE

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "checkpoints" / "chords"


@pytest.fixture(scope="module")
def tiny_chords(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two chorales and a few band pieces of two styles, with every split."""
    out = tmp_path_factory.mktemp("chords")
    config = ChordDataConfig(out=out, genres=("bach", "rock", "waltz"), max_pieces=10, jobs=1)
    bach = [pid for pid, genre, _ in plan(config) if genre == "bach"][:2]
    band = ChordDataConfig(out=out, genres=("rock", "waltz"), max_pieces=10, jobs=1)
    manifest = build_chord_data(band, progress=False)
    # Add the two chorales by hand: a full chorale build would take the test too long.
    lines = [score_sequence(pid, corpus_paths("bach")[pid], "bach") for pid in bach]
    with (out / "chords.jsonl").open("a") as sink:
        sink.writelines(s.model_dump_json() + "\n" for s in lines)
    from models.chords.dataset import PieceEntry

    pieces = [PieceEntry(piece_id=s.piece_id, genre="bach", split="train", mode=s.mode,
                         n_chords=len(s.chords)) for s in lines]  # fmt: skip
    manifest = manifest.model_copy(update={"pieces": manifest.pieces + pieces})
    (out / "manifest.json").write_text(manifest.model_dump_json())
    return out


def test_a_template_match_names_triads_sevenths_and_ignores_octaves() -> None:
    assert match_chord({0, 4, 7})[:2] == (0, "maj")
    assert match_chord({9, 0, 4})[:2] == (9, "min")
    assert match_chord({7, 11, 5})[:2] == (7, "7")  # G7 without its fifth
    assert match_chord({7, 11, 2, 5})[:2] == (7, "7")


def test_a_chorale_becomes_chords_relative_to_its_key() -> None:
    sequence = score_sequence("bach/bwv269", corpus_paths("bach")["bach/bwv269"], "bach")
    assert sequence.key == "G major" and sequence.mode == "ionian"
    assert sequence.chords[0][:2] == (0, "maj") and sequence.chords[-1][:2] == (0, "maj")
    assert len(sequence.roman) == len(sequence.chords) > 30
    assert sequence.roman[0] == "I"
    roots = [c[0] for c in sequence.chords]
    assert roots.count(7) > 5  # the dominant is there
    assert all(c[2] >= 0.5 for c in sequence.chords)  # passing slices were absorbed


def test_a_band_piece_gives_its_planned_progression() -> None:
    funk = band_sequence("band/funk-003")
    assert funk.genre == "funk" and all(q in {"maj7", "7", "m7", "m7b5"} for _, q, _ in funk.chords)
    waltz = band_sequence("band/waltz-001")
    assert {beats % 3 for _, _, beats in waltz.chords} == {0}  # bars of three beats
    assert all(a[:2] != b[:2] for a, b in zip(waltz.chords, waltz.chords[1:], strict=False))


def test_splits_are_by_piece_and_stable_under_the_cap(tmp_path: Path) -> None:
    full = plan(ChordDataConfig(out=tmp_path, genres=("bach", "rock"), max_pieces=1000))
    capped = plan(ChordDataConfig(out=tmp_path, genres=("bach", "rock"), max_pieces=30))
    assert len({pid for pid, _, _ in full}) == len(full)
    assert set(capped) <= set(full)
    assert {split for _, _, split in capped} == {"train", "valid", "test"}


def test_an_unknown_genre_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([BANDMATE, "data", "chords", "--out", str(tmp_path), "--genres",
                           "jazz"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown genre 'jazz'; known: bach, palestrina, monteverdi, classical, rock, "
        "funk, bossa, waltz, shuffle, ballad, disco, reggae"
    ]


def test_tokens_round_trip_every_length_to_a_bin() -> None:
    vocab = Vocabulary.build()
    assert len(set(vocab.tokens)) == len(vocab) == 1 + 13 + 7 + 12 * len(QUALITIES) + 8
    assert beat_bin(0.25) == 0.5 and beat_bin(1.4) == 1.5 and beat_bin(100) == 8.0


@pytest.mark.slow
def test_a_tiny_model_trains_exports_and_reloads(tiny_chords: Path, tmp_path: Path) -> None:
    data, vocab = load_chord_data(tiny_chords), Vocabulary.build()
    assert set(data.genres) == {"bach", "rock", "waltz"}
    model = new_model(CHORD_PRESETS["tiny"], vocab, seed=0)
    losses: list[float] = []
    fit(model, train_split(data, vocab), FitConfig(steps=30, batch_size=8, warmup=5),
        on_step=lambda _, loss: losses.append(loss))  # fmt: skip
    assert np.isfinite(losses).all() and np.mean(losses[-5:]) < np.mean(losses[:5])
    facts = save_chord_model(model, vocab, tmp_path, {"mode_counts": {"ionian": 3}})
    assert facts["onnx_parity"] <= 1e-4  # type: ignore[operator]
    reloaded, _ = load_chord_model(tmp_path)
    tokens = torch.tensor([vocab.encode("rock", "ionian", band_sequence("band/rock-000")
                                        .chord_symbols())[:20]])  # fmt: skip
    assert torch.equal(reloaded(tokens), model(tokens))
    tables = json.loads((tmp_path / TOKENS).read_text())
    assert tables["mode_tokens"]["lydian"] == "ionian"


def test_onnx_matches_torch_on_windows_of_every_length(tmp_path: Path) -> None:
    model = ChordModel(CHORD_PRESETS["tiny"])
    assert export_onnx(model, tmp_path / GRAPH) <= 1e-4


def test_adapters_start_as_the_base_model_and_train_only_themselves() -> None:
    from dataclasses import replace

    vocab = Vocabulary.build()
    base = new_model(CHORD_PRESETS["tiny"], vocab, seed=0).eval()
    tokens = torch.tensor([[vocab.genre_id("any"), vocab.mode_id("ionian"), 30, 145]])
    for adapter in ({"lora_rank": 2}, {"ia3": True}):
        model = ChordModel(replace(base.config, **adapter)).eval()
        model.load_base(base.state_dict())
        assert torch.allclose(model(tokens), base(tokens), atol=1e-6)
        trained = model.adapter_parameters()
        names = {n for n, p in model.named_parameters() if any(p is a for a in trained)}
        assert names and all("down" in n or "up" in n or "scale" in n for n in names)


def test_the_ngram_predicts_a_loop_once_it_has_heard_it(tiny_chords: Path) -> None:
    data, vocab = load_chord_data(tiny_chords), Vocabulary.build()
    ngram = NGram(vocab).fit(data.split("train"))
    rock = data.split("train", "rock")
    correct, total = ngram.hits(rock)
    assert total > 0 and correct / total > 0.5
    model = new_model(CHORD_PRESETS["tiny"], vocab, seed=0)
    assert next_chord_hits(model, vocab, rock)[1] == total


def test_unseen_modes_play_with_the_nearest_seen_one() -> None:
    tokens = mode_tokens({"ionian": 5, "aeolian": 3, "phrygian": 1})
    assert tokens["lydian"] == "ionian" and tokens["locrian"] == "phrygian"
    assert tokens["dorian"] == "aeolian" and tokens["aeolian"] == "aeolian"
    assert set(tokens) == set(MODES)


def test_the_shipped_chord_model_is_small_and_complete() -> None:
    sizes = {p.name: p.stat().st_size for p in SHIPPED.iterdir()}
    assert {"chords.onnx", "tokens.json", "config.json", "model.safetensors"} <= set(sizes)
    assert sum(sizes.values()) <= 5 * 2**20
    facts = json.loads((SHIPPED / "config.json").read_text())
    assert facts["onnx_parity"] <= 1e-4
