"""fastxent.torch against torch.nn.functional.cross_entropy (loss and gradient)."""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent

torch = pytest.importorskip("torch")
F = torch.nn.functional
fxt = pytest.importorskip("fastxent.torch")

C = 5
SHAPES = {"C": (C,), "NC": (4, C), "NCd1d2": (4, C, 3, 2)}
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _target_shape(shape):
    return shape[:1] + shape[2:] if len(shape) >= 2 else ()


def _make(shape, dtype, kind, ignore, seed):
    """(input, target, ignore_index) for one case; `ignore` is None, 'default' or 'class'."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3
    class_dim = 1 if len(shape) >= 2 else 0
    if kind == "index":
        t = torch.randint(0, C, _target_shape(shape), generator=g)
        ignore_index = {None: -100, "default": -100, "class": 1}[ignore]
        if ignore == "default":
            # ignore some rows (every row when the target is a single label)
            flat = t.view(-1)
            flat[::2] = -100
        elif ignore == "class":
            t.view(-1)[0] = 1
    else:
        t = torch.softmax(torch.randn(shape, generator=g, dtype=dtype), dim=class_dim)
        ignore_index = -100  # torch refuses any other with probabilities (tested below)
    return x, t, ignore_index


def _both(x, t, kwargs, grad_output):
    """Loss and input.grad from fastxent.torch and from torch, for the same call."""
    results = []
    for fn in (fxt.cross_entropy, F.cross_entropy):
        xi = x.clone().requires_grad_(True)
        loss = fn(xi, t, **kwargs)
        go = grad_output(loss)
        loss.backward(go)
        results.append((loss.detach(), xi.grad))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch_every_argument(dtype, shape, kind, reduction):
    seed = 0
    ignores = [None, "default", "class"] if kind == "index" else [None]
    for weighted, ignore, eps in itertools.product([False, True], ignores, [0.0, 0.3]):
        seed += 1
        x, t, ignore_index = _make(shape, dtype, kind, ignore, seed)
        weight = torch.rand(C, dtype=dtype, generator=torch.Generator().manual_seed(seed)) + 0.1
        kwargs = dict(weight=weight if weighted else None, ignore_index=ignore_index,
                      reduction=reduction, label_smoothing=eps)

        def grad_output(loss):
            # a non-trivial upstream gradient, so the scaling in backward is exercised
            if reduction == "none":
                return torch.linspace(-1.5, 2.0, loss.numel(), dtype=dtype).reshape(loss.shape)
            return torch.tensor(1.7, dtype=dtype)

        (ours, our_grad), (theirs, their_grad) = _both(x, t, kwargs, grad_output)
        case = f"weight={weighted} ignore={ignore} eps={eps}"
        assert ours.dtype == theirs.dtype == dtype, case
        assert ours.shape == theirs.shape, case
        torch.testing.assert_close(ours, theirs, equal_nan=True, **TOL[dtype], msg=case)
        torch.testing.assert_close(our_grad, their_grad, equal_nan=True, **TOL[dtype], msg=case)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_plain_backward_returns_the_fused_gradient(reduction):
    # grad_output == 1: backward hands over the gradient computed in forward
    x, t, _ = _make((16, C), torch.float32, "index", None, 3)
    (ours, our_grad), (theirs, their_grad) = _both(x, t, dict(reduction=reduction), lambda loss: None)
    torch.testing.assert_close(ours, theirs, **TOL[torch.float32])
    torch.testing.assert_close(our_grad, their_grad, **TOL[torch.float32])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_gradcheck_float64(reduction, kind):
    x, t, ignore_index = _make((3, C, 2), torch.float64, kind, "class" if kind == "index" else None, 7)
    weight = torch.linspace(0.5, 2.0, C, dtype=torch.float64)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda inp: fxt.cross_entropy(inp, t, weight=weight, ignore_index=ignore_index,
                                      reduction=reduction, label_smoothing=0.2),
        (x,), eps=1e-6, atol=1e-7, rtol=1e-5,
    )


@pytest.mark.parametrize("tdtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_integer_target_dtypes(tdtype):
    x, t, _ = _make((6, C), torch.float32, "index", None, 11)
    xi = x.clone().requires_grad_(True)
    loss = fxt.cross_entropy(xi, t.to(tdtype), label_smoothing=0.1)
    loss.backward()
    _, (ref, ref_grad) = _both(x, t, dict(label_smoothing=0.1), lambda loss: None)
    torch.testing.assert_close(loss.detach(), ref)
    torch.testing.assert_close(xi.grad, ref_grad)


def test_non_contiguous_input_and_no_grad():
    x = torch.randn(C, 7, dtype=torch.float64).t()  # (7, C), a transposed view
    t = torch.randint(0, C, (7,))
    xi = x.clone().t().contiguous().t().requires_grad_(True)  # still non-contiguous
    assert not xi.is_contiguous()
    fxt.cross_entropy(xi, t).backward()
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(xr, t).backward()
    torch.testing.assert_close(xi.grad, xr.grad)
    with torch.no_grad():
        loss = fxt.cross_entropy(x, t, reduction="none")
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(x, t, reduction="none"))


def test_lazy_negative_views():
    """Views that carry torch's lazy neg bit (NumPy cannot see them) are
    materialised: input, soft target and weight alike."""
    x = torch.randn(6, C, dtype=torch.float64)
    probs = torch.softmax(torch.randn(6, C, dtype=torch.float64), 1)
    w = torch.rand(C, dtype=torch.float64) + 0.5
    neg_x = torch._neg_view(x)
    assert neg_x.is_neg()
    ref = F.cross_entropy(-x, probs, weight=w)
    got = fxt.cross_entropy(neg_x, torch._neg_view(-probs), weight=torch._neg_view(-w))
    torch.testing.assert_close(got, ref)


def test_retain_graph_second_backward_recomputes():
    x, t, _ = _make((5, C), torch.float64, "index", "default", 2)
    for reduction in ("mean", "none"):
        xi = x.clone().requires_grad_(True)
        xr = x.clone().requires_grad_(True)
        for xx, fn in ((xi, fxt.cross_entropy), (xr, F.cross_entropy)):
            loss = fn(xx, t, reduction=reduction).sum()
            loss.backward(retain_graph=True)
            (loss * 3).backward()
        torch.testing.assert_close(xi.grad, xr.grad)


def test_legacy_size_average_reduce():
    x, t, _ = _make((4, C), torch.float64, "index", None, 5)
    with pytest.warns(UserWarning, match="deprecated"):
        ours = fxt.cross_entropy(x, t, size_average=False)
    with pytest.warns(UserWarning, match="deprecated"):
        theirs = F.cross_entropy(x, t, size_average=False)
    torch.testing.assert_close(ours, theirs)
    with pytest.warns(UserWarning, match="deprecated"):
        ours = fxt.cross_entropy(x, t, reduce=False)
    assert ours.shape == (4,)


def test_module_is_a_drop_in():
    weight = torch.rand(C, dtype=torch.float64) + 0.5
    ours = fxt.CrossEntropyLoss(weight=weight, ignore_index=2, reduction="sum", label_smoothing=0.1)
    theirs = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=2, reduction="sum",
                                       label_smoothing=0.1)
    assert isinstance(ours, torch.nn.CrossEntropyLoss)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x, t, _ = _make((8, C), torch.float64, "index", "class", 9)
    torch.testing.assert_close(ours(x, t), theirs(x, t))


def test_training_matches_torch():
    """Same init, same data: SGD with fastxent's loss reaches torch's weights."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(64, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (64,), generator=g)
    weights = []
    for loss_fn in (fxt.cross_entropy, F.cross_entropy):
        torch.manual_seed(1)
        model = torch.nn.Linear(10, 4).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        for _ in range(25):
            opt.zero_grad()
            loss_fn(model(data), labels, label_smoothing=0.05).backward()
            opt.step()
        weights.append([p.detach().clone() for p in model.parameters()])
    for ours, theirs in zip(*weights):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
    assert not torch.equal(weights[0][0], torch.nn.Linear(10, 4).double().weight)


