"""Figures (matplotlib, Agg backend): no TensorFlow here.

* :mod:`nicelab.plots.common` - ``save`` and ``limits``, shared by all.
* :mod:`nicelab.plots.training` - loss curves, densities, samples (``nicelab train``).
* :mod:`nicelab.plots.stages` - stage 4 and 5's figures (``nicelab inpaint`` / ``outliers``).
* :mod:`nicelab.plots.figures` - the course site's own figures (``nicelab figures``).
* :mod:`nicelab.plots.flows` - NICE, RealNVP and Glow side by side (the page "Beyond NICE").
"""

import matplotlib

# Before any of the modules here imports pyplot: figures are written to files, never shown.
matplotlib.use("Agg")
