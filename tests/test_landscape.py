"""lifelong.landscape: the plane through three solutions, the grid of losses over it, the recorded paths,
the straight lines, and `lifelong landscape` end to end. Every value is checked against an independent
computation (the model's own forward pass at θ, torch.nn.utils.vector_to_parameters)."""

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import lifelong as ll
from lifelong import landscape
from lifelong.cli import main
from lifelong.errors import LifelongError
from lifelong.landscape import grid as grid_module
from lifelong.landscape.commands import EXAMPLE, _defaults
from lifelong.landscape.linear import Line, line, t_values
from lifelong.landscape.path import Recorder
from lifelong.landscape.plane import Plane
from lifelong.results import Store

TINY = {"hidden": [8], "grid": 5, "eval_samples": 60, "iterations": 30, "batch_size": 10, "every": 7}


def direct(model, theta, data):
    """Each task's loss and accuracy at θ by the model's own forward pass (not the landscape's code)."""
    net = copy.deepcopy(model)
    vector_to_parameters(theta, net.parameters())
    loss, acc = [], []
    with torch.no_grad():
        for d in data:
            logits = net(d.x) if d.mask is None else net(d.x) + d.mask
            loss.append(F.cross_entropy(logits, d.y).item())
            acc.append((logits.argmax(1) == d.y).float().mean().item())
    return np.array(loss), np.array(acc)


@pytest.fixture(scope="module")
def drawn():
    torch.set_num_threads(1)
    stream = ll.benchmarks.noisy("synthetic", n_tasks=2, noise=[0.4, 0.0])
    torch.manual_seed(0)
    model = ll.models.MLP(stream.input_size, [8], stream.n_classes)
    settings = {k: TINY[k] for k in ("iterations", "batch_size")}
    ls = landscape.draw(
        stream, ll.methods.create("ewc", lam=10), model=model, grid=5, eval_samples=60, every=7, **settings
    )
    data = grid_module.task_data(stream, 60, "test", seed=0)
    return stream, model, ls, data


@pytest.fixture
def three_points():
    torch.manual_seed(1)
    stream = ll.benchmarks.split("synthetic", n_tasks=2, scenario="task")  # masks: each task its own units
    model = ll.models.MLP(stream.input_size, [8, 6], stream.n_classes)
    theta0 = parameters_to_vector(model.parameters()).detach()
    thetas = [theta0, theta0 + 0.5 * torch.randn_like(theta0), theta0 + 0.5 * torch.randn_like(theta0)]
    return stream, model, thetas, grid_module.task_data(stream, 40, "test", seed=0)


# ---- the plane ------------------------------------------------------------------------------------


