"""JAX's persistent compilation cache for the reconstructor.

Compiling the fit step takes ~10 s on a laptop-class CPU; with the cache, a later session
(another ``nstm-acquire run`` on the same microscope PC) loads it from disk instead. The cache
lives in ``$NSTM_ACQUIRE_CACHE_DIR`` or ``$XDG_CACHE_HOME/nstm-acquire/jax`` (default
``~/.cache/nstm-acquire/jax``); set ``NSTM_ACQUIRE_COMPILE_CACHE=0`` to turn it off.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["compile_cache_dir", "enable_compilation_cache"]

_enabled: Path | None = None


def compile_cache_dir() -> Path:
    """Where compiled programs are kept."""
    if env := os.environ.get("NSTM_ACQUIRE_CACHE_DIR"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nstm-acquire" / "jax"


def enable_compilation_cache() -> Path | None:
    """Turn the persistent cache on (idempotent); returns its folder, or None when disabled."""
    global _enabled
    if os.environ.get("NSTM_ACQUIRE_COMPILE_CACHE", "1").lower() in ("0", "false", "no", "off"):
        return None
    if _enabled is not None:
        return _enabled
    import jax

    path = compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # read-only home: compile every session, nothing else changes
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled = path
    return path
