"""`ae-train fit --print-config`: every key of every config class, with value, default and meaning."""

import dataclasses
import re
import tomllib
from dataclasses import dataclass

import pytest

from training.cli import main
from training.config import (
    ImageDataConfig,
    OptimConfig,
    SequenceDataConfig,
    SyntheticDataConfig,
    config_from_dict,
    load_config,
)
from training.config_help import field_meanings
from training.registry import families, model_config_class

CONFIG_CLASSES = [
    ImageDataConfig,
    SequenceDataConfig,
    SyntheticDataConfig,
    OptimConfig,
    *(model_config_class(f) for f in families()),
]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda cls: cls.__name__)
def test_every_config_field_has_a_one_line_meaning(cls):
    meanings = field_meanings(cls)
    assert set(meanings) == {f.name for f in dataclasses.fields(cls)}
    assert all(meaning and "\n" not in meaning for meaning in meanings.values())


def test_a_field_without_a_meaning_is_an_error():
    @dataclass
    class Undocumented:
        documented: int = 1
        """Has one."""
        bare: int = 2

    with pytest.raises(ValueError, match=r"Undocumented fields without a meaning .*: bare"):
        field_meanings(Undocumented)


def _printed(capsys, argv):
    assert main(["fit", "--print-config", *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("family", families())
def test_print_config_lists_every_key_and_reads_back_as_the_same_config(capsys, family):
    text = _printed(capsys, ["--set", f"model.family={family}"])
    config = load_config(None, [f"model.family={family}"])
    expected = {
        "model": ["family", *(f.name for f in dataclasses.fields(config.model))],
        "data": [f.name for f in dataclasses.fields(config.data)],
        "optim": [f.name for f in dataclasses.fields(config.optim)],
    }
    printed = {
        section: re.findall(r"^#? ?(\w+) = ", body, flags=re.M)  # unset keys are commented out
        for section, body in re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S)
    }
    assert printed == expected
    # The listing is TOML: saved as a config, it gives back exactly the config it describes.
    assert config_from_dict(tomllib.loads(text)).to_dict() == config.to_dict()


def test_print_config_shows_a_config_files_values_and_marks_changed_defaults(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.toml"
    path.write_text('[model]\nfamily = "conv"\nlatent_channels = 4\n[data]\ncrop_size = 32\n')
    text = _printed(capsys, [str(path), "--set", "optim.time_budget_s=60"])
    assert re.search(r"^latent_channels = 4 +# Channels of the latent .*\(default: 8\)$", text, flags=re.M)
    assert re.search(r"^crop_size = 32 +# Side of the square random crops.*\(default: 64\)$", text, flags=re.M)
    assert re.search(r"^time_budget_s = 60 +# Stop after .*\(default: unset\)$", text, flags=re.M)
    assert re.search(r'^activation = "gelu" +# .*\["gelu" \| "relu"\]$', text, flags=re.M)  # choices, unchanged
    assert not (tmp_path / "runs").exists()  # printing trains nothing


def test_print_config_without_a_family_names_the_families(capsys):
    assert main(["fit", "--print-config"]) == 2
    families = "codec, contrastive-recurrent, conv, hyperprior-codec, recurrent"
    assert f"needs a `family` (one of: {families})" in capsys.readouterr().err
