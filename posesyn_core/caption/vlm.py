"""Captions from a vision-language model through transformers (image + prompt -> text).

Any model `AutoModelForImageTextToText` knows works: encoder-decoder captioners (BLIP) get the prompt as a text
prefix; chat VLMs (LLaVA, Qwen-VL, ...) whose processor has a chat template get one user turn holding the image
and the prompt. The prompt is removed from the decoded text. Loading is offline (`local_files_only`).
"""

from __future__ import annotations

import numpy as np
import torch

from posesyn_core.caption.config import VlmOptions


class VlmCaptioner:
    def __init__(self, options: VlmOptions, device: str = "cpu"):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if not options.model_path:
            raise ValueError("VlmCaptioner: options.model_path is empty")
        self.options, self.device = options, device
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
            options.dtype, torch.bfloat16 if device == "cuda" else torch.float32
        )
        self.processor = AutoProcessor.from_pretrained(options.model_path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(options.model_path, local_files_only=True,
                                                                 dtype=dtype).to(device).eval()  # fmt: skip
        self.chat = getattr(self.processor, "chat_template", None) is not None

    def _prompt(self) -> str:
        if not self.chat:
            return self.options.prompt
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.options.prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    @torch.inference_mode()
    def __call__(self, images: list[np.ndarray], num_captions: int = 1, seed: int = 0) -> list[list[str]]:
        """RGB uint8 images -> num_captions strings each (sampled when > 1, greedy otherwise), seeded."""
        out: list[list[str]] = []
        prompt = self._prompt()
        bs = self.options.batch_size
        for start in range(0, len(images), bs):
            batch = images[start : start + bs]
            inputs = self.processor(images=batch, text=[prompt] * len(batch), return_tensors="pt").to(self.device)
            torch.manual_seed(seed + start)
            seqs = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens,
                                       do_sample=num_captions > 1, temperature=self.options.temperature,
                                       num_return_sequences=num_captions)  # fmt: skip
            ids = inputs["input_ids"].repeat_interleave(num_captions, 0)
            n = ids.shape[1]
            if seqs.shape[1] >= n and torch.equal(seqs[:, :n], ids):
                seqs = seqs[:, n:]  # decoder-only models echo the prompt tokens
            texts = [self._clean(t) for t in self.processor.batch_decode(seqs, skip_special_tokens=True)]
            out.extend(texts[i * num_captions : (i + 1) * num_captions] for i in range(len(batch)))
        return out

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())
        prompt = " ".join(self.options.prompt.split())
        if text.lower().startswith(prompt.lower()):
            text = text[len(prompt) :].strip(" :,.")  # encoder-decoder captioners keep the prefix
        return text
