"""What the stages compute on a trained model, apart from printing and plotting.

* :mod:`nicelab.tasks.corruptions` - the corruptions of stage 5's outlier detection.
"""
