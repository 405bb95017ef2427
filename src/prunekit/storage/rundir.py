"""A saved run's directory: the one place that knows which files a run holds.

A run directory holds ``result.json`` (the result record, with the config it ran under
and the sha256 of every other file), ``model.json`` (constructor name, kwargs, tensor
shapes) and ``model.safetensors`` (the weights, masks applied). :class:`RunDir` writes
them all at once and reads them back; the byte-level work (atomic commit, checksums,
safe loading without unpickling) stays in :mod:`prunekit.storage.saving` and its neighbours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ..config import RunConfig
from ..data import Dataset, dataset_for
from ..errors import PrunekitError
from .saving import load, save_run

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RunDir:
    """The run directory at ``path`` (which need not exist before :meth:`save`)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def save(
        self,
        result: dict[str, Any],
        model: nn.Module | None = None,
        arch: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the whole directory at once (see :func:`prunekit.storage.saving.save_run`);
        returns the result as written, checksums included."""
        return save_run(self.path, result, model, arch)

    def result(self) -> dict[str, Any]:
        """``result.json`` as a dict; a clear error when it is missing or unreadable."""
        where = self.path / RESULT_FILE
        try:
            saved = json.loads(where.read_text())
        except (OSError, ValueError) as e:
            raise PrunekitError(f"{where} is missing or corrupted: {e}") from None
        if not isinstance(saved, dict):
            raise PrunekitError(f"{where} is missing or corrupted: not a JSON object")
        return saved

    def config(self, result: dict[str, Any] | None = None) -> RunConfig:
        """The config the run ran under (``result.json``'s ``"config"``)."""
        saved = self.result() if result is None else result
        try:
            return RunConfig.from_dict(saved["config"])
        except (ValueError, KeyError, TypeError) as e:
            raise PrunekitError(f"{self.path / RESULT_FILE} is missing or corrupted: {e}") from None

    def model(self) -> nn.Module:
        """The saved model, rebuilt from ``model.json`` + ``model.safetensors`` (eval
        mode, checksums verified; see :func:`prunekit.storage.saving.load`)."""
        return load(self.path)

    def dataset(
        self,
        cfg: RunConfig | None = None,
        *,
        data_dir: str | Path | None = None,
        download: bool | None = None,
    ) -> Dataset:
        """The dataset the run used, with the same seed, limits and validation split.
        ``data_dir`` overrides the saved one; ``download=None`` follows the config."""
        cfg = self.config() if cfg is None else cfg
        download = cfg.download if download is None else download
        return dataset_for(
            replace(cfg, data_dir=str(data_dir) if data_dir else cfg.data_dir, download=download)
        )
