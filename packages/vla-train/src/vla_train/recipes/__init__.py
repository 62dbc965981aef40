"""Bundled `vla-train launch --recipe NAME` configs (TrainConfig TOML, engine = "megatron")."""
