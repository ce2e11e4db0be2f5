"""Where and how precisely the frozen LM runs: ``--device``, ``--precision`` and ``--eval-batch-size``.

Precisions:

- ``fp32``: everything in float32 (the default; what every committed CPU result used);
- ``tf32``: float32 tensors, matrix products on a GPU's TF32 units (no effect on a CPU);
- ``bf16``: the LM runs under bfloat16 autocast. Its weights stay float32 (the fingerprint is taken
  from them, so a prompt trained under one precision is valid under every other), and the trainable
  parts (prompts, G) and everything they compute are float32: only the LM's matrix products drop to
  bf16. Autocast works on the CPU too, which is how the bf16 path is tested without a GPU.

Torch-free at import, like :mod:`attemptctl.workflows.workspace`: commands that never run the model must not
pay for torch.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from attemptctl.errors import ConfigError

PRECISIONS = ("fp32", "tf32", "bf16")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class Runtime:
    """How the LM runs in this process (not a training setting: a prompt is the same whatever ran it)."""

    device: str = "auto"
    """auto (the GPU when there is one), cpu, cuda or cuda:N."""
    precision: str = "fp32"
    """fp32, tf32 or bf16 (autocast; prompts and G stay fp32)."""
    eval_batch_size: int | None = None
    """Rows per batch when training scores dev and a study scores test; None: each caller's default."""

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.fullmatch(self.device or ""):
            raise ConfigError(f"unknown device '{self.device}'; choose auto, cpu, cuda or cuda:N")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ConfigError(f"eval-batch-size must be at least 1, got {self.eval_batch_size}")

    def torch_device(self):
        """The device to load the LM on; a GPU asked for where there is none is one clear error."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"--device {self.device}: this machine has no CUDA device torch can use "
                                  f"(torch {torch.__version__}); use --device cpu or auto")
            index = int(self.device.split(":")[1]) if ":" in self.device else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise ConfigError(f"--device {self.device}: only {torch.cuda.device_count()} CUDA device(s) here "
                                  f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
            torch.cuda.set_device(index)  # Accelerate and bare .to("cuda") then agree on the device
            return torch.device("cuda", index)
        return torch.device("cpu")

    def apply(self) -> None:
        """Process-wide switches the precision needs (TF32 matrix units); call once the device is known."""
        import torch

        tf32 = self.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def autocast(device, precision: str):
    """The context the LM's forward passes run in: bf16 autocast for ``bf16``, else nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
