"""Model and checkpoint files hold no code: a pickle that would run something is refused unrun.

The hostile files here are built the way an attacker would build them (``__reduce__`` returning
``os.system``), and each test checks that the command's side effect (a file) never happens.
``tag`` runs in this process; ``predict`` refuses before it starts Ray.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from ray_tagger.cli import main
from ray_tagger.config import resolve
from ray_tagger.infer import load_member
from ray_tagger.model import CRNN
from ray_tagger.modelfile import ModelFileError, load_checkpoint, load_model
from tests.datasets import random_model_run

CLASSES = ["bark", "bell", "chime"]


class _RunsCommand:
    """Unpickling this runs ``touch MARKER`` (the attack ``weights_only=False`` lets through)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture()
def good_run(tmp_path):
    run = tmp_path / "run"
    return run, random_model_run(run, CLASSES)


@pytest.fixture()
def wav(tmp_path):
    path = tmp_path / "tone.wav"
    t = np.arange(44100) / 44100
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    return path


@pytest.fixture()
def hostile_run(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "hostile"
    run.mkdir()
    # shaped like a model file of the old, pickled kind, with the payload inside
    torch.save({"model": {"w": torch.zeros(1)}, "classes": CLASSES, "payload": _RunsCommand(marker)}, run / "model.pt")
    return run, marker


def test_the_hostile_file_would_run_its_command_if_unpickled_unsafely(hostile_run):
    # the control: the payload is real (so the refusals below are not vacuous)
    run, marker = hostile_run
    torch.load(run / "model.pt", weights_only=False)
    assert marker.exists()


def test_a_model_file_round_trips_weights_and_json_metadata(good_run):
    run, model = good_run
    loaded, meta = load_member(run / "model.pt")
    assert meta["classes"] == CLASSES and meta["fold"] is None and meta["crop_s"] == 2.0
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def test_tag_scores_with_a_good_model_file(good_run, wav, capsys):
    assert main(["tag", str(good_run[0]), str(wav), "--top", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{wav}: ") and all(c in line for c in CLASSES)


@pytest.mark.parametrize("command", ["tag", "predict"])
def test_tag_and_predict_refuse_a_hostile_model_file_with_one_line_and_run_nothing(command, hostile_run, wav, tmp_path, capsys):
    run, marker = hostile_run
    argv = [command, str(run), str(wav)] + (["--out", str(tmp_path / "sub.csv")] if command == "predict" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / "model.pt") in err and "refused" in err
    assert not marker.exists(), "the pickle's command ran"
    assert not (tmp_path / "sub.csv").exists()


def test_a_plain_dict_of_the_old_layout_is_refused_by_name(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "classes": CLASSES}, path)  # loadable, but no format/JSON
    with pytest.raises(ModelFileError, match="not a ray_tagger model file"):
        load_model(path)


def test_a_hostile_training_checkpoint_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "swa": {}, "generator": _RunsCommand(marker), "iteration": 0, "epoch": 0}, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_real_training_state_loads_with_weights_only(tmp_path):
    from ray_tagger.modelfile import save_checkpoint
    from ray_tagger.swa import SWA

    model = CRNN(resolve("tiny").model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, resolve("tiny").model.n_mels, 50), torch.tensor([50, 40])).sum().backward()
    opt.step()
    swa = SWA(model)
    gen = torch.Generator().manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "swa": swa.state_dict(),
                                        "generator": gen.get_state(), "iteration": 7, "epoch": 1})
    blob = load_checkpoint(tmp_path / "c.pt")
    assert blob["iteration"] == 7 and torch.equal(blob["generator"], gen.get_state())
    fresh = torch.optim.Adam(CRNN(resolve("tiny").model).parameters(), lr=1e-3)
    fresh.load_state_dict(blob["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 1
