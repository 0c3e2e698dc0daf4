"""GPU memory handed from generation to training.

In one ``axolotl train`` the plugin generates with one model, then Axolotl loads
the model to train. Whatever of the generation model is still alive then is
memory the training run does not have (a 24 GB card runs out). The pipeline
records the CUDA memory allocated before the generation backend exists and
checks, after closing it, that it is back there.
"""

from __future__ import annotations

import gc
import logging

LOG = logging.getLogger("axolotl_mipo.generation")

#: allocator slack tolerated (bytes per device): CUDA/cuBLAS workspaces made during generation
SLACK_BYTES = 64 * 2**20


def cuda_allocated() -> dict[int, int]:
    """Bytes allocated by torch on each visible CUDA device (empty without CUDA)."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        # not initialised: nothing was allocated, and asking would create a context on every device
        return {}
    return {i: torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())}


def release_memory() -> None:
    """Collect what nothing references any more and give cached CUDA blocks back to the driver."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort on teardown
        pass


def check_handoff(baseline: dict[int, int]) -> dict[int, int]:
    """Release memory and report the CUDA memory still allocated per device against ``baseline``.

    Logs the figure when CUDA is in use, and a warning naming the devices where more than
    :data:`SLACK_BYTES` stayed allocated (a reference to the generation model survives). Returns the
    bytes held above the baseline per device.
    """
    release_memory()
    now = cuda_allocated()
    held = {d: now[d] - baseline.get(d, 0) for d in now}
    if now:
        import torch

        # free memory on the device also counts other processes' (vLLM's engine core runs in its own)
        free = {d: torch.cuda.mem_get_info(d)[0] for d in now}
        LOG.info("mipo: after generation, CUDA memory allocated "
                 + ", ".join(f"cuda:{d} {now[d] / 2**20:.0f} MiB (before {baseline.get(d, 0) / 2**20:.0f}; "
                             f"{free[d] / 2**30:.1f} GiB free on the device)" for d in sorted(now)))
    leaked = {d: h for d, h in held.items() if h > SLACK_BYTES}
    if leaked:
        LOG.warning("mipo: the generation model still holds GPU memory ("
                    + ", ".join(f"cuda:{d} +{h / 2**20:.0f} MiB" for d, h in sorted(leaked.items()))
                    + "); training starts with that much less")
    return held
