"""axolotl-mipo: self-generated preference pairs for personalization, as an Axolotl plugin.

Enable with ``plugins: [axolotl_mipo.MIPOPlugin]``. The plugin class is imported
lazily so that the pure parts (pairing, losses, evaluation) do not pull in
Axolotl.
"""

__version__ = "0.1.0"

__all__ = ["MIPOPlugin", "POPIPlugin", "__version__"]


def __getattr__(name):
    if name == "MIPOPlugin":
        from axolotl_mipo.plugin import MIPOPlugin

        return MIPOPlugin
    if name == "POPIPlugin":
        from axolotl_mipo.popi.plugin import POPIPlugin

        return POPIPlugin
    raise AttributeError(f"module 'axolotl_mipo' has no attribute {name!r}")
