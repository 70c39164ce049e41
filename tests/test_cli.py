"""The CLI as users run it: every shipped config parses, DDP on two CPU processes, and the W&B sweep's command."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, TINY_DATA, subprocess_env, topk_args

from facecluster import models
from facecluster.commands.train import cli_main

pytestmark = pytest.mark.usefixtures("cli_env")

EXPERIMENTS = sorted((ROOT / "configs" / "experiment").glob("*.yaml"))


CASES = [(exp, ("cpu",)) for exp in EXPERIMENTS] + [(EXPERIMENTS[-1], ("gpu",)), (EXPERIMENTS[-1], ("gpu", "ddp"))]


@pytest.mark.parametrize(("experiment", "trainer"), CASES, ids=lambda v: v.stem if isinstance(v, Path) else "+".join(v))
def test_shipped_configs_parse(experiment: Path, trainer: tuple[str, ...], capsys: pytest.CaptureFixture) -> None:
    presets = [f"--config={ROOT}/configs/trainer/{name}.yaml" for name in trainer]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *presets, f"--config={ROOT}/configs/logger/csv.yaml", f"--config={experiment}",
                  "--print_config"])
    assert exit_info.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["accelerator"] == trainer[0] and config["trainer"]["strategy"] == (
        "ddp" if "ddp" in trainer else "auto")
    module = "TopKModule" if experiment.stem.endswith("_topk") else "SDTModule"
    assert config["model"]["class_path"].endswith(module)
    assert config["checkpoint"]["dirpath"] == f"runs/{experiment.stem}/checkpoints"
    if module == "SDTModule" and not experiment.stem.startswith("ms1m"):  # the rule --tune chose on lfw-dlib
        graph = config["evaluation"]["graph"]
        assert (graph["jaccard"], graph["combine"], graph["threshold"]) == ("none", "product", 0.5)
    if experiment.stem.endswith("_sdt"):
        topk_stage = experiment.stem.replace("_sdt", "_topk")
        assert config["model"]["init_args"]["topk_ckpt"] == f"runs/{topk_stage}/checkpoints/best.ckpt"
    elif module == "SDTModule":  # a GNN baseline: the pair stage alone, its pivot subgraphs for the data
        args = config["model"]["init_args"]
        assert args["topk_ckpt"] is None and args["schedule"] == "oracle"
        assert args["model"]["class_path"] in ("facecluster.models.LGCN", "facecluster.models.PivotGAT")


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory):
    """The CLI's parser (no subcommand), from a CLI built without running anything."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["train.py"])
        return cli_main([*TINY_DATA, *topk_args(), f"--trainer.default_root_dir={tmp_path_factory.mktemp('p')}"],
                        run=False).parser


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_configs_link_the_data_shapes_into_the_network_configs(parser, experiment: Path) -> None:
    """``data.k`` and the data's feature width reach every network's dataclass config (``--print_config`` prints
    before links apply, so it leaves them out; the parsed config has them), the YAML's fields are kept and the
    config's checks accept the result."""
    cfg = parser.parse_args([f"--config={ROOT}/configs/trainer/cpu.yaml", f"--config={experiment}"])
    net = cfg.model.init_args.model
    name = net.class_path.rsplit(".", 1)[-1]
    values = net.init_args.config.as_dict()
    given = yaml.safe_load(experiment.read_text())["model"]["init_args"]["model"]["init_args"]["config"]
    assert {k: values[k] for k in given} == given
    assert values["k"] == cfg.data.k == 80 and values["feat_dim"] == (256 if "lfw" not in experiment.stem else 128)
    getattr(models, name).config_class(**values)


def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    """A real multi-process run: train.py under strategy=ddp (gloo) with two CPU devices."""
    cmd = [sys.executable, "train.py", "fit", "--config=configs/trainer/cpu.yaml", "--config=configs/trainer/ddp.yaml",
           "--trainer.devices=2", *TINY_DATA, *topk_args(), "--trainer.max_epochs=1",
           "--trainer.limit_train_batches=2", "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
           "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}",
           f"--trainer.logger={{class_path: CSVLogger, init_args: {{save_dir: {tmp_path}, name: csv}}}}",
           f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log and "gloo" in log
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/pairwise_f" in metrics and "val/score" in metrics and "train/loss" in metrics
    assert (tmp_path / "ckpt" / "best.ckpt").exists()  # monitored on val/score by default


# ---------------------------------------------------------------- the sweep


def sample_parameters(parameters: dict, rng: np.random.Generator) -> dict:
    """One configuration from a W&B sweep parameter space (the distributions the sweep files use)."""
    out = {}
    for name, spec in parameters.items():
        dist = spec.get("distribution", "categorical" if "values" in spec else "constant")
        if dist == "constant":
            out[name] = spec["value"]
        elif dist == "categorical":
            out[name] = spec["values"][rng.integers(len(spec["values"]))]
        elif dist == "uniform":
            out[name] = float(rng.uniform(spec["min"], spec["max"]))
        elif dist == "int_uniform":
            out[name] = int(rng.integers(spec["min"], spec["max"] + 1))
        elif dist == "log_uniform_values":
            out[name] = float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))
        else:
            raise NotImplementedError(f"{name}: distribution {dist!r} not handled by this test")
    return out


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line the W&B agent runs for ``values`` (wandb_agent.Agent._command_run, no job/json file)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    variables = create_sweep_command_args({"args": {name: {"value": v} for name, v in values.items()}})
    variables.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    command = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        command += variables.get(chunk[2:-1]) or [] if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return command


def test_sweep_samples_run_through_the_cli(tiny_fit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = yaml.safe_load((ROOT / "configs" / "sweeps" / "sdt_lfw.yaml").read_text())
    assert sweep["metric"]["name"] == "val/score" and sweep["program"] == "train.py"
    values = sample_parameters(sweep["parameters"], np.random.default_rng(0))
    command = agent_command(sweep, values)
    assert command[:4] == ["/usr/bin/env", "python", "train.py", "fit"]
    assert {f"--{name}={value}" for name, value in values.items()} <= set(command)
    # a tiny Top-K checkpoint for the staged SDT, then the sweep's own command on tiny data, two steps
    # (not one: jsonargparse reads limit_train_batches=1 as the float 1.0, i.e. the whole epoch)
    monkeypatch.chdir(ROOT)
    topk_dir = tmp_path / "topk"
    cli_main(tiny_fit(*topk_args(), f"--checkpoint.dirpath={topk_dir}", steps=2))
    overrides = [*TINY_DATA, "--data.source=synthetic", f"--data.cache_dir={tmp_path / 'cache'}",
                 f"--model.init_args.topk_ckpt={topk_dir / 'best.ckpt'}",
                 "--model.init_args.model.init_args.config.num_heads=2",
                 "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
                 "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
                 "--trainer.logger.init_args.offline=true", f"--trainer.logger.init_args.save_dir={tmp_path}",
                 f"--checkpoint.dirpath={tmp_path / 'sdt'}"]
    cli = cli_main(command[3:] + overrides)
    import wandb

    wandb.finish()
    sdt = cli.model.model
    assert cli.trainer.global_step == 2 and type(cli.model).__name__ == "SDTModule"
    assert sdt.config.d_model == values["model.init_args.model.init_args.config.d_model"]
    assert sdt.config.num_layers == values["model.init_args.model.init_args.config.num_layers"]
    assert cli.model.hparams.optimizer["init_args"]["lr"] == pytest.approx(
        values["model.init_args.optimizer.init_args.lr"])
    assert "val/pairwise_f" in cli.trainer.callback_metrics
