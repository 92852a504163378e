"""`detops bench` itself, on tiny sizes: table, JSON, plots, comparison, error and missing-baseline rows."""

import json
import subprocess
import sys

import pytest
import torch

from detops.bench import cli, registry

FAST = ["--ops", "box_area", "--sizes", "box_area:100", "--min-time", "0.001", "--no-progress"]


@pytest.fixture
def planted():
    """Registers cases for the test and removes them afterwards."""
    before = list(registry.CASES)
    registry.load_cases()
    yield registry.case
    registry.CASES[:] = [c for c in registry.CASES if c in before or c.op not in ("planted_op", "needs_missing")]


def test_table_json_and_plots(tmp_path, capsys):
    out = tmp_path / "run.json"
    plots = tmp_path / "plots"
    assert cli.main(FAST + ["--json", str(out), "--plot", str(plots)]) == 0
    text = capsys.readouterr().out
    assert "speed-up" in text and "box_area" in text and "(n=" in text
    doc = json.loads(out.read_text())
    assert doc["machine"]["torch"] == torch.__version__ and doc["machine"]["cores"] >= 1
    (row,) = doc["rows"]
    assert row["status"] == "ok" and row["size"] == "100"
    assert row["detops"]["runs"] > 0 and row["detops"]["q1_ms"] <= row["detops"]["median_ms"] <= row["detops"]["q3_ms"]
    assert row["ratio"] == pytest.approx(row["baseline_time"]["median_ms"] / row["detops"]["median_ms"])
    png = plots / "box_area.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_reads_an_older_json(tmp_path, capsys):
    old = tmp_path / "old.json"
    assert cli.main(FAST + ["--json", str(old)]) == 0
    doc = json.loads(old.read_text())
    doc["rows"][0]["detops"].update(median_ms=1e6, q1_ms=1e6, q3_ms=1e6)  # an old run far slower than any now
    old.write_text(json.dumps(doc))
    capsys.readouterr()
    assert cli.main(FAST + ["--compare", str(old)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.startswith("box_area") and "->" in ln)
    assert "1000.00 s ->" in line and "yes" in line.split()


def test_compare_rejects_a_file_that_is_not_a_run(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert cli.main(FAST + ["--compare", str(bad)]) == 2
    assert "not a detops bench JSON" in capsys.readouterr().err


def test_disagreement_is_an_error_row_not_timed(planted, tmp_path, capsys):
    calls = {"baseline": 0}

    @planted("boxes", "planted_op", "wrong baseline", "uniform", sizes=("10",))
    def build(dims, ctx):
        def wrong(x):
            calls["baseline"] += 1
            return x + 1

        return registry.Pair((torch.zeros(dims[0]),), lambda x: x.clone(), wrong)

    out = tmp_path / "run.json"
    assert cli.main(["--ops", "planted_op", "--no-progress", "--json", str(out)]) == 1
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "error" and "outputs differ" in row["message"]
    assert row["detops"] is None and row["baseline_time"] is None
    assert calls["baseline"] == 1  # called once for the check, never timed
    assert "ERROR" in capsys.readouterr().out


def test_peak_memory_goes_into_the_row_the_table_and_the_report(planted, tmp_path, capsys):
    from detops.bench import report

    @planted("boxes", "planted_op", "with memory", "uniform", sizes=("10",))
    def build(dims, ctx):
        memory = {"detops_bytes": 3 << 20, "baseline_bytes": 12 << 20, "method": "planted"}
        return registry.Pair((torch.zeros(dims[0]),), lambda x: x.clone(), lambda x: x.clone(), memory=lambda: memory)

    @planted("boxes", "planted_op", "memory fails", "uniform", sizes=("10",))
    def build_failing(dims, ctx):
        def fails():
            raise OSError("no /proc here")

        return registry.Pair((torch.zeros(dims[0]),), lambda x: x.clone(), lambda x: x.clone(), memory=fails)

    out = tmp_path / "run.json"
    assert cli.main(["--ops", "planted_op", "--min-time", "0.001", "--no-progress", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "detops 3.0 MiB, baseline 12.0 MiB; planted" in text
    assert "not measured: OSError: no /proc here" in text
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["memory"]["baseline_bytes"] == 12 << 20 and rows[0]["status"] == "ok"
    assert rows[1]["status"] == "ok" and "error" in rows[1]["memory"]
    assert report.main([str(out)]) == 0
    assert "- planted_op uniform 10 vs with memory on cpu: detops 3.0 MiB" in capsys.readouterr().out


def test_missing_baseline_is_a_message(planted, capsys):
    @planted("boxes", "needs_missing", "nothing", "uniform", sizes=("10",), requires=("no_such_module_xyz",))
    def build(dims, ctx):
        raise AssertionError("not built when its baseline is missing")

    assert cli.main(["--ops", "needs_missing", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "no_such_module_xyz, which is not installed" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_ops_help_names_every_family():
    import argparse

    from detops.bench import cases

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    (ops,) = [a for a in parser._actions if a.dest == "ops"]
    assert [f for f in cases.FAMILIES if f not in ops.help] == []


def test_list(capsys):
    assert cli.main(["--list"]) == 0
    text = capsys.readouterr().out
    for name in ("nms/sparse/torchvision", "box_iou/uniform/torchvision", "MultiBoxLoss"):
        assert name in text


@pytest.mark.parametrize("sizes", ["nms:abc", "nms", "nms:-5"])
def test_bad_sizes_exit_2(sizes):
    proc = subprocess.run(
        [sys.executable, "-m", "detops", "bench", "--ops", "nms", "--sizes", sizes],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "size" in proc.stderr and "Traceback" not in proc.stderr


def test_report_markdown(tmp_path, capsys):
    from detops.bench import report

    out = tmp_path / "run.json"
    assert cli.main(FAST + ["--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    doc["rows"].append(dict(doc["rows"][0], case="box_area/uniform/other", status="error", message="outputs differ"))
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    assert report.main([str(out), "--note", "a planted note"]) == 0
    md = capsys.readouterr().out
    assert "python -m detops bench --ops box_area --sizes box_area:100 --min-time 0.001 --json BENCH.json" in md
    assert "median ± half the interquartile range" in md and "> a planted note" in md
    assert "### box_area" in md and "| uniform | 100 | torchvision |" in md
    assert "`box_area/uniform/other` size 100: error: outputs differ" in md
    assert "No GPU figures have been measured yet" in md
