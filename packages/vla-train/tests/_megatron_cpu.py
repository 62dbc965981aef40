"""Helper of the megatron-engine CPU tests (not a test): lets `MegatronTrainer` train on CPU under
gloo, so CI runs the engine's own loop, optimizer, checkpoints and resume without a GPU.

megatron-core 0.16.1 makes some tensors with a literal `device="cuda"` (optimizer scalars, the
grad-norm buffers, schedules' token counts, checkpoint exchange buffers). `enable_cpu_training`
applies vla-model's `enable_cpu_forward` shims, then hands those modules a view of `torch` whose
factories put such tensors on the CPU, and replaces the one function that asserts CUDA grads
(`clip_grad_by_total_norm_fp32`) with the same scaling; `Tensor.type()` names CPU tensors as
CUDA ones (what megatron's optimizers check) and `Tensor.cuda()` leaves a tensor where it is.
Process-wide: call it first, in a process of its own."""

from __future__ import annotations

import importlib
import types

import torch

# the megatron-core modules that create tensors with device="cuda"
MODULES = (
    "megatron.core.utils",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.transformer.moe.moe_utils",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.dist_checkpointing.exchange_utils",
)
FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "arange", "empty_like", "zeros_like")


def _on_cpu(device):
    if device is None:
        return None
    return "cpu" if torch.device(device).type == "cuda" else device


class _CpuTorch(types.ModuleType):
    """`torch`, except that its tensor factories map a CUDA device to the CPU."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str):
        attr = getattr(torch, name)
        if name not in FACTORIES:
            return attr

        def factory(*args, **kwargs):
            if "device" in kwargs:
                kwargs["device"] = _on_cpu(kwargs["device"])
            return attr(*args, **kwargs)

        return factory


def _clip_grad_by_total_norm(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """megatron's `clip_grad_by_total_norm_fp32` without its "grads are CUDA tensors" assert."""
    coeff = max_norm / (total_norm + 1.0e-6)
    if coeff < 1.0:
        for p in parameters:
            g = p.decoupled_grad if use_decoupled_grad else p.grad
            if g is not None:
                g.detach().mul_(coeff)


_TENSOR_TYPE = torch.Tensor.type


def _cuda_type_name(self, dtype=None, non_blocking=False, **kwargs):
    """`Tensor.type()` naming a CPU tensor as its CUDA type (megatron's optimizers accept only
    `torch.cuda.*Tensor` params); with a `dtype` argument it converts as usual."""
    if dtype is not None:
        return _TENSOR_TYPE(self, dtype, non_blocking, **kwargs)
    name = _TENSOR_TYPE(self)
    return name if self.is_cuda else name.replace("torch.", "torch.cuda.", 1)


def enable_cpu_training() -> None:
    """Patch this process so that the megatron engine's training loop runs on CPU (tests only)."""
    from vla_model.megatron import enable_cpu_forward

    enable_cpu_forward()
    proxy = _CpuTorch()
    for name in MODULES:
        module = importlib.import_module(name)
        if getattr(module, "torch", None) is torch:
            module.torch = proxy
    torch.Tensor.type = _cuda_type_name  # type: ignore[method-assign]
    # `.cuda()` before a collective (the fully_reshardable optimizer gather): stay on the CPU
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    clip_grads = importlib.import_module("megatron.core.optimizer.clip_grads")
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm
