"""``treesynth scale`` through typer's CliRunner: text and JSON reports on the SynthLLM fixture, the
offline HTML plot, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from treesynth_core.cli import scale as cli_scale

FIXTURE = Path(__file__).parent / "fixtures" / "synthllm_table1.csv"
runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a group, so the command is called by name as in treesynth
        pass

    cli_scale.register(app)
    return app


APP = make_app()


def invoke(*args, ok: bool = True):
    result = runner.invoke(APP, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def said(result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def one_line_error(result) -> str:
    assert result.exit_code == 1 and "Traceback" not in result.output
    text = " ".join(result.stderr.split())
    assert text.startswith("error: ") and text.count("error:") == 1 and not result.stdout
    return text


@pytest.fixture
def loss_csv(tmp_path) -> Path:
    path = tmp_path / "loss.csv"
    rows = [(1, 3.2), (2, 2.9), (4, 2.6), (8, 2.4), (16, 2.25), (32, 2.15), (64, 2.09)]
    path.write_text("samples,loss\n" + "".join(f"{size},{loss}\n" for size, loss in rows))
    return path


def test_register_is_idempotent_and_help_explains_the_law():
    app = make_app()
    cli_scale.register(app)
    assert [command.name for command in app.registered_commands] == ["scale"]
    text = said(invoke("scale", "--help"))
    for words in ("B / (D_l + D^beta) + E", "--metric", "--extrapolate", "--plot", "split", "model", "tokens"):
        assert words in text


def test_text_report_on_the_fixture():
    text = said(invoke("scale", FIXTURE))
    assert "Model 3B: 6 points fitted, 1 held out (size 4.5)" in text and "Model 8B" in text
    assert "accuracy (%), fitted as error = 100 - accuracy" in text and "guessed from the column name" in text
    assert "rectified" in text and "power" in text and "plateau (gain per 10x < 1)" in text
    assert "The held-out points favour the rectified law." in text
    assert "Extrapolated accuracy (%)" in text and "40,000" in text


def test_json_report(loss_csv):
    sizes = "10,50,250,300,1000,4000"  # Table 1's columns, in billions of tokens
    data = json.loads(
        invoke("scale", FIXTURE, "--model", "3B", "--extrapolate", sizes, "--bootstrap", "5", "--json").stdout
    )
    assert data["metric_kind"] == "accuracy_percent" and data["plot"] is None and len(data["reports"]) == 1
    report = data["reports"][0]
    assert report["model"] == "3B" and [p["size"] for p in report["test_points"]] == [4.5]
    assert report["preferred"] == "rectified" and report["held_out"]["rectified"]["max_abs_error"] <= 2.2
    rectified = report["fits"]["rectified"]
    assert rectified["rmse"] <= 0.03 and rectified["beta"] == pytest.approx(0.52, abs=0.015)
    assert set(rectified["intervals"]) == {"B", "D_l", "beta", "E", "B_over_D_l"}
    table1 = [64.6, 74.7, 80.5, 80.9, 83.1, 84.4]
    predicted = [row["rectified"] for row in report["extrapolation"]]
    assert [row["size"] for row in report["extrapolation"]] == [10, 50, 250, 300, 1000, 4000]
    assert max(abs(p - t) for p, t in zip(predicted, table1, strict=True)) < 0.05

    loss = json.loads(
        invoke("scale", loss_csv, "--metric", "loss", "--test", "2", "--threshold", "0.05", "--json").stdout
    )["reports"][0]
    assert loss["metric_kind"] == "loss" and loss["threshold"] == 0.05 and loss["model"] == ""
    assert [p["size"] for p in loss["test_points"]] == [32, 64] and loss["held_out"]["rectified"]["n"] == 2
    assert len(loss["extrapolation"]) == 3 and loss["extrapolation"][0]["size"] == 640


def test_metric_fraction_and_split_column(tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text("n,acc,split\n1,0.40,fit\n2,0.48,fit\n4,0.55,fit\n8,0.60,fit\n16,0.63,test\n")
    data = json.loads(invoke("scale", path, "--json").stdout)
    assert data["metric_kind"] == "accuracy_fraction"
    report = data["reports"][0]
    assert [p["size"] for p in report["test_points"]] == [16] and report["threshold"] == 0.01
    assert 0 < report["fits"]["rectified"]["ceiling"] <= 1
    forced = json.loads(invoke("scale", path, "--metric", "accuracy-fraction", "--json").stdout)
    assert forced["reports"][0]["fits"] == report["fits"]


def test_plot_is_self_contained_html(tmp_path):
    out = tmp_path / "plots" / "scale.html"
    result = invoke("scale", FIXTURE, "--plot", out)
    assert "Wrote the plot to" in said(result)
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_size > 1_000_000  # plotly.js inline
    # plotly.js itself mentions cdn.plot.ly (a geo topojson default); what matters is no script loaded from a CDN
    assert '<script src="http' not in text and 'src="https://cdn.' not in text
    assert "rectified law" in text and "held-out points" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such points file"),
        (["{bad}"], "line 2: metric 'abc' is not a number"),
        (["{few}"], "needs at least 4 distinct sizes"),
        (["{fixture}", "--plot", "out.png"], "use a .html file name"),
        (["{fixture}", "--model", "70B"], "no model '70B'"),
        (["{fixture}", "--extrapolate", "10,x"], "size 'x' is not a number"),
        (["{seven}", "--test", "4"], "leaves 3"),
        (["{fixture}", "--test", "0"], "split column"),
        (["{fixture}", "--metric", "accuracy-fraction"], "outside 0..1"),
        (["{split}", "--test", "1"], "split column"),
    ],
)
def test_errors_are_one_line(tmp_path, args, message):
    files = {"fixture": FIXTURE, "bad": tmp_path / "bad.csv", "few": tmp_path / "few.csv", "split": tmp_path / "s.csv"}
    files["seven"] = tmp_path / "seven.csv"
    files["bad"].write_text("size,metric\n10,abc\n")
    files["few"].write_text("size,loss\n1,3\n2,2\n2,2.1\n4,1.5\n")
    files["split"].write_text("size,loss,split\n1,3,fit\n2,2,fit\n4,1.5,fit\n8,1.2,fit\n16,1.1,test\n")
    files["seven"].write_text("size,loss\n" + "".join(f"{2**i},{3 - 0.2 * i}\n" for i in range(7)))
    argv = [str(files[a[1:-1]]) if a.startswith("{") else a for a in args]
    result = invoke("scale", *argv, ok=False)
    assert message in one_line_error(result)


def test_bad_metric_choice_is_a_usage_error():
    result = invoke("scale", FIXTURE, "--metric", "percent", ok=False)
    assert result.exit_code == 2 and "percent" in result.output
