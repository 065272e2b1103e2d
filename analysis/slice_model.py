"""Slice models: the architectures, building one from its configuration, and their checkpoints.

``--arch paper`` is MicroOpt's network (:mod:`analysis.paper_model`); ``--arch ensemble`` (the default) a
monotone, link-bounded deep ensemble (:mod:`analysis.ensemble_model`). Every model is a :class:`SliceModel`:
``model(inputs)`` gives the QoS mean and standard deviation in Mbps for inputs (..., 3) ordered as
``FEATURES`` (n_users, bw, cpu); ``model.support`` is the range of its training data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from analysis.ensemble_model import EnsembleConfig, EnsembleModel
from analysis.model_base import SIGMA_FLOOR, ModelSupport, SliceModel, TargetScale
from analysis.paper_model import PaperConfig, PaperModel
from collectors.dataset import FEATURES
from core.errors import InputError
from core.provenance import slicebed_version

__all__ = ["ARCHITECTURES", "CHECKPOINT_VERSION", "MODEL_FILE", "SIGMA_FLOOR", "EnsembleConfig", "ModelConfig",
           "ModelSupport", "PaperConfig", "SliceModel", "TargetScale", "build_model", "load_model", "pick_device",
           "save_model"]

CHECKPOINT_FORMAT = "slicebed.slice_model"
CHECKPOINT_VERSION = 2
"""Version 2 added the architecture name, the training support, the QoS direction and the sigma scale."""
MODEL_FILE = "model.pt"

ModelConfig = PaperConfig | EnsembleConfig
ARCHITECTURES: dict[str, type[PaperConfig] | type[EnsembleConfig]] = {"paper": PaperConfig,
                                                                      "ensemble": EnsembleConfig}


def build_model(config: ModelConfig, scale: TargetScale, support: ModelSupport, higher_is_better: bool = True,
                sigma_scale: float = 1.0, generator: torch.Generator | None = None) -> SliceModel:
    """A freshly initialized model of the architecture ``config`` describes."""
    if isinstance(config, PaperConfig):
        return PaperModel(config, scale, support, higher_is_better, sigma_scale)
    return EnsembleModel(config, scale, support, higher_is_better, sigma_scale, generator)


def save_model(model: SliceModel, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.pt``: weights, architecture, target scale, support and provenance."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "slicebed_version": slicebed_version(),
        "arch": model.arch,
        "features": list(FEATURES),
        "config": asdict(model.config),
        "scale": {"low": model.scale.low, "high": model.scale.high},
        "support": model.support.as_dict(),
        "higher_is_better": model.higher_is_better,
        "sigma_scale": model.sigma_scale,
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "extra": extra or {},
    }
    temporary = path.with_suffix(".pt.tmp")
    torch.save(checkpoint, temporary)
    temporary.replace(path)
    return path


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> SliceModel:
    """Load a slice model written by :func:`save_model`, in evaluation mode.

    Raises:
        InputError: the directory or file is missing, not a slicebed checkpoint, from another checkpoint
            version (an older slicebed), of an unknown architecture, or its weights do not fit it.
    """
    directory = Path(directory)
    path = directory / MODEL_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise InputError(f"{directory}: no slice model here (expected {MODEL_FILE}; train one with "
                         "`slicebed model train`)")
    try:
        with warnings.catch_warnings():  # a foreign file's pickle protocol draws a UserWarning before the refusal
            warnings.simplefilter("ignore")
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise InputError(f"{path}: not a readable slicebed model checkpoint ({type(exc).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a slicebed slice-model checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        written_by = checkpoint.get("slicebed_version", "an unknown slicebed")
        raise InputError(
            f"{path}: checkpoint version {checkpoint.get('version')} (written by slicebed {written_by}) is not "
            f"supported (this slicebed reads version {CHECKPOINT_VERSION}); retrain the model with "
            "`slicebed model train`"
        )
    if checkpoint.get("features") != list(FEATURES):
        raise InputError(f"{path}: model inputs {checkpoint.get('features')} differ from {list(FEATURES)}")
    model = _model_from(checkpoint, path)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # skip torch's header line
        raise InputError(f"{path}: weights do not match the recorded architecture ({detail})") from None
    return model.to(device).eval()


def _model_from(checkpoint: dict[str, Any], path: Path) -> SliceModel:
    """An untrained model of the checkpoint's architecture, scale, support and calibration."""
    arch = checkpoint.get("arch")
    if arch not in ARCHITECTURES:
        raise InputError(f"{path}: unknown model architecture {arch!r} (this slicebed knows "
                         f"{', '.join(ARCHITECTURES)}); retrain the model")
    try:
        config = ARCHITECTURES[arch](**checkpoint["config"])
        scale = TargetScale(**checkpoint["scale"])
        support = ModelSupport.from_dict(checkpoint["support"])
        higher_is_better = checkpoint["higher_is_better"]
        sigma_scale = checkpoint["sigma_scale"]
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: no valid architecture, QoS scale or support recorded "
                         f"({type(exc).__name__}: {exc})") from None
    bounds = (scale.low, scale.high)
    if not all(isinstance(value, int | float) and math.isfinite(value) for value in bounds) or scale.low > scale.high:
        raise InputError(f"{path}: the recorded QoS scale {bounds} is not a finite range low <= high")
    if not isinstance(higher_is_better, bool):
        raise InputError(f"{path}: the recorded QoS direction {higher_is_better!r} is not true or false")
    if not isinstance(sigma_scale, int | float) or not math.isfinite(sigma_scale) or sigma_scale <= 0:
        raise InputError(f"{path}: the recorded sigma scale {sigma_scale!r} is not a positive number")
    return build_model(config, scale, support, higher_is_better, float(sigma_scale))


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cpu`` and ``cuda`` are taken as asked."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise InputError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device(requested)
