"""The trainer: PatentCLIP fine-tuning, benchmarks, registry and rollout (issue 5).

Built so far: the distribution-aware loss (``trainer.losses``) and the benchmark metrics
(``trainer.metrics``), both tested against hand computations and brute-force references.
"""
