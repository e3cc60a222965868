"""VQ-VAE and T2M-GPT: tiny real models (seed 0), release name/shape compatibility, cached == uncached sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from posesyn_core.motion.t2m_gpt import T2MGPT, T2MGPTConfig, sinusoid_table
from posesyn_core.motion.vqvae import MotionVQVAE, VQVAEConfig

SHAPES = Path(__file__).with_name("t2m_release_shapes.txt")


def release_shapes(prefix: str) -> dict[str, tuple[int, ...]]:
    """The release's names and shapes (committed list generated from the release's state_dicts)."""
    out = {}
    for line in SHAPES.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")
        if name.startswith(prefix):
            out[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def get_dummy_vqvae() -> MotionVQVAE:
    torch.manual_seed(0)
    return MotionVQVAE(VQVAEConfig(nb_code=16, code_dim=8, width=8, depth=2))


def get_dummy_gpt(mrinit_len: int = 4) -> T2MGPT:
    torch.manual_seed(0)
    return T2MGPT(T2MGPTConfig(num_vq=16, embed_dim=16, clip_dim=8, block_size=1 + mrinit_len + 12, num_layers=1,
                               n_head=2, mrinit_len=mrinit_len))  # fmt: skip


# --- release compatibility ------------------------------------------------------------------------------------------
def test_public_vqvae_names_and_shapes_match_release():
    with torch.device("meta"):
        model = MotionVQVAE(VQVAEConfig())
    ours = {"vqvae." + k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == release_shapes("vqvae.")


def test_public_gpt_names_and_shapes_match_release():
    with torch.device("meta"):
        model = T2MGPT(T2MGPTConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == release_shapes("trans_")
    assert sum(p.numel() for p in model.parameters()) > 200e6  # the release's ~228M


def test_release_state_dicts_load_strictly():
    vq_sd = {k: torch.empty(s, device="meta") for k, s in release_shapes("vqvae.").items()}
    vq = MotionVQVAE.from_release(vq_sd)
    assert vq.quantizer.codebook.shape == (512, 512) and vq.quantizer.init
    gpt_sd = {k: torch.empty(s, device="meta") for k, s in release_shapes("trans_").items()}
    gpt = T2MGPT.from_release(gpt_sd)
    assert gpt.config.block_size == 51 and gpt.config.mrinit_len == 0
    assert not gpt.trans_base.pos_embed.embed.requires_grad
    bad = dict(gpt_sd)
    bad["trans_head.head.weight"] = torch.empty(514, 1024, device="meta")
    with pytest.raises(ValueError, match="trans_head.head.weight: shape"):
        T2MGPT.from_release(bad)
    del bad["trans_head.head.weight"]
    with pytest.raises(ValueError, match="missing"):
        T2MGPT.from_release(bad)
    with pytest.raises(ValueError, match="prefix"):
        MotionVQVAE.from_release({k.removeprefix("vqvae."): v for k, v in vq_sd.items()})


def test_extend_positions_keeps_the_public_computation():
    gpt = get_dummy_gpt(mrinit_len=0).eval()
    idx, feat = torch.randint(0, 16, (2, 7)), torch.randn(2, 8)
    before = gpt(idx, feat)
    table = gpt.trans_base.pos_embed.embed.clone()
    gpt.extend_positions(4)
    assert gpt.config.block_size == 17 and gpt.config.mrinit_len == 4 and gpt.config.max_motion_tokens == 12
    assert torch.equal(gpt.trans_base.pos_embed.embed[:13], table)
    assert torch.allclose(gpt.trans_base.pos_embed.embed, sinusoid_table(17, 16))
    assert gpt.trans_base.blocks[0].attn.mask.shape == (1, 1, 17, 17)
    assert torch.allclose(gpt(idx, feat), before, atol=1e-6)


# --- VQ-VAE --------------------------------------------------------------------------------------------------------
def test_vqvae_shapes_codebook_init_and_reset():
    model = get_dummy_vqvae()
    x = torch.randn(3, 32, 263)
    loss, parts = model.loss(x)
    assert model.quantizer.init and loss.isfinite() and parts["perplexity"] > 1
    loss.backward()
    assert model.encoder.model[0].weight.grad is not None  # straight-through reaches the encoder
    model.eval()
    codes = model.encode(x)
    assert codes.shape == (3, 8) and codes.dtype == torch.long
    assert model.decode(codes).shape == (3, 32, 263)
    # dead codes (EMA count < 1) are replaced by encoder outputs
    model.train()
    model.quantizer.code_count[:] = 0.0
    model(x)
    assert (model.quantizer.code_count < 1).any() and model.quantizer.codebook.isfinite().all()


def test_vqvae_checkpoint_round_trip():
    model = get_dummy_vqvae()
    model(torch.randn(2, 16, 263))
    model.eval()
    again = MotionVQVAE.from_checkpoint(model.checkpoint()).eval()
    x = torch.randn(2, 16, 263)
    assert torch.equal(again.encode(x), model.encode(x))


# --- transformer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {}, {"top_k": 5}, {"top_p": 0.8, "temperature": 0.7}, {"stop_on_end": False}, {"temperature": 0.0},
])  # fmt: skip
@pytest.mark.parametrize("with_prefix", [True, False])
def test_cached_sampling_equals_uncached(kwargs, with_prefix):
    gpt = get_dummy_gpt()
    with torch.no_grad():  # make the end token likely so rows stop at different steps
        gpt.trans_head.head.weight[16] = gpt.trans_head.head.weight[:16].mean(0) * 3
    feat = torch.randn(6, 8)
    prefix = torch.randint(0, 16, (6, 4)) if with_prefix else None
    seeds = [11, 12, 13, 14, 15, 16]
    cached = gpt.sample(feat, prefix, seeds=seeds, **kwargs)
    assert cached == gpt.sample_uncached(feat, prefix, seeds=seeds, **kwargs)
    if kwargs.get("stop_on_end") is False:
        assert all(len(t) == 12 for t in cached)
    assert all(0 <= tok < 16 for t in cached for tok in t)
    # a row's tokens do not depend on the batch around it
    assert gpt.sample(feat[2:3], None if prefix is None else prefix[2:3], seeds=seeds[2:3], **kwargs)[0] == cached[2]


def test_sampling_inputs_are_checked():
    gpt = get_dummy_gpt()
    with pytest.raises(ValueError, match="prefix must be"):
        gpt.sample(torch.randn(2, 8), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_tokens"):
        gpt.sample(torch.randn(2, 8), max_tokens=13)
    with pytest.raises(ValueError, match="clip_feature"):
        gpt.sample(torch.randn(2, 9))


def test_gpt_learns_a_sequence_given_its_prefix():
    gpt = get_dummy_gpt()
    feat = torch.randn(2, 8)
    prefix = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    targets = torch.tensor([[3, 4, 5, 6, 16, 17], [9, 9, 8, 16, 17, 17]])  # codes, end (16), pad (17)
    opt = gpt.configure_optimizers(1e-2)
    first = None
    for _ in range(60):
        loss = gpt.loss(feat, prefix, targets, pkeep=1.0)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert gpt.sample(feat, prefix, temperature=0.0) == [[3, 4, 5, 6], [9, 9, 8]]
