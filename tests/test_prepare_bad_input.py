"""Every kind of bad input, under both --on-bad modes, through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ray_tagger.cli import main
from tests.datasets import tiny_kaggle, write_csv, write_wav


def _missing_file(root: Path) -> str:
    (root / "train_curated" / "c2.wav").unlink()
    return "c2.wav"


def _unreadable_audio(root: Path) -> str:
    (root / "train_curated" / "c2.wav").write_bytes(b"RIFF\x00\x00junk, not a wave file at all" * 10)
    return "c2.wav"


def _empty_audio(root: Path) -> str:
    sf.write(root / "train_curated" / "c2.wav", np.zeros(0, np.int16), 44100, subtype="PCM_16")
    return "c2.wav"


def _wrong_sample_rate(root: Path) -> str:
    write_wav(root / "train_curated" / "c2.wav", 0.5, seed=3, rate=22050)
    return "c2.wav"


def _multi_channel(root: Path) -> str:
    write_wav(root / "train_curated" / "c2.wav", 0.5, seed=3, channels=2)
    return "c2.wav"


def _unknown_label(root: Path) -> str:
    write_csv(root / "train_curated.csv", [["fname", "labels"], ["c1.wav", "Bark"], ["c2.wav", "Meow,Trumpet"], ["c3.wav", "Waves"]])
    return "c2.wav"


def _duplicate_fname(root: Path) -> str:
    write_csv(root / "train_curated.csv", [["fname", "labels"], ["c1.wav", "Bark"], ["c2.wav", "Meow"], ["c3.wav", "Waves"], ["c2.wav", "Siren"]])
    return "c2.wav"


def _malformed_csv(root: Path) -> str:
    # two labels not quoted: three fields under a two-column header
    (root / "train_curated.csv").write_text("fname,labels\nc1.wav,Bark\nc2.wav,Meow,Siren\nc3.wav,Waves\n")
    return "c2.wav"


DEFECTS = {
    "missing_file": (_missing_file, "missing file"),
    "unreadable_audio": (_unreadable_audio, "corrupt"),
    "empty_audio": (_empty_audio, "no samples"),
    "wrong_sample_rate": (_wrong_sample_rate, "22050 Hz"),
    "multi_channel": (_multi_channel, "2 channels"),
    "unknown_label": (_unknown_label, "Trumpet"),
    "duplicate_fname": (_duplicate_fname, "duplicate fname c2.wav"),
    "malformed_csv": (_malformed_csv, "malformed row of c2.wav"),
}


@pytest.fixture
def broken(request, tmp_path):
    kind = request.param
    data = tmp_path / "data"
    tiny_kaggle(data)
    inject, phrase = DEFECTS[kind]
    fname = inject(data)
    return kind, data, fname, phrase


@pytest.mark.parametrize("broken", sorted(DEFECTS), indirect=True)
def test_on_bad_fail_stops_with_one_line(ray_session, broken, tmp_path, capsys):
    kind, data, fname, phrase = broken
    shards = tmp_path / "shards"
    code = main(["prepare", str(data), str(shards), "--on-bad", "fail"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("ray-tagger prepare: error: ")
    assert fname in err[-1] and phrase in err[-1]
    assert not shards.exists(), "nothing may be written when failing"


@pytest.mark.parametrize("broken", sorted(DEFECTS), indirect=True)
def test_on_bad_skip_records_and_carries_on(ray_session, broken, tmp_path, capsys):
    kind, data, fname, phrase = broken
    shards = tmp_path / "shards"
    assert main(["prepare", str(data), str(shards)]) == 0
    out = capsys.readouterr().out
    assert "skipped: " in out and fname in out
    manifest = json.loads((shards / "manifest.json").read_text())
    (item,) = manifest["skipped"]
    assert item["kind"] == kind and item["fname"] == fname and phrase in item["reason"]
    assert item["source"] == "curated"
    for source, c in manifest["counts"].items():
        assert c["written"] + c["skipped"] == c["total"], source
    expected_total = 4 if kind == "duplicate_fname" else 3
    curated = manifest["counts"]["curated"]
    assert (curated["total"], curated["skipped"]) == (expected_total, 1)
    assert manifest["counts"]["noisy"]["written"] == 2 and manifest["counts"]["test"]["written"] == 2
    written = _curated_ids(shards)
    if kind == "duplicate_fname":
        assert written == ["c1.wav", "c2.wav", "c3.wav"]  # the first c2.wav row is kept
    else:
        assert written == ["c1.wav", "c3.wav"]


def _curated_ids(shards: Path) -> list[str]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(shards / "audio" / "source=curated", columns=["clip_id"]).column("clip_id").to_pylist())


@pytest.mark.parametrize("on_bad", ["skip", "fail"])
def test_unusable_csv_header_is_an_error_in_both_modes(ray_session, tmp_path, capsys, on_bad):
    data = tmp_path / "data"
    tiny_kaggle(data)
    (data / "train_noisy.csv").write_text("name;tags\nn1.wav;Bark\n")
    assert main(["prepare", str(data), str(tmp_path / "shards"), "--on-bad", on_bad]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "train_noisy.csv" in err[-1] and "header" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_refuses_to_overwrite_a_folder_that_is_not_shards(ray_session, tmp_path, capsys):
    data = tmp_path / "data"
    tiny_kaggle(data)
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("do not delete")
    assert main(["prepare", str(data), str(target)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (target / "thesis.tex").read_text() == "do not delete"


def test_files_the_ray_workers_missed_but_this_process_reads_stop_prepare(tmp_path):
    """A cluster whose nodes do not see the data set folder: the workers report ``missing_file`` for
    files that exist here. That is not a bad row to skip but a wrong setup, refused with one line;
    files missing everywhere stay skipped rows."""
    from ray_tagger.layout import ClipRecord, Problem
    from ray_tagger.prepare import check_visible

    here = tmp_path / "a.wav"
    write_wav(here, 0.01, seed=0)
    gone = str(tmp_path / "b.wav")
    records = [ClipRecord("curated", "a.wav", str(here), ("x",), "c.csv", 2),
               ClipRecord("curated", "b.wav", gone, ("x",), "c.csv", 3)]
    check_visible(records, {1: Problem("missing_file", f"{gone}: missing file")})  # missing everywhere: a skipped row
    with pytest.raises(FileNotFoundError, match=r"1 audio files that this process reads \(e\.g\. .*a\.wav\) were missing "
                                                r"on the Ray node") as e:
        check_visible(records, {0: Problem("missing_file", f"{here}: missing file"),
                                1: Problem("missing_file", f"{gone}: missing file")})
    assert "\n" not in str(e.value) and "shared mount" in str(e.value)
