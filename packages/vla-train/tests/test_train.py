"""Torch engine: learning, accumulation, loss weights, guards, schedule, checkpoints, data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vla_train.checkpoint import CheckpointError, LoadedCheckpoint, list_checkpoints
from vla_train.config import OptimizerSection, ScheduleSection, TrainConfig, TrainConfigError
from vla_train.data import MixtureStream, span_mask, unigram_entropy
from vla_train.engine import Trainer
from vla_train.modalities import TokenModalities
from vla_train.monitor import TrainingStopped, read_metrics
from vla_train.schedule import lr_at


def _cfg(make_config, shards, out, **over) -> TrainConfig:
    return TrainConfig.from_dict(make_config(shards, out, **over))


@pytest.mark.slow  # ~60 optimizer steps: 10-25 s on a shared 2-core machine
def test_loss_falls_well_below_unigram_entropy(shards, tmp_path, make_config) -> None:
    cfg = _cfg(
        make_config,
        shards,
        tmp_path / "run",
        micro_batch_size=8,
        global_batch_size=8,
        schedule={"train_steps": 60, "warmup_steps": 6},
        optimizer={"lr": 5e-3, "min_lr": 5e-4, "weight_decay": 0.0},
        checkpoint={"every": 1000, "save_final": False},
    )
    trainer = Trainer(cfg)
    entropy = unigram_entropy(trainer.stream.buckets)  # nats/token from the token counts
    losses = trainer.train().losses
    assert losses[0] > 0.95 * math.log(512)  # starts near uniform over the vocabulary
    final = sum(losses[-5:]) / 5
    assert final < 0.75 * entropy, (final, entropy)
    rec = read_metrics(cfg.out_dir / "metrics.jsonl")[-1]
    for key in ("loss", "loss_text", "grad_norm", "lr", "tokens_per_s", "mem_rss_mib"):
        assert key in rec and rec[key] is not None


def test_accumulation_equals_one_big_batch(shards, tmp_path, make_config) -> None:
    over = dict(schedule={"train_steps": 3, "warmup_steps": 1}, checkpoint={"save_final": False})
    big = Trainer(_cfg(make_config, shards, tmp_path / "a", micro_batch_size=8, **over)).train()
    acc = Trainer(_cfg(make_config, shards, tmp_path / "b", micro_batch_size=2, **over)).train()
    assert acc.losses == pytest.approx(big.losses, rel=1e-5)


def test_modality_loss_weight_scales_the_loss(shards, tmp_path, make_config) -> None:
    over = dict(schedule={"train_steps": 1, "warmup_steps": 0}, checkpoint={"save_final": False})
    one = Trainer(_cfg(make_config, shards, tmp_path / "a", **over)).train().losses[0]
    half = (
        Trainer(
            _cfg(
                make_config,
                shards,
                tmp_path / "b",
                loss={"modality_weights": {"text": 0.5}},
                **over,
            )
        )
        .train()
        .losses[0]
    )
    assert half == pytest.approx(0.5 * one, rel=1e-6)


def test_moe_preset_trains_with_aux_loss(shards, tmp_path, make_config) -> None:
    cfg = _cfg(
        make_config,
        shards,
        tmp_path / "moe",
        model={"preset": "tiny-moe", "overrides": {"vocab_size": 512}},
        schedule={"train_steps": 2, "warmup_steps": 1},
        checkpoint={"save_final": False},
    )
    Trainer(cfg).train()
    rec = read_metrics(cfg.out_dir / "metrics.jsonl")[-1]
    assert rec["aux_loss"] > 0


def test_nan_steps_are_skipped_then_the_run_stops(
    shards, tmp_path, make_config, monkeypatch
) -> None:
    cfg = _cfg(
        make_config,
        shards,
        tmp_path / "nan",
        schedule={"train_steps": 10},
        guards={"max_skipped_steps": 2},
    )
    trainer = Trainer(cfg)
    real = trainer.model.forward

    def poisoned(*a, **kw):  # a fake fault inside the test: NaN logits from step 3 on
        out = real(*a, **kw)
        if trainer.step >= 2:
            out.logits = out.logits * float("nan")
        return out

    monkeypatch.setattr(trainer.model, "forward", poisoned)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingStopped, match="max_skipped_steps=2") as err:
        trainer.train()
    assert [s["step"] for s in err.value.report["skipped"]] == [3, 4, 5]
    report = json.loads((cfg.out_dir / "stop_report.json").read_text())
    assert "non-finite loss" in report["skipped"][0]["reason"]
    skipped = [r for r in read_metrics(cfg.out_dir / "metrics.jsonl") if "skipped" in r]
    assert len(skipped) == 3
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_loss_spike_is_skipped() -> None:
    from vla_train.monitor import StepGuard

    g = StepGuard(max_skipped_steps=5, spike_factor=2.0, spike_window=4, spike_min_history=3)
    assert all(g.check(i, 3.0, 1.0) is None for i in range(3))
    assert "spike" in g.check(4, 7.0, 1.0)
    assert g.check(5, 5.9, 1.0) is None
    assert "gradient" in g.check(6, 3.0, float("inf"))
    assert not g.must_stop


def test_lr_schedule_warmup_then_cosine_to_min() -> None:
    opt = OptimizerSection(lr=1e-3, min_lr=1e-4)
    sched = ScheduleSection(train_steps=11, warmup_steps=4)
    lrs = [lr_at(s, opt, sched) for s in range(11)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)
    assert lrs[7] == pytest.approx(1e-4 + 0.5 * 9e-4)  # cosine midpoint
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_checkpoints_keep_last_and_refuse_corruption(shards, tmp_path, make_config) -> None:
    cfg = _cfg(
        make_config,
        shards,
        tmp_path / "ck",
        schedule={"train_steps": 9},
        checkpoint={"every": 2, "keep_last": 2},
    )
    Trainer(cfg).train()
    names = [p.name for p in list_checkpoints(cfg.out_dir / "checkpoints")]
    assert names == ["step-00000008", "step-00000009"]
    last = cfg.out_dir / "checkpoints" / names[-1]
    assert {p.name for p in last.iterdir()} == {
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "rng-rank0.safetensors",
    }
    m = LoadedCheckpoint(last).manifest
    assert (m.step, m.consumed_samples) == (9, 9 * cfg.global_batch_size)
    with open(last / "optimizer.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(CheckpointError, match="optimizer.safetensors: SHA-256"):
        LoadedCheckpoint(last)


def test_span_mask_between_markers() -> None:
    labels = torch.tensor([[1, 7, 2, 3, 8, 4, 7, 5], [2, 3, 8, 4, 5, 6, 6, 6]])
    got = span_mask(labels, 7, 8)
    assert got.tolist() == [
        [False, False, True, True, False, False, False, True],
        [True, True, False, False, False, False, False, False],  # window starts inside a span
    ]


def test_mixture_stages_switch_buckets_and_are_deterministic(shards, tmp_path, make_config) -> None:
    plan = tmp_path / "mix.toml"
    plan.write_text(
        'name = "two"\ntotal_tokens = 100\n'
        '[[buckets]]\nname = "news__text"\nmodality = "text"\ntokens = 50\n'
        '[[buckets]]\nname = "textbook__text"\nmodality = "text"\ntokens = 50\n'
        '[[stages]]\nname = "cold"\ntokens = 50\nmultipliers = {"textbook__text" = 0.0}\n'
        '[[stages]]\nname = "hot"\ntokens = 50\nmultipliers = {"news__text" = 0.0}\n'
    )
    d = make_config(shards, tmp_path / "m", schedule={"train_steps": 10})
    d["data"] = {**d["data"], "mixture": str(plan), "loss_mask_spans": [[15, 83]]}
    cfg = TrainConfig.from_dict(d)
    a, b = MixtureStream(cfg, TokenModalities()), MixtureStream(cfg, TokenModalities())
    assert [s.name for s in a.stages] == ["cold", "hot"] and len(a) == 80
    first, second = a.batch(list(range(0, 40))), a.batch(list(range(40, 80)))
    assert set(a.stages[0].weights) == {"news__text", "textbook__text"}
    assert a.stages[0].weights["textbook__text"] == 0 and a.stages[1].weights["news__text"] == 0
    assert first.tokens.shape == (40, 64)
    again = b.batch(list(range(0, 40)))
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.loss_mask, again.loss_mask)
    assert not torch.equal(first.tokens, second.tokens)
    # Positions restart after every EOD (packing keeps document boundaries).
    row, pos = first.tokens[0], first.positions[0]
    eods = (row == 0).nonzero().flatten().tolist()
    for e in eods:
        if e + 1 < len(row):
            assert pos[e + 1] == 0
    # Configured span (ids 15..83): no loss strictly between the markers.
    inside = span_mask(first.labels, 15, 83)
    assert (first.loss_mask[inside] == 0).all()


def test_config_errors_name_file_and_field(tmp_path, shards, make_config) -> None:
    bad = make_config(shards, tmp_path / "x", global_batch_size=6)
    with pytest.raises(TrainConfigError, match="global_batch_size .6. must be a multiple"):
        TrainConfig.from_dict(bad, "run.toml")
    path = tmp_path / "run.toml"
    path.write_text(
        'out_dir = "x"\nseq_length = 8\nmicro_batch_size = 1\nglobal_batch_size = 1\n'
        '[model]\npreset = "tiny-dense"\n[data]\nshards = "s"\n[schedule]\ntrain_steps = 0\n'
    )
    with pytest.raises(TrainConfigError, match=r"run.toml: .*schedule.train_steps"):
        TrainConfig.load(path)
    meg = TrainConfig.from_dict(make_config(shards, tmp_path / "y", engine="megatron"))
    with pytest.raises(TrainConfigError, match="reserved"):
        Trainer(meg)


def _layout_shards(tmp_path):
    """A real VocabLayout (small ranges) and a shard of text + vision spans (synthetic ids)."""
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from vla_tokenizers import LayoutConfig, VocabLayout
    from vla_tokenizers.specials import QWEN_SPECIALS

    layout = VocabLayout.build(
        512, list(QWEN_SPECIALS), LayoutConfig(vision_codes=128, audio_codes=64)
    )
    layout.save(tmp_path / "vocab_layout.json")
    vis, eod = layout.range("vision"), layout.id_of("<|endoftext|>")
    vs, ve = layout.id_of("<|vision_start|>"), layout.id_of("<|vision_end|>")
    rng = np.random.default_rng(0)
    folder = tmp_path / "tokens"
    folder.mkdir()
    builder = IndexedDatasetBuilder(str(folder / "cam__image.bin"), dtype=np.int32)
    for _ in range(60):
        ids = [*rng.integers(1, 512, 20), vs, *rng.integers(vis.start, vis.end, 16), ve, eod]
        builder.add_document(torch.tensor(ids), [len(ids)])
    builder.finalize(str(folder / "cam__image.idx"))
    return layout, folder


def test_modalities_from_the_vocab_layout(tmp_path, make_config) -> None:
    from vla_train.quick import tiny_config

    layout, folder = _layout_shards(tmp_path)
    cfg = tiny_config(folder, tmp_path / "a", steps=2, seq_length=32, checkpoint={"every": 10})
    assert cfg.data.eod_id == layout.id_of("<|endoftext|>") and cfg.data.vocab_layout is not None
    assert cfg.resolve_model().vocab_size == layout.vocab_size
    cfg = cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"vocab_layout": tmp_path / "vocab_layout.json"})
        }
    )
    Trainer(cfg).train()
    rec = read_metrics(cfg.out_dir / "metrics.jsonl")[-1]
    assert {"loss_text", "loss_vision", "loss_special"} <= set(rec)
    spans = [("<|vision_start|>", "<|vision_end|>")]
    masked = cfg.model_copy(
        update={
            "out_dir": tmp_path / "b",
            "data": cfg.data.model_copy(update={"loss_mask_spans": spans}),
        }
    )
    Trainer(masked).train()
    rec = read_metrics(masked.out_dir / "metrics.jsonl")[-1]
    assert "loss_vision" not in rec and "loss_text" in rec


def _same_batch(a, b) -> None:
    for name in ("tokens", "labels", "positions", "loss_mask", "modality", "bucket"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"eod_mask_loss": True, "weights": {"news__text": 1.0, "textbook__text": 3.0}},
        {"reset_position_ids": False, "loss_mask_spans": [[15, 83]]},
    ],
)
def test_vectorised_batches_equal_megatron_samples(shards, tmp_path, make_config, data) -> None:
    """`MixtureStream.batch` (one array per batch) == megatron-core's per-sample path."""
    d = make_config(shards, tmp_path / "run", schedule={"train_steps": 12})
    d["data"] = {**d["data"], **data}
    stream = MixtureStream(TrainConfig.from_dict(d), TokenModalities())
    assert stream._fast
    n = len(stream)
    for idx in (list(range(0, 8)), list(range(n - 5, n)), [n - 1, 3, 40, 3]):
        _same_batch(stream.batch(idx), stream.batch_reference(idx))
    with pytest.raises(IndexError):
        stream.batch([n])


