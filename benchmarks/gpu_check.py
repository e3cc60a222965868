"""Does every GPU path of PoseSyn run on the GPU? One tiny run of each, one table row each.

CI has no GPU, so a `.to(device)` forgotten on one tensor or model only shows on a GPU node, mid-run. This script
runs each path the product puts on a GPU through the project's own code, at toy size with random weights (nothing
downloaded), and prints per path: the device and dtype the model actually ran in, seconds, and peak GPU memory
(`torch.cuda.max_memory_allocated`, reset before each path). Paths: the TPE training loop (tpe-train/finetune),
MSM motion sampling + decoding, batched retarget IK, Wan2.2-Animate with tiny components, the VLM captioner.

    python benchmarks/gpu_check.py                # on a CUDA machine; well under 4 minutes on one GPU
    python benchmarks/gpu_check.py --device cpu   # dry run of the script itself (peak memory prints '-')

Exit status: 0 when every path ran on the requested device; 1 when a path raised (its error is printed in its
row, the other paths still run) or ran elsewhere (on CPU); 2 when CUDA is asked for and there is none. CI never
runs it on a GPU (no GPU there); it is for checking a GPU node or image by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Ran = tuple[torch.device, torch.dtype]  # where the path's model actually sat, and in which dtype


def _where(module: torch.nn.Module) -> Ran:
    p = next(module.parameters())
    return p.device, p.dtype


def tpe_finetune(device: str) -> Ran:
    """Three steps of `tpe.train.train`, the loop both tpe-train and finetune call, on random crops. The loop has
    no autocast (it trains in float32 on every device), so float32 is what is reported."""
    from posesyn_core.storage import open_store
    from posesyn_core.tpe.config import TrainingSection
    from posesyn_core.tpe.data import CropSet
    from posesyn_core.tpe.model import TPE, TPEConfig
    from posesyn_core.tpe.train import Source, train

    torch.manual_seed(0)
    model = TPE(TPEConfig(img_size=32, widths=(8, 16), head_dim=32))
    rng = np.random.default_rng(0)
    n, c = 16, 40  # training crops keep 25% more context than the 32-pixel input, as tpe-train's do
    joints2d = np.concatenate([rng.uniform(0, c, (n, 22, 2)), np.ones((n, 22, 1))], -1).astype(np.float32)
    crops = CropSet(rng.integers(0, 256, (n, c, c, 3), dtype=np.uint8), joints2d,
                    rng.normal(0, 0.3, (n, 22, 3)).astype(np.float32), np.ones(n, bool))  # fmt: skip
    section = TrainingSection(steps=3, batch_size=8, warmup=1, log_every=1, checkpoint_every=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        rows = train(model, [Source(crops, 1.0)], section, 0, device, open_store(Path(tmp).as_uri()), "tpe")
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) for r in rows), rows
    return _where(model)


def msm_sampling(device: str) -> Ran:
    """The msm stage's `MotionSynthesisPipeline` over a tiny VQ-VAE + T2M-GPT and the offline MiniLM text encoder:
    MR_init encoding of the poses, batched KV-cached sampling with the MR_init prefix, decoding to joints."""
    from posesyn_core.motion.representation import FEATURE_DIM, Normalizer
    from posesyn_core.motion.synthesizer import MotionSynthesizer
    from posesyn_core.motion.t2m_gpt import T2MGPT, T2MGPTConfig
    from posesyn_core.motion.text import TextEncoderSpec, load_text_encoder
    from posesyn_core.motion.vqvae import MotionVQVAE, VQVAEConfig
    from posesyn_core.msm.pipeline import MotionSynthesisPipeline

    torch.manual_seed(0)
    vqvae = MotionVQVAE(VQVAEConfig(nb_code=32, code_dim=16, width=16, depth=1))
    vqvae.quantizer.codebook.normal_()  # a random codebook, so different codes decode differently
    vqvae.quantizer.init = True
    mrinit_frames, num_frames = 16, 32  # -> 4 prefix codes, 8 motion tokens
    gpt = T2MGPT(T2MGPTConfig(num_vq=32, embed_dim=32, clip_dim=384, block_size=1 + 4 + 8, num_layers=1, n_head=2,
                              mrinit_len=mrinit_frames // 4))  # fmt: skip
    normalizer = Normalizer(np.zeros(FEATURE_DIM, np.float32), np.full(FEATURE_DIM, 0.05, np.float32))
    synth = MotionSynthesizer(vqvae, gpt, normalizer, load_text_encoder(TextEncoderSpec(), device), mrinit_frames,
                              device)  # fmt: skip
    pipe = MotionSynthesisPipeline(synth, "text+mrinit", num_motions=2, num_frames=num_frames)
    poses = np.random.default_rng(0).normal(0, 0.3, (3, 22, 3)) + [0, 0, 3]  # camera frame, 3 m away
    out = pipe(poses, [["a person kneeling", "someone bends down"]] * 3, seed=0)
    assert out.motions.shape == (3, 2, num_frames, 22, 3) and np.isfinite(out.motions).all(), out.motions.shape
    return _where(synth.gpt)


def retarget_ik(device: str) -> Ran:
    """`retarget.ik.fit_clips` (shape fit, analytic start, Adam refinement) with ANNY on the device, fitting
    2 clips x 8 frames of the body's own joints in random poses. Reports where the body's forward pass runs."""
    from posesyn_core.body import load_body_model
    from posesyn_core.retarget.ik import IKConfig, fit_clips

    body = load_body_model("anny", device=device)
    clips, frames = 2, 8
    pose = torch.as_tensor(np.random.default_rng(0).normal(0, 0.2, (clips * frames, 21, 3)), dtype=torch.float32)
    with torch.no_grad():
        out = body(pose, body.default_shape(clips * frames), vertices=False)
    fit = fit_clips(body, out.joints.reshape(clips, frames, 22, 3).cpu().numpy(),
                    IKConfig(iterations=5, shape_iterations=2, window=frames))  # fmt: skip
    assert fit.joints.shape == (clips, frames, 22, 3) and np.isfinite(fit.error_mm).all(), fit.error_mm
    return out.joints.device, out.joints.dtype


def animate_wan(device: str) -> Ran:
    """The animate stage's Wan2.2-Animate loading (`wan_animate.load_pipeline`: the folder check, local_files_only,
    bfloat16 with a float32 VAE on CUDA) on the tiny random components of `animate.wan_tiny` saved as a diffusers
    folder, then one call: 9 frames in two 5-frame segments."""
    from PIL import Image

    from posesyn_core.animate.config import WanAnimateBackend
    from posesyn_core.animate.wan_animate import load_pipeline
    from posesyn_core.animate.wan_tiny import save_tiny_wan_animate

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_tiny_wan_animate(Path(tmp) / "wan-tiny")
        pipe = load_pipeline(WanAnimateBackend(model_path=str(folder), resolution=32, steps=2, segment_frames=5),
                             device)  # fmt: skip
    rng = np.random.default_rng(0)

    def frame(side: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")

    face = pipe.transformer.config.motion_encoder_size
    out = pipe(image=frame(32), pose_video=[frame(32) for _ in range(9)], face_video=[frame(face) for _ in range(9)],
               prompt="a person kneeling", height=32, width=32, segment_frame_length=5, num_inference_steps=2,
               guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(0))  # fmt: skip
    assert len(out.frames[0]) == 9, f"{len(out.frames[0])} frames, expected 9"
    return _where(pipe.transformer)


def caption_vlm(device: str) -> Ran:
    """`caption.vlm.VlmCaptioner` loading (offline) and sampling captions from a tiny random BLIP saved to a temp
    folder: the same `AutoModelForImageTextToText` path a real VLM takes, dtype `auto` (bfloat16 on CUDA)."""
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    from posesyn_core.caption.config import VlmOptions
    from posesyn_core.caption.vlm import VlmCaptioner

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "is", "kneeling", "standing", "arms",
             "up", "the", "describe", "pose", "of", "on", "knees"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(words) + "\n")
        tok = BertTokenizerFast(str(Path(tmp) / "vocab.txt"), bos_token="[CLS]", eos_token="[SEP]")
        BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
                      ).save_pretrained(tmp)  # fmt: skip
        torch.manual_seed(0)
        text = {"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "max_position_embeddings": 32, "bos_token_id": 2, "sep_token_id": 3,
                "pad_token_id": 0, "eos_token_id": 3}  # fmt: skip
        vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 32, "patch_size": 8}  # fmt: skip
        BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
                                     ).save_pretrained(tmp)  # fmt: skip
        cap = VlmCaptioner(VlmOptions(model_path=tmp, prompt="describe the pose", max_new_tokens=6, batch_size=2),
                           device)  # fmt: skip
    images = [np.random.default_rng(i).integers(0, 256, (48, 32, 3), dtype=np.uint8) for i in range(3)]
    out = cap(images, num_captions=2, seed=0)
    assert len(out) == 3 and all(len(c) == 2 and all(isinstance(t, str) for t in c) for c in out), out
    return _where(cap.model)


PATHS: dict[str, Callable[[str], Ran]] = {
    "tpe finetune steps": tpe_finetune,
    "msm sampling": msm_sampling,
    "retarget ik": retarget_ik,
    "animate wan (tiny)": animate_wan,
    "caption vlm (tiny)": caption_vlm,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run of the script")
    args = ap.parse_args()
    want = torch.device(args.device)
    cuda = want.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False); run it "
              "on a GPU machine, or pass --device cpu for a dry run of the script", file=sys.stderr)  # fmt: skip
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would break up the table
    name = torch.cuda.get_device_name(want) if cuda else "cpu"
    print(f"gpu_check on {args.device} ({name}), torch {torch.__version__}")
    print(f"{'path':<20} {'device':<8} {'dtype':<10} {'seconds':>8} {'peak MiB':>9}  result", flush=True)
    wrong, raised = [], []
    start = time.perf_counter()
    for path, check in PATHS.items():
        if cuda:
            torch.cuda.synchronize(want)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(want)
        t = time.perf_counter()
        try:
            device, dtype = check(args.device)
            if cuda:
                torch.cuda.synchronize(want)
        except Exception as e:  # noqa: BLE001 - a failing path is a row of the report, the others still run
            traceback.print_exc(file=sys.stderr)  # the whole trace: GPU time is scarce, rerunning to see it costs
            print(f"{path:<20} {'-':<8} {'-':<10} {time.perf_counter() - t:8.2f} {'-':>9}  ERROR "
                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)  # fmt: skip
            raised.append(path)
            continue
        seconds = time.perf_counter() - t
        peak = f"{torch.cuda.max_memory_allocated(want) / 2**20:.1f}" if cuda else "-"
        ok = device.type == want.type
        if not ok:
            wrong.append(f"{path} ({device})")
        result = "ok" if ok else f"FAIL: ran on {device}, not {want.type}"
        dt = str(dtype).removeprefix("torch.")
        print(f"{path:<20} {device!s:<8} {dt:<10} {seconds:8.2f} {peak:>9}  {result}", flush=True)
    total = time.perf_counter() - start
    if not wrong and not raised:
        print(f"all {len(PATHS)} GPU paths ran on {want.type} ({total:.1f} s)"
              + ("" if cuda else "; dry run: --device cpu checks the script, not the GPU"))  # fmt: skip
        return 0
    if wrong:
        print(f"NOT on {want.type}: {', '.join(wrong)}")
    if raised:
        print(f"raised: {', '.join(raised)} (tracebacks on stderr)")
    print(f"{len(PATHS) - len(wrong) - len(raised)} of {len(PATHS)} GPU paths ran on {want.type} ({total:.1f} s)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
