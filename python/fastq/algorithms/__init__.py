"""Algorithms of DefaultQuantization over the ``fastq.graph`` IR: ``placement`` (the MinMax
plan), ``statistics`` (one streaming pass), ``ranges`` (statistics -> QParams, shared ranges,
saturation fix), ``bias_correction`` (fast and full), ``smooth_quant`` (transformers)."""
