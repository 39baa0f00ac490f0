"""`lifelong export`: a real run written to TensorBoard and to MLflow (a SQLite tracking store in a temp
folder: no server, no network), then read back with each tool's own reader and checked value by value
against the store."""

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from lifelong.cli import main
from lifelong.results import Store

RUN = (
    "run --benchmark split-synthetic --tasks 2 --method finetune --epochs 2 --eval-every-epoch --hidden 8 "
    "--lr 0.05 --report no --quiet"
).split()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One real run with per-epoch curves: (store path, its Result)."""
    db = str(tmp_path_factory.mktemp("runs") / "runs.db")
    assert main([*RUN, "--store", db]) == 0
    store = Store(db, create=False)
    result = store.result(1)
    assert result.curves and result.losses  # what the export must carry
    return db, result


def test_tensorboard_event_file_reads_back(recorded, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    db, result = recorded
    capsys.readouterr()
    assert main(["export", "1", "--to", "tensorboard", "--store", db, "--dir", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    log_dir = tmp_path / "tb" / "run-0001-finetune-seed0"
    assert f"run 1 -> {log_dir}" in out and f"tensorboard --logdir {tmp_path / 'tb'}" in out

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
    events.Reload()

    def curve(tag):
        return [(e.step, e.value) for e in events.Scalars(tag)]

    names = result.task_names
    for j, name in enumerate(names):  # R column by column: step i = tasks learned
        steps, values = zip(*curve(f"accuracy/{name}"), strict=True)
        assert steps == tuple(range(len(names) + 1))
        np.testing.assert_allclose(values, result.R[:, j], rtol=1e-6)
        other = [v for v in result.views if v != result.scenario][0]  # split streams: task-IL and class-IL
        label = {"task": "task-IL", "class": "class-IL"}[other]
        viewed = [v for _, v in curve(f"accuracy_{label}/{name}")]
        np.testing.assert_allclose(viewed, result.views[other][:, j], rtol=1e-6)
        epochs = [c["accuracy"][j] for c in result.curves]
        assert curve(f"epoch/accuracy/{name}") == [(k, pytest.approx(v, rel=1e-6)) for k, v in enumerate(epochs, 1)]
    losses = [x for stage in result.losses for x in stage]
    assert curve("epoch/loss") == [(k, pytest.approx(v, rel=1e-6)) for k, v in enumerate(losses, 1)]
    for key, value in result.metrics().items():
        assert curve(f"metrics/{key}") == [(len(names), pytest.approx(value, rel=1e-6, abs=1e-7))]

    table = events.Tensors("R/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"| after {names[0]} | " + " | ".join(f"{v * 100:.1f}" for v in result.R[1]) + " |" in table
    settings = events.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| lr | 0.05 |" in settings and "| method | finetune |" in settings
    image = events.Images("R")[0]
    assert image.width > 100 and image.height > 100
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams = events.PluginTagToContent("hparams")  # the HParams tab: the settings against the final metrics
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["lr"].string_value == "0.05"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {f"metrics/{k}" for k in result.metrics()}

    # Again: a new folder beside the first, which stays as it was.
    first = {p.name: p.read_bytes() for p in log_dir.iterdir()}
    assert main(["export", "1", "--to", "tensorboard", "--store", db, "--dir", str(tmp_path / "tb")]) == 0
    assert (tmp_path / "tb" / "run-0001-finetune-seed0-2").is_dir() and {
        p.name: p.read_bytes() for p in log_dir.iterdir()
    } == first


def test_mlflow_run_reads_back(recorded, tmp_path, capsys):
    pytest.importorskip("mlflow")
    pytest.importorskip("alembic")
    from mlflow.tracking import MlflowClient

    db, result = recorded
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    capsys.readouterr()
    assert main(["export", "latest", "--to", "mlflow", "--tracking-uri", uri, "--experiment", "t", "--store", db]) == 0
    out = capsys.readouterr()
    assert out.err == ""  # MLflow's migration logs and deprecation warnings stay off the terminal

    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert run.info.run_id in out.out and run.info.status == "FINISHED"
    assert run.info.run_name == "finetune seed 0 (run 1)"
    assert run.data.params["lr"] == "0.05" and run.data.params["method"] == "finetune"
    assert run.data.params["hidden"] == "8" and run.data.params["benchmark"] == "split-synthetic"
    assert run.data.tags["lifelong.run_id"] == "1" and run.data.tags["lifelong.store"] == str(Store(db).path.resolve())
    for j, name in enumerate(result.task_names):
        history = client.get_metric_history(run.info.run_id, f"accuracy/{name}")
        assert sorted(m.step for m in history) == list(range(len(result.task_names) + 1))
        np.testing.assert_allclose([m.value for m in sorted(history, key=lambda m: m.step)], result.R[:, j])
    losses = sorted(client.get_metric_history(run.info.run_id, "epoch/loss"), key=lambda m: m.step)
    np.testing.assert_allclose([m.value for m in losses], [x for stage in result.losses for x in stage])
    assert run.data.metrics["metrics/acc"] == pytest.approx(result.acc)
    assert run.data.metrics["metrics/bwt"] == pytest.approx(result.bwt)

    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"R.csv", "R.png"}
    downloaded = client.download_artifacts(run.info.run_id, "R.csv", str(tmp_path))
    table = list(csv.reader(io.StringIO(Path(downloaded).read_text())))
    assert table[0] == ["", *result.task_names] and table[1][0] == "init"
    np.testing.assert_array_equal(np.array([row[1:] for row in table[1:]], dtype=float), result.R)
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not ./mlruns under the working folder


@pytest.mark.parametrize(
    "target, module, where",
    [("tensorboard", "torch.utils.tensorboard", "--dir"), ("mlflow", "mlflow", "--tracking-uri")],
)
def test_a_missing_extra_is_one_line_with_the_pip_command(
    recorded, tmp_path, capsys, monkeypatch, target, module, where
):
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it (or a submodule) now raises ImportError
    location = str(tmp_path / "tb") if target == "tensorboard" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    capsys.readouterr()
    assert main(["export", "1", "--to", target, where, location, "--store", recorded[0]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install 'lifelong[{target}]'" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_options_of_the_other_back_end_are_refused(recorded, capsys):
    assert main(["export", "1", "--to", "mlflow", "--dir", "tb", "--store", recorded[0]]) == 2
    assert "--dir is for TensorBoard" in capsys.readouterr().err
    assert main(["export", "1", "--to", "tensorboard", "--tracking-uri", "sqlite:///x.db", "--store", recorded[0]]) == 2
    assert "--tracking-uri is for MLflow" in capsys.readouterr().err
