"""Figures (matplotlib, Agg backend): no TensorFlow here.

* :mod:`nicelab.plots.training` - loss curves, densities, samples (``nicelab train``).
* :mod:`nicelab.plots.stages` - stage 4 and 5's figures (``nicelab inpaint`` / ``outliers``).
* :mod:`nicelab.plots.figures` - the course site's own figures (``nicelab figures``).
"""
