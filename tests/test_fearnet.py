"""FearNet (Kemker & Kanan 2018): the HC's nearest-neighbour rule and the BLA's ψ rule by hand, the mPFC's
class statistics against an independent computation, pseudo-examples drawn from them (a statistical
test), a sleep that empties the HC and leaves the mPFC answering, no raw training example of a
consolidated class anywhere in the method's state, its facts, or its checkpoint, a resumed run equal to
one never stopped, and the command line end to end."""

import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

import lifelong as ll
from lifelong.checkpoint.graph import capture
from lifelong.cli import main
from lifelong.errors import LifelongError, LifelongWarning
from lifelong.methods.memory.fearnet import FearNet, hc
from lifelong.methods.memory.fearnet.bla import use_hc
from lifelong.methods.memory.fearnet.mpfc import factors
from lifelong.results import Store

SMALL = {"latent": 4, "bla_units": 8, "reconstruction": 1.0, "hidden_reconstruction": 0.1}  # quick to classify


def stream(n_tasks=3, scenario="class"):
    return ll.benchmarks.split("synthetic", n_tasks=n_tasks, scenario=scenario)


def mlp(s):
    torch.manual_seed(0)
    return ll.models.MLP(s.input_size, [16], s.n_classes)


def run(s, method, **settings):
    settings = {"iterations": 20, "lr": 1e-2, "optimizer": "adam", "batch_size": 10, "seed": 0, **settings}
    return ll.fit(s, mlp(s), method, **settings)


# ---- the HC and the BLA's rule, by hand -----------------------------------------------------------------


def test_hc_probabilities_are_the_papers_nearest_neighbour_rule():
    stored = [torch.tensor([[0.0, 0.0], [3.0, 0.0]]), torch.tensor([[0.0, 4.0]])]
    labels = [torch.tensor([0, 0]), torch.tensor([2])]
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    eps = 1e-3
    d = hc.nearest_distances(x, stored, labels, n_classes=4)
    # Nearest stored example of each class: class 0 at distance 1 and 3, class 2 at √17 and 1; none of 1, 3.
    assert torch.allclose(d[:, [0, 2]], torch.tensor([[1.0, math.sqrt(17)], [3.0, 1.0]]))
    assert torch.isinf(d[:, [1, 3]]).all()
    beta = [[1 / (1 + eps), 1 / (math.sqrt(17) + eps)], [1 / (3 + eps), 1 / (1 + eps)]]
    want = torch.zeros(2, 4, dtype=torch.float64)
    for i, (b0, b2) in enumerate(beta):
        want[i, 0], want[i, 2] = b0 / (b0 + b2), b2 / (b0 + b2)
    assert torch.allclose(hc.probabilities(d, eps).double(), want, atol=1e-6)


def test_the_hc_answers_alone_with_log_probabilities_before_the_first_sleep():
    s = stream(2)
    method = FearNet(sleep_every=2, epsilon=0.5, **SMALL)
    method.prepare(mlp(s), s)
    task = s.tasks[0]
    method.before_task(task, method.nets)
    method.after_task(task, method.nets)  # task 1 stored, no sleep yet (K = 2)
    x = s.tasks[0].test_x[:5]
    flat, train = x.reshape(5, -1), task.train_x.reshape(len(task.train_x), -1)
    dist = torch.cdist(flat.double(), train.double())
    beta = torch.stack([1 / (dist[:, task.train_y == c].min(1).values + 0.5) for c in task.classes], 1)
    logits = method.predict(method.nets, x, task)
    assert torch.allclose(logits[:, list(task.classes)].double(), (beta / beta.sum(1, keepdim=True)).log(), atol=1e-4)
    others = [c for c in range(s.n_classes) if c not in task.classes]
    assert (logits[:, others] == torch.finfo(logits.dtype).min).all()  # classes nobody holds


def test_the_bla_rule_psi_weighs_its_output_against_both_memories_confidence():
    p_hc = torch.tensor([[0.9, 0.1, 0, 0], [0.6, 0.4, 0, 0], [0.5, 0.5, 0, 0]])
    p_mpfc = torch.tensor([[0, 0, 0.5, 0.5], [0, 0, 0.99, 0.01], [0, 0, 0.5, 0.5]])
    a = torch.tensor([0.4, 0.55, 0.5])
    # ψ = 0.9·0.4 / (0.5·0.6) = 1.2 > 1: HC, though the BLA leans to the mPFC; 0.6·0.55 / (0.99·0.45) < 1;
    # a tie (ψ = 1) goes to the mPFC.
    assert use_hc(p_hc, p_mpfc, a).tolist() == [True, False, False]


