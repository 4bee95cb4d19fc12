"""The trainer service: PatentCLIP fine-tuning, benchmarks, the registry and gated rollout.

``data`` (training pairs, time split, frozen evaluation sets), ``losses`` (contrastive +
distribution-aware classification), ``train`` (the fine-tuning loop), ``retrieval``
(benchmark metric functions), ``benchmark``, ``rollout`` (gate, reindex, alias switch),
``pipeline`` (one cycle), ``main`` (``python -m trainer``). See trainer/README.md.
"""
