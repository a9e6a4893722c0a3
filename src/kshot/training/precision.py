"""The precision a run computes in: ``params.mixed_precision`` resolved for this machine and run.

Mixed precision in kshot is autocast with float32 master weights: the forward passes' matrix products
run in bf16 (or fp16), while the weights, the inner loops' fast weights and their updates, optimizer
state, learned learning rates, the learned optimizer and saved models stay float32.

``auto`` (the default) chooses bf16 where the hardware multiplies bf16 matrices natively, float32
elsewhere:

- a CPU with AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (Arm); without them torch emulates
  bf16, which is correct but slower than float32;
- a CUDA GPU with native bf16 (compute capability 8 and up; torch's emulation on older GPUs does not count);
- float32 on any other device (MPS, XPU, ...): bf16 there is for the user to ask for.

For meta-training, ``auto`` also keeps float32 when the meta-gradient differentiates the whole model
through a first Adam inner step (:func:`bf16_training_risk`): Adam's first step is g/(|g|+eps), whose
derivative is about eps/g², so the second-order terms amplify bf16's rounding of the tiny gradient
coordinates without bound (tests/training/test_bf16.py measures it).

The learned optimizer's meta-training is kept in float32 too (:data:`BF16_UNSAFE_TRAINING`).

Where ``auto`` draws these lines is set by three module constants, each with the measurement behind
it: :data:`AUTO_BF16_FOR_TRAINING` (False: ``auto`` stays float32 for meta-training and chooses bf16
for evaluate/adapt/predict only), :data:`BF16_SECOND_ORDER_ADAM` and :data:`BF16_UNSAFE_TRAINING`.

Torch-free at import: torch is imported by the probes only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

REQUESTS = ("auto", "no", "bf16", "fp16")

AUTO_BF16_FOR_TRAINING = True
"""Whether ``auto`` may choose bf16 for meta-training (evaluation inside a training run included).
False: ``auto`` chooses bf16 for ``kshot evaluate`` / ``adapt`` / ``predict`` only."""

BF16_SECOND_ORDER_ADAM = ("maml", "metasgd")
"""Algorithms whose second-order meta-gradient through a first Adam inner step over the whole model is
spoilt by bf16 (cosine similarity to float32 down to about 0.05 on the tiny BERT). anil's (the head
alone) degrades less (cosine 0.97 to 0.999, relative error 4 to 25 %; 0.76 / 66 % with prototypes):
not listed."""

BF16_UNSAFE_TRAINING = ("learned_optimizer",)
"""Algorithms that ``auto`` always meta-trains in float32: the learned optimizer's own meta-gradient is
up to 17 % off in bf16 even with SGD inner steps, and bf16 meta-training learns a much worse rule
(tests/algorithms/test_learned_optimizer_learning.py, seed 0: mean query cross-entropy 0.681 after bf16
meta-training, 0.505-0.514 after float32's, 0.693 for the best SGD rate; it needs 0.663)."""

# x86: AVX512-BF16 (dot products), AMX-BF16 (tiles); Arm: the BF16 extension (BFMMLA). torch's
# get_cpu_capability() says only "AVX512" / "AVX2": it does not tell bf16 apart.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_bf16_flags() -> list[str]:
    """This CPU's native bf16 matrix instruction sets (empty if it has none), from torch's cpuinfo
    probe and ``/proc/cpuinfo``."""
    found: set[str] = set()
    with contextlib.suppress(Exception):  # torch.cpu.get_capabilities: recent torch only
        import torch

        caps = torch.cpu.get_capabilities()
        found.update(f for f in NATIVE_BF16_CPU_FLAGS if caps.get(f))
    with contextlib.suppress(OSError):
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):  # x86, Arm
                found.update(f for f in NATIVE_BF16_CPU_FLAGS if f in value.split())
                break
    return sorted(found)


def cuda_bf16_native() -> bool:
    """Whether the current CUDA GPU has native bf16 (torch's emulation on older GPUs does not count)."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation (and counted native support only)
        return bool(torch.cuda.is_bf16_supported())


def launcher_precision() -> str | None:
    """``accelerate launch --mixed_precision``'s value (``ACCELERATE_MIXED_PRECISION``), or None."""
    value = os.environ.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    return value or None