# ---------------------------------------------------------------------------
# what the adapter refuses, and says why


def test_non_cpu_tensor_is_refused():
    x = torch.empty(4, C, device="meta")
    with pytest.raises(ValueError, match="CPU tensors only.*input.*meta"):
        fxt.cross_entropy(x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="CPU tensors only.*target"):
        fxt.cross_entropy(torch.randn(4, C), torch.zeros(4, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float16, torch.bfloat16, torch.complex64])
def test_unsupported_input_dtype(dtype):
    x = torch.ones(4, C, dtype=dtype)
    with pytest.raises(TypeError, match=f"input must be a float32 or float64 tensor, got {dtype}"):
        fxt.cross_entropy(x, torch.zeros(4, dtype=torch.long))


def test_bad_arguments():
    x = torch.randn(4, C)
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        fxt.cross_entropy(np.zeros((4, C)), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        fxt.cross_entropy(x, [0, 1, 2, 3])
    with pytest.raises(TypeError, match="target must hold integer class indices"):
        fxt.cross_entropy(x, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="dense"):
        fxt.cross_entropy(x.to_sparse(), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="0-d"):
        fxt.cross_entropy(torch.tensor(1.0), torch.tensor(0))
    with pytest.raises(ValueError, match="reduction"):
        fxt.cross_entropy(x, torch.zeros(4, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="label 7 at position \\(2,\\)"):
        fxt.cross_entropy(x, torch.tensor([0, 1, 7, 2]))
    with pytest.raises(ValueError, match="ignore_index is not supported with class-probability"):
        fxt.cross_entropy(x, torch.softmax(x, 1), ignore_index=1)
    with pytest.raises(ValueError, match="target .*shape"):
        fxt.cross_entropy(x, torch.zeros(3, dtype=torch.long))


def test_target_or_weight_requiring_grad_is_refused():
    x = torch.randn(4, C, requires_grad=True)
    soft = torch.softmax(torch.randn(4, C), 1).requires_grad_(True)
    with pytest.raises(NotImplementedError, match="target requires grad"):
        fxt.cross_entropy(x, soft)
    weight = torch.ones(C, requires_grad=True)
    with pytest.raises(NotImplementedError, match="weight requires grad"):
        fxt.cross_entropy(x, torch.zeros(4, dtype=torch.long), weight=weight)
    with torch.no_grad():  # nothing to differentiate: accepted
        fxt.cross_entropy(x, soft, weight=weight)


def test_double_backward_is_refused():
    x = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
    loss = fxt.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(RuntimeError, match="once_differentiable.*create_graph=True"):
        torch.autograd.grad(loss, x, create_graph=True)
    # an upstream gradient that itself requires grad: torch's once_differentiable guard
    loss = fxt.cross_entropy(x, torch.tensor([0, 1, 2, 3]))
    upstream = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        torch.autograd.grad(loss, x, grad_outputs=upstream, create_graph=True)


def test_import_fastxent_does_not_import_torch():
    code = "import sys, fastxent; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], env=_env_with_fastxent(), check=True)


def _env_with_fastxent():
    """The environment for a child interpreter that imports this fastxent."""
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------
# gradient buffers reused across calls


def _step(x, y):
    x.grad = None
    fxt.cross_entropy(x, y).backward()
    return x.grad


def test_gradient_buffer_is_reused_only_once_released():
    fxt.release_buffers()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 1000, generator=g, requires_grad=True)  # above the pool's 1 MiB floor
    y = torch.randint(0, 1000, (300,), generator=g)
    first = _step(x, y).data_ptr()
    assert _step(x, y).data_ptr() == first, "a released buffer was not reused"

    # whatever still sees a gradient keeps its memory out of the pool
    for keep in (lambda t: t, lambda t: t.view(-1)[5:], lambda t: t.numpy(), lambda t: [t.t()]):
        held = _step(x, y)
        expected = held.clone()
        ref = keep(held)
        del held
        for seed in range(3):
            x.data.normal_(generator=torch.Generator().manual_seed(seed))
            _step(x, y)
        x.grad = None
        torch.testing.assert_close(keep_value(ref), keep_value(keep(expected)), rtol=0, atol=0)
        del ref

    fxt.release_buffers()
    fresh = torch.randn(300, 1000, requires_grad=True)
    assert _step(fresh, y).shape == (300, 1000)


def keep_value(ref):
    """The values a kept reference (tensor, view, ndarray, list) sees, as a tensor."""
    if isinstance(ref, list):
        ref = ref[0]
    return torch.from_numpy(ref.copy()) if isinstance(ref, np.ndarray) else ref.clone()


# ---------------------------------------------------------------------------
# empty inputs


def _compare_empty(x, t):
    for reduction in ("mean", "sum", "none"):
        (ours, our_grad), (theirs, their_grad) = _both(
            x, t, dict(reduction=reduction), lambda loss: torch.ones_like(loss))
        torch.testing.assert_close(ours, theirs, equal_nan=True)
        torch.testing.assert_close(our_grad, their_grad)


def test_empty_batch():
    _compare_empty(torch.randn(0, C), torch.zeros(0, dtype=torch.long))
    _compare_empty(torch.randn(0, C), torch.zeros(0, C))


def test_empty_spatial_dimension():
    _compare_empty(torch.randn(2, C, 0), torch.zeros(2, 0, dtype=torch.long))


def test_in_place_change_before_a_recomputing_backward_is_caught():
    x = torch.randn(4, C, requires_grad=True)
    t = torch.tensor([0, 1, 2, 3])
    loss = fxt.cross_entropy(x * 1.0, t, reduction="none")  # 'none': backward recomputes
    t[0] = 4
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.sum().backward()
