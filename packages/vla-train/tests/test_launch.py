"""`vla-train launch`: layout checks, plan numbers vs vla-model accounting, generated scripts
(bash -n), bundled recipes. CPU only, no GPUs, no Slurm."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from vla_model import ParallelLayout, count_parameters, flops_per_token, get_preset, memory_per_gpu
from vla_train.launch import (
    H100_BF16_PEAK_TFLOPS,
    LaunchError,
    check_train_config,
    data_parallel_bytes,
    format_plan,
    launch_command,
    make_plan,
    recipe_names,
    recipe_text,
)

RECIPES = ["vla-10b-moe-256xh100", "vla-1b-dense-256xh100"]


def config(preset: str = "vla-1b-dense", **over) -> dict:
    """A megatron TrainConfig dict; `parallel`/`fp8` dicts are merged, other keys replaced."""
    cfg = {
        "engine": "megatron",
        "out_dir": "runs/x",
        "seq_length": 4096,
        "micro_batch_size": 2,
        "global_batch_size": 512,
        "model": {"preset": preset},
        "data": {"shards": "data/tokens"},
        "schedule": {"train_steps": 100, "warmup_steps": 10},
        "parallel": {
            "tensor_model_parallel_size": 1,
            "pipeline_model_parallel_size": 1,
            "expert_model_parallel_size": 1,
            "context_parallel_size": 1,
            "sequence_parallel": False,
            "use_distributed_optimizer": True,
        },
        "fp8": {"recipe": "none", "first_last_layers_bf16": True},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if k in ("parallel", "fp8") else v
    return cfg


def par(**kw) -> dict:
    names = {
        "tp": "tensor_model_parallel_size",
        "pp": "pipeline_model_parallel_size",
        "ep": "expert_model_parallel_size",
        "cp": "context_parallel_size",
        "vpp": "virtual_pipeline_model_parallel_size",
        "sp": "sequence_parallel",
    }
    out: dict = {"parallel": {names[k]: v for k, v in kw.items()}}
    if kw.get("cp", 1) > 1:  # CP splits packed rows: no per-document attention masks
        out["data"] = {"shards": "data/tokens", "document_mask": False}
    return out


def to_toml(cfg: dict) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, cfg: dict, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(to_toml(cfg))
    return path


def bash_n(path: Path) -> None:
    res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---- layout checks ---------------------------------------------------------------------------


def test_dp_is_world_over_tp_pp_cp() -> None:
    plan = make_plan(
        config(**par(tp=2, pp=2, cp=2, sp=True), global_batch_size=256), 4, 8, source="t"
    )
    lay = plan["layout"]
    assert (lay["tp"], lay["pp"], lay["cp"], lay["dp"]) == (2, 2, 2, 4)
    assert plan["cluster"]["world_size"] == 32
    assert plan["batch"]["micro_batches_per_step"] == 256 // (2 * 4)
    assert lay["sequence_parallel"] is True


@pytest.mark.parametrize(
    ("cfg", "nodes", "needles"),
    [
        # the layout: megatron_engine.check_layout, the engine's own check
        # TP 3 divides neither 32 heads nor 8 KV heads, nor the world of 16
        (config(**par(tp=3)), 2, ["world size 16 is not divisible", "size 3 must divide the 32"]),
        (config(**par(tp=16)), 2, ["tensor_model_parallel_size 16", "8 KV heads"]),
        (
            config(**par(pp=5), global_batch_size=20, micro_batch_size=1),
            5,
            ["24 layers do not split into 5 pipeline stages"],
        ),
        (
            config(**par(tp=3), global_batch_size=48),
            3,
            ["32 heads", "tensor_model_parallel_size (3)", "ffn_hidden_size (8192)"],
        ),
        (config("vla-10b-moe", **par(ep=6)), 3, ["64 experts do not split over EP=6"]),
        (config(**par(ep=8)), 2, ["expert_model_parallel_size > 1 needs an MoE model"]),
        (config(**par(tp=4, pp=2, cp=2)), 3, ["world size 24", "not divisible", "= 16"]),
        (
            config(global_batch_size=100),
            2,
            ["global_batch_size / micro_batch_size = 50", "data-parallel size 16"],
        ),
        (
            config("vla-10b-moe", **par(tp=2, ep=8, sp=False)),
            2,
            ["sequence_parallel must be true"],
        ),
        (config(**par(cp=3), global_batch_size=60), 9, ["seq_length 4096", "2 x CP = 6"]),
        (config(**par(pp=2, vpp=5)), 2, ["24 layers do not split into 10 pipeline stages"]),
        (  # interleaved 1F1B: 3 micro-batches per DP rank over 2 stages
            config(**par(pp=2, vpp=2), global_batch_size=24, micro_batch_size=1),
            2,
            ["interleaved pipelining needs micro-batches per step divisible"],
        ),
        (  # SP with CP: the CP chunk (4092 / 2) must split over TP 4 (4092 itself does)
            config(**par(tp=4, cp=2, sp=True), seq_length=4092),
            2,
            ["seq_length / parallel.context_parallel_size (2046)", "size (4)"],
        ),
        (  # MoE with TP needs SP even without expert parallelism (megatron's MoELayer)
            config("vla-10b-moe", **par(tp=2)),
            2,
            ["sequence_parallel must be true for an MoE model"],
        ),
        (
            config(
                model={"preset": "vla-1b-dense", "overrides": {"vocab_size": 152066}},
                **par(tp=4, sp=True),
            ),
            2,
            ["tensor_model_parallel_size (4) must divide the model's vocab_size (152066)"],
        ),  # fmt: skip
        (
            config(
                "vla-10b-moe",
                **{"parallel": {"expert_model_parallel_size": 8, "expert_tensor_parallel_size": 5}},
            ),
            5,
            ["expert tensor parallel size (5)", "moe.expert_ffn_hidden_size (768)"],
        ),  # fmt: skip
        (
            config(
                **{"parallel": {"tensor_model_parallel_size": 2, "expert_tensor_parallel_size": 1}}
            ),
            2,
            ["parallel.expert_tensor_parallel_size needs an MoE model"],
        ),  # fmt: skip
        # the sections themselves: TrainConfig (ParallelSection / FP8Section), field named
        (
            config(**par(vpp=2)),
            2,
            ["parallel: ", "virtual_pipeline_model_parallel_size needs pipeline_model_parallel_"],
        ),
        (config(**par(sp=True)), 2, ["sequence_parallel needs tensor_model_parallel_size > 1"]),
        (config(fp8={"recipe": "mxfp8"}), 2, ["fp8.recipe", "Blackwell"]),
        (config(fp8={"recipe": "tensorwise"}), 2, ["fp8.recipe", "recipe = 'current'"]),
        (config(fp8={"recipe": "fp4"}), 2, ["fp8.recipe: Input should be 'none', 'delayed'"]),
        (
            config(fp8={"recipe": "current"}, precision="fp32"),
            2,
            ["fp8 needs precision 'auto' or 'bf16'"],
        ),
        (
            config(fp8={"recipe": "delayed"}),  # the template keeps first/last layers in BF16
            2,
            ["fp8: first_last_layers_bf16 works with recipe 'current' only"],
        ),
        (config(**par(tp=0)), 2, ["parallel.tensor_model_parallel_size: Input should be greater"]),
        (
            config(**par(sp="maybe")),
            2,
            ["parallel.sequence_parallel: Input should be a valid bool"],
        ),
        (config(parallel={"tensor_parallel": 2}), 2, ["parallel.tensor_parallel: Extra inputs"]),
        (config(fp8={"amax": 1}), 2, ["fp8.amax: Extra inputs are not permitted"]),
        (
            config(parallel={"recompute_granularity": "some"}),
            2,
            ["parallel.recompute_granularity: Input should be 'none', 'selective' or 'full'"],
        ),
        (config(seq_length=8192), 2, ["seq_length (8192)", "max_position_embeddings"]),
        (config(model={"preset": "no-such-model"}), 2, ["model: ", "no-such-model"]),
        (config(engine="torch", **par(tp=2)), 2, ["torch engine is data-parallel only"]),
        (
            {
                k: v
                for k, v in config(engine="torch", fp8={"recipe": "current"}).items()
                if k != "parallel"
            },
            2,
            ["[fp8] need engine = 'megatron'"],
        ),  # fmt: skip
    ],
)
def test_bad_layouts_name_the_field(cfg: dict, nodes: int, needles: list[str]) -> None:
    with pytest.raises(LaunchError) as e:
        make_plan(cfg, nodes, 8, source="bad.toml")
    msg = str(e.value)
    assert msg.startswith("bad.toml: ")
    for needle in needles:
        assert needle in msg, msg


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(LaunchError) as e:
        make_plan(config("vla-10b-moe", **par(tp=3, ep=5)), 2, 8)
    msg = str(e.value)
    assert "world size 16" in msg and "the 32 heads" in msg
    assert "64 experts do not split over EP=5" in msg
    assert "sequence_parallel must be true" in msg  # launch's extra check, in the same error
    assert "--nodes 2 x --gpus-per-node 8" in msg


def test_layout_is_the_engines_check() -> None:
    """launch's DP size and layout errors are `megatron_engine.check_layout`'s."""
    from vla_train.config import TrainConfig, TrainConfigError
    from vla_train.megatron_engine import check_layout

    raw = config("vla-10b-moe", **par(tp=2, pp=2, ep=4, sp=True), global_batch_size=256)
    cfg = TrainConfig.from_dict(raw)
    plan = make_plan(cfg, 4, 8)  # a TrainConfig is accepted as well as a raw dict
    assert plan["layout"]["dp"] == check_layout(cfg, 32) == 8
    assert plan == make_plan(raw, 4, 8)
    with pytest.raises(TrainConfigError) as engine_err:
        check_layout(cfg, 24)
    with pytest.raises(LaunchError) as launch_err:
        make_plan(cfg, 3, 8)
    assert str(engine_err.value) in str(launch_err.value)


def test_recompute_in_the_memory_estimate() -> None:
    """`none` with fused attention is estimated as `selective` (no stored s^2 scores); `full`
    and the local spec's unfused attention change the activation memory."""
    base = make_plan(config(), 2, 8)["memory"]
    assert (base["recompute"], base["recompute_granularity"]) == ("selective", "none")
    sel = make_plan(config(parallel={"recompute_granularity": "selective"}), 2, 8)["memory"]
    assert sel["bytes"] == base["bytes"]
    full = make_plan(config(parallel={"recompute_granularity": "full"}), 2, 8)["memory"]
    assert full["recompute"] == "full"
    assert full["bytes"]["activations"] < base["bytes"]["activations"] / 3
    local = make_plan(config(megatron={"spec": "local"}), 2, 8, allow_over_budget=True)
    assert local["memory"]["recompute"] == "none"
    assert local["memory"]["bytes"]["activations"] > base["bytes"]["activations"]


