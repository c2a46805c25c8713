"""U-Net baseline for 1D, 2D and 3D data.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, in the form used as a PDE baseline by PDEBench
(Takamoto et al., NeurIPS 2022): input frames folded into channels, a
convolutional encoder-decoder with skip connections, and ``t_out * C`` output
channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdebench_core.model_plugin import folded_model, require_choice, require_grid_divisible

if TYPE_CHECKING:
    from pdebench_core.spec import DataSpec

NORMS = ("group", "batch", "none")
PADDING_MODES = ("auto", "zeros", "circular", "replicate", "reflect")


@dataclass
class UNetConfig:
    """Hyperparameters of the U-Net (``model.<key>``).

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


def check_choices(cfg: UNetConfig) -> None:
    """Refuse an unknown norm or padding mode, before any data is made."""
    require_choice(cfg, "norm", NORMS, model="unet")
    require_choice(cfg, "padding_mode", PADDING_MODES, model="unet")


def level_arguments(cfg: UNetConfig, spec: "DataSpec") -> dict[str, Any]:
    """The U-Net's own checks and the padding mode that fits ``spec``'s boundary.

    Args:
        cfg: Hyperparameters (a :class:`UNetConfig` or an omegaconf object alike).
        spec: Dataset description, boundary included.

    Returns:
        ``{"padding_mode": ...}``, ``"auto"`` resolved to circular (periodic data) or zeros.

    Raises:
        UsageError: On a grid that is not divisible by ``2 ** levels``.
    """
    require_grid_divisible(spec, 2 ** int(cfg.levels), "unet", setting="levels", reason=f"levels={cfg.levels}")
    padding_mode = str(cfg.padding_mode)
    if padding_mode == "auto":
        padding_mode = "circular" if spec.boundary == "periodic" else "zeros"
    return {"padding_mode": padding_mode}


build, register_models = folded_model(
    "unet", UNetConfig, PROFILES, "pdeb_unet.model:UNet", derive=level_arguments, check=check_choices,
    description="Convolutional U-Net encoder-decoder with skip connections; frames folded into channels",
    paper="Ronneberger et al., U-Net, MICCAI 2015; PDE baseline of Takamoto et al., PDEBench, NeurIPS 2022",
)

__all__ = ["PROFILES", "UNetConfig", "build", "check_choices", "level_arguments", "register_models"]
