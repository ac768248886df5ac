"""A second, independently written correct implementation of stages 1-3.

It makes different (all allowed) choices than the reference: halves instead of even/odd
coordinates, masks instead of gathers, a Keras-free-style log_scale variable, an int seed
handed straight to TFP, and a train_step that leaves TensorFlow (so it cannot be compiled).
The checks must pass on it: they test the contract, not the reference's choices.
"""
