"""The Hugging Face folder convention of the language models: ``config.json`` + ``model.safetensors``.

    ConfigDict        ``to_dict`` / ``from_dict`` for a dataclass config (unknown keys are an error;
                      ``model_type`` belongs to the folder, not the config)
    write_pretrained  the config with its ``model_type`` and the weights, atomically, into a folder
    read_pretrained   ``(config dict, state dict)`` back from such a folder; a missing file is an error
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class ConfigDict:
    """Mixin for dataclass configs: a JSON-ready dict and back."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"model_type"})
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})


def write_pretrained(directory: str | os.PathLike, model_type: str, config: ConfigDict, state: dict) -> Path:
    """``directory/config.json`` (with ``model_type``) and ``directory/model.safetensors``."""
    from safetensors.torch import save_file

    from papers.core.io import atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / CONFIG_NAME, {"model_type": model_type, **config.to_dict()})
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def read_pretrained(directory: str | os.PathLike) -> tuple[dict, dict]:
    """The config dict (with its ``model_type``) and the weights written by :func:`write_pretrained`."""
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CONFIG_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{directory} needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    data = json.loads((directory / CONFIG_NAME).read_text())
    return data, load_file(str(directory / WEIGHTS_NAME))
