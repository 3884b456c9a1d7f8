"""Batched networks equal a loop of per-task networks."""

import pytest
import torch

from paper_repro import nets


def test_batched_linear_matches_loop_and_is_independent_of_k():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    layer = nets.BatchedLinear(gens, 5, 4)
    x = torch.randn(3, 7, 5)
    y = layer(x)
    for k in range(3):
        torch.testing.assert_close(y[k], x[k] @ layer.weight[k] + layer.bias[k])
    single = nets.BatchedLinear([torch.Generator().manual_seed(2)], 5, 4)
    torch.testing.assert_close(single.weight[0], layer.weight[1], rtol=0, atol=0)


def test_gradient_of_summed_loss_is_per_task_gradient():
    gens = [torch.Generator().manual_seed(s) for s in (4, 5)]
    mlp = nets.BatchedMLP(gens, [3, 8, 1])
    x = torch.randn(2, 6, 3)
    mlp(x).pow(2).mean((1, 2)).sum().backward()
    one = nets.BatchedMLP([torch.Generator().manual_seed(5)], [3, 8, 1])
    one(x[1:]).pow(2).mean().backward()
    for p, q in zip(mlp.parameters(), one.parameters()):
        torch.testing.assert_close(p.grad[1], q.grad[0])


def test_twin_q_and_actor_shapes():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    q = nets.TwinQ(gens, 3, 2, (16, 16))
    assert q(torch.randn(2, 5, 3), torch.randn(2, 5, 2)).shape == (2, 2, 5)
    actor = nets.TanhGaussianActor(gens, 3, 2, (16,), torch.ones(2) * 2, torch.zeros(2))
    a, logp = actor(torch.randn(2, 5, 3), gens)
    assert a.shape == (2, 5, 2) and logp.shape == (2, 5) and a.abs().max() <= 2
    assert nets.task_slice(actor, 1)["net.layers.0.weight"].shape == (3, 16)


def test_twin_q1_is_the_first_critic_of_forward():
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    q = nets.TwinQ(gens, 4, 2, (8, 8))
    obs, act = torch.randn(3, 5, 4), torch.randn(3, 5, 2)
    torch.testing.assert_close(q.q1(obs, act), q(obs, act)[:, 0])


def test_batched_mlp_equals_k_separate_torch_mlps_in_outputs_and_gradients():
    """Reference: K plain ``nn.Linear`` stacks holding the same weights (nn.Linear stores [out, in])."""
    sizes, K = [5, 8, 6, 4], 3
    batched = nets.BatchedMLP([torch.Generator().manual_seed(s) for s in range(K)], sizes)
    refs = []
    for k in range(K):
        linears = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        with torch.no_grad():
            for lin, layer in zip(linears, batched.layers):
                lin.weight.copy_(layer.weight[k].T)
                lin.bias.copy_(layer.bias[k, 0])
        refs.append(torch.nn.Sequential(linears[0], torch.nn.ReLU(), linears[1], torch.nn.ReLU(), linears[2]))
    x, target = torch.randn(K, 7, 5), torch.randn(K, 7, 4)

    y = batched(x)
    (y - target).pow(2).mean((1, 2)).sum().backward()
    for k, ref in enumerate(refs):
        y_k = ref(x[k])
        (y_k - target[k]).pow(2).mean().backward()
        torch.testing.assert_close(y[k], y_k)
        for lin, layer in zip(ref[::2], batched.layers):
            torch.testing.assert_close(layer.weight.grad[k], lin.weight.grad.T)
            torch.testing.assert_close(layer.bias.grad[k, 0], lin.bias.grad)


def test_parameter_trees_map_and_list_in_sorted_key_order():
    from paper_repro import nets

    a, b, c = torch.zeros(1), torch.ones(2, requires_grad=True), torch.full((3,), 2.0, requires_grad=True)
    tree = {"z": {"y": a, "x": b}, "a": c}
    assert [t.shape for t in nets.leaves(tree)] == [(3,), (2,), (1,)]  # a, z.x, z.y
    assert [t.shape for t in nets.leaves(tree, trainable=True)] == [(3,), (2,)]
    doubled = nets.tree_map(lambda t: 2 * t.detach(), tree)
    assert set(doubled) == {"z", "a"} and set(doubled["z"]) == {"y", "x"}
    torch.testing.assert_close(doubled["a"], torch.full((3,), 4.0))


@pytest.mark.parametrize("kind", nets.LAYER_KINDS)
def test_layer_param_count_is_what_init_layer_draws(kind):
    params = nets.init_layer(kind, "l", 7, 5, torch.Generator().manual_seed(0), latent=3)
    assert sum(v.numel() for v in params.values()) == nets.layer_param_count(kind, 7, 5, latent=3)
    w, b = nets.layer_weights(params, kind, "l", 7)
    assert w.shape == (7, 5) and b.shape == (5,)


def test_hyper_layer_weights_start_at_a_plain_layers_scale():
    """The weight-only transform (MACAW App. C.1's Omniglot MLP): W = A z, Var W ≈ 1/(3 d_in) as nn.Linear's."""
    gen = torch.Generator().manual_seed(0)
    w = torch.stack([nets.layer_weights(nets.init_layer("hyper", "l", 400, 50, gen, latent=32), "hyper", "l", 400)[0]
                     for _ in range(20)])
    assert abs(float(w.var()) * 3 * 400 - 1) < 0.1
