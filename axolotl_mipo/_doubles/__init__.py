"""This project's own test doubles: not public API, they change with the tests that use them.

``fake_vllm`` is a stand-in ``vllm`` module that checks every call against vLLM's
real API, recorded from two releases by ``vllm_api``. They ship in the wheel,
rather than under ``tests/``, because CI runs the tests from outside the
checkout against the installed wheel (``.ci/run``), where ``tests/`` is not an
importable package, and ``benchmarks/gpu_check.py`` uses the stand-in on a
machine without vLLM. Strategy authors' helpers are in :mod:`axolotl_mipo.testing`.
"""