def test_memory_over_budget_fails_unless_allowed() -> None:
    cfg = config(micro_batch_size=16, global_batch_size=256)  # ~160 GB of activations
    with pytest.raises(LaunchError, match=r"exceeds the 80 GB budget.*micro_batch_size"):
        make_plan(cfg, 2, 8)
    plan = make_plan(cfg, 2, 8, allow_over_budget=True)
    assert plan["memory"]["fraction_of_budget"] > 1 and plan["warnings"]
    # a smaller budget turns a fitting plan into an error too
    with pytest.raises(LaunchError, match="budget"):
        make_plan(config(), 2, 8, gpu_memory_gb=10)


# ---- plan numbers vs vla_model.accounting ----------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "p", "nodes", "micro", "gbs"),
    [
        ("vla-1b-dense", dict(tp=1, pp=1, cp=1), 32, 4, 1024),
        ("vla-1b-dense", dict(tp=2, pp=2, cp=2, sp=True), 4, 1, 64),
        ("vla-10b-moe", dict(tp=1, pp=1, ep=8, cp=1), 32, 2, 1024),
        ("vla-10b-moe", dict(tp=2, pp=4, ep=4, cp=1, sp=True), 8, 1, 256),
    ],
)
def test_plan_matches_accounting(preset, p, nodes, micro, gbs) -> None:
    cfg = config(preset, **par(**p), micro_batch_size=micro, global_batch_size=gbs)
    mfu = 0.4
    plan = make_plan(cfg, nodes, 8, assume_mfu=mfu)
    tp, pp, cp, ep = p["tp"], p["pp"], p["cp"], p.get("ep", 1)
    world = nodes * 8
    dp = world // (tp * pp * cp)
    assert plan["layout"]["dp"] == dp
    model = get_preset(preset)
    mem = memory_per_gpu(
        model,
        ParallelLayout(tp=tp, pp=pp, dp=dp * cp, ep=ep),
        4096 // cp,
        micro,
        p.get("sp", False) and tp > 1,
        "selective",
    )
    assert plan["memory"]["bytes"]["total"] == pytest.approx(mem.total)
    assert plan["memory"]["total_gb"] == pytest.approx(mem.total / 1e9, abs=0.01)
    assert plan["memory"]["fraction_of_budget"] == pytest.approx(mem.total / 80e9, abs=1e-3)
    fpt = flops_per_token(model, 4096).total
    step = fpt * gbs * 4096 / (world * H100_BF16_PEAK_TFLOPS * 1e12 * mfu)
    thr = plan["throughput"]
    assert thr["flops_per_token"] == fpt
    assert thr["step_time_s"] == pytest.approx(step, abs=1e-4)
    assert thr["tokens_per_s"] == pytest.approx(gbs * 4096 / step, rel=1e-6)
    assert thr["train_tokens"] == 100 * gbs * 4096
    assert plan["model"]["params_total"] == count_parameters(model).total
    assert plan["batch"]["micro_batches_per_step"] == gbs // (micro * dp)


