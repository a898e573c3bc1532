"""mmcore's small helpers: device choice, seeding, quick mode, Bengali-capable plot fonts."""
import random
import warnings

import numpy as np
import pytest
import torch

import mmcore
from mmcore import plot


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("MMCORE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert mmcore.get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert mmcore.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mmcore.get_device() == torch.device("cuda")


def test_get_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("MMCORE_DEVICE", "cpu")
    assert mmcore.get_device() == torch.device("cpu")
    assert mmcore.get_device("cpu") == torch.device("cpu")


def test_set_seed_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    mmcore.set_seed(123)
    first = draw()
    mmcore.set_seed(123)
    assert draw() == first
    mmcore.set_seed(124)
    assert draw() != first


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)])
def test_quick_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("MMCORE_QUICK", value)
    assert mmcore.quick_mode() is expected


def test_quick_mode_off_when_unset(monkeypatch):
    monkeypatch.delenv("MMCORE_QUICK", raising=False)
    assert mmcore.quick_mode() is False


def test_bengali_font_is_installed_and_used():
    # CI installs fonts-noto-core (.ci/run); students get the same hint from setup_fonts() if they lack it.
    name = plot.setup_fonts()
    assert name is not None, plot.INSTALL_HELP
    import matplotlib

    assert matplotlib.rcParams["font.family"][-1] == name


def test_bengali_label_is_drawn_with_glyphs_not_boxes():
    """A Bengali title must be drawn with the Bengali font: its rendered width differs from tofu boxes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot.setup_fonts()
    fig = plt.figure(figsize=(3, 1))
    text = fig.text(0, 0, "লাল বৃত্ত")
    fig.canvas.draw()
    from matplotlib.font_manager import findfont, FontProperties

    used = {findfont(FontProperties(family=[f])) for f in matplotlib.rcParams["font.family"]}
    assert any("Bengali" in path for path in used)
    assert text.get_window_extent().width > 10
    plt.close(fig)


def test_missing_bengali_font_warns_once_with_install_help(monkeypatch):
    monkeypatch.setattr(plot, "bengali_font", lambda: None)
    monkeypatch.setattr(plot, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plot.setup_fonts() is None
        plot.setup_fonts()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "apt-get install fonts-noto-core" in messages[0] and "Colab" in messages[0]


def test_image_grid_checks_its_input():
    with pytest.raises(ValueError, match="at least one image"):
        plot.image_grid([])
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plot.image_grid([np.zeros((4, 4, 3))] * 2, titles=["a"])
