"""Input rows: loading and the context/query split."""

from axolotl_mipo.data.example import Example

__all__ = ["Example"]
