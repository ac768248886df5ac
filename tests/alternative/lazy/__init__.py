"""A third correct implementation of stages 1-2: first half / second half by slicing, and a
coupling network with no Input layer, which Keras builds on its first call.

Its model imports a name the reference coupling module lacks (``HALVES``), so stage 2 is graded
on this folder's own lazily built couplings, not on the reference's.
"""