def test_plain_optimizer_is_not_sharded() -> None:
    dist = make_plan(config(), 2, 8)["memory"]["bytes"]
    plain = make_plan(config(**{"parallel": {"use_distributed_optimizer": False}}), 2, 8)
    params = plain["memory"]["bytes"]["dense_params"]
    assert plain["memory"]["bytes"]["optimizer"] == pytest.approx(12 * params)
    assert plain["memory"]["bytes"]["optimizer"] > 10 * dist["optimizer"]
    assert any("use_distributed_optimizer" in w for w in plain["warnings"])


def test_optimizer_state_bytes_follow_the_precision_options() -> None:
    plain = make_plan(config(), 2, 8)["memory"]  # FP32 master + FP32 moments: 4 + 8
    aware = make_plan(config(**{"parallel": {"precision_aware_optimizer": True}}), 2, 8)
    bf16 = make_plan(config(**{"parallel": {"adam_state_dtype": "bf16"}}), 2, 8)["memory"]
    full = plain["bytes"]["optimizer"]
    # precision-aware: FP32 master as 16-bit remainders of the BF16 params (2 + 8; BF16: 2 + 4)
    assert aware["memory"]["bytes"]["optimizer"] == pytest.approx(full * 10 / 12)
    assert bf16["bytes"]["optimizer"] == pytest.approx(full * 6 / 12)
    assert "6 + 10/DP" in aware["memory"]["model"] and "6 + 6/DP" in bf16["model"]
    assert "6 + 12/DP" in plain["model"]


