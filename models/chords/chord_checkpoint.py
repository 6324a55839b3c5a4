"""The chord model on disk: weights, its config, the ONNX graph the composer runs, tokens.json.

    model.safetensors   the torch weights (to fine-tune or re-export)
    config.json         ChordModelConfig and what training measured
    chords.onnx         tokens [1, L] (int64, 2 <= L <= block_size) -> logits [1, V]
    tokens.json         the vocabulary, each chord token's pitch classes, the mode scales and
                        which mode token each mode plays with (models/chords/vocab.py)

Export checks onnxruntime against torch on windows of several lengths and records the largest
difference; above PARITY_TOLERANCE it fails.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.chords.model import ChordModel, ChordModelConfig, LastLogits
from models.chords.vocab import MODES, Vocabulary, write_tokens
from models.errors import ModelsError

OPSET = 17
PARITY_TOLERANCE = 1e-4
WEIGHTS, CONFIG, GRAPH, TOKENS = "model.safetensors", "config.json", "chords.onnx", "tokens.json"


def mode_tokens(mode_counts: dict[str, int]) -> dict[str, str]:
    """The mode token each mode plays with: its own if training saw it, else the nearest mode
    by brightness that it saw (ties go brighter). Unseen tokens were never trained."""
    order = list(MODES)
    seen = [m for m in order if mode_counts.get(m, 0) > 0] or order
    return {m: min(seen, key=lambda s: (abs(order.index(s) - order.index(m)), order.index(s)))
            for m in order}  # fmt: skip


def export_onnx(model: ChordModel, path: Path) -> float:
    """Write the graph and return max |onnx - torch| over windows of several lengths."""
    import onnxruntime as ort

    graph = LastLogits(model).eval()
    example = torch.zeros(1, 8, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph, (example,), str(path), input_names=["tokens"], output_names=["logits"],
            dynamic_axes={"tokens": {1: "length"}}, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    graph.eval()  # the exporter restores the wrapper's training mode, dropout and all
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for length in sorted({2, 3, 17, model.config.block_size}):
        tokens = rng.integers(1, model.config.vocab_size, (1, length)).astype(np.int64)
        with torch.no_grad():
            expected = graph(torch.from_numpy(tokens)).numpy()
        got = session.run(None, {"tokens": tokens})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > PARITY_TOLERANCE:
        raise ModelsError(f"ONNX differs from torch by {worst:.2e} (> {PARITY_TOLERANCE:g})")
    return worst


def save_chord_model(
    model: ChordModel, vocab: Vocabulary, out: Path, facts: dict[str, object]
) -> dict[str, object]:
    """All four files; returns the facts with the parity and the sizes added."""
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()
               if k != "head.weight"}, str(out / WEIGHTS))  # fmt: skip
    parity = export_onnx(model, out / GRAPH)
    counts = facts.get("mode_counts", {})
    assert isinstance(counts, dict)
    facts = {**facts, "onnx_parity": parity}
    write_tokens(out / TOKENS, vocab, {"block_size": model.config.block_size,
                                       "mode_tokens": mode_tokens(counts)})  # fmt: skip
    (out / CONFIG).write_text(json.dumps({"model": asdict(model.config), **facts}, indent=1))
    sizes = {f: (out / f).stat().st_size for f in (WEIGHTS, GRAPH, TOKENS, CONFIG)}
    return {**facts, "bytes": sizes}


def load_chord_model(path: Path) -> tuple[ChordModel, Vocabulary]:
    try:
        raw = json.loads((path / CONFIG).read_text())
        tokens = json.loads((path / TOKENS).read_text())["tokens"]
    except OSError:
        raise ModelsError(f"{path} holds no chord model (config.json, tokens.json)") from None
    model = ChordModel(ChordModelConfig(**raw["model"]))
    state = load_file(str(path / WEIGHTS))
    state["head.weight"] = state["embed.weight"]
    model.load_state_dict(state)
    model.eval()
    return model, Vocabulary(tuple(tokens))
