"""Test set-up: CPU-only JAX and offscreen Qt, set before anything imports them."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
