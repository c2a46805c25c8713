"""pdeb plugin: DPOT, the Auto-Regressive Denoising Operator Transformer (Hao et al., ICML 2024).

Registers the model ``dpot`` (1D, 2D and 3D). Importing this module is cheap: torch is
imported by the factory. The settings here (:class:`DPOTConfig`, a size preset and the
data) become the network's :class:`pdeb_dpot.model.DPOTArchitecture` in one place,
:func:`architecture`. The model itself lives in :mod:`pdeb_dpot.model`, official
compatibility in :mod:`pdeb_dpot.official`, checkpoint loading and the 2D -> 3D transfer
in :mod:`pdeb_dpot.checkpoint`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional

from pdebench_core import hookimpl
from pdebench_core.errors import UsageError

if TYPE_CHECKING:
    import torch

    from pdebench_core.spec import DataSpec
    from pdeb_dpot.model import DPOTArchitecture

PAPER = ("Zhongkai Hao, Chang Su, Songming Liu, Julius Berner, Chengyang Ying, Hang Su, "
         "Anima Anandkumar, Jian Song, Jun Zhu. DPOT: Auto-Regressive Denoising Operator "
         "Transformer for Large-Scale PDE Pre-Training. ICML 2024. arXiv:2403.03542")

#: ``model.act`` values, as the official code spells them in lower case (``ELU`` works too).
ACTIVATION_NAMES = ("gelu", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "elu", "silu")
#: ``model.time_agg`` values: the official learned-frequency aggregator, or a plain MLP.
TIME_AGGREGATIONS = ("exp_mlp", "mlp")

# The released sizes (paper Table 5): latent width, blocks, mixer heads, MLP ratio, head width.
SIZES: dict[str, dict[str, Any]] = {
    "ti": dict(embed_dim=512, depth=4, n_blocks=4, mlp_ratio=1, out_layer_dim=32),
    "s": dict(embed_dim=1024, depth=6, n_blocks=8, mlp_ratio=1, out_layer_dim=32),
    "m": dict(embed_dim=1024, depth=12, n_blocks=8, mlp_ratio=4, out_layer_dim=32),
    "l": dict(embed_dim=1536, depth=24, n_blocks=16, mlp_ratio=4, out_layer_dim=128),
    "h": dict(embed_dim=2048, depth=27, n_blocks=8, mlp_ratio=4, out_layer_dim=128),
}


@dataclass
class DPOTConfig:
    """Settings of the ``dpot`` model (``model.<key>=...`` on the command line).

    The architecture comes from ``size``; any of ``embed_dim``, ``depth``, ``n_blocks``,
    ``mlp_ratio`` and ``out_layer_dim`` set explicitly overrides the preset. The grid,
    ``t_in`` and ``t_out`` come from the data.

    Attributes:
        size: Size preset: ``ti`` (7.5M parameters at the official setting), ``s`` (31M),
            ``m`` (122M), ``l`` (509M) or ``h`` (1.03B).
        embed_dim: Latent width D (a multiple of 8 and of ``n_blocks``); None = preset.
        depth: Number of Fourier-mixer blocks; None = preset.
        n_blocks: Heads of the block-diagonal spectral MLP (the official name); None = preset.
        mlp_ratio: Block MLP hidden width as a multiple of D; None = preset.
        out_layer_dim: Width of the output head; None = preset.
        patch_size: Patch edge P; every spatial size of the data must be a multiple of it.
            The latent grid is the data grid divided by P.
        modes: Fourier modes kept per axis of the latent grid (official: the first
            ``modes`` non-negative frequencies of every axis).
        modes_z: 3D only: modes kept on the third spatial axis (the official 3D model fixes
            this at 8).
        symmetric_modes: Keep frequencies ``|k| < modes`` on two-sided FFT axes instead of
            the official ``0 <= k < modes``. Off by default; official checkpoints assume off.
        in_channels: Channels the model reads. Inputs with fewer channels are padded with
            ones (the official convention, used to pre-train on datasets with 1-4 fields),
            and only the real channels are returned. 0 = the data's count, raised to the
            checkpoint's when ``init`` is set (4 for every released DPOT).
        n_cls: Outputs of the dataset-class head. DPOT never trains it; it exists so that
            official checkpoints (12 classes) load strictly.
        normalize: Normalise each sample and channel over space and time, modulate the
            latent with a scale and shift predicted from the statistics, and undo the
            normalisation on the output.
        act: Activation: gelu, tanh, sigmoid, relu, leaky_relu, softplus, elu or silu.
        time_agg: Temporal aggregation: ``exp_mlp`` (official: learned frequencies) or ``mlp``.
        init: A checkpoint to start from: a released DPOT file, a pdeb run checkpoint, a
            saved state dict, or a run id (its newest intact checkpoint); "" = random
            initialisation.
        init_components: Components to take from ``init``: any of patch_embed, pos,
            blocks, time_agg, cls_head, scale_feats, out. Empty = all of them; for a 2D
            checkpoint in a 3D model, empty = blocks only (the official default of the 3D
            fine-tuning); ``[blocks,time_agg]`` also copies the time aggregator.
    """

    size: str = "ti"
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    n_blocks: Optional[int] = None
    mlp_ratio: Optional[float] = None
    out_layer_dim: Optional[int] = None
    patch_size: int = 8
    modes: int = 32
    modes_z: int = 8
    symmetric_modes: bool = False
    in_channels: int = 0
    n_cls: int = 12
    normalize: bool = False
    act: str = "gelu"
    time_agg: str = "exp_mlp"
    init: str = ""
    init_components: List[str] = field(default_factory=list)


PROFILES: dict[str, dict[str, Any]] = {
    # Seconds on two CPU cores: one narrow block.
    "smoke": dict(embed_dim=32, depth=1, n_blocks=4, mlp_ratio=1, out_layer_dim=8, patch_size=4,
                  modes=8, modes_z=4),
    # A real model that trains on a laptop CPU in minutes (about 0.4M parameters).
    "small": dict(embed_dim=128, depth=3, n_blocks=4, mlp_ratio=1, out_layer_dim=32, patch_size=4,
                  modes=16, modes_z=8),
    # The published DPOT-Ti configuration.
    "paper": dict(size="ti", patch_size=8, modes=32, modes_z=8),
}


def resolve_architecture(cfg: Any) -> dict[str, Any]:
    """The size preset with the explicitly set fields of ``cfg`` applied on top.

    Raises:
        UsageError: an unknown size.
    """
    size = str(cfg.size).lower()
    if size not in SIZES:
        from pdebench_core.errors import did_you_mean

        raise UsageError(f"unknown DPOT size '{cfg.size}'{did_you_mean(size, SIZES)}; "
                         f"choose one of {', '.join(SIZES)}")
    arch = dict(SIZES[size])
    for key in arch:
        value = getattr(cfg, key, None)
        if value is not None:
            arch[key] = value
    return arch


def check_settings(cfg: Any) -> None:
    """DPOT's checks of its settings alone, run when a run is configured, before any data is
    made: the size preset, positive sizes, an ``embed_dim`` the blocks and GroupNorm divide, the
    activation and the time aggregation (the grid's divisibility by ``patch_size`` waits for
    the data).

    Raises:
        UsageError: Naming the first setting DPOT cannot take.
    """
    arch = resolve_architecture(cfg)
    sizes = {"embed_dim": arch["embed_dim"], "depth": arch["depth"], "n_blocks": arch["n_blocks"],
             "out_layer_dim": arch["out_layer_dim"], "patch_size": cfg.patch_size, "modes": cfg.modes}
    for key, value in sizes.items():
        if int(value) < 1:
            raise UsageError(f"model.{key} must be a positive integer for dpot, got {value}")
    if not float(arch["mlp_ratio"]) > 0:
        raise UsageError(f"model.mlp_ratio must be positive for dpot, got {arch['mlp_ratio']}")
    if int(arch["embed_dim"]) % 8 or int(arch["embed_dim"]) % int(arch["n_blocks"]):
        raise UsageError(f"model.embed_dim {arch['embed_dim']} must be a multiple of 8 (GroupNorm groups) and "
                         f"of model.n_blocks {arch['n_blocks']} for dpot")
    if str(cfg.act).lower() not in ACTIVATION_NAMES:
        raise UsageError(f"model.act must be one of {', '.join(ACTIVATION_NAMES)} for dpot, got '{cfg.act}'")
    if str(cfg.time_agg) not in TIME_AGGREGATIONS:
        raise UsageError(f"model.time_agg must be one of {', '.join(TIME_AGGREGATIONS)} for dpot, "
                         f"got '{cfg.time_agg}'")


def build(cfg: Any, spec: "DataSpec") -> "torch.nn.Module":
    """Build DPOT for a dataset: 1D, 2D or 3D from ``spec.spatial_shape``.

    Args:
        cfg: A :class:`DPOTConfig` (or an omegaconf object with the same fields).
        spec: The data's self-description (grid, fields, ``t_in``, ``t_out``).

    Returns:
        A :class:`pdeb_dpot.model.DPOT` mapping ``(B, t_in, *S, C)`` to ``(B, t_out, *S, C)``.

    Raises:
        UsageError: bad sizes, a grid not divisible by the patch size, more data channels
            than ``in_channels``, or a checkpoint that does not fit.
    """
    from pdeb_dpot.checkpoint import load_pretrained, one_dimension, read_state_dict
    from pdeb_dpot.model import DPOT, check_divisible

    if len(spec.groups) > 1:
        return _build_multidim(cfg, spec.groups)
    ndim = len(spec.spatial_shape)
    if ndim not in (1, 2, 3):
        raise UsageError(f"DPOT supports 1, 2 or 3 spatial dimensions, the data has {ndim}")
    check_divisible(spec.spatial_shape, cfg.patch_size)
    state = one_dimension(read_state_dict(cfg.init), ndim, cfg.init) if cfg.init else None
    model = DPOT(architecture(cfg, spec, _in_channels(cfg, spec, state)))
    if state is not None:
        from pdeb_dpot.checkpoint import COMPONENT_PREFIXES, component_of

        components = list(cfg.init_components) if cfg.init_components else None
        loaded = {component_of(k) for k in load_pretrained(model, state, components, source_name=cfg.init)}
        # what came from the checkpoint, for the run's log (a 2D one in a 3D model: the blocks)
        model.initialized_components = tuple(c for c in COMPONENT_PREFIXES if c in loaded)
    return model


def architecture(cfg: Any, spec: "DataSpec", in_channels: int) -> "DPOTArchitecture":
    """The network a :class:`DPOTConfig` describes for data with ``spec`` (one dimension).

    Args:
        cfg: The settings; the size preset fills the architecture fields left at None.
        spec: Grid, ``t_in`` and ``t_out`` of the data.
        in_channels: Channels the model reads (see :func:`_in_channels`).
    """
    from pdeb_dpot.model import DPOTArchitecture

    ndim = len(spec.spatial_shape)
    modes = (cfg.modes, cfg.modes, cfg.modes_z) if ndim == 3 else cfg.modes
    return DPOTArchitecture(
        ndim=ndim, img_size=tuple(spec.spatial_shape), patch_size=cfg.patch_size,
        in_channels=in_channels, out_channels=in_channels, in_timesteps=spec.t_in,
        out_timesteps=spec.t_out, modes=modes, n_cls=cfg.n_cls, normalize=cfg.normalize,
        act=cfg.act, time_agg=cfg.time_agg, symmetric_modes=cfg.symmetric_modes,
        **resolve_architecture(cfg),
    )


def _in_channels(cfg: Any, spec: "DataSpec", state: Optional[dict]) -> int:
    """``cfg.in_channels``, or when 0 the data's count, raised to the checkpoint's (same
    dimension): data with fewer channels than the pre-training is padded, as the official
    fine-tuning does; data with more keeps its own, and the checkpoint's parts that depend on
    the channels then do not fit (their error names the ``init_components`` that leaves them out)."""
    from pdeb_dpot.official import infer_official_config

    in_channels = int(cfg.in_channels)
    if in_channels == 0:
        in_channels = spec.n_channels
        if state is not None and "patch_embed.proj.0.weight" in state:
            source = infer_official_config(state)
            if source["ndim"] == len(spec.spatial_shape):
                in_channels = max(in_channels, source["in_channels"])
    if spec.n_channels > in_channels:
        raise UsageError(f"the data has {spec.n_channels} channels but model.in_channels is {in_channels}; "
                         f"set it to at least {spec.n_channels}, or to 0 for the data's count (raised to a "
                         f"model.init checkpoint's)")
    return in_channels


def _build_multidim(cfg: Any, groups: "tuple[DataSpec, ...]") -> "torch.nn.Module":
    """One DPOT per spatial dimension sharing blocks and time aggregator (see ``multidim``).

    ``init`` loads into every model that can start from it: one of a dimension the checkpoint
    holds takes that dimension's weights, one of more dimensions the blocks of the largest lower
    one (a 2D -> 3D transfer); a model of fewer dimensions than any the checkpoint holds sees
    its blocks and time aggregator through the sharing.

    Raises:
        UsageError: No model can start from ``init``.
    """
    from omegaconf import OmegaConf

    from pdeb_dpot.multidim import MultiDimDPOT

    held = _checkpoint_dimensions(cfg.init) if cfg.init else []
    loading = {g.ndim for g in groups if held and min(held) <= g.ndim}
    if held and not loading:
        dims = ", ".join(f"{g.ndim}D" for g in sorted(groups, key=lambda g: g.ndim))
        raise UsageError(f"model.init '{cfg.init}' holds DPOT for {', '.join(f'{d}D' for d in held)} data; this "
                         f"run's data is {dims}, none with as many spatial dimensions, so no model can start from it")
    models = {}
    # A model that loads the checkpoint, its own dimension first, owns the shared weights.
    for group in sorted(groups, key=lambda g: (g.ndim not in loading, g.ndim not in held, g.ndim)):
        sub_cfg = OmegaConf.create(OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else asdict(cfg))
        if group.ndim not in loading:
            sub_cfg.init = ""
        models[group.ndim] = build(sub_cfg, group)
    combined = MultiDimDPOT(models)
    if loading:  # for the run's log: what each dimension's model took
        loaded = {d: models[d].initialized_components for d in sorted(loading)}
        shared = [c for c in ("blocks", "time_agg") if any(c in parts for parts in loaded.values())]
        combined.initialized_components = tuple(
            f"{d}D: {' '.join(loaded[d]) if d in loaded else ' '.join(shared) + ' shared'}" for d in sorted(models))
    return combined


def _checkpoint_dimensions(source: str) -> list[int]:
    """The spatial dimensions of the DPOT models a checkpoint holds (two for a 2D+3D pre-training)."""
    from pdeb_dpot.checkpoint import mixed_dimensions, read_state_dict
    from pdeb_dpot.official import infer_official_config

    state = read_state_dict(source)
    return mixed_dimensions(state) or [int(infer_official_config(state)["ndim"])]


@hookimpl
def register_tasks(register: Any) -> None:
    """Register ``pretrain`` (denoising auto-regressive pre-training) and ``finetune``."""
    from pdeb_dpot.tasks import register as register_dpot_tasks

    register_dpot_tasks(register)


@hookimpl
def register_models(register: Any) -> None:
    """Register ``dpot``."""
    register(
        "dpot", build, config=DPOTConfig, profiles=PROFILES,
        description="DPOT: patch embedding, temporal aggregation and Fourier-mixer blocks "
                    "(AFNO-style), pre-trained by auto-regressive denoising; loads the "
                    "official checkpoints (Ti/S/M/L/H)",
        paper=PAPER,
        dims=(1, 2, 3),  # registration parameters: pdeb checks the data against them
        mixed_dims=True,
        default_task="pretrain",
        check=check_settings,
        sizes=list(SIZES),
        code="https://github.com/thu-ml/DPOT",
    )
