import json

from _tiny import tiny_pipe

from repaint import bench


def test_report_rows_and_markdown():
    report = bench.run(tiny_pipe(), steps=6, jump_length=2, jump_n_sample=2, batch=1, repeats=3)
    names = [r["name"] for r in report["rows"]]
    assert names == [
        "model calls only (floor)",
        "repaint (this project)",
        "repaint compare n=1 + n>1",
        "diffusers RePaintPipeline eta=1",
    ]
    assert all(r["calls"] == 10 for r in report["rows"])
    assert report["rows"][-1]["vs_diffusers"] == 1.0
    assert all(r["wall_s"] > 0 and r["ms_per_call"] > 0 for r in report["rows"])
    json.dumps(report)
    table = bench.markdown(report)
    assert table.count("\n|") == 6 and "tiny" in table  # header, rule, 4 rows
    assert 0 < report["sampler_ms"] < report["rows"][1]["ms_per_call"]
    assert f"The sampler's own work: {report['sampler_ms']:.3f} ms per model call" in table


def test_the_sampler_alone_runs_the_same_chain_with_a_model_that_returns_zeros():
    """The stand-in keeps the model's shapes: the run is the sampler's whole chain, its known pixels exact."""
    pipe = tiny_pipe()
    zeros = bench.Inpainter(bench._Zeros(pipe.unet), pipe.scheduler_config, "zeros")
    image = (bench.np.random.default_rng(0).random((pipe.resolution, pipe.resolution, 3)) * 255).astype("uint8")
    mask = pipe.prepare(image, "left_half")[1]
    calls = []
    out = zeros.inpaint(image, mask, steps=6, jump_length=2, jump_n_sample=2, callback=lambda *a: calls.append(a))
    assert len(calls) == 10
    assert (bench.np.asarray(out[0])[~mask] == image[~mask]).all()


def test_random_configs_have_the_real_architecture():
    cifar = bench.random_model("cifar10", "cpu", bench.torch.float32)
    assert cifar.resolution == 32
    assert round(sum(p.numel() for p in cifar.unet.parameters()) / 1e6, 1) == 35.7  # google/ddpm-cifar10-32


def test_cli_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        bench.main(
            [
                "--model",
                "bundled",
                "--steps",
                "3",
                "--jump-length",
                "1",
                "--jump-n-sample",
                "2",
                "--repeats",
                "2",
                "--no-diffusers",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["rows"][1]["calls"] == 5
    assert "| repaint (this project) | 5 |" in capsys.readouterr().out


def test_write_section_replaces_its_own_section_and_keeps_the_others(tmp_path):
    report = tmp_path / "benchmarks.md"
    bench.write_section(str(report), "Speed: a", "python -m repaint.bench --a", "cpu (x)", "| a | 1 |")
    bench.write_section(str(report), "Estimates: b", "python -m repaint.space.bench", "cpu (y)", "| b | 2 |")
    bench.write_section(str(report), "Speed: a", "python -m repaint.bench --a", "cpu (z)", "| a | 3 |")
    text = report.read_text()
    assert text.startswith(bench.REPORT_HEAD)
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## Speed: a", "## Estimates: b"]
    assert "| a | 3 |" in text and "| a | 1 |" not in text and "| b | 2 |" in text
    a = text.split("## Speed: a")[1].split("## ")[0]
    assert "on cpu (z), with:" in a and "    python -m repaint.bench --a\n" in a
    assert "on cpu (y), with:" in text.split("## Estimates: b")[1]


def test_cli_writes_its_section_with_the_command_and_the_machine(tmp_path, capsys):
    report = tmp_path / "benchmarks.md"
    args = ["--model", "bundled", "--steps", "3", "--jump-length", "1", "--jump-n-sample", "2", "--repeats", "2"]
    assert bench.main([*args, "--no-diffusers", "--write", str(report)]) == 0
    text = report.read_text()
    assert "## Sampler speed: bundled, T=3, j=1, r=2" in text
    assert "python -m repaint.bench --model bundled --steps 3" in text and "torch threads" in text
    assert "| repaint (this project) | 5 |" in text