def test_data_parallel_bytes() -> None:
    assert data_parallel_bytes(1e9, 1, grad_bytes=4, distributed_optimizer=True) == 0
    # distributed optimizer: reduce-scatter FP32 grads + all-gather BF16 params, ring (n-1)/n
    assert data_parallel_bytes(1e9, 4, grad_bytes=4, distributed_optimizer=True) == 0.75e9 * 6
    # plain DDP: all-reduce = 2 x reduce-scatter
    assert data_parallel_bytes(1e9, 4, grad_bytes=2, distributed_optimizer=False) == 0.75e9 * 4


def test_data_parallel_sync_with_fp8_weights_gathers_fewer_bytes() -> None:
    bf16 = make_plan(config(), 4, 8)
    fp8w = make_plan(config(fp8={"recipe": "current", "primary_weights": True}), 4, 8)
    dense = bf16["memory"]["bytes"]["dense_params"]
    tables = 2 * 152064 * 2048  # vla-1b-dense: untied embedding + output layer stay BF16
    ring = 31 / 32
    assert bf16["throughput"]["data_parallel"]["bytes_per_gpu_per_step"] == pytest.approx(
        ring * dense * (4 + 2), rel=1e-6
    )
    assert fp8w["throughput"]["data_parallel"]["bytes_per_gpu_per_step"] == pytest.approx(
        ring * (dense * 4 + 2 * tables + (dense - tables)), rel=1e-6
    )


