"""Shared test set-up: tests never write into the user's real cache (~/.cache/mmcore)."""
import os
import socket

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


def floor_seed(default: int) -> int:
    """The seed of a quality-floor test's sample: ``default``, or ``default + MMCORE_FLOOR_SEED`` when that variable
    is set, so that a floor can be re-checked on other samples: ``MMCORE_FLOOR_SEED=1 pytest -s -k floor``
    (the tests print what they measured). A floor that passes only on its default sample is not a floor."""
    return default + int(os.environ.get("MMCORE_FLOOR_SEED", "0"))


def floor_seed_shifted() -> bool:
    """True when ``MMCORE_FLOOR_SEED`` moves the floor samples (comparisons with a card's own sample are skipped)."""
    return int(os.environ.get("MMCORE_FLOOR_SEED", "0")) != 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test's own server: JupyterLab, DDP, HTTP)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
