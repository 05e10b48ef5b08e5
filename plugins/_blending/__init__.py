"""Helpers of DSRB's semantic-aware representation blending (private package, registers nothing).

* :mod:`.functions` -- the paper's equations as pure tensor functions (IPRB, PPRB, prototypes, losses);
* :mod:`.model` -- the learnable α/β mixin and the DSRB model;
* :mod:`.blender` -- what lives across steps: schedule, prototypes, the blend callable, state.
  ``dsrb`` is built on it, and so is HST w/ FB (``hst -o feature_blending=true``).
"""
