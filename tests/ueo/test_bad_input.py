"""Bad input to the UEO settings that a newcomer gives (issue 27)."""

import pytest

from hf_clipadapt.testing_utils import tiny_image_dataset
from hf_clipadapt.ueo.settings import make_setting


def test_an_unknown_setting_is_named_with_the_valid_ones():
    # make_setting(train, test, "bogus") used to complain about num_known
    train, test = (tiny_image_dataset(4, 2, size=4, seed=s) for s in (0, 1))
    with pytest.raises(
        ValueError, match="unknown setting 'bogus': setting must be one of closed, partial, open, open_partial"
    ):
        make_setting(train, test, "bogus")