def bf16_training_risk(params: Any) -> str | None:
    """Why bf16 would spoil meta-training with ``params``, or None.

    :data:`BF16_UNSAFE_TRAINING`, and :data:`BF16_SECOND_ORDER_ADAM` with second-order terms through the
    first step of an Adam inner loop (see the module docstring); maml/metasgd with ``second_order_steps``
    below ``inner_steps`` (the first step first-order), ``first_order`` or SGD inner steps are fine."""
    p = params
    if p.inner_steps == 0:
        return None
    if p.algorithm in BF16_UNSAFE_TRAINING:
        return f"{p.algorithm} learns a worse rule in bf16 (precision.BF16_UNSAFE_TRAINING)"
    if p.algorithm not in BF16_SECOND_ORDER_ADAM or p.inner_optimizer != "adam" or p.first_order:
        return None
    if p.second_order_steps is not None and p.second_order_steps < p.inner_steps:
        return None
    return (
        f"{p.algorithm}'s second-order meta-gradient through the first Adam inner step amplifies bf16 rounding "
        "(first_order, second_order_steps below inner_steps or inner_optimizer sgd train well in bf16)"
    )


def resolve_precision(
    requested: str,
    device: str,
    *,
    training: bool = True,
    launcher: str | None = None,
    risk: str | None = None,
) -> tuple[str, str]:
    """The precision to hand accelerate ('no', 'bf16' or 'fp16', or a launcher's other value) and why.

    ``requested``: ``params.mixed_precision``; ``device``: the type of the device the run computes on
    ('cpu', 'cuda', ...); ``training``: meta-training (False: evaluate, adapt, predict);
    ``launcher``: :func:`launcher_precision`; ``risk``: :func:`bf16_training_risk` of the run's params.

    'bf16'/'fp16' always win (fp16 is not autocast by accelerate on the CPU: float32 there). With 'auto'
    or 'no', a launcher's explicit bf16/fp16 wins (its 'no' is its default, not a choice); then 'no' is
    float32 and 'auto' decides by the hardware (see the module docstring).
    """
    if requested not in REQUESTS:
        from ..errors import ConfigError

        raise ConfigError(f"params.mixed_precision is {requested!r}; use one of {', '.join(REQUESTS)}.")
    if requested in ("auto", "no") and launcher and launcher != "no":
        precision = launcher
        reason = f"the launcher's --mixed_precision {launcher} (params.mixed_precision is {requested!r})"
    elif requested != "auto":
        precision, reason = requested, f"params.mixed_precision is {requested!r}"
    else:
        precision, reason = _auto(device, training, risk)
    if precision == "fp16" and device == "cpu":
        return "no", reason + ", but accelerate does not autocast fp16 on the CPU: float32"
    return precision, reason


def _auto(device: str, training: bool, risk: str | None) -> tuple[str, str]:
    if device == "cpu":
        flags = cpu_bf16_flags()
        native = bool(flags)
        hardware = f"this CPU has native bf16 ({', '.join(flags)})" if native else "this CPU has no native bf16"
    elif device == "cuda":
        native = cuda_bf16_native()
        hardware = "this GPU has native bf16" if native else "this GPU has no native bf16"
    else:
        native, hardware = False, f"auto chooses bf16 on CPUs and CUDA GPUs only, not on {device}"
    if not native:
        return "no", f"auto: {hardware}: float32"
    if training and not AUTO_BF16_FOR_TRAINING:
        return "no", f"auto: {hardware}, but auto keeps meta-training in float32 (precision.AUTO_BF16_FOR_TRAINING)"
    if training and risk:
        return "no", f"auto: {hardware}, but {risk}: float32"
    return "bf16", f"auto: {hardware}"


def precision_caveat(
    requested: str, precision: str, device: str, *, training: bool = True, risk: str | None = None
) -> str | None:
    """What to warn of when ``requested`` resolved to ``precision``, or None."""
    if requested in ("bf16", "fp16") and precision != requested:
        return f"float32, not the {requested} params.mixed_precision asks for"
    if precision != "bf16":
        return None
    if training and risk:
        return risk
    if device == "cpu" and not cpu_bf16_flags():
        return "this CPU has no native bf16: torch emulates it, correct but likely slower than float32"
    return None


def autocast_context(precision: str, device: str = "cpu"):
    """torch.autocast for ``precision`` on ``device`` (a no-op context for 'no'), for code that runs
    without an Accelerator (``predict_texts``)."""
    import torch

    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    if precision == "fp16" and device != "cpu":
        return torch.autocast(device, dtype=torch.float16)
    return contextlib.nullcontext()
