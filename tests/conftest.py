"""Shared fixtures: the public MicroOpt dataset (read in place, never copied), a trained slice model, a real
Prometheus, and the machine-wide local-testbed lock. Shared plain helpers are in ``helpers.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import SHARED
from local_testbed import testbed_session_lock
from prometheus_process import Exporter, PrometheusProcess
from reference import unfolded_float64

from analysis.slice_model import PaperConfig, SliceModel, load_model, save_model
from analysis.training import TrainingConfig, train
from collectors.dataset import load_qos_csv

MICROOPT_CSV = SHARED / "datasets" / "microopt" / "train_dataset.csv"


@pytest.fixture(scope="session")
def microopt_csv() -> Path:
    """Path of the shared MicroOpt training CSV (see its PROVENANCE.md)."""
    if not MICROOPT_CSV.is_file():
        pytest.fail(f"the shared MicroOpt dataset is missing: {MICROOPT_CSV}")
    return MICROOPT_CSV


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory, microopt_csv: Path) -> Path:
    """A paper-architecture slice model trained briefly (600 epochs, about 6 s) on the MicroOpt dataset (the
    optimizer tests' model: small and fast to evaluate)."""
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and immune to a busy second core
    frame = load_qos_csv(microopt_csv, settle_s=10)
    result = train(frame, TrainingConfig(epochs=600, seed=0, model=PaperConfig(), folds=0, calibrate=False))
    directory = tmp_path_factory.mktemp("model")
    save_model(result.model, directory)
    return directory


@pytest.fixture(scope="session")
def slice_model(trained_model_dir: Path) -> SliceModel:
    """The trained slice model of ``trained_model_dir``, loaded (evaluation mode, CPU, one torch thread)."""
    torch.set_num_threads(1)
    return load_model(trained_model_dir)


@pytest.fixture(scope="session")
def float64_model(slice_model: SliceModel) -> SliceModel:
    """The slice model unfolded in float64, for the independent reference of ``reference.py``."""
    return unfolded_float64(slice_model)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusProcess]:
    """A real Prometheus on a free loopback port scraping a test exporter every second (stopped by PID)."""
    exporter = Exporter()
    server = PrometheusProcess(tmp_path, exporter)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        exporter.close()


@pytest.fixture(scope="session")
def exclusive_testbed() -> Iterator[None]:
    """This session's turn on the machine's local testbed, kept to the end of the session: tests that bring a
    testbed up, or measure rates and CPU on real kernel objects, use it, so two test runs never collide."""
    with testbed_session_lock():
        yield
