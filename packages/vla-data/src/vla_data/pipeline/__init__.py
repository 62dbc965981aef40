"""Composable stage pipelines over dataset folders: filters, transforms, replayable scores."""

from vla_data.pipeline import classify_stages, dedup_stage, text_stages  # noqa: F401  (register built-in stages)
from vla_data.pipeline.config import PipelineConfig, StageSpec
from vla_data.pipeline.dedup_stage import DedupConfig, plan_dedup, run_dedup
from vla_data.pipeline.runner import PipelineReport, run_pipeline, stage_stats
from vla_data.pipeline.stage import STAGES, Outcome, Stage, Threshold, register

__all__ = [
    "DedupConfig",
    "plan_dedup",
    "run_dedup",
    "STAGES",
    "Outcome",
    "PipelineConfig",
    "PipelineReport",
    "Stage",
    "StageSpec",
    "Threshold",
    "register",
    "run_pipeline",
    "stage_stats",
]
