"""The GPU animation backend: Stable Diffusion img2img from the reference image, steered by an OpenPose ControlNet.

Why this design: Champ (the paper's animator) needs SMPL renders, a reference UNet and a motion module (~20 GB
VRAM). The same two signals, the reference person's look and the target pose, reach a plain SD 1.x model through
(a) img2img: the denoising starts from the noised reference image, so background, clothing colours and lighting
carry over, and (b) an OpenPose ControlNet fed the skeleton image projected from the fitted body, so the person
takes the target pose where its labels say. Both are stock diffusers components loaded from local folders.

References: Rombach et al. 2022 (latent diffusion); Zhang et al. 2023 (ControlNet); Meng et al. 2022 (SDEdit,
img2img); diffusers `StableDiffusionControlNetImg2ImgPipeline`, whose steps this file follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class PoseGuidedImg2ImgPipeline(DiffusionPipeline):
    """reference images + pose guidance images + prompts -> generated images, all (B, H, W, 3) uint8."""

    model_cpu_offload_seq = "text_encoder->controlnet->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        scheduler: KarrasDiffusionSchedulers,
    ):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              controlnet=controlnet, scheduler=scheduler)  # fmt: skip
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def from_local(cls, model_path: str, controlnet_path: str, dtype: torch.dtype = torch.float32):
        """Load SD 1.x (diffusers folder layout) and an OpenPose ControlNet from local folders, never the network."""
        controlnet = ControlNetModel.from_pretrained(controlnet_path, torch_dtype=dtype, local_files_only=True)
        return cls.from_pretrained(model_path, controlnet=controlnet, torch_dtype=dtype, local_files_only=True,
                                   safety_checker=None, feature_extractor=None)  # fmt: skip

    def check_inputs(
        self, prompt: Sequence[str], reference: np.ndarray, pose: np.ndarray, strength: float, num_steps: int
    ) -> None:
        """Raise ValueError naming the argument and its value before any work."""
        if reference.ndim != 4 or reference.shape[-1] != 3 or reference.dtype != np.uint8:
            raise ValueError(f"reference must be uint8 (B, H, W, 3), got {reference.dtype} {reference.shape}")
        if pose.shape != reference.shape or pose.dtype != np.uint8:
            raise ValueError(f"pose must match reference {reference.shape} uint8, got {pose.dtype} {pose.shape}")
        h, w = reference.shape[1:3]
        if h % (8 * self.vae_scale_factor) or w % (8 * self.vae_scale_factor):
            raise ValueError(f"image size {h}x{w} must be divisible by {8 * self.vae_scale_factor}")
        if len(prompt) != len(reference):
            raise ValueError(f"prompt has {len(prompt)} entries for {len(reference)} images")
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if num_steps < 1 or int(num_steps * strength) < 1:
            raise ValueError(f"num_inference_steps={num_steps} with strength={strength} leaves no denoising step")

    def encode_prompt(self, prompt: Sequence[str], device: torch.device) -> torch.Tensor:
        ids = self.tokenizer(list(prompt), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # fmt: skip
        return self.text_encoder(ids.to(device))[0]  # (B, 77, D)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Sequence[str],
        reference: np.ndarray,
        pose: np.ndarray,
        negative_prompt: Sequence[str] | None = None,
        strength: float = 0.75,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.5,
        controlnet_conditioning_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        # 1. Check inputs
        prompt = list(prompt)
        self.check_inputs(prompt, reference, pose, strength, num_inference_steps)
        device, dtype = self._execution_device, self.unet.dtype
        batch = len(prompt)
        do_cfg = guidance_scale > 1.0

        # 2. Encode the prompt (negative first, for classifier-free guidance)
        embeds = self.encode_prompt(prompt, device)
        if do_cfg:
            negative = list(negative_prompt) if negative_prompt is not None else [""] * batch
            embeds = torch.cat([self.encode_prompt(negative, device), embeds])

        # 3. Images to tensors: reference in [-1, 1] for the VAE, pose in [0, 1] for the ControlNet
        ref = torch.from_numpy(reference).to(device, dtype).permute(0, 3, 1, 2) / 127.5 - 1  # (B, 3, H, W)
        cond = torch.from_numpy(pose).to(device, dtype).permute(0, 3, 1, 2) / 255.0
        if do_cfg:
            cond = torch.cat([cond, cond])

        # 4. Timesteps: img2img skips the first (1 - strength) of the schedule
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        start = num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)
        timesteps = self.scheduler.timesteps[start * self.scheduler.order :]

        # 5. Latents: encode the reference, then noise it to the first timestep
        latents = self.vae.encode(ref).latent_dist.sample(generator) * self.vae.config.scaling_factor
        noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=latents.dtype)
        latents = self.scheduler.add_noise(latents, noise, timesteps[:1].repeat(batch))

        # 6. Denoising loop: ControlNet residuals added to the UNet's skip connections
        for t in self.progress_bar(timesteps):
            model_in = torch.cat([latents, latents]) if do_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            down, mid = self.controlnet(
                model_in, t, encoder_hidden_states=embeds, controlnet_cond=cond,
                conditioning_scale=controlnet_conditioning_scale, return_dict=False,
            )  # fmt: skip
            eps = self.unet(model_in, t, encoder_hidden_states=embeds, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid, return_dict=False)[0]  # fmt: skip
            if do_cfg:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_text - eps_uncond)
            latents = self.scheduler.step(eps, t, latents, generator=generator, return_dict=False)[0]

        # 7. Decode to uint8 images
        images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        images = ((images.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
