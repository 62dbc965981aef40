"""Per-token cross-entropy with a leaner backward than `F.cross_entropy(reduction="none")`."""

from __future__ import annotations

import torch


class _TokenCrossEntropy(torch.autograd.Function):
    """Forward keeps the log-softmax; backward exponentiates it into one fresh tensor and
    finishes the gradient `(softmax - onehot(label)) * grad` in place there. This skips the zero-filled one-hot of the stock
    NLL backward and the second pass of log-softmax's backward (one tensor of
    `[tokens, vocab]` written instead of three)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        ctx.save_for_backward(logp, labels)
        return -logp.gather(-1, labels[:, None]).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, labels = ctx.saved_tensors
        g = logp.exp()  # a fresh tensor: the saved log-softmax stays valid for a second backward
        g.scatter_add_(-1, labels[:, None], torch.full_like(grad[:, None], -1.0))
        return g.mul_(grad[:, None]), None


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every token: `logits` `[..., vocab]` (float32), `labels` `[...]` ids in
    `[0, vocab)` -> `[...]`. Equals `F.cross_entropy(..., reduction="none")`; every label must be
    a valid id (mask positions through the loss weights, not with an ignore index)."""
    vocab = logits.shape[-1]
    flat = _TokenCrossEntropy.apply(logits.reshape(-1, vocab), labels.reshape(-1))
    return flat.view(labels.shape)