# ---- the mPFC's statistics and pseudo-examples ----------------------------------------------------------


def codes_by_hand(mpfc, x):
    """The latent code, layer by layer with the weights, in float64: h = ELU(W h + b), z = W h + b."""
    h = x.reshape(len(x), -1).double()
    for layer in mpfc.encoder:
        h = torch.nn.functional.elu(h @ layer.weight.double().T + layer.bias.double())
    return (h @ mpfc.to_latent.weight.double().T + mpfc.to_latent.bias.double()).detach().numpy()


def test_stored_statistics_are_the_mean_and_covariance_of_the_class_latent_codes():
    s = stream(2)
    method = FearNet(sleep_every=1, **SMALL)
    run(s, method)
    assert method.sleeps == [0, 1] and method.classes == list(range(10))
    last = s.tasks[1]  # consolidated by the last sleep: its statistics are those of the final encoder
    codes = codes_by_hand(method.mpfc, last.train_x)
    for c in last.classes:
        z = codes[(last.train_y == c).numpy()]
        i = method.classes.index(c)
        assert np.allclose(method.means[i].numpy(), z.mean(0), atol=1e-5)
        assert np.allclose(method.covs[i].numpy(), np.cov(z, rowvar=False), atol=1e-5)
        assert method._sizes[i] == len(z)
    facts = method.facts()["statistics"]
    assert facts["bytes"] == 10 * (4 + 16) * 4  # 10 classes, a mean (4) and a covariance (4 x 4), float32
    assert facts["raw_bytes"] == sum(len(t.train_y) for t in s.tasks) * s.input_size * 4


def test_pseudo_examples_are_drawn_from_the_class_statistics():
    s = stream(2)
    method = FearNet(latent=3)
    method.prepare(mlp(s), s)
    a = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.5, -0.5, 0.3]])
    method.classes = [3, 7]
    method.means = torch.tensor([[1.0, -2.0, 0.5], [-3.0, 0.0, 4.0]])
    method.covs = torch.stack([a @ a.T, torch.diag(torch.tensor([0.5, 2.0, 1.0]))])
    method._roots = factors(method.covs)
    n = 20000
    z, y = method._pseudo_examples(n, [0, 1], None, codes_only=True)
    assert abs(int((y == 3).sum()) - n / 2) < 3 * math.sqrt(n / 4)  # classes drawn uniformly (binomial, 3 sd)
    for i, c in enumerate(method.classes):
        zc = z[y == c].double().numpy()
        mu, cov = method.means[i].double().numpy(), method.covs[i].double().numpy()
        assert np.allclose(zc.mean(0), mu, atol=4 * np.sqrt(np.diag(cov).max() / len(zc)))
        assert np.allclose(np.cov(zc, rowvar=False), cov, atol=0.1 * np.abs(cov).max())
        # Mahalanobis distances² of N(μ, Σ) samples follow χ² with 3 degrees of freedom.
        diff = zc - mu
        m2 = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
        assert stats.kstest(m2, stats.chi2(df=3).cdf).pvalue > 0.01
    # Pseudo-examples are those codes decoded: the same draw, through the decoder.
    state = method._generator.get_state()
    x_hat, y_hat = method._pseudo_examples(5, [0, 1], method.mpfc)
    method._generator.set_state(state)
    z5, y5 = method._pseudo_examples(5, [0, 1], None, codes_only=True)
    assert torch.equal(y_hat, y5) and torch.allclose(x_hat, method.mpfc.decode(z5))


# ---- sleep, and what is kept -----------------------------------------------------------------------------


