"""U-Net baseline for 1D, 2D and 3D data.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, in the form used as a PDE baseline by PDEBench
(Takamoto et al., NeurIPS 2022): input frames folded into channels, a
convolutional encoder-decoder with skip connections, and ``t_out * C`` output
channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pdebench_core import hookimpl
from pdebench_core.errors import UsageError
from pdebench_core.models import check_dims, folded_sizes, require_positive

if TYPE_CHECKING:  # torch is imported inside the factory, never at plugin import
    import torch.nn as nn

    from pdebench_core.spec import DataSpec

SUPPORTED_DIMS = (1, 2, 3)
NORMS = ("group", "batch", "none")
PADDING_MODES = ("auto", "zeros", "circular", "replicate", "reflect")


@dataclass
class UNetConfig:
    """Hyperparameters of the U-Net (``model.unet.<key>``).

    Attributes:
        width: Channels of the first level; every level below doubles them.
        levels: Number of 2x down-samplings; every grid size must be divisible
            by ``2 ** levels``.
        norm: Normalisation after every convolution: ``"group"`` (GroupNorm with up
            to 8 groups, independent of the batch), ``"batch"`` or ``"none"``.
        padding_mode: Border handling of the 3-point convolutions: ``"auto"``
            (circular for periodic data, zeros otherwise), ``"zeros"``,
            ``"circular"``, ``"replicate"`` or ``"reflect"``.
        use_grid: Append the normalised coordinates (i / n along an axis of n points) as input channels.
    """

    width: int = 56
    levels: int = 4
    norm: str = "group"
    padding_mode: str = "auto"
    use_grid: bool = False


PROFILES = {
    "smoke": {"width": 8, "levels": 2},
    "small": {"width": 16, "levels": 4},  # about 1.9M parameters in 2D, trains on a CPU
    "paper": {"width": 56, "levels": 4},  # the defaults: about 24M parameters in 2D
}


def build(cfg: UNetConfig, spec: "DataSpec") -> "nn.Module":
    """Build a U-Net for the data described by ``spec``.

    Args:
        cfg: Hyperparameters (a :class:`UNetConfig` or an omegaconf object alike).
        spec: Dataset description: fields, spatial shape, ``t_in``, ``t_out``, boundary.

    Returns:
        A module mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: On an unsupported number of spatial axes, a grid that is not
            divisible by ``2 ** levels``, or invalid settings.
    """
    check_dims(spec, SUPPORTED_DIMS, "unet")
    require_positive(cfg, "width", "levels", model="unet")
    if cfg.norm not in NORMS:
        raise UsageError(f"model.unet.norm must be one of {', '.join(NORMS)}, got '{cfg.norm}'")
    if cfg.padding_mode not in PADDING_MODES:
        raise UsageError(
            f"model.unet.padding_mode must be one of {', '.join(PADDING_MODES)}, got '{cfg.padding_mode}'"
        )
    factor = 2 ** int(cfg.levels)
    if any(n % factor for n in spec.spatial_shape):
        raise UsageError(
            f"model 'unet' with {cfg.levels} levels needs grid sizes divisible by {factor}; "
            f"dataset '{spec.name}' has {tuple(spec.spatial_shape)} (lower model.unet.levels or resize the data)"
        )
    padding_mode = cfg.padding_mode
    if padding_mode == "auto":
        padding_mode = "circular" if spec.boundary == "periodic" else "zeros"

    from pdeb_unet.model import UNet

    return UNet(
        **folded_sizes(spec),
        width=int(cfg.width),
        levels=int(cfg.levels),
        norm=str(cfg.norm),
        padding_mode=padding_mode,
        use_grid=bool(cfg.use_grid),
    )


@hookimpl
def register_models(register):
    """Register the ``unet`` model."""
    register(
        "unet",
        build,
        config=UNetConfig,
        profiles=PROFILES,
        description="Convolutional U-Net encoder-decoder with skip connections; frames folded into channels",
        paper="Ronneberger et al., U-Net, MICCAI 2015; PDE baseline of Takamoto et al., PDEBench, NeurIPS 2022",
        dims=SUPPORTED_DIMS,
    )


__all__ = ["PROFILES", "UNetConfig", "build", "register_models"]
