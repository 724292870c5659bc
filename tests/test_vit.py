import pytest
import torch
import torch.nn.functional as F

from amortinv.models.vit import InvarianceToken, PromptViT, default_patch_size

K = 5  # invariance groups, as in the RGB space


def small_vit(**overrides) -> PromptViT:
    kwargs = dict(num_groups=K, dim=32, depth=2, heads=4, token_mlps=4)
    return PromptViT(**{**kwargs, **overrides})


def vector(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize(("image_size", "patch_size"), [(28, 4), (28, 7), (32, 4), (64, 8)])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditioned", [True, False])
def test_output_shape(image_size, patch_size, channels, conditioned):
    model = small_vit(
        in_channels=channels, image_size=image_size, patch_size=patch_size, conditioned=conditioned
    )
    z = model(torch.randn(3, channels, image_size, image_size), vector(1, 0, 1, 1, 0.5))
    assert z.shape == (3, model.feature_dim) == (3, 32)
    assert torch.isfinite(z).all()


@pytest.mark.parametrize(
    ("image_size", "patch_size"), [(28, 4), (30, 5), (32, 4), (48, 6), (64, 8)]
)
def test_presets_pick_a_patch_size_that_divides_the_image(image_size, patch_size):
    assert default_patch_size(image_size) == patch_size
    model = PromptViT.tiny(K, in_channels=1, image_size=image_size)
    assert model.patch_size == patch_size and model.feature_dim == 128
    assert model(torch.randn(2, 1, image_size, image_size), vector(0, 1, 0, 1, 1)).shape == (2, 128)


def test_small_preset_is_vit_s_width_and_takes_overrides():
    model = PromptViT.small(K, in_channels=1, image_size=64, depth=1)
    assert (model.feature_dim, len(model.blocks), model.patch_size) == (384, 1, 8)
    assert model.blocks[0].attn.heads == 6


def test_sequence_is_cls_patches_then_the_token_without_position_embedding():
    model = small_vit(image_size=32, patch_size=4)
    seen = {}
    model.blocks.register_forward_pre_hook(lambda _, args: seen.update(tokens=args[0]))
    x, inv = torch.randn(2, 3, 32, 32), vector(1, 1, 0, 0, 1)
    model(x, inv)
    tokens = seen["tokens"]
    assert tokens.shape == (2, 1 + 64 + 1, 32)
    torch.testing.assert_close(
        tokens[:, 0], (model.cls_token + model.pos_embed[:, 0])[0].expand(2, -1)
    )
    token = model.invariance_token(inv)
    torch.testing.assert_close(tokens[:, -1], token.expand(2, -1))  # same token, no position
    assert model.pos_embed.shape == (1, 1 + 64, 32)


def test_features_depend_on_the_invariance_vector_only_when_conditioned():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    a, b = vector(1, 0, 1, 0, 1), vector(0, 1, 0, 1, 0.25)
    conditioned = small_vit().eval()
    with torch.no_grad():
        gap = (conditioned(x, a) - conditioned(x, b)).abs().max()
    assert gap > 1e-3

    plain = small_vit(conditioned=False).eval()
    assert plain.invariance_token is None
    assert not any("invariance" in name for name, _ in plain.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(plain(x, a), plain(x, b), rtol=0, atol=0)
        torch.testing.assert_close(plain(x, a), plain(x, None), rtol=0, atol=0)


def test_token_mlp_equals_the_mean_of_the_small_mlps():
    torch.manual_seed(0)
    num_groups, dim, m = 3, 8, 5
    token = InvarianceToken(num_groups, dim, token_mlps=m).double()
    inv = torch.rand(num_groups, dtype=torch.float64)
    w1 = token.hidden.weight.view(m, dim, num_groups)
    b1 = token.hidden.bias.view(m, dim)
    outputs = [
        F.linear(F.gelu(F.linear(inv, w1[k], b1[k])), token.second_weight[k], token.second_bias[k])
        for k in range(m)
    ]
    expected = torch.stack(outputs).mean(0)
    torch.testing.assert_close(token(inv), expected)
    # The small MLPs differ, so the check would catch a mean over copies of one MLP.
    assert (torch.stack(outputs).std(0) > 0).all()


def test_gradients_reach_the_token_mlp_and_the_vector():
    model = small_vit()
    inv = vector(0.5, 0.5, 0.5, 0.5, 0.5).requires_grad_()
    model(torch.randn(4, 3, 32, 32), inv).square().sum().backward()
    for name, param in model.invariance_token.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # The downstream step learns the vector itself by gradient.
    assert inv.grad is not None and inv.grad.abs().sum() > 0


def test_vector_is_moved_to_the_model_dtype():
    model = small_vit().double()
    z = model(torch.randn(2, 3, 32, 32, dtype=torch.float64), vector(1, 0, 0, 1, 1))
    assert z.dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = small_vit()(torch.randn(2, 3, 32, 32), vector(1, 0, 0, 1, 1))
    assert z.shape == (2, 32) and torch.isfinite(z).all()


def test_bad_image_size_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"image_size 30 is not divisible by patch_size 4"):
        small_vit(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match=r"no patch size in 4..16 divides image_size 29"):
        PromptViT.tiny(K, image_size=29)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 3, 28, 28\)"):
        small_vit()(torch.randn(2, 3, 28, 28), vector(1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\), got \(2, 1, 32, 32\)"):
        small_vit()(torch.randn(2, 1, 32, 32), vector(1, 1, 1, 1, 1))


@pytest.mark.parametrize(
    ("invariance", "got"),
    [(torch.ones(3), r"shape \(3,\)"), (torch.ones(2, K), r"shape \(2, 5\)"), (None, "a NoneType")],
)
def test_bad_vector_is_rejected_naming_expected_and_got(invariance, got):
    model = small_vit()
    with pytest.raises(ValueError, match=rf"length {K} \(num_groups\).*got {got}"):
        model(torch.randn(2, 3, 32, 32), invariance)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    torch.manual_seed(0)
    model = small_vit(dropout=0.3)
    x, inv = torch.randn(4, 3, 32, 32), vector(1, 0, 1, 0, 1)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, inv), model(x, inv), rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x, inv), model(x, inv))


def test_twenty_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = small_vit()
    head = torch.nn.Linear(model.feature_dim, 4)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=2e-3)
    x, labels, inv = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,)), vector(1, 0, 1, 0, 1)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(head(model(x, inv)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses


@pytest.mark.parametrize("conditioned", [True, False])
def test_only_the_conditioned_model_learns_which_vector_encoded_the_batch(conditioned):
    # Images are fresh noise every step; the label is which vector was used, so only the
    # invariance token carries it. The plain ViT must stay at chance (ln 2).
    torch.manual_seed(0)
    model = small_vit(conditioned=conditioned)
    head = torch.nn.Linear(model.feature_dim, 2)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    corners = [vector(1, 0, 1, 0, 1), vector(0, 1, 0, 1, 1)]
    losses = []
    for _ in range(80):
        x = torch.randn(16, 3, 32, 32)
        loss = sum(
            F.cross_entropy(head(model(x, inv)), torch.full((16,), label))
            for label, inv in enumerate(corners)
        ) / len(corners)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    final = sum(losses[-5:]) / 5
    if conditioned:
        assert final < 0.1, losses[::10]
    else:
        assert final > 0.6, losses[::10]