def test_vectorised_batches_with_layout_and_stages(tmp_path) -> None:
    """Modality codes through the lookup table, spans by name, and a two-stage mixture."""
    from vla_train.quick import tiny_config

    layout, folder = _layout_shards(tmp_path)
    cfg = tiny_config(folder, tmp_path / "a", steps=6, seq_length=32)
    spans = [("<|vision_start|>", "<|vision_end|>")]
    data = cfg.data.model_copy(
        update={"vocab_layout": tmp_path / "vocab_layout.json", "loss_mask_spans": spans}
    )
    cfg = cfg.model_copy(update={"data": data})
    modalities = TokenModalities.from_path(cfg.data.vocab_layout)
    stream = MixtureStream(cfg, modalities)
    assert stream._fast and stream._lut is not None
    idx = list(range(len(stream)))
    fast, ref = stream.batch(idx), stream.batch_reference(idx)
    _same_batch(fast, ref)
    assert len(set(fast.modality.flatten().tolist())) >= 3  # text, vision, special


def test_train_step_syncs_with_the_host_once(tmp_path, monkeypatch) -> None:
    """Several modalities (per-modality sums) and accumulation: one `tolist`, no `.item()`."""
    from vla_train.quick import tiny_config

    _, folder = _layout_shards(tmp_path)
    cfg = tiny_config(folder, tmp_path / "a", steps=2, seq_length=32, checkpoint={"every": 10})
    data = cfg.data.model_copy(update={"vocab_layout": tmp_path / "vocab_layout.json"})
    cfg = cfg.model_copy(
        update={
            "data": data,
            "micro_batch_size": 2,
            "global_batch_size": 4,
            "loss": cfg.loss.model_copy(update={"modality_weights": {"vision": 0.5}}),
        }
    )
    trainer = Trainer(cfg)
    trainer.train_step(0)
    calls = {"item": 0, "tolist": 0, "float": 0}

    def counting(name):
        real = getattr(torch.Tensor, name)

        def wrapper(self, *a, **kw):
            calls[name.strip("_")] += 1
            return real(self, *a, **kw)

        return wrapper

    for name in ("item", "tolist", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    rec = trainer.train_step(1)
    monkeypatch.undo()
    assert calls == {"item": 0, "tolist": 1, "float": 0}, calls
    assert {"loss_text", "loss_vision", "loss_special"} <= set(rec)
    assert math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])
