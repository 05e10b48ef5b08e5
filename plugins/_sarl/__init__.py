"""Helpers of the methods built on the SARL (SSGRL) model (private package, registers nothing).

* :mod:`.model` -- the SSGRL model for a method's context (label graph from the known
  positives) and the option fields every SARL-based method declares.

The model itself is public API: :mod:`mlrpl_bench.models.sarl`.
"""