def test_after_a_sleep_the_hc_is_empty_and_the_mpfc_answers_for_consolidated_classes():
    s = stream(2)
    method = FearNet(sleep_every=2, **SMALL)
    seen = []
    original = method.after_task

    def after_task(task, model):  # what the HC held at the end of each task, before any sleep
        seen.append((list(method._hc_tasks), sum(len(y) for y in method._hc_y)))
        original(task, model)

    method.after_task = after_task
    result = run(s, method, iterations=60)
    del method.after_task  # the instance attribute would not be the method's own (and cannot be checkpointed)
    sizes = [len(t.train_y) for t in s.tasks]
    assert seen == [([0], sizes[0]), ([0, 1], sum(sizes))]  # K = 2: both tasks wait in the HC, then one sleep
    assert method.sleeps == [1] and method.classes == list(range(10))
    assert method._hc_x == [] and method._hc_y == [] and result.facts["hc"]["samples"] == 0
    assert result.facts["hc"]["peak_samples"] == sum(sizes)
    x, y = torch.cat([t.test_x for t in s.tasks]), torch.cat([t.test_y for t in s.tasks])
    logits = method.predict(method.nets, x, s.tasks[0])
    with torch.no_grad():
        mpfc = torch.log_softmax(method.mpfc(x), dim=1)
    assert torch.allclose(logits, mpfc, atol=1e-4)  # the mPFC alone answers, with its log-probabilities
    assert (logits.argmax(1) == y).float().mean() > 0.5  # 10 classes: chance is 10 %
    assert result.facts["bla"] == []  # never two memories to choose between


def rows_of(data: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in data.reshape(len(data), -1).contiguous()]


def tensors_in(value, seen=None):
    """Every tensor reachable from ``value`` (attributes, containers, modules)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, torch.nn.Module):
        yield from (*value.parameters(), *value.buffers())
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v, seen)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from tensors_in(v, seen)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("lifelong.methods"):
        yield from tensors_in(vars(value), seen)


def found(rows: list[bytes], blobs: list[bytes]) -> int:
    """How many of the training rows occur, byte for byte, anywhere in the blobs (at any offset)."""
    return sum(any(r in b for b in blobs) for r in rows)


def stream_references(graph) -> set[str]:
    """The stream tensors a checkpoint's graph points to (its data is named, not copied)."""
    out = set()
    if isinstance(graph, dict):
        if isinstance(graph.get("$tensor"), str) and graph["$tensor"].startswith("stream."):
            out.add(graph["$tensor"])
        for v in graph.values():
            out |= stream_references(v)
    elif isinstance(graph, list):
        for v in graph:
            out |= stream_references(v)
    return out


def test_no_raw_training_example_of_a_consolidated_class_is_kept_anywhere(tmp_path):
    s = stream(3)
    method = FearNet(sleep_every=2, **SMALL)
    result = run(s, method, checkpoint=tmp_path)
    assert method.sleeps == [1] and method._hc_tasks == [2]
    consolidated = rows_of(torch.cat([s.tasks[0].train_x, s.tasks[1].train_x]))
    recent = rows_of(s.tasks[2].train_x)  # the HC holds these, as it should: the scan must find them

    # Every tensor of the method's state (the networks, statistics, HC, generators) as raw bytes.
    blobs = [t.detach().contiguous().numpy().tobytes() for t in tensors_in(vars(method)) if t.dtype.is_floating_point]
    assert found(consolidated, blobs) == 0
    assert found(recent, blobs) == len(recent)  # the control: the HC's data is found
    # The facts as the run record keeps them: no number sequence of a training row either.
    facts = json.dumps(result.facts)
    as_grey = [",".join(str(int(round(v * 255))) for v in row.tolist()) for row in s.tasks[0].train_x.reshape(-1, 64)]
    assert not any(g in facts.replace(" ", "") for g in as_grey)
    # The checkpoint: no saved storage holds a row, and its graph points to the stream's data of task 3 only.
    saved = [t.numpy().tobytes() for t in load_file(next(tmp_path.glob("tensors-*.safetensors"))).values()]
    assert found(consolidated, saved) == 0
    state = json.loads((tmp_path / "state.json").read_text())
    method_refs = stream_references(state["graph"]["method"]) | stream_references(state["graph"]["model"])
    assert method_refs == {"stream.2.train_x", "stream.2.train_y"}
    document, tensors = capture({"method": method}, s, "fearnet")  # the same, captured now
    assert found(consolidated, [t.numpy().tobytes() for t in tensors.values()]) == 0


