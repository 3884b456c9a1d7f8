import pytest
import torch

from paper_repro.algos import mier

torch.set_num_threads(1)


def _setup(dtype=torch.float64, tasks=3, n=16, predict_dynamics=True, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = mier.Config(model_hidden=(16, 16), predict_dynamics=predict_dynamics, **kw)
    model = mier.ContextModel(3, 2, cfg).to(dtype)
    params = mier.init_params(model, cfg)
    params = {k: (v.detach().to(dtype) + (0.1 * torch.randn_like(v.to(dtype)) if k == "context" else 0)
                  ).requires_grad_(True) for k, v in params.items()}

    def batch():
        return mier.Batch(torch.randn(tasks, n, 3, dtype=dtype), torch.randn(tasks, n, 2, dtype=dtype),
                          torch.randn(tasks, n, 1, dtype=dtype), torch.randn(tasks, n, 3, dtype=dtype))
    return cfg, model, params, batch(), batch()


@pytest.mark.parametrize("predict_dynamics", [True, False])
def test_vmapped_meta_loss_matches_loop(predict_dynamics):
    cfg, model, params, adapt, evaluate = _setup(predict_dynamics=predict_dynamics)
    loss, _ = mier.model_meta_loss(model, params, adapt, evaluate, cfg)
    ref = mier.model_meta_loss_loop(model, params, adapt, evaluate, cfg)
    torch.testing.assert_close(loss, ref)
    keys = list(params)
    g1 = torch.autograd.grad(loss, [params[k] for k in keys])
    g2 = torch.autograd.grad(ref, [params[k] for k in keys])
    for k, a, b in zip(keys, g1, g2):
        torch.testing.assert_close(a, b, msg=k)


def test_adapt_context_matches_manual_autograd_steps():
    cfg, model, params, adapt, _ = _setup()
    theta = {k: v for k, v in params.items() if k != "context"}
    b = mier.Batch(*(x[0] for x in adapt))
    ctx = params["context"]
    for _ in range(cfg.inner_steps):
        (g,) = torch.autograd.grad(mier.nll(model, theta, ctx, b, cfg), ctx, create_graph=True)
        g = g * torch.clamp(cfg.inner_grad_clip / (g.norm() + 1e-12), max=1.0)
        ctx = ctx - cfg.inner_lr * g
    torch.testing.assert_close(mier.adapt_context(model, theta, params["context"], b, cfg), ctx)


def test_meta_gradient_matches_finite_differences():
    cfg, model, params, adapt, evaluate = _setup(inner_grad_clip=None)

    def f():
        return mier.model_meta_loss(model, params, adapt, evaluate, cfg)[0]
    loss = f()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    eps = 1e-6
    checks = [("context", i) for i in range(cfg.context_dim)] + [("net.0.weight", 0), ("net.0.weight", 7),
                                                              ("net.4.bias", 1), ("min_logvar", 0)]
    with torch.no_grad():
        for k, i in checks:
            flat = params[k].view(-1)
            old = flat[i].item()
            flat[i] = old + eps
            up = f().item()
            flat[i] = old - eps
            down = f().item()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - grads[k].view(-1)[i].item()) < 1e-6 * max(1.0, abs(fd)), (k, i, fd)


def test_update_raises_on_nan_with_step():
    cfg, model, params, adapt, evaluate = _setup(dtype=torch.float32)
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    m = mier.model_update(model, params, opt, adapt, evaluate, cfg, step=0)
    assert set(m) >= {"train/model_loss", "train/model_nll_pre", "train/model_nll_post"}
    bad = adapt._replace(rew=adapt.rew * float("nan"))
    with pytest.raises(FloatingPointError, match="step 7"):
        mier.model_update(model, params, opt, bad, evaluate, cfg, step=7)


def test_context_adaptation_identifies_task_parameter():
    """Toy family: r = w·a[0] + s[0], w ~ U(-1, 1) per task. After meta-training, adapting the context
    on a few transitions must predict the held-out rewards much better than the prior context."""
    torch.manual_seed(0)
    cfg = mier.Config(model_hidden=(64, 64), predict_dynamics=False, adapt_batch=32)
    model = mier.ContextModel(2, 1, cfg)
    params = mier.init_params(model, cfg)
    opt = torch.optim.Adam(params.values(), lr=3e-3)

    def batches(tasks, n):
        w = torch.rand(tasks, 1, 1) * 2 - 1
        def one():
            s, a = torch.randn(tasks, n, 2), torch.rand(tasks, n, 1) * 2 - 1
            return mier.Batch(s, a, w * a + s[..., :1], s)
        return one(), one()

    for step in range(300):
        mier.model_update(model, params, opt, *batches(10, cfg.adapt_batch), cfg, step=step)
    theta = {k: v for k, v in params.items() if k != "context"}
    adapt, evaluate = batches(50, cfg.adapt_batch)
    post = mier.adapt_contexts(model, theta, params["context"], adapt, cfg).detach()
    with torch.no_grad():
        pre_mean = torch.func.vmap(lambda b: torch.func.functional_call(model, theta, (b.obs, b.act, params["context"]))[0])(evaluate)
        post_mean = torch.func.vmap(lambda c, b: torch.func.functional_call(model, theta, (b.obs, b.act, c))[0])(post, evaluate)
    pre_err = ((pre_mean - evaluate.rew) ** 2).mean().item()
    post_err = ((post_mean - evaluate.rew) ** 2).mean().item()
    print(f"prior-context MSE {pre_err:.4f}, adapted-context MSE {post_err:.4f}")
    assert post_err < 0.3 * pre_err, (pre_err, post_err)
