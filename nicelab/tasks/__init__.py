"""What the stages compute on a trained model, apart from printing and plotting.

* :mod:`nicelab.tasks.corruptions` - the corruptions of stage 5's outlier detection.
* :mod:`nicelab.tasks.inpaint` - stage 4: masks, inpainting, step size, curvature, errors.
* :mod:`nicelab.tasks.outliers` - stage 5: corruption levels, precision / recall / AUROC, typicality.
"""
