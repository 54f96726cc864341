"""nstm-acquire: multi-shot DPC and SIM acquisition with motion-resolved NSTM reconstruction."""

__version__ = "0.1.0"
