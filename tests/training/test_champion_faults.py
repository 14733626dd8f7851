"""evaluate_model_metrics.py: a fault of the champion's artifacts, or of a file only the report reads, never costs the
challenger's results: a champion whose model cannot be used is not measured (evaluation.json says why), hashes that
cannot be read or are empty leave every test review compared. The challenger here is a stand-in (predict patched for
its folder only); the champion goes through the real code."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import evaluate_model_metrics as emm
import pytest

from tests.training.conftest import make_rows, write_tsv


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    write_tsv(data / "test.tsv", make_rows(12, seed=4))
    challenger = tmp_path / "challenger"
    challenger.mkdir()
    (challenger / "config.json").write_text("{}")
    (challenger / "STAND-IN").write_text("")
    real_predict = emm.predict

    def predict(model_dir: Path, texts, length, batch_size):
        if (Path(model_dir) / "STAND-IN").exists():
            return [1] * len(texts)
        return real_predict(model_dir, texts, length, batch_size)

    monkeypatch.setattr(emm, "predict", predict)
    return tmp_path, data, challenger


def _usable_champion(tmp_path: Path, hashes_text: str) -> tuple[Path, Path]:
    """A champion the stand-in predicts for, and a folder holding its train_hashes.txt with ``hashes_text``."""
    champion, hashes = tmp_path / "champion", tmp_path / "hashes"
    for folder in (champion, hashes):
        folder.mkdir()
    (champion / "config.json").write_text("{}")
    (champion / "STAND-IN").write_text("")
    (hashes / "train_hashes.txt").write_text(hashes_text)
    return champion, hashes


def _run(tmp_path: Path, data: Path, challenger: Path, *extra: str) -> tuple[int, dict | None]:
    output = tmp_path / "out"
    code = emm.main(["--input-model", str(challenger), "--input-data", str(data), "--output-data", str(output),
                     "--output-report", str(output / "report"), *extra])
    found = output / "evaluation.json"
    return code, json.loads(found.read_text()) if found.is_file() else None


def test_a_champion_folder_without_its_weights_and_tokenizer_leaves_the_challenger_measured(setup):
    tmp_path, data, challenger = setup
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "config.json").write_text(json.dumps({"model_type": "bert"}))  # the rest of the folder missing

    code, report = _run(tmp_path, data, challenger, "--champion-model", str(champion), "--champion-run-id", "r-old")

    assert code == 0 and report is not None, "the challenger's run fails for its champion's broken artifact"
    assert report["test_rows"] == 12 and "comparison" not in report
    assert report["champion_not_measured"]["champion_run_id"] == "r-old" and report["champion_not_measured"]["error"]


def test_a_champion_archive_cut_short_leaves_the_challenger_measured(setup):
    tmp_path, data, challenger = setup
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text("{}")
    archive = tmp_path / "champion" / "model.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(saved / "config.json", arcname="config.json")
    archive.write_bytes(archive.read_bytes()[:-10])  # cut short / corrupt in S3

    code, report = _run(tmp_path, data, challenger, "--champion-model", str(archive.parent),
                        "--champion-run-id", "r-old")

    assert code == 0 and report is not None, "the challenger's run fails for its champion's broken artifact"
    assert "comparison" not in report and report["champion_not_measured"]["error"].startswith("ModelNotFoundError: ")


def test_a_garbled_champion_hashes_file_measures_on_every_review_instead_of_failing_the_run(setup):
    tmp_path, data, challenger = setup
    champion, hashes = _usable_champion(tmp_path, "0" * 64 + "\n<html>AccessDenied</html>\n")

    code, report = _run(tmp_path, data, challenger, "--champion-model", str(champion), "--champion-run-id", "r-old",
                        "--champion-train-hashes", str(hashes))

    assert code == 0 and report is not None, "the challenger's run fails for its champion's hashes file"
    assert report["comparison"]["overlap_checked"] is False


def test_a_training_summary_the_report_cannot_read_does_not_cost_evaluation_json(setup):
    tmp_path, data, challenger = setup
    (challenger / "training_summary.json").write_text('{"epochs": [{"epoch": 1, "val_acc": 70.')  # cut short

    code, report = _run(tmp_path, data, challenger)

    assert code == 0 and report is not None and report["test_rows"] == 12


def test_an_empty_champion_hashes_file_is_not_told_as_an_overlap_checked(setup):
    """No model is trained on zero reviews: an empty train_hashes.txt (a cut-short object) says nothing about what the
    champion saw, yet evaluation.json says overlap_checked true, 0 left out, and the message then says
    "0 left out: the champion was trained on them" for a comparison that may include the champion's training rows."""
    tmp_path, data, challenger = setup
    champion, hashes = _usable_champion(tmp_path, "")

    code, report = _run(tmp_path, data, challenger, "--champion-model", str(champion), "--champion-run-id", "r-old",
                        "--champion-train-hashes", str(hashes))

    assert code == 0
    assert report["comparison"]["overlap_checked"] is False, report["comparison"]


def test_a_failure_of_the_challenger_s_own_leaves_its_words_for_the_job_s_exit_message(tmp_path: Path):
    message = tmp_path / "opt" / "ml" / "output" / "message"
    (tmp_path / "data").mkdir()

    code = emm.main(["--input-model", str(tmp_path / "nothing"), "--input-data", str(tmp_path / "data"),
                     "--output-data", str(tmp_path / "out"), "--exit-message", str(message)])

    assert code == 1 and message.read_text().startswith("ReviewDataError: ")
    assert not (tmp_path / "out" / "evaluation.json").exists()


@pytest.mark.parametrize("kind", [TypeError, ValueError])
def test_a_fault_of_the_comparison_s_own_code_fails_the_job_instead_of_blaming_the_champion(setup, monkeypatch, kind):
    tmp_path, data, challenger = setup
    champion, hashes = _usable_champion(tmp_path, "0" * 64 + "\n")

    def broken_hash(text):  # a bug of the script's own, not of the champion's artifacts
        raise kind("unhashable review")

    monkeypatch.setattr(emm, "text_hash", broken_hash)
    with pytest.raises(kind, match="unhashable review"):
        _run(tmp_path, data, challenger, "--champion-model", str(champion), "--champion-run-id", "r-old",
             "--champion-train-hashes", str(hashes), "--exit-message", str(tmp_path / "message"))
    assert (tmp_path / "message").read_text() == f"{kind.__name__}: unhashable review"


def test_a_champion_that_predicts_another_number_of_reviews_is_not_measured(setup, monkeypatch):
    tmp_path, data, challenger = setup
    champion, hashes = _usable_champion(tmp_path, "0" * 64 + "\n")
    stand_in = emm.predict

    def predict(model_dir: Path, texts, length, batch_size):
        predicted = stand_in(model_dir, texts, length, batch_size)
        return predicted[:-1] if Path(model_dir).name == "champion" else predicted

    monkeypatch.setattr(emm, "predict", predict)
    code, report = _run(tmp_path, data, challenger, "--champion-model", str(champion), "--champion-run-id", "r-old",
                        "--champion-train-hashes", str(hashes))

    assert code == 0 and report is not None and "comparison" not in report
    assert report["champion_not_measured"] == {"champion_run_id": "r-old",
                                               "error": "ValueError: 11 predictions for 12 reviews"}