def test_plane_coordinates_reproduce_the_three_anchors():
    torch.manual_seed(0)
    t0, t1, t2 = (torch.randn(500) for _ in range(3))
    plane = Plane.through(t0, t1, t2)
    c = plane.coordinates(torch.stack([t0, t1, t2]))
    assert torch.allclose(plane.basis @ plane.basis.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert c[0].tolist() == [0.0, 0.0]
    assert c[1, 0].item() == pytest.approx((t1 - t0).double().norm().item()) and abs(c[1, 1].item()) < 1e-9
    d2 = (t2 - t0).double()
    u = (t1 - t0).double() / (t1 - t0).double().norm()
    assert c[2, 0].item() == pytest.approx((d2 @ u).item())
    assert c[2, 1].item() == pytest.approx((d2 - (d2 @ u) * u).norm().item())  # > 0: the b axis points to θ_2
    for theta, coords in zip((t0, t1, t2), c, strict=True):
        assert (plane.point(coords) - theta).abs().max().item() < 1e-6
    assert plane.distance(torch.stack([t0, t1, t2])).max().item() < 1e-5


def test_plane_distance_of_a_point_off_it():
    torch.manual_seed(0)
    t0, t1, t2 = (torch.randn(50) for _ in range(3))
    plane = Plane.through(t0, t1, t2)
    normal = torch.randn(50, dtype=torch.float64)
    normal -= (normal @ plane.basis.T) @ plane.basis
    normal /= normal.norm()
    off = (t0.double() + 2 * plane.basis[0] - 1 * plane.basis[1] + 5 * normal).float()
    assert plane.distance(off).item() == pytest.approx(5.0, abs=1e-5)
    assert plane.coordinates(off).tolist() == pytest.approx([2.0, -1.0], abs=1e-5)


def test_plane_refuses_three_points_on_a_line():
    t0, t1 = torch.zeros(10), torch.ones(10)
    with pytest.raises(LifelongError, match="one line") as e:
        Plane.through(t0, t1, 3 * t1)
    assert "\n" not in str(e.value)
    with pytest.raises(LifelongError, match="coincide"):
        Plane.through(t0, t0, t1)


# ---- the grid -------------------------------------------------------------------------------------


def test_grid_loss_at_each_anchor_equals_the_loss_evaluated_directly(three_points):
    _, model, thetas, data = three_points
    plane = Plane.through(*thetas)
    c = plane.coordinates(torch.stack(thetas)).numpy()
    a, b = np.unique(c[:, 0]), np.unique(c[:, 1])  # every anchor lies on a node of this grid
    loss, acc = grid_module.on_plane(model, plane, a, b, data)
    assert loss.shape == (2, len(b), len(a))
    for theta, (ca, cb) in zip(thetas, c, strict=True):
        i, j = int(np.flatnonzero(b == cb)[0]), int(np.flatnonzero(a == ca)[0])
        want_loss, want_acc = direct(model, theta, data)
        assert loss[:, i, j] == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
        assert acc[:, i, j] == pytest.approx(want_acc)


def test_vectorised_grid_equals_one_point_at_a_time(three_points):
    _, model, thetas, data = three_points
    plane = Plane.through(*thetas)
    coords = np.random.default_rng(0).uniform(-3, 3, size=(25, 2))
    assert grid_module.mlp_layers(model) is not None  # the MLP takes the vectorised path
    fast = grid_module.evaluate(model, plane.origin, plane.basis.float(), coords, data)
    tiny_chunks = grid_module.evaluate(model, plane.origin, plane.basis.float(), coords, data, memory=1)
    slow = grid_module.evaluate(model, plane.origin, plane.basis.float(), coords, data, vectorize=False)
    for got in (fast, tiny_chunks):
        np.testing.assert_allclose(got[0], slow[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], slow[1])
    # and one of them against the model's own forward pass
    theta = plane.point(coords[3])
    assert fast[0][:, 3] == pytest.approx(direct(model, theta, data)[0], rel=1e-5)


def test_grid_axes_cover_the_points_with_a_border():
    a, b = grid_module.axes(np.array([[0.0, 0.0], [4.0, 0.0], [1.0, 2.0]]), 9, border=0.25)
    assert (a[0], a[-1], b[0], b[-1]) == pytest.approx((-1.0, 5.0, -1.0, 3.0))
    assert len(a) == len(b) == 9


def test_task_data_subsamples_and_refuses_bad_settings():
    stream = ll.benchmarks.noisy("synthetic", n_tasks=2)
    data = grid_module.task_data(stream, 30, "train", seed=0)
    assert [len(d.y) for d in data] == [30, 30] and data[0].mask is None
    assert len(grid_module.task_data(stream, None)[0].y) == len(stream.tasks[0].test_y)
    with pytest.raises(LifelongError, match="eval_samples must be a whole number"):
        grid_module.task_data(stream, 0)
    with pytest.raises(LifelongError, match="eval_split must be one of test, train"):
        grid_module.task_data(stream, 10, "valid")


# ---- the paths ------------------------------------------------------------------------------------


def test_recorder_records_every_k_steps_and_the_stage_ends():
    stream = ll.benchmarks.noisy("synthetic", n_tasks=2)
    torch.manual_seed(0)
    model = ll.models.MLP(stream.input_size, [8], stream.n_classes)
    calls = []
    recorder = Recorder(model, stage=1, steps=30, every=7)
    fives = Recorder(model, stage=1, steps=30, every=5)  # its last record is task 2's last step

    def on_step(stage, net):
        calls.append(stage)
        recorder.step(stage, net)
        fives.step(stage, net)

    def on_row(*args):
        recorder.row(*args)
        fives.row(*args)

    ll.fit(stream, model, "finetune", iterations=30, batch_size=10, on_step=on_step, on_row=on_row)
    assert calls == [0] * 30 + [1] * 30  # fit calls on_step after every step, with the stage
    assert recorder.recorded == 4  # steps 7, 14, 21, 28 of task 2
    path = recorder.path()
    assert len(path) == 6  # θ after task 1, 4 recorded points, θ after task 2
    assert torch.equal(path[-1], parameters_to_vector(model.parameters()).detach())
    assert torch.equal(path[0], recorder.after(0)) and not torch.equal(path[0], path[1])
    assert fives.recorded == 6 and len(fives.path()) == 7  # the end is θ after the task, not a repeat of it
    assert torch.equal(fives.path()[-2], fives.buffer[4]) and torch.equal(fives.path()[-1], path[-1])


def test_projected_paths_start_at_theta1_and_end_at_each_theta2(drawn):
    _, _, ls, _ = drawn
    for run in ("finetune", "method"):
        path = ls.paths[run]
        assert path[0] == pytest.approx(ls.coords["task1"], abs=1e-9) and ls.coords["task1"].tolist() == [0, 0]
        assert path[-1] == pytest.approx(ls.coords[run], abs=1e-9)
        assert len(path) == 1 + 30 // 7 + 1
    assert ls.coords["finetune"][1] == pytest.approx(0, abs=1e-9) and ls.coords["method"][1] > 0
    assert ls.notes == []  # EWC learned task 1 exactly as fine-tuning did: one θ*_1 for both paths
    # the anchors' numbers are their own losses, evaluated at θ directly
    assert ls.results["finetune"].R.shape == (3, 2)


def test_anchor_losses_equal_the_direct_evaluation(drawn):
    stream, model, ls, data = drawn
    for point in ("task1", "finetune", "method"):
        theta = ls.plane.point(ls.coords[point])
        loss, acc = direct(model, theta, data)
        assert ls.loss[point] == pytest.approx(loss, rel=1e-5)
        assert ls.accuracy[point] == pytest.approx(acc)


# ---- the straight lines ---------------------------------------------------------------------------


def test_linear_curves_at_t0_and_t1_equal_the_endpoints_losses(drawn):
    _, model, ls, data = drawn
    theta1 = ls.plane.point(ls.coords["task1"])
    for end, curve in ls.lines.items():
        assert curve.t[0] < 0 < 1 < curve.t[-1]  # a little beyond both ends
        start_loss, _ = direct(model, theta1, data)
        assert [curve.at(0, j) for j in (0, 1)] == pytest.approx(start_loss, rel=1e-5)
        want = ls.loss[end]
        assert [curve.at(1, j) for j in (0, 1)] == pytest.approx(want, rel=1e-5)


def test_line_between_two_points_and_its_barrier(three_points):
    _, model, thetas, data = three_points
    curve = line(model, thetas[0], thetas[1], data, steps=4, beyond=0.0)
    assert curve.t.tolist() == [0, 0.25, 0.5, 0.75, 1]
    middle = direct(model, 0.5 * thetas[0] + 0.5 * thetas[1], data)[0]
    assert curve.loss[:, 2] == pytest.approx(middle, rel=1e-5)
    hand = Line("a", "b", np.array([-0.5, 0, 0.5, 1, 1.5]), np.array([[9.0, 1, 3, 2, 9]]), np.zeros((1, 5)))
    assert hand.barrier(0) == pytest.approx(3 - 1.5)  # the rise above the ends' interpolation at t = 0.5
    assert hand.climb(0) == pytest.approx(2.0)  # t outside [0, 1] does not count
    assert t_values(20, 0.2)[[4, 24]].tolist() == [0.0, 1.0]


# ---- the entry function and the report ------------------------------------------------------------


def test_draw_refuses_what_it_cannot_draw():
    stream = ll.benchmarks.noisy("synthetic", n_tasks=2)
    for method, why in (("finetune", "cannot be finetune"), ("joint", "one after another"), ("icarl", "predict")):
        with pytest.raises(LifelongError, match=why) as e:
            landscape.draw(stream, method, iterations=2)
        assert "\n" not in str(e.value)
    with pytest.raises(LifelongError, match="grid must be a whole number >= 2"):
        landscape.draw(stream, "ewc", grid=1)
    with pytest.raises(LifelongError, match="two tasks"):
        landscape.draw(ll.benchmarks.noisy("synthetic", n_tasks=1), "ewc")
    big = ll.models.MLP(stream.input_size, [4096, 4096], stream.n_classes)  # 17 M parameters
    with pytest.raises(LifelongError, match="record less often"):  # 2 x 10 000 copies of them: 1.3 TB
        landscape.draw(stream, "ewc", model=big, iterations=10_000, every=1)


def test_write_makes_a_complete_report_and_never_replaces_one(drawn, tmp_path):
    _, _, ls, _ = drawn
    path = landscape.write(ls, tmp_path / "rep")
    text = path.read_text()
    for f in ("landscape.png", "landscape-lines.png"):
        assert f"({f})" in text and (tmp_path / "rep" / f).stat().st_size > 1000
    assert f"{ls.loss['finetune'][0]:.3f}" in text and f"{ls.loss['method'][0]:.3f}" in text
    numbers = json.loads((tmp_path / "rep" / "landscape.json").read_text())
    assert numbers["points"]["method"]["loss"] == pytest.approx(ls.loss["method"].tolist())
    assert np.array(numbers["grid"]["loss"]).shape == (2, 5, 5)
    with pytest.raises(LifelongError, match="already holds report.md"):
        landscape.write(ls, tmp_path / "rep")
    assert landscape.write(ls, tmp_path / "rep", explicit=False).parent.name == "rep-2"


# ---- the command line -----------------------------------------------------------------------------

QUICK = ["--benchmark", "noisy-synthetic", "--iterations", "20", "--batch-size", "10", "--hidden", "8"]
QUICK += ["--grid", "5", "--eval-samples", "50"]


def test_cli_draws_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["landscape", *QUICK, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "θ*₂ finetune" in printed and "ewc lam=10" in printed and f"report: {out / 'report.md'}" in printed
    numbers = json.loads((out / "landscape.json").read_text())
    assert numbers["method"] == "ewc" and numbers["settings"]["landscape"]["grid"] == 5
    assert numbers["settings"]["train"]["iterations"] == 20
    before = (out / "report.md").read_text()
    assert main(["landscape", *QUICK, "--out", str(out)]) == 2  # never replaces a report
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds report.md" in err
    assert (out / "report.md").read_text() == before


def test_cli_with_a_store_records_the_runs_and_puts_the_picture_in_the_method_run(tmp_path, capsys):
    db = tmp_path / "runs.db"
    assert main(["landscape", *QUICK, "--method", "si", "--store", str(db)]) == 0
    printed = capsys.readouterr().out
    runs = Store(db).runs()
    assert sorted(r["config"]["method"] for r in runs) == ["finetune", "joint", "si"]
    si = next(r for r in runs if r["config"]["method"] == "si")
    assert (Store(db).folder(si["id"]) / "landscape" / "report.md").is_file()
    assert "recorded runs" in printed
    # `lifelong report` of the method's run shows the picture kept in its folder.
    assert main(["report", str(si["id"]), "--store", str(db), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    picture = f"../run-{si['id']:04d}/landscape/landscape.png"
    assert f"![loss landscape: si (run {si['id']})]({picture})" in text and (tmp_path / "rep" / picture).is_file()


def test_cli_defaults_are_the_lectures_two_task_example():
    assert _defaults(None, {}) == EXAMPLE  # noisy-minimnist, 2 tasks, noise 0.4 then 0, 10 epochs, EWC
    given = _defaults(None, {"benchmark": "permuted-minimnist", "iterations": 5, "method": ["si"]})
    assert given == {"tasks": 2}  # no noise for another builder; no epochs when iterations are given


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "finetune,ewc"], "draws one method against finetune"),
        (["--method", "joint"], "no θ after task 1"),
        (["--method", "finetune"], "cannot be finetune"),
        (["--grid", "1"], "--grid: must be a whole number >= 2"),
        (["--every", "0"], "--every: must be a whole number >= 1"),
        (["--eval-split", "valid"], "--eval-split must be one of test, train"),
        (["--seeds", "0,1"], "give --seed instead of --seeds"),
        (["--border", "-1"], "--border must be a finite number >= 0"),
        (["--lam", "abc"], "--lam got 'abc'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["landscape", *QUICK, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lifelong: error:") and err.count("\n") == 1 and message in err, err
    assert not out.exists()
