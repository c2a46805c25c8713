"""Test helpers for model plugins: the model contract, learning checks, toy specs.

A model plugin's tests can check the parts of the contract every model shares in a
few lines and spend the rest on what is particular to the model::

    from pdebench_core.testing.models import check_model_contract, toy_spec

    def test_output_shape():
        check_model_contract(build, SMOKE, toy_spec((16, 12), fields=("u", "v"), t_out=2))

The checks raise :class:`AssertionError` (explicitly, so they also hold under
``python -O``). The autouse fixture :func:`one_intra_op_thread` can be imported into a
third-party plugin's ``tests/conftest.py`` (pdeb's own plugin tests get the same from the
``pdebench_core.testing`` pytest plugin). This module needs pytest and torch.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

import pytest

from pdebench_core.errors import UsageError
from pdebench_core.models import describe_dims
from pdebench_core.profiles import PROFILE_NAMES
from pdebench_core.spec import DataSpec

if TYPE_CHECKING:
    import torch

ModelFactory = Callable[[Any, DataSpec], "torch.nn.Module"]


@pytest.fixture(autouse=True)
def one_intra_op_thread() -> Iterator[None]:
    """Run every test on one intra-op thread.

    Test models are tiny: extra threads only add overhead, and on a busy machine
    threads that spin while others hold the cores make the tests many times slower.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def toy_spec(shape: Sequence[int], fields: Sequence[str] = ("u",), t_in: int = 3, t_out: int = 1,
             name: str = "toy", **changes: Any) -> DataSpec:
    """A :class:`DataSpec` for model tests.

    Args:
        shape: Spatial grid, e.g. ``(16, 12)``.
        fields: Channel names; their number is ``C``.
        t_in: Input frames.
        t_out: Predicted frames.
        name: Dataset name shown in error messages.
        **changes: Any other :class:`DataSpec` field (``boundary="neumann"``, ...).

    Returns:
        The spec.
    """
    return DataSpec(name=name, fields=tuple(fields), spatial_shape=tuple(shape), t_in=t_in, t_out=t_out,
                    **changes)


def param_count(model: "torch.nn.Module") -> int:
    """Number of parameter elements (one per complex weight, as torch counts them)."""
    return sum(p.numel() for p in model.parameters())


def check_model_card(register_models: Callable[..., Any], name: str, build: ModelFactory, config: type,
                     dims: Sequence[int] = (1, 2, 3)) -> dict[str, Any]:
    """Check what a plugin's ``register_models`` hook registers under ``name``.

    Args:
        register_models: The plugin's hook implementation.
        name: Model name it must register.
        build: The factory it must register.
        config: The config dataclass it must register.
        dims: The spatial dimensions the card must declare (a card that declares none is
            tried on any data: it counts as ``(1, 2, 3)``).

    Returns:
        The keyword arguments of the registration (``config``, ``profiles``, card fields).

    Raises:
        AssertionError: If the name is missing, the factory, config or dims differ, the
            profiles are not exactly smoke, small and paper, or a profile sets a key the
            config does not have.
    """
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    register_models(register=lambda model, factory, **kw: found.setdefault(model, (factory, kw)))
    if name not in found:
        raise AssertionError(f"register_models registered {sorted(found)}, not '{name}'")
    factory, card = found[name]
    if factory is not build:
        raise AssertionError(f"'{name}' is registered with factory {factory!r}, expected {build!r}")
    if card.get("config") is not config:
        raise AssertionError(f"'{name}' is registered with config {card.get('config')!r}, expected {config!r}")
    declared = card.get("dims")
    declared = (declared,) if isinstance(declared, int) else tuple(declared or (1, 2, 3))  # none: any data
    if tuple(sorted(declared)) != tuple(sorted(dims)):
        raise AssertionError(f"'{name}' declares dims {card.get('dims')!r}, expected {tuple(dims)}")
    profiles = card.get("profiles") or {}
    if set(profiles) != set(PROFILE_NAMES):
        raise AssertionError(f"'{name}' has profiles {sorted(profiles)}, expected {list(PROFILE_NAMES)}")
    for profile, overrides in profiles.items():
        try:
            dataclasses.replace(config(), **overrides)
        except TypeError as error:
            raise AssertionError(f"profile '{profile}' of '{name}' does not fit {config.__name__}: {error}") from None
    return card


def check_model_contract(build: ModelFactory, cfg: Any, spec: DataSpec, batch: int = 2) -> "torch.nn.Module":
    """Build a model and check that it maps ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    The input is standard normal noise from the global torch generator; the output must
    have the contract's shape, the input's dtype and finite values.

    Args:
        build: Model factory ``build(cfg, spec)``.
        cfg: Its config.
        spec: The data the model is built for and fed with.
        batch: Batch size ``B``.

    Returns:
        The built model, for further checks.

    Raises:
        AssertionError: If the factory returns no module or the output breaks the contract.
    """
    import torch

    model = build(cfg, spec)
    if not isinstance(model, torch.nn.Module):
        raise AssertionError(f"the factory returned {type(model).__name__}, not a torch.nn.Module")
    x = torch.randn(batch, spec.t_in, *spec.spatial_shape, spec.n_channels)  # (B, t_in, *S, C)
    with torch.no_grad():
        y = model(x)  # (B, t_out, *S, C)
    expected = (batch, spec.t_out, *spec.spatial_shape, spec.n_channels)
    if tuple(y.shape) != expected:
        raise AssertionError(f"output shape {tuple(y.shape)} for input {tuple(x.shape)}, expected {expected}")
    if y.dtype != x.dtype:
        raise AssertionError(f"output dtype {y.dtype} for a {x.dtype} input")
    if not torch.isfinite(y).all():
        raise AssertionError("the output has non-finite values")
    return model


