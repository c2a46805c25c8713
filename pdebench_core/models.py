"""Small helpers shared by model plugins: config checks and the folded-frame layout.

Most baseline models see the ``t_in`` input frames as extra channels: they fold
``(B, t_in, *S, C)`` into channel-last ``(B, *S, t_in * C)``, optionally append the
normalised grid coordinates, and unfold their ``t_out * C`` outputs back into
``(B, t_out, *S, C)``. The checks raise the same one-line :class:`UsageError`
messages for every model, so a user learns one wording.

Importing this module is cheap: torch is only needed by the tensor helpers, which
receive tensors and so run after the caller has imported it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pdebench_core.errors import UsageError

if TYPE_CHECKING:
    import torch

    from pdebench_core.spec import DataSpec


def describe_dims(dims: Sequence[int]) -> str:
    """Human wording of a set of spatial dimensions: ``(1, 2, 3)`` -> ``"1D, 2D and 3D"``.

    Args:
        dims: Supported numbers of spatial axes.

    Returns:
        The dimensions as ``"<n>D"`` words joined by commas and a final ``"and"``.
    """
    words = [f"{d}D" for d in dims]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def check_dims(spec: "DataSpec", dims: Sequence[int], model: str) -> None:
    """Refuse data whose number of spatial axes the model does not support.

    Args:
        spec: The dataset's self-description.
        dims: Supported numbers of spatial axes, e.g. ``(1, 2, 3)``.
        model: Registered model name, used in the message.

    Raises:
        UsageError: If ``spec.ndim`` is not in ``dims``.
    """
    if spec.ndim not in dims:
        raise UsageError(
            f"model '{model}' supports {describe_dims(dims)} data; dataset '{spec.name}' has "
            f"{spec.ndim} spatial axes"
        )


def require_positive(cfg: Any, *names: str, model: str) -> None:
    """Refuse config entries that are not positive integers.

    Args:
        cfg: A config dataclass or omegaconf object holding the entries.
        *names: Attribute names to check, in the order they are reported.
        model: Registered model name; the message names the key ``model.<model>.<name>``.

    Raises:
        UsageError: On the first entry whose integer value is below 1.
    """
    for name in names:
        value = getattr(cfg, name)
        if int(value) < 1:
            raise UsageError(f"model.{name} must be a positive integer for {model}, got {value}")


def require_positive_number(cfg: Any, *names: str, model: str) -> None:
    """Refuse config entries that are not positive numbers (ratios, scales).

    Args:
        cfg: A config dataclass or omegaconf object holding the entries.
        *names: Attribute names to check, in the order they are reported.
        model: Registered model name, named in the message.

    Raises:
        UsageError: On the first entry that is not above 0.
    """
    for name in names:
        value = getattr(cfg, name)
        if not float(value) > 0:
            raise UsageError(f"model.{name} must be a positive number for {model}, got {value}")


def check_min_grid(spec: "DataSpec", model: str, minimum: int = 2, padding: int = 0) -> None:
    """Refuse grids too coarse for the model (e.g. a spectral layer needs two points).

    Args:
        spec: The dataset's self-description.
        model: Registered model name, used in the message.
        minimum: Points the model needs on every spatial axis.
        padding: Points the model appends to every axis itself; they count towards
            ``minimum``, while the message shows the data's own grid.

    Raises:
        UsageError: If an axis has fewer than ``minimum`` points after padding.
    """
    if min(n + padding for n in spec.spatial_shape) < minimum:
        raise UsageError(
            f"model '{model}' needs at least {minimum} grid points per axis, got {spec.spatial_shape}"
        )


def folded_sizes(spec: "DataSpec") -> dict[str, int]:
    """Sizes a frames-as-channels model is built with.

    Args:
        spec: The dataset's self-description.

    Returns:
        ``ndim`` (spatial axes), ``in_channels`` (``t_in * C``), ``out_frames``
        (``t_out``) and ``n_fields`` (``C``), as keyword arguments for the model.
    """
    return {
        "ndim": spec.ndim,
        "in_channels": spec.t_in * spec.n_channels,
        "out_frames": spec.t_out,
        "n_fields": spec.n_channels,
    }


def check_folded_input(x: "torch.Tensor", ndim: int, in_channels: int, n_fields: int, model: str) -> None:
    """Check that an input fits a model built by :func:`folded_sizes`.

    Args:
        x: Input ``(B, T, *S, C)``.
        ndim: Spatial axes the model was built for.
        in_channels: ``t_in * C`` the model was built for.
        n_fields: ``C`` the model was built for.
        model: Model name as shown in the message (``"FNO"``).

    Raises:
        ValueError: On another number of spatial axes, frames or fields.
    """
    _, t_in, *grid, fields = x.shape
    if len(grid) != ndim or t_in * fields != in_channels or fields != n_fields:
        raise ValueError(
            f"{model} built for (B, {in_channels // n_fields}, <{ndim} axes>, "
            f"{n_fields}) inputs, got {tuple(x.shape)}"
        )


def fold_time(x: "torch.Tensor") -> "torch.Tensor":
    """Fold the frames into the channels, channel-last.

    Args:
        x: ``(B, T, *S, C)``.

    Returns:
        ``(B, *S, T * C)``; channel ``t * C + c`` holds field ``c`` of frame ``t``.
    """
    batch, frames, *grid, fields = x.shape
    return x.movedim(1, -2).reshape(batch, *grid, frames * fields)  # (B, *S, T*C)


def unfold_time(y: "torch.Tensor", grid: Sequence[int], frames: int) -> "torch.Tensor":
    """Inverse of :func:`fold_time` for a model's output.

    Args:
        y: ``(B, *S, frames * C)`` or ``(B, N, frames * C)`` with ``N`` the number of
            grid points in row-major order.
        grid: Spatial shape ``S``.
        frames: Frames folded into the last axis.

    Returns:
        ``(B, frames, *S, C)``.
    """
    return y.reshape(y.shape[0], *grid, frames, -1).movedim(-2, 1)  # (B, frames, *S, C)


def grid_coordinates(spatial: Sequence[int], like: "torch.Tensor") -> "torch.Tensor":
    """Normalised coordinates of a regular grid: ``i / n`` along an axis of ``n`` points.

    The end point 1 is left out (as in neuraloperator's grid embedding): point ``2i`` of a
    grid twice as fine then has the same coordinate as point ``i``, so models that append
    coordinates stay discretisation invariant, and a periodic domain is not counted twice.

    Args:
        spatial: Grid size per spatial axis.
        like: Any tensor; the coordinates take its device and dtype.

    Returns:
        ``(*S, ndim)``: entry ``[i, j, ..., a]`` is the coordinate of point ``(i, j, ...)``
        along axis ``a``.
    """
    import torch

    axes = [torch.arange(n, device=like.device, dtype=like.dtype) / n for n in spatial]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*S, ndim)


def append_coordinates(h: "torch.Tensor") -> "torch.Tensor":
    """Append the normalised grid coordinates to channel-last features.

    Args:
        h: ``(B, *S, F)``.

    Returns:
        ``(B, *S, F + ndim)``.
    """
    import torch

    batch, *grid, _ = h.shape
    coords = grid_coordinates(grid, h)  # (*S, ndim)
    return torch.cat([h, coords.expand(batch, *coords.shape)], dim=-1)  # (B, *S, F + ndim)


__all__ = [
    "append_coordinates",
    "check_dims",
    "check_folded_input",
    "check_min_grid",
    "describe_dims",
    "fold_time",
    "folded_sizes",
    "grid_coordinates",
    "require_positive",
    "unfold_time",
]


def check_output_contract(model: "torch.nn.Module", name: str, plugin: str, shape: Sequence[int],
                          t_out: int, device: Any = "cpu") -> None:
    """One dummy forward pass: ``(1, t_in, *S, C)`` must give ``(1, t_out, *S, C)``, same dtype, finite.

    Run right after a model is built and before any training, so that a plugin breaking the
    contract is named at once instead of failing steps later inside evaluation.

    Args:
        model: The built model.
        name: Its registered name.
        plugin: The plugin that registered it.
        shape: The input shape ``(1, t_in, *S, C)``.
        t_out: Frames the model must predict.
        device: Where the model lives.

    Raises:
        UsageError: naming the plugin, the expected and the returned shape (or dtype, or
            non-finite values).
    """
    import torch

    x = torch.randn(*shape, device=device, generator=torch.Generator(device=device).manual_seed(0))
    expected = (shape[0], t_out, *shape[2:])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            y = model(x)  # (1, t_out, *S, C)
    finally:
        model.train(was_training)
    where = f"model '{name}' (plugin '{plugin}')"
    if not isinstance(y, torch.Tensor):
        raise UsageError(f"{where} returned {type(y).__name__} for an input {tuple(x.shape)}; it must return a "
                         f"tensor shaped {expected}")
    if tuple(y.shape) != expected:
        raise UsageError(f"{where} returned shape {tuple(y.shape)} for an input {tuple(x.shape)}; expected "
                         f"{expected} (B, t_out, *S, C)")
    if y.dtype != x.dtype:
        raise UsageError(f"{where} returned dtype {y.dtype} for a {x.dtype} input; return the input's dtype")
    if not bool(torch.isfinite(y).all()):
        raise UsageError(f"{where} returned non-finite values for a standard normal input of shape "
                         f"{tuple(x.shape)}; check its initialisation")
