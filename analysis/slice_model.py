"""The MicroOpt slice model: a Gaussian DNN mapping (users, bandwidth, CPU) to a QoS distribution.

Architecture (MicroOpt, Sec. VI-A1): BatchNorm on the inputs, ``depth`` shared hidden layers of
``width`` units with ReLU, then a mean branch and a standard-deviation branch of one hidden layer of
``head_width`` units each; the mean output is linear, the standard deviation goes through Softplus.

The network learns the QoS min-max normalized by the training range (recorded in the checkpoint);
``forward`` returns mean and standard deviation in the dataset's unit (Mbps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from collectors.dataset import FEATURES
from core.errors import InputError
from core.provenance import slicebed_version

CHECKPOINT_FORMAT = "slicebed.slice_model"
CHECKPOINT_VERSION = 1
MODEL_FILE = "model.pt"
SIGMA_FLOOR = 1e-4
"""Smallest standard deviation, in normalized QoS units, so the likelihood stays finite."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the slice model. The defaults are the paper's."""

    width: int = 16
    depth: int = 3
    head_width: int = 16

    def __post_init__(self) -> None:
        for name in ("width", "depth", "head_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"model {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TargetScale:
    """Min-max normalization of the QoS target, fixed at training time."""

    low: float
    high: float

    @property
    def span(self) -> float:
        return max(self.high - self.low, 1e-9)


class SliceModel(nn.Module):
    """Gaussian slice model f_QoS(x, r) -> (mu, sigma), inputs ordered as ``FEATURES``."""

    def __init__(self, config: ModelConfig, scale: TargetScale) -> None:
        super().__init__()
        self.config = config
        self.scale = scale
        layers: list[nn.Module] = [nn.BatchNorm1d(len(FEATURES))]
        width_in = len(FEATURES)
        for _ in range(config.depth):
            layers += [nn.Linear(width_in, config.width), nn.ReLU()]
            width_in = config.width
        self.shared = nn.Sequential(*layers)
        self.mean_head = nn.Sequential(
            nn.Linear(config.width, config.head_width), nn.ReLU(), nn.Linear(config.head_width, 1)
        )
        self.std_head = nn.Sequential(
            nn.Linear(config.width, config.head_width), nn.ReLU(), nn.Linear(config.head_width, 1), nn.Softplus()
        )

    def forward_normalized(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the normalized QoS for inputs of shape (..., 3)."""
        flat = inputs.reshape(-1, inputs.shape[-1])
        hidden = self.shared(flat)
        mean = self.mean_head(hidden).squeeze(-1)
        std = self.std_head(hidden).squeeze(-1) + SIGMA_FLOOR
        shape = inputs.shape[:-1]
        return mean.reshape(shape), std.reshape(shape)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the QoS in Mbps for inputs (n_users, bw, cpu) of shape (..., 3)."""
        mean, std = self.forward_normalized(inputs)
        return mean * self.scale.span + self.scale.low, std * self.scale.span

    def gaussian_nll(self, inputs: torch.Tensor, qos: torch.Tensor) -> torch.Tensor:
        """Per-sample Gaussian negative log-likelihood of ``qos`` (Mbps), on the normalized target."""
        mean, std = self.forward_normalized(inputs)
        target = (qos - self.scale.low) / self.scale.span
        return 0.5 * math.log(2 * math.pi) + torch.log(std) + 0.5 * ((target - mean) / std) ** 2


def save_model(model: SliceModel, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``directory/model.pt``: weights, architecture, target scale and provenance."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "slicebed_version": slicebed_version(),
        "features": list(FEATURES),
        "config": asdict(model.config),
        "scale": {"low": model.scale.low, "high": model.scale.high},
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
        InputError: the directory or file is missing, not a slicebed checkpoint, of another
            checkpoint version, or its weights do not fit the recorded architecture.
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
        raise InputError(
            f"{path}: checkpoint version {checkpoint.get('version')} is not supported "
            f"(this slicebed reads version {CHECKPOINT_VERSION}); retrain the model"
        )
    if checkpoint.get("features") != list(FEATURES):
        raise InputError(f"{path}: model inputs {checkpoint.get('features')} differ from {list(FEATURES)}")
    try:
        config = ModelConfig(**checkpoint["config"])
        scale = TargetScale(**checkpoint["scale"])
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: no valid architecture or QoS scale recorded ({type(exc).__name__}: {exc})") from None
    bounds = (scale.low, scale.high)
    if not all(isinstance(value, int | float) and math.isfinite(value) for value in bounds) or scale.low > scale.high:
        raise InputError(f"{path}: the recorded QoS scale {bounds} is not a finite range low <= high")
    try:
        model = SliceModel(config, scale)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 and lines[0].endswith(":") else lines[0]  # skip torch's header line
        raise InputError(f"{path}: weights do not match the recorded architecture ({detail})") from None
    return model.to(device).eval()


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cpu`` and ``cuda`` are taken as asked."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available")
    if requested not in ("cpu", "cuda"):
        raise InputError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device(requested)
