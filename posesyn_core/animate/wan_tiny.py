"""Tiny randomly initialized Wan2.2-Animate components, saved as a diffusers folder.

Wan2.2-Animate-14B needs ~60 GB of weights; its plumbing (the folder layout `WanAnimatePipeline.from_pretrained`
reads, reference/pose/face inputs, segment continuation, decoding) does not. These components have the real
classes and the real folder layout with widths of 2-32, so the `animate` stage, its tests, the CPU benchmark and
the GPU check run the same code path a real run does, offline, in seconds. Shapes follow diffusers' own
`tests/pipelines/wan/test_wan_animate.py`; the tokenizer is built in memory (word-level, no download).
"""

from __future__ import annotations

from pathlib import Path

import torch

# Face crops are encoded at this side (the real model: 512), and the motion encoder needs one width per
# power of two from 4 up to it.
FACE_SIZE = 16
_WORDS = ("a", "person", "photo", "of", "the", "full", "body", "realistic", "kneeling", "lying", "standing",
          "arms", "legs", "raised", "bent", "on", "floor", "back", "side", "up", "down", "left", "right")  # fmt: skip


def _tokenizer():
    """A word-level fast tokenizer with T5's special tokens, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(("<pad>", "</s>", "<unk>", *_WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=32)  # fmt: skip


def tiny_wan_animate_components() -> dict:
    """The `WanAnimatePipeline.__init__` kwargs, each module seeded with 0 (so every call builds the same one)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanAnimateTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)  # base_dim 16, not diffusers' 3: narrower, the random encoder maps every pose video to
    # nearly the same latents and a test could not see the pose reach the transformer
    vae = AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])  # fmt: skip
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(_WORDS) + 3, d_model=32, d_kv=8, d_ff=32, num_layers=1,
                                               num_heads=2, relative_attention_num_buckets=8,
                                               pad_token_id=0, eos_token_id=1))  # fmt: skip
    torch.manual_seed(0)
    transformer = WanAnimateTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, latent_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", image_dim=4, rope_max_seq_len=32,
        motion_encoder_channel_sizes={"4": 16, "8": 16, "16": 16}, motion_encoder_size=FACE_SIZE,
        motion_style_dim=8, motion_dim=4, motion_encoder_dim=16, face_encoder_hidden_dim=16,
        face_encoder_num_heads=2, inject_face_latents_blocks=2,
    )  # fmt: skip
    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=4,
        intermediate_size=16, patch_size=1))  # fmt: skip
    return dict(tokenizer=_tokenizer(), text_encoder=text_encoder, vae=vae,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                image_processor=CLIPImageProcessor(crop_size=4, size=4), image_encoder=image_encoder,
                transformer=transformer)  # fmt: skip


def save_tiny_wan_animate(folder: str | Path) -> Path:
    """Write the tiny pipeline as a diffusers folder (model_index.json + one subfolder per component)."""
    from diffusers import WanAnimatePipeline

    folder = Path(folder)
    WanAnimatePipeline(**tiny_wan_animate_components()).save_pretrained(folder)
    return folder