def test_data_parallel_sync_warns_when_exposed() -> None:
    multi = config(**{"parallel": {"overlap_grad_reduce": False}})
    plan = make_plan(multi, 4, 8)  # DP 32 over 4 nodes
    sync = plan["throughput"]["data_parallel"]
    assert sync["over"] == "network" and not sync["overlapped_with_compute"]
    dense = plan["memory"]["bytes"]["dense_params"]
    assert sync["bytes_per_gpu_per_step"] == pytest.approx(dense * 6 * 31 / 32, rel=1e-6)
    assert sync["time_s"] == pytest.approx(sync["bytes_per_gpu_per_step"] / 40e9, abs=1e-4)
    assert any("without overlap" in w and "overlap_param_gather" in w for w in plan["warnings"])
    on = {"overlap_grad_reduce": True, "overlap_param_gather": True}
    quiet = make_plan(config(**{"parallel": on}), 4, 8)
    assert not any("data-parallel" in w for w in quiet["warnings"])
    slow = make_plan(config(**{"parallel": on}), 4, 8, network_gb_per_s=0.5)
    assert any("takes longer than" in w for w in slow["warnings"])
    one_node = make_plan(config(**{"parallel": {"overlap_grad_reduce": False}}), 1, 8)
    assert one_node["throughput"]["data_parallel"]["over"] == "nvlink"
    with pytest.raises(LaunchError, match="network-gb-per-s"):
        make_plan(multi, 4, 8, network_gb_per_s=0)


# ---- scripts ---------------------------------------------------------------------------------


