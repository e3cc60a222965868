"""The diffusion backend's plumbing with tiny randomly initialized diffusers components (no weights, no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posesyn_core.animate.diffusion import PoseGuidedImg2ImgPipeline
from posesyn_core.animate.pose_guidance import draw_pose_guidance


def _tiny_tokenizer():
    """A character-level CLIP tokenizer (no merges: every character is a token), built in memory."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(33, 127)]
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)])}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def get_dummy_components() -> dict:
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    blocks = dict(block_out_channels=(4, 8), layers_per_block=1, cross_attention_dim=8, norm_num_groups=1,
                  attention_head_dim=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"))  # fmt: skip
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4,
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **blocks)  # fmt: skip
    torch.manual_seed(0)
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(4, 8), **blocks)
    # A fresh ControlNet's output convolutions are zero (it starts as a no-op); make them random so the test can
    # see the pose guidance reach the UNet.
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                     controlnet.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0, 0.5)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2)  # fmt: skip
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2,
                                                num_hidden_layers=1, vocab_size=200, max_position_embeddings=16,
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1))  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)  # fmt: skip
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=_tiny_tokenizer(), unet=unet,
                controlnet=controlnet, scheduler=scheduler)  # fmt: skip


def _standing_joints() -> np.ndarray:
    """A plausible standing body 3 m in front of the camera (camera frame, y down), facing it."""
    y_up = np.array([[0, 0.95, 0], [0.09, 0.9, 0], [-0.09, 0.9, 0], [0, 1.05, 0], [0.1, 0.5, 0], [-0.1, 0.5, 0],
                     [0, 1.2, 0], [0.1, 0.08, 0], [-0.1, 0.08, 0], [0, 1.3, 0], [0.1, 0.02, 0.1], [-0.1, 0.02, 0.1],
                     [0, 1.5, 0], [0.07, 1.42, 0], [-0.07, 1.42, 0], [0, 1.62, 0.02], [0.18, 1.42, 0],
                     [-0.18, 1.42, 0], [0.2, 1.15, 0], [-0.2, 1.15, 0], [0.21, 0.9, 0.05],
                     [-0.21, 0.9, 0.05]])  # fmt: skip
    cam = y_up * np.array([1.0, -1.0, -1.0])  # world (y up, facing +z) -> camera (y down, z away)
    return cam + np.array([0.0, 0.85, 3.0])


def get_dummy_inputs(size: int = 32, batch: int = 2) -> dict:
    rng = np.random.default_rng(0)
    camera = np.array([size * 1.5, size * 1.5, size / 2, size / 2])
    pose = draw_pose_guidance(_standing_joints(), camera, size, size)
    return dict(prompt=["a person kneeling"] * batch, negative_prompt=["blurry"] * batch,
                reference=rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
                pose=np.stack([pose] * batch), strength=1.0, num_inference_steps=2, guidance_scale=3.0,
                generator=torch.Generator("cpu").manual_seed(0))  # fmt: skip


def test_pose_guidance_draws_a_skeleton():
    img = draw_pose_guidance(_standing_joints(), np.array([96.0, 96.0, 64.0, 64.0]), 128, 128)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    drawn = img.any(-1)
    assert 0.01 < drawn.mean() < 0.3
    ys, xs = np.nonzero(drawn)
    assert 64 - 30 < xs.mean() < 64 + 30  # the body is drawn around the image centre


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])])  # fmt: skip
def test_pipeline_shape_and_determinism(tmp_path, device):
    pipe = PoseGuidedImg2ImgPipeline(**get_dummy_components()).to(device)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(**get_dummy_inputs())
    again = pipe(**get_dummy_inputs())
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, again)
    expected = np.array([[75, 123, 140], [58, 99, 136], [91, 64, 94]])
    np.testing.assert_allclose(out[0, -3:, -3:, -1], expected, atol=3 if device == "cpu" else 12)
    # Different pose guidance changes the picture (the ControlNet residuals reach the UNet).
    inputs = get_dummy_inputs()
    inputs["pose"] = np.zeros_like(inputs["pose"])
    assert not np.array_equal(pipe(**inputs), out)


def test_pipeline_check_inputs(tmp_path):
    pipe = PoseGuidedImg2ImgPipeline(**get_dummy_components())
    inputs = get_dummy_inputs()
    inputs["strength"] = 0.1  # int(2 * 0.1) = 0 denoising steps
    with pytest.raises(ValueError, match="no denoising step"):
        pipe(**inputs)
    inputs = get_dummy_inputs(size=36)
    with pytest.raises(ValueError, match="divisible"):
        pipe(**inputs)