def test_a_resumed_run_equals_the_run_never_stopped(tmp_path):
    s = stream(3)

    class Stop(Exception):
        pass

    def stop_after_1(done, n, rows):
        if done == 1:
            raise Stop

    settings = {"iterations": 15, "lr": 1e-2, "optimizer": "adam", "batch_size": 10, "seed": 0}
    whole = ll.fit(s, mlp(s), FearNet(sleep_every=2, **SMALL), **settings)
    with pytest.raises(Stop):
        ll.fit(s, mlp(s), FearNet(sleep_every=2, **SMALL), on_row=stop_after_1, checkpoint=tmp_path, **settings)
    torch.manual_seed(123)
    resumed = ll.fit(s, mlp(s), FearNet(sleep_every=2, **SMALL), checkpoint=tmp_path, resume=True, **settings)
    for key in ("R", "losses", "capacity", "facts"):
        assert resumed.to_dict()[key] == whole.to_dict()[key], key
    assert whole.facts["bla"]  # the BLA decided at the last evaluation: its counts came back too


# ---- the command line --------------------------------------------------------------------------------------


def test_command_line_run_records_the_memories_and_reports_the_pseudo_examples(tmp_path, capsys):
    args = ["run", "--benchmark", "split-digits", "--tasks", "3", "--scenario", "class", "--method", "fearnet"]
    args += ["--sleep-every", "2", "--latent", "8", "--iterations", "20", "--optimizer", "adam", "--lr", "0.003"]
    code = main([*args, "--store", str(tmp_path / "r.db"), "--report", "yes"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (row,) = Store(tmp_path / "r.db").runs()
    assert row["status"] == "finished" and row["config"]["sleep_every"] == 2
    facts = Store(tmp_path / "r.db").result(1).facts
    assert facts["sleeps"] == [1] and facts["statistics"]["classes"] == 6  # tasks 1-2: 3 classes each
    report = next(tmp_path.rglob("report.md")).read_text()
    assert "FearNet's memories" in report and "class statistics" in report
    (grid,) = re.findall(r"\(([^)]*pseudo-examples\.png)\)", report)
    assert (next(tmp_path.rglob("report.md")).parent / grid).stat().st_size > 0
    assert main(["show", "1", "--store", str(tmp_path / "r.db")]) == 0
    shown = capsys.readouterr().out
    assert "long-term memory: statistics of 6 classes" in shown and "sleeps after task 2" in shown


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_other_scenarios_run_and_domain_il_is_warned(tmp_path, capsys, scenario):
    args = ["run", "--benchmark", "split-synthetic", "--tasks", "3", "--iterations", "5", "--report", "no"]
    args += ["--optimizer", "adam", "--lr", "0.001"]  # its loss weights the reconstruction 1000x: SGD at 0.1 diverges
    code = main([*args, "--scenario", scenario, "--method", "fearnet", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 0 and ("expected to fail" in err) == (scenario == "domain"), err


def test_bad_settings_and_models_are_one_line_errors(tmp_path, capsys):
    for bad in (["--epsilon", "0"], ["--reconstruction", "-1"], ["--sleep-every", "0"], ["--bla-input", "pixels"]):
        code = main(["run", "--method", "fearnet", *bad, "--store", str(tmp_path / "r.db")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and bad[0] in err, err
    s = stream(2)
    with pytest.raises(LifelongError) as error:
        ll.fit(s, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, s.n_classes)), FearNet(), iterations=1)
    assert "\n" not in str(error.value) and "hidden" in str(error.value)


def test_sgd_with_the_adam_tuned_reconstruction_weight_is_warned_once_before_training():
    s = stream(2)
    with pytest.warns(
        LifelongWarning, match=r"tuned for Adam and makes SGD diverge; use optimizer=adam lr=0\.001"
    ) as seen:
        ll.fit(s, mlp(s), FearNet(latent=4, bla_units=8), iterations=1, optimizer="sgd", lr=1e-6)
    assert sum("tuned for Adam" in str(w.message) for w in seen) == 1  # once, not once per task
    with warnings.catch_warnings():
        warnings.simplefilter("error", LifelongWarning)  # small weights under SGD, or Adam: no warning
        ll.fit(s, mlp(s), FearNet(**SMALL), iterations=1, optimizer="sgd", lr=0.01)
        ll.fit(s, mlp(s), FearNet(latent=4, bla_units=8), iterations=1, optimizer="adam", lr=1e-3)