def test_scripts_for_nodes_and_gpus(tmp_path: Path) -> None:
    cfg_path = write(tmp_path, config("vla-10b-moe", **par(ep=8), global_batch_size=256))
    out = tmp_path / "my launch"  # a space: paths must be quoted
    res = CliRunner().invoke(
        launch_command,
        [
            "--config", str(cfg_path), "--nodes", "4", "--gpus-per-node", "8",
            "--out", str(out), "--partition", "gpu", "--account", "proj",
            "--time", "12:00:00", "--container", "nvcr.io/nvidia/pytorch:25.04-py3",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "TP 1 PP 1 EP 8 CP 1 DP 32" in res.output
    torchrun = (out / "torchrun.sh").read_text()
    sbatch = (out / "launch.sbatch").read_text()
    for path in (out / "torchrun.sh", out / "launch.sbatch"):
        assert path.stat().st_mode & stat.S_IXUSR
        bash_n(path)
        assert "set -euo pipefail" in path.read_text()
    # torchrun: node and GPU counts, c10d rendezvous, the config quoted
    assert "NNODES=4\n" in torchrun and "NPROC_PER_NODE=8\n" in torchrun
    assert '--nnodes "$NNODES"' in torchrun and '--nproc_per_node "$NPROC_PER_NODE"' in torchrun
    assert "--rdzv_backend c10d" in torchrun
    assert '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"' in torchrun
    assert '-m vla_train run --config "$CONFIG" "$@"' in torchrun
    assert (
        f"CONFIG={cfg_path.resolve()}" in torchrun or f"CONFIG='{cfg_path.resolve()}'" in torchrun
    )
    assert "export CUDA_DEVICE_MAX_CONNECTIONS=1" in torchrun
    # sbatch: directives, MASTER_ADDR from the node list, srun one task per node
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --exclusive",
        "#SBATCH --time=12:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
    ):
        assert line in sbatch.splitlines(), line
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p' in sbatch
    assert re.search(r"^srun \\\n  --nodes=4 \\\n  --ntasks-per-node=1 ", sbatch, re.M)
    assert "--container-image=" in sbatch and 'bash "$LAUNCH_DIR/torchrun.sh" "$@"' in sbatch
    assert f"LAUNCH_DIR='{out.resolve()}'" in sbatch
    for env in (
        "CUDA_DEVICE_MAX_CONNECTIONS=1",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "TORCH_NCCL_AVOID_RECORD_STREAMS",
        "OMP_NUM_THREADS",
        "# export NCCL_IB_HCA",
    ):
        assert env in sbatch, env
    # every #SBATCH line precedes the first command
    first_cmd = min(i for i, x in enumerate(sbatch.splitlines()) if x.startswith("set "))
    assert all(i < first_cmd for i, x in enumerate(sbatch.splitlines()) if x.startswith("#SBATCH"))
    assert "#SBATCH --output" not in sbatch  # the space in the path: Slurm's default log
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cluster"] == {
        "nodes": 4,
        "gpus_per_node": 8,
        "world_size": 32,
        "gpu": "H100 80 GB",
    }
    assert plan["layout"]["expert_dp"] == 4
    assert plan["files"]["sbatch"] == str((out / "launch.sbatch").resolve())


