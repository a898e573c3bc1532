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


def ddp_worker(rank: int, world: int, port: int, out: str, train, cfg, keys: tuple[str, ...]) -> None:
    """One process of a 2-process DDP test (``torch.multiprocessing.spawn``): join a gloo group on 127.0.0.1, run
    ``train(cfg, device="cpu")``, and on rank 0 write its loss history and the weights named ``keys`` to ``out``
    (JSON), for comparison with a one-process run."""
    import json
    from pathlib import Path

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = train(cfg, device="cpu")
        if rank == 0:
            state = {k: v.tolist() for k, v in result.model.state_dict().items() if k in keys}
            Path(out).write_text(json.dumps({"loss": result.history.loss, "state": state}))
    finally:
        dist.destroy_process_group()
