"""Shared test set-up: tests never write into the user's real cache (~/.cache/mmcore)."""
import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    saved = os.environ.get("MMCORE_CACHE")
    os.environ["MMCORE_CACHE"] = str(tmp_path_factory.mktemp("mmcore-cache"))
    yield
    if saved is None:
        os.environ.pop("MMCORE_CACHE", None)
    else:
        os.environ["MMCORE_CACHE"] = saved
