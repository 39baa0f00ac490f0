"""Bad input from Python is as clear as from the shell: a LifelongError whose message names the keyword
argument (never a CLI flag), says what was given and what is expected; and one failing method in a
`lifelong run` does not take the others down."""

import json

import pytest

import lifelong as ll
from lifelong.cli import main
from lifelong.results import Store


@pytest.fixture(scope="module")
def stream():
    return ll.benchmarks.permuted("synthetic", n_tasks=2, seed=0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ll.methods.EWC(lam="abc"), "ewc: lam must be a number (got 'abc')"),
        (lambda: ll.methods.SI(lam=True), "si: lam must be a number (got True)"),
        (lambda: ll.methods.EWC(fisher_batch=2.5), "ewc: fisher_batch must be a whole number (got 2.5)"),
        (lambda: ll.methods.OnlineEWC(gamma=2), "online-ewc: gamma must be in [0, 1] (got 2)"),
        (lambda: ll.methods.MAS(lam=-1), "mas: lam must be >= 0 (got -1)"),
        (lambda: ll.models.MLP(64, [], 10), "MLP: hidden needs one or more whole layer sizes >= 1"),
        (lambda: ll.models.MLP(64, [0], 10), "(got [0])"),
        (lambda: ll.models.MLP(64, [-5], 10), "(got [-5])"),
        (lambda: ll.models.MLP(64, 50, 10), "MLP: hidden must be a list of layer sizes"),
        (lambda: ll.models.MLP(64, [50], 0), "MLP: n_classes must be a whole number >= 1"),
        (lambda: ll.Settings(lr=float("nan")), "lr must be a finite number (got nan)"),
        (lambda: ll.Settings(epochs=0), "epochs must be a whole number >= 1 (got 0)"),
    ],
)
def test_constructors_say_what_is_wrong_in_python_terms(make, message):
    with pytest.raises(ll.LifelongError) as e:
        make()
    assert message in str(e.value) and "--" not in str(e.value)


def test_a_model_of_the_wrong_size_is_refused_with_both_sizes(stream):
    with pytest.raises(ll.LifelongError, match=r"inputs \(8x8 = 64 features .*first layer expects 10 features"):
        ll.fit(stream, ll.models.MLP(10, [5], 10), epochs=1)
    with pytest.raises(ll.LifelongError, match="gives 3 outputs per sample but permuted-synthetic .* needs 10"):
        ll.fit(stream, ll.models.MLP(64, [5], 3), epochs=1)


def test_fit_takes_a_method_name_and_says_how_to_make_one(stream):
    by_name = ll.fit(stream, ll.models.MLP(64, [8], 10), "ewc", iterations=3)
    assert by_name.method == "ewc" and by_name.config["method"]["lam"] == ll.methods.EWC().lam
    with pytest.raises(ll.LifelongError, match="unknown method 'ewcc'; choose one of: finetune"):
        ll.fit(stream, ll.models.MLP(64, [8], 10), "ewcc", iterations=3)
    with pytest.raises(ll.LifelongError, match=r"lifelong.methods.create\('ewc', lam=10\)"):
        ll.fit(stream, ll.models.MLP(64, [8], 10), 42, iterations=3)


def test_messages_name_flags_on_the_command_line_and_keywords_in_python(tmp_path, capsys):
    with pytest.raises(ll.LifelongError, match="^batch_size must"):
        ll.Settings(batch_size=0)
    assert main(["run", "--batch-size", "0", "--store", str(tmp_path / "r.db")]) == 2
    assert "--batch-size must be a whole number >= 1" in capsys.readouterr().err


def test_one_diverging_method_does_not_stop_the_others(tmp_path, capsys):
    db = tmp_path / "r.db"
    methods = "finetune,ewc:lam=1000000:step=explicit,si"  # the explicit step at this λ blows up under SGD lr 0.1
    args = ["run", "--benchmark", "permuted-synthetic", "--tasks", "2", "--epochs", "2", "--report", "no"]
    code = main([*args, "--method", methods, "--store", str(db)])
    out, err = capsys.readouterr()
    assert code == 1  # non-zero at the end ...
    statuses = {r["config"]["method_spec"]: r["status"] for r in Store(db).runs()}
    assert statuses == {"finetune": "finished", "ewc:lam=1000000:step=explicit": "failed", "si": "finished"}
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1]}
    assert "FAILED" in rows["ewc:lam=1000000:step=explicit"] and "0 of 1" in rows["ewc:lam=1000000:step=explicit"]
    assert "FAILED" not in rows["si"] and "FAILED" not in rows["finetune"]  # ... after the others ran and printed
    assert "1 of 3 runs failed" in err.splitlines()[-1]


def test_json_lists_failed_runs_too(tmp_path, capsys):
    args = ["run", "--benchmark", "permuted-synthetic", "--tasks", "2", "--epochs", "2", "--report", "no", "--json"]
    code = main([*args, "--method", "finetune,ewc:lam=1000000:step=explicit", "--store", str(tmp_path / "r.db")])
    runs = json.loads(capsys.readouterr().out)
    assert code == 1 and [r["status"] for r in runs] == ["finished", "failed"]
    assert "diverged" in runs[1]["message"]


def test_a_method_known_to_fail_in_a_scenario_says_so_once_and_in_the_report(tmp_path, capsys):
    args = ["run", "--benchmark", "split-synthetic", "--scenario", "class", "--iterations", "3", "--seeds", "0,1"]
    code = main([*args, "--method", "finetune,ewc", "--store", str(tmp_path / "r.db")])
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "expected to fail" in line]
    assert lines == [ll.methods.EWC.caveat("class").join(["lifelong: warning: ", ""])]  # once, for ewc only
    assert "van de Ven & Tolias 2019" in lines[0] and "class-IL" in lines[0]
    report = next(tmp_path.glob("report-*/report.md")).read_text()
    assert "**Expected to fail.** " + ll.methods.EWC.caveat("class") in report
    assert ll.methods.Finetune.caveat("class") is None and ll.methods.EWC.caveat("task") is None