def test_scripts_run_under_a_fake_torchrun_and_srun(tmp_path: Path) -> None:
    """Execute the scripts with stand-in `torchrun`, `srun` and `scontrol` on PATH."""
    cfg_path = write(tmp_path, config())
    out = tmp_path / "l"
    res = CliRunner().invoke(
        launch_command, ["--config", str(cfg_path), "--nodes", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (out / "logs").is_dir() and f"#SBATCH --output={out.resolve()}/logs/" in (
        out / "launch.sbatch"
    ).read_text()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "torchrun").write_text('#!/usr/bin/env bash\necho "torchrun $*"\n')
    (bin_ / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'gpu-a\\ngpu-b\\n'\n")
    # srun: run the command once per "node", as Slurm would
    (bin_ / "srun").write_text(
        '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\n"$@"\n"$@"\n'
    )
    for f in bin_.iterdir():
        f.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "OMP_", "SLURM"))}
    env.update(PATH=f"{bin_}:{env['PATH']}", SLURM_JOB_ID="42", SLURM_JOB_NODELIST="gpu-[a-b]")
    env["SLURM_JOB_NUM_NODES"] = "2"
    r = subprocess.run(
        ["bash", str(out / "launch.sbatch"), "--steps", "3"], env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    calls = [x for x in r.stdout.splitlines() if x.startswith("torchrun ")]
    assert len(calls) == 2
    assert "--nnodes 2 --nproc_per_node 8 --rdzv_backend c10d" in calls[0]
    assert "--rdzv_endpoint gpu-a:29500 --rdzv_id 42" in calls[0]
    assert calls[0].endswith(f"-m vla_train run --config {cfg_path.resolve()} --steps 3")
    # torchrun.sh alone refuses to guess MASTER_ADDR on several nodes
    r = subprocess.run(["bash", str(out / "torchrun.sh")], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "MASTER_ADDR" in r.stderr


def test_torchrun_only_and_single_node(tmp_path: Path) -> None:
    cfg_path = write(tmp_path, config(global_batch_size=16))
    out = tmp_path / "single"
    res = CliRunner().invoke(
        launch_command,
        ["--config", str(cfg_path), "--nodes", "1", "--scheduler", "torchrun", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert not (out / "launch.sbatch").exists()
    text = (out / "torchrun.sh").read_text()
    assert "NNODES=1\n" in text and 'MASTER_ADDR="${MASTER_ADDR:-localhost}"' in text
    bash_n(out / "torchrun.sh")
    res = CliRunner().invoke(
        launch_command,
        ["--config", str(cfg_path), "--nodes", "1", "--scheduler", "torchrun", "--time", "1:00:00"],
    )
    assert res.exit_code == 2 and "--scheduler slurm" in res.output


def test_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    cfg_path = write(tmp_path, config(**par(tp=3)))
    res = runner.invoke(launch_command, ["--config", str(cfg_path), "--nodes", "2"])
    assert res.exit_code == 2
    assert "error:" in res.output and "tensor_model_parallel_size (3)" in res.output
    res = runner.invoke(launch_command, ["--nodes", "2"])
    assert res.exit_code == 2 and "--config or --recipe" in res.output
    res = runner.invoke(launch_command, ["--recipe", "nope", "--nodes", "2"])
    assert res.exit_code == 2 and "unknown recipe 'nope'" in res.output
    ok = write(tmp_path, config(), "ok.toml")
    res = runner.invoke(
        launch_command, ["--config", str(ok), "--nodes", "2", "--time", "soon", "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert res.exit_code == 2 and "--time" in res.output
    # the rest of the config is still checked by TrainConfig
    bad = write(tmp_path, {**config(), "micro_batch_size": 3, "global_batch_size": 512}, "b.toml")
    res = runner.invoke(launch_command, ["--config", str(bad), "--nodes", "2", "--plan-only"])
    assert res.exit_code == 2 and "micro_batch_size (3)" in res.output


def test_plan_only_json_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg_path = write(tmp_path, config())
    res = CliRunner().invoke(
        launch_command, ["--config", str(cfg_path), "--nodes", "2", "--plan-only", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["layout"]["dp"] == 16
    assert not (tmp_path / "launch").exists()


# ---- recipes ---------------------------------------------------------------------------------


def test_recipes_are_bundled() -> None:
    assert recipe_names() == RECIPES
    res = CliRunner().invoke(launch_command, ["--list-recipes"])
    assert res.exit_code == 0 and res.output.split() == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_plans_at_32x8(name: str, tmp_path: Path) -> None:
    raw = tomllib.loads(recipe_text(name))
    assert raw["engine"] == "megatron" and raw["data"]["shards"] == "data/tokens"
    assert check_train_config(raw, name, None) is None  # TrainConfig-shaped
    plan = make_plan(raw, 32, 8, source=name)
    assert plan["cluster"]["world_size"] == 256 and not plan["warnings"]
    assert plan["memory"]["fraction_of_budget"] < 0.8
    assert 3.9e6 < plan["batch"]["tokens_per_step"] < 4.3e6
    # the header states the numbers this code computes
    head = recipe_text(name).split("\nengine", 1)[0]
    assert f"{plan['memory']['total_gb']:.1f} GB of 80 GB" in head
    assert f"{plan['throughput']['step_time_s']:.3f} s/step" in head
    assert f"{plan['throughput']['tokens_per_s'] / 1e6:.2f}M tokens/s" in head
    lay = plan["layout"]
    assert f"TP {lay['tp']}, PP {lay['pp']}, EP {lay['ep']}" in head and f"DP {lay['dp']}" in head
    sync = plan["throughput"]["data_parallel"]
    assert f"{sync['bytes_per_gpu_per_step'] / 1e9:.1f} GB/GPU/step" in head
    assert f"~{sync['time_s']:.2f} s" in head and sync["overlapped_with_compute"]
    # and launch writes a run.toml copy next to the scripts
    out = tmp_path / "out"
    res = CliRunner().invoke(launch_command, ["--recipe", name, "--nodes", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "run.toml").read_text() == recipe_text(name)
    assert f"CONFIG={(out / 'run.toml').resolve()}" in (out / "torchrun.sh").read_text()
    bash_n(out / "launch.sbatch")


def test_moe_recipe_layout() -> None:
    plan = make_plan(tomllib.loads(recipe_text("vla-10b-moe-256xh100")), 32, 8)
    assert plan["model"]["num_experts"] == 64
    assert plan["layout"]["ep"] == 8 and plan["layout"]["expert_dp"] == 32


def test_checkpoint_size_write_time_and_stall() -> None:
    """Weights (BF16) + FP32 master + two FP32 Adam moments = 14 bytes per parameter; written
    synchronously the whole write stalls training, in the background only the host copy."""
    plan = make_plan(config(checkpoint={"every": 200}), 4, 8, storage_gb_per_s=5.0)
    ck, params = plan["throughput"]["checkpoint"], plan["model"]["params_total"]
    assert ck["bytes"] == pytest.approx(params * 14, rel=1e-9)
    assert ck["bytes_per_gpu"] == pytest.approx(params * 14 / 32, rel=1e-6)
    assert ck["write_time_s"] == pytest.approx(params * 14 / 5e9, abs=0.05)
    assert ck["stall_s"] == pytest.approx(ck["write_time_s"], abs=0.05) and not ck["async_save"]
    step = plan["throughput"]["step_time_s"]
    assert ck["interval_s"] == pytest.approx(200 * step, abs=0.1)
    bf16_moments = config(checkpoint={"every": 200}, parallel={"adam_state_dtype": "bf16"})
    smaller = make_plan(bf16_moments, 4, 8)["throughput"]["checkpoint"]["bytes"]
    # BF16 moments run the precision-aware optimizer: BF16 weights, their 16-bit master
    # remainders and two BF16 moments
    assert smaller == pytest.approx(params * (2 + 2 + 2 + 2), rel=1e-9)
    background = config(checkpoint={"every": 200, "async_save": True})
    ck_async = make_plan(background, 4, 8, storage_gb_per_s=5.0)["throughput"]["checkpoint"]
    assert ck_async["async_save"]
    assert ck_async["stall_s"] == pytest.approx(params * 14 / 32 / 20e9, abs=0.01)


def test_checkpoint_warnings_name_the_fix() -> None:
    often = make_plan(config(checkpoint={"every": 5}), 4, 8)
    (warning,) = [w for w in often["warnings"] if "checkpoint" in w]
    assert "stalls training" in warning and "set checkpoint.async_save = true" in warning
    assert "checkpoint" in format_plan(often)
    piling = config(checkpoint={"every": 5, "async_save": True})
    slow_disk = make_plan(piling, 4, 8, storage_gb_per_s=0.5)  # 58 s writes, 9.6 s apart
    (warning,) = [w for w in slow_disk["warnings"] if "checkpoint" in w]
    assert "outlasts" in warning and "raise checkpoint.every" in warning
    assert not [w for w in make_plan(config(), 4, 8)["warnings"] if "checkpoint" in w]
    with pytest.raises(LaunchError, match="--storage-gb-per-s must be > 0"):
        make_plan(config(), 4, 8, storage_gb_per_s=0)
