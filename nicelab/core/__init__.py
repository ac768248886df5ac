"""The core of nicelab: what the course is made of, with no command line and no grader.

* :mod:`nicelab.core.course` - the five stages and the version.
* :mod:`nicelab.core.config` - the training settings and the data sets' presets.
* :mod:`nicelab.core.dataset`, :mod:`nicelab.core.data`, :mod:`nicelab.core.mnist`,
  :mod:`nicelab.core.toy` - the data sets.
* :mod:`nicelab.core.training`, :mod:`nicelab.core.epochs` - the training driver.
* :mod:`nicelab.core.flows`, :mod:`nicelab.core.flow_models`, :mod:`nicelab.core.comparison` -
  ``--flow nice|realnvp|glow``: the flows the driver trains, and the three compared.
* :mod:`nicelab.core.runs`, :mod:`nicelab.core.cache`, :mod:`nicelab.core.atomic` - trained
  models, cached arrays and the one atomic write.
* :mod:`nicelab.core.impl`, :mod:`nicelab.core.stubs`, :mod:`nicelab.core.validate` - loading an
  implementation, telling a stub, checking inputs.
* :mod:`nicelab.core.quiet`, :mod:`nicelab.core.table` - TensorFlow without its chatter; text tables.
"""
