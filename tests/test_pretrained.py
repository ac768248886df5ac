"""The reference models the stage 4-5 checks use ship with nicelab (nicelab/grader/pretrained/), so a
fresh clone grades those stages without training; they must match the current reference."""

import numpy as np
import pytest

from nicelab.grader import fixtures


@pytest.mark.parametrize("data_name", sorted(fixtures.CONFIGS))
def test_shipped_fixture_is_current(data_name):
    path = fixtures.shipped_path(data_name)
    assert path.exists(), (f"{path.name} is missing or stale (the reference, the data or the config "
                           "changed): run `make fixtures` and commit nicelab/grader/pretrained/")
    with np.load(path) as arrays:
        assert len(arrays.files) > 0
        assert all(np.all(np.isfinite(arrays[name])) for name in arrays.files)


def test_no_stale_fixtures_are_shipped():
    current = {fixtures.shipped_path(name).name for name in fixtures.CONFIGS}
    shipped = {path.name for path in fixtures.PRETRAINED.glob("*.npz")}
    assert shipped == current, f"stale files in nicelab/grader/pretrained/: {sorted(shipped - current)}"
