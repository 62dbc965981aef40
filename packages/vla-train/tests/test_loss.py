import pytest
import torch
import torch.nn.functional as F

from vla_train.loss import token_cross_entropy


@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 11)])
def test_token_cross_entropy_matches_torch_value_and_gradient(shape):
    g = torch.Generator().manual_seed(0)
    vocab = 37
    logits = (4 * torch.randn(*shape, vocab, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, vocab, shape, generator=g)
    weights = torch.rand(shape, generator=g, dtype=torch.float64)

    ours = token_cross_entropy(logits, labels)
    ref = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), reduction="none")
    torch.testing.assert_close(ours, ref.view(shape), rtol=0, atol=1e-12)

    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (g_ref,) = torch.autograd.grad((ref.view(shape) * weights).sum(), logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda z: token_cross_entropy(z, labels), (logits.detach().requires_grad_(),)
    )


def test_token_cross_entropy_rejects_a_label_outside_the_vocabulary():
    with pytest.raises((RuntimeError, IndexError)):
        token_cross_entropy(torch.zeros(2, 4), torch.tensor([1, 4]))
