"""sweep/evaluate.py: a checkpoint alone rebuilds its model and reproduces the run's test accuracy;
a file that is not a usable checkpoint gets one line naming it, exit code 2, no traceback."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SMALL, run_entry, run_in_process

# One real run: fcfree, 1 epoch on 2,000 images, measured on the full 10k test set (data.test_subset=0),
# so that its metrics.json holds the accuracy that evaluate.py must reproduce.
TRAIN = [*SMALL, "train.checkpoint=true", "model=fcfree", "data.test_subset=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, mnist) -> Path:
    cwd = tmp_path_factory.mktemp("evaluate")
    done = run_entry("run.py", TRAIN, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (cwd / "outputs" / "runs").iterdir()
    return run_dir


def evaluate(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_entry("evaluate.py", ["--threads", "1", *args], cwd=cwd)


def error_lines(done: subprocess.CompletedProcess | tuple[int, str, str]) -> list[str]:
    code, _, err = done if isinstance(done, tuple) else (done.returncode, done.stdout, done.stderr)
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_test_accuracy(run_dir: Path, tmp_path: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    done = evaluate([str(run_dir / "model.pt"), "--format", "json"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads(done.stdout)
    assert row["n_test"] == 10_000 and row["device"] == "cpu" and row["precision"] == "fp32"
    assert row["test_acc"] == metrics["test_acc_per_epoch"][-1]  # the same images, the same code: exactly equal
    assert row["test_acc"] > 0.2  # trained: chance is 0.1
    assert (row["params"], row["macs"], row["fc_free"]) == (metrics["params"], metrics["macs"], metrics["fc_free"])
    assert row["params"] == 7_890 and row["model"] == "fcfree"


@pytest.mark.slow
def test_table_has_one_row_per_file(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "copy" / "model.pt"
    other.parent.mkdir()
    shutil.copy(run_dir / "model.pt", other)
    done = evaluate([str(run_dir / "model.pt"), str(other)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    header, *rows = done.stdout.strip().splitlines()
    assert header.split() == ["params", "MACs", "FC-free", "test_acc", "checkpoint"]
    acc = json.loads((run_dir / "metrics.json").read_text())["test_acc_per_epoch"][-1]
    for row, path in zip(rows, [run_dir / "model.pt", other], strict=True):
        assert row.split() == ["7,890", f"{json.loads((run_dir / 'metrics.json').read_text())['macs']:,}", "yes",
                               f"{acc:.4f}", str(path)]


def damaged(kind: str, run_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / kind / "model.pt"
    path.parent.mkdir()
    good = (run_dir / "model.pt").read_bytes()
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":  # the zip's directory at the end is gone
        path.write_bytes(good[: len(good) // 2])
    elif kind == "cut-short":  # only the last bytes are missing
        path.write_bytes(good[:-100])
    elif kind == "flipped":  # one byte of the largest weight tensor, which torch.load alone does not notice
        import struct
        import zipfile

        with zipfile.ZipFile(run_dir / "model.pt") as archive:
            member = max(archive.infolist(), key=lambda info: info.file_size)
        name_len, extra_len = struct.unpack("<HH", good[member.header_offset + 26: member.header_offset + 30])
        at = member.header_offset + 30 + name_len + extra_len + member.file_size // 2
        path.write_bytes(good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("not-ours", "wrong-widths"):
        import torch

        checkpoint = torch.load(run_dir / "model.pt", weights_only=True)
        if kind == "not-ours":
            checkpoint = checkpoint["state_dict"]  # a bare state_dict, no config
        else:
            model = checkpoint["config"]["model"]  # now it builds a wider first conv than the weights have
            model["widths"]["c1"] = 10
            if model["blocks"]:  # blocks written out, not built from model.arch
                model["blocks"][0]["convs"][0] = 10
        torch.save(checkpoint, path)
    return path  # "missing": never created


BAD = {  # how the file is damaged, then a pattern its one line must match after "error: <path>: "
    "missing": r"no such file$",
    "text": r"not a checkpoint, not a file that torch\.save wrote \(torch\.load: .*\)$",
    "truncated": r"truncated or corrupt checkpoint \(no intact zip directory at its end: cut short or overwritten\)$",
    "cut-short": r"truncated or corrupt checkpoint \(no intact zip directory at its end: cut short or overwritten\)$",
    "flipped": r"truncated or corrupt checkpoint \(model/data/\d+ fails its CRC check\)$",
    "empty": r"empty file, not a checkpoint$",
    "not-ours": r"not a checkpoint of sweep/run\.py \(expected a dict with 'state_dict' and 'config'",
    "wrong-widths": r"state_dict does not fit the model its config builds \(model 'fcfree', [\d,]+ params; "
                    r"shape checkpoint vs model: conv1\.0\.weight \[8, 1, 3, 3\] vs \[10, 1, 3, 3\]",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind, pattern", BAD.items(), ids=BAD.keys())
def test_a_bad_file_is_one_line_naming_it(run_dir: Path, tmp_path: Path, monkeypatch, capsys, kind: str,
                                         pattern: str) -> None:
    path = damaged(kind, run_dir, tmp_path)
    [line] = error_lines(run_in_process("evaluate.py", ["--threads", "1", str(path)], tmp_path, monkeypatch, capsys))
    prefix = f"error: {path}: "
    assert line.startswith(prefix) and re.search(pattern, line[len(prefix):]), line


@pytest.mark.slow
def test_good_files_are_still_reported_next_to_bad_ones(run_dir: Path, tmp_path: Path) -> None:
    missing, text = damaged("missing", run_dir, tmp_path), damaged("text", run_dir, tmp_path)
    done = evaluate([str(missing), str(run_dir / "model.pt"), str(text), "--format", "json"], cwd=tmp_path)
    assert [line.split(": ")[1] for line in error_lines(done)] == [str(missing), str(text)]
    [row] = json.loads(done.stdout)
    assert row["file"] == str(run_dir / "model.pt") and row["test_acc"] > 0.2