def smooth_shift_problem(spec: DataSpec, batch: int = 4) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Smooth periodic inputs and, as target, their last frame shifted by one grid point.

    Axis ``a`` contributes ``sin((a + 1) k x_a + phase)`` (even ``a``) or
    ``cos((a + 1) k x_a - phase)`` (odd ``a``), with ``k x_a`` running over one period
    and a random phase per sample, frame and channel drawn from the global torch
    generator. Target frame ``j`` is the last input frame rolled by ``j + 1`` points
    along the first spatial axis: a shift of fields that live in the lowest modes.

    Args:
        spec: Grid, ``t_in``, ``t_out`` and channels of the problem.
        batch: Samples.

    Returns:
        ``(inputs, target)``: ``(batch, t_in, *S, C)`` and ``(batch, t_out, *S, C)``.
    """
    import torch

    ndim = spec.ndim
    phase = torch.rand(batch, spec.t_in, *([1] * ndim), spec.n_channels) * 2 * torch.pi  # (B, T, 1.., C)
    x = None
    for axis, n in enumerate(spec.spatial_shape):
        view = [1] * (ndim + 1)
        view[axis] = n
        angle = (axis + 1) * (torch.arange(n) * (2 * torch.pi / n)).view(view)  # (.., n, .., 1)
        term = torch.sin(angle + phase) if axis % 2 == 0 else torch.cos(angle - phase)
        x = term if x is None else x + term  # (B, T, *S, C)
    last = x[:, -1:]  # (B, 1, *S, C)
    target = torch.cat([torch.roll(last, shifts=j + 1, dims=2) for j in range(spec.t_out)], dim=1)
    return x, target  # (B, t_in, *S, C), (B, t_out, *S, C)


def check_model_learns(build: ModelFactory, cfg: Any, spec: DataSpec, steps: int, factor: float,
                       inputs: Optional["torch.Tensor"] = None, target: Optional["torch.Tensor"] = None,
                       lr: float = 3e-3, seed: Optional[int] = 0) -> list[float]:
    """Train a fresh model with Adam on one batch and check that the loss on *held-out* samples falls.

    A model that memorises its training batch without learning the map does not pass: the
    check is on samples it never trained on.

    Args:
        build: Model factory ``build(cfg, spec)``.
        cfg: Its config.
        spec: The data the model is built for.
        steps: Optimiser steps on the same batch.
        factor: The held-out loss after training must be below ``factor`` times the one before.
        inputs: Batch ``(B, t_in, *S, C)`` with ``B >= 2``; its last quarter (at least one
            sample) is held out. Default: :func:`smooth_shift_problem`, 8 samples to train
            on and 4 held out.
        target: Target batch ``(B, t_out, *S, C)``; given together with ``inputs``.
        lr: Adam learning rate.
        seed: Seed of the global torch generator set before the problem is drawn and the
            model is built; ``None`` keeps the generator as the caller left it.

    Returns:
        The mean-squared-error training loss before each step.

    Raises:
        ValueError: If only one of ``inputs`` and ``target`` is given, or the batch has one sample.
        AssertionError: If the held-out loss does not fall by ``factor``.
    """
    import torch

    if (inputs is None) != (target is None):
        raise ValueError("give both inputs and target, or neither")
    if seed is not None:
        torch.manual_seed(seed)
    if inputs is None:
        inputs, target = smooth_shift_problem(spec, batch=12)
    if inputs.shape[0] < 2:
        raise ValueError("the batch needs at least 2 samples: one is held out")
    held = max(1, inputs.shape[0] // 4)
    (train_x, test_x), (train_y, test_y) = inputs.split([inputs.shape[0] - held, held]), \
        target.split([target.shape[0] - held, held])
    model = build(cfg, spec)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    held_before = _mse(model, test_x, test_y)
    losses = []
    for _ in range(steps):
        loss = torch.mean((model(train_x) - train_y) ** 2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    held_after = _mse(model, test_x, test_y)
    if not held_after < factor * held_before:
        raise AssertionError(
            f"after {steps} steps the held-out loss went from {held_before:.4g} to {held_after:.4g}, "
            f"not below {factor} x the start (training loss {losses[0]:.4g} -> {losses[-1]:.4g})"
        )
    return losses


def _mse(model: "torch.nn.Module", inputs: "torch.Tensor", target: "torch.Tensor") -> float:
    import torch

    with torch.no_grad():
        out = model(inputs)
    if tuple(out.shape) != tuple(target.shape):  # broadcasting would hide it and report "did not learn"
        raise AssertionError(f"the model returned shape {tuple(out.shape)} for targets {tuple(target.shape)} "
                             f"(B, t_out, *S, C); check_contract names the contract")
    return torch.mean((out - target) ** 2).item()


def check_rejects_unsupported_dims(build: ModelFactory, cfg: Any, dims: Sequence[int] = (1, 2, 3)) -> str:
    """Check that the factory refuses 4D data with the shared one-line message.

    Args:
        build: Model factory ``build(cfg, spec)``.
        cfg: Its config.
        dims: The dimensions the model supports (named in the message).

    Returns:
        The error message.

    Raises:
        AssertionError: If no :class:`UsageError` is raised, or its message names
            neither the dataset nor the supported dimensions.
    """
    spec = toy_spec((4, 4, 4, 4), name="toy4d")
    try:
        build(cfg, spec)
    except UsageError as error:
        message = str(error)
    else:
        raise AssertionError("the factory accepted data with 4 spatial axes")
    if "toy4d" not in message or describe_dims(dims) not in message:
        raise AssertionError(f"the message does not name the dataset and {describe_dims(dims)}: {message}")
    return message


@dataclasses.dataclass(frozen=True)
class ModelPlugin:
    """A model plugin under test, with the shared checks bound to its factory and config.

    A plugin's tests declare it once and check it in a line each::

        import pdeb_mymodel
        from pdeb_mymodel import MyConfig

        MODEL = ModelPlugin.of(pdeb_mymodel, "mymodel", MyConfig)

        def test_output_shape():
            MODEL.check_contract(MODEL.smoke, toy_spec((16, 12), fields=("u", "v"), t_out=2))

    Attributes:
        name: The model name its ``register_models`` hook registers.
        build: Model factory ``build(cfg, spec)``.
        config: Its config dataclass.
        profiles: ``{"smoke": {...}, "small": {...}, "paper": {...}}``.
        register_models: Its ``register_models`` hook.
        dims: The dimensions the hook registers for it (``(1, 2, 3)`` when it declares none); the
            checks that name dimensions default to these.
    """

    name: str
    build: ModelFactory
    config: type
    profiles: Mapping[str, Mapping[str, Any]]
    register_models: Callable[..., Any]
    dims: tuple[int, ...] = (1, 2, 3)

    @classmethod
    def of(cls, package: Any, name: str, config: type,
           register_models: Callable[..., Any] | None = None) -> "ModelPlugin":
        """The plugin model ``name`` of ``package``, with the factory and profiles its hook registers.

        Args:
            package: The plugin's module.
            name: The model name.
            config: Its config dataclass.
            register_models: The hook that registers ``name`` (default:
                ``package.register_models``; pass it when the module binds it to another name).

        Raises:
            AssertionError: The hook does not register ``name``.
        """
        hook = register_models if register_models is not None else package.register_models
        found: dict[str, tuple[Any, dict[str, Any]]] = {}
        hook(register=lambda model, factory, **kw: found.setdefault(model, (factory, kw)))
        if name not in found:
            hint = "" if register_models is not None else (
                f"; if another hook of {getattr(package, '__name__', 'the module')} registers it, pass that "
                f"hook: ModelPlugin.of(..., register_models=<that hook>)")
            raise AssertionError(f"register_models registered {sorted(found)}, not '{name}'{hint}")
        factory, card = found[name]
        declared = card.get("dims")
        dims = (declared,) if isinstance(declared, int) else tuple(declared or (1, 2, 3))
        return cls(name, factory, config, card.get("profiles") or {}, hook, dims)

    @property
    def smoke(self) -> Any:
        """The config of the ``smoke`` profile."""
        return dataclasses.replace(self.config(), **self.profiles["smoke"])

    def check_card(self, dims: Sequence[int] | None = None) -> dict[str, Any]:
        """:func:`check_model_card` for this plugin (``dims``: default the registered ones)."""
        return check_model_card(self.register_models, self.name, self.build, self.config, dims=dims or self.dims)

    def check_contract(self, cfg: Any, spec: DataSpec, batch: int = 2) -> "torch.nn.Module":
        """:func:`check_model_contract` of this plugin's factory."""
        return check_model_contract(self.build, cfg, spec, batch=batch)

    def check_learns(self, cfg: Any, spec: DataSpec, steps: int, factor: float, **options: Any) -> list[float]:
        """:func:`check_model_learns` of this plugin's factory; ``options`` pass through."""
        return check_model_learns(self.build, cfg, spec, steps, factor, **options)

    def check_rejects_unsupported_dims(self, cfg: Any, dims: Sequence[int] | None = None) -> str:
        """:func:`check_rejects_unsupported_dims` of this plugin's factory (``dims``: default the
        registered ones)."""
        return check_rejects_unsupported_dims(self.build, cfg, dims=dims or self.dims)


__all__ = [
    "ModelPlugin",
    "check_model_card",
    "check_model_contract",
    "check_model_learns",
    "check_rejects_unsupported_dims",
    "one_intra_op_thread",
    "param_count",
    "smooth_shift_problem",
    "toy_spec",
]
