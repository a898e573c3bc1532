"""The lesson widgets and plot helpers, driven without a browser."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from mmcore import data, plot, widgets
from mmcore.images import to_tensor
from mmcore.search import build_index
from mmcore.train_clip import CLIPHistory

COLOURS = list(data.COLORS)


class ColourModel(torch.nn.Module):
    """A stand-in for CLIP that 'understands' colour only: an image's embedding is its mean colour, a text's is
    the colour word it mentions, both placed in the same 3-d space. Enough to check what a search box shows."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, images, normalize=False):  # images (B, 3, H, W)
        x = images.flatten(2)  # (B, 3, H*W)
        foreground = (x.mean(1, keepdim=True) < 0.75).float()  # object pixels are darker than the background
        colour = (x * foreground).sum(-1) / foreground.sum(-1).clamp(min=1)  # (B, 3)
        return F.normalize(colour - 0.45, dim=-1)

    def encode_text(self, tokens, normalize=False):  # tokens (B, 1): a colour index
        rgb = torch.tensor([data.COLOR_RGB[c] for c in COLOURS], dtype=torch.float) / 255  # (8, 3)
        return F.normalize(rgb[tokens[:, 0]] - 0.45, dim=-1)


def tokenize(texts, **_):
    return torch.tensor([[next(i for i, c in enumerate(COLOURS) if c in t or data.COLORS[c] in t)] for t in texts])


def preprocess(image):
    return to_tensor(image)[0]  # (3, H, W) in [0, 1]


@pytest.fixture(scope="module")
def index():
    collection = data.ShapesDataset("test", n=40, image_size=32, seed=3)
    return build_index(collection, ColourModel(), preprocess, tokenize, progress=False)


def test_search_box_shows_the_best_images_for_a_typed_query(index):
    box = widgets.search_box(index, k=4, lang="en")
    hits = box.run("a red star")
    assert len(hits) == 4 and len(box.results.children) == 4
    assert all("red" in caption for _, caption, _ in hits)
    assert [s for _, _, s in hits] == sorted((s for _, _, s in hits), reverse=True)
    assert "a red star" in box.status.value


def test_search_box_in_bengali_and_blank_query(index):
    box = widgets.search_box(index, k=3, lang="bn")
    assert "খুঁজুন" == box.button.description
    hits = box.run("একটি নীল বৃত্ত")
    assert hits and all("নীল" in caption for _, caption, _ in hits)  # a Bengali query: Bengali captions
    assert box.run("   ") == [] and box.results.children == ()
    assert box.status.value == widgets.LABELS["bn"]["empty"]


def test_search_box_button_and_enter_run_the_same_search(index):
    box = widgets.search_box(index, k=2)
    box.query.value = "a green heart"  # what pressing Enter does
    first = [c for _, c, _ in box.last]
    box.button.click()
    assert [c for _, c, _ in box.last] == first and first


def test_bilingual_labels_are_the_default(index):
    box = widgets.search_box(index)
    assert box.button.description == "Search · খুঁজুন"


def test_search_box_rejects_an_unknown_language(index):
    with pytest.raises(ValueError, match="lang must be one of"):
        widgets.search_box(index, lang="fr")


def test_similarity_heatmap_checks_shapes_and_marks_each_column_best():
    images = [image for image, _ in data.ShapesDataset("test", n=3, image_size=32)]
    fig = plot.similarity_heatmap(torch.eye(3), images, ["a", "b", "c"])
    outlined = [p for p in fig.axes[0].patches]
    assert [(round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in outlined] == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ValueError, match="3 texts and 2 images"):
        plot.similarity_heatmap(torch.eye(3), images[:2], ["a", "b", "c"])


def test_distillation_curves_plot_the_loss_and_both_languages():
    from mmcore.train_distill import DistillHistory

    history = DistillHistory(step=[1, 2, 3], loss=[0.01, 0.004, 0.002], eval_step=[2, 3], zero_shot_target=[0.3, 0.9],
                             zero_shot_source=[1.0, 1.0])
    fig = plot.distillation_curves(history, labels={"target": "বাংলা প্রম্পট"})
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == [0.01, 0.004, 0.002] and left.get_yscale() == "log"
    assert [list(line.get_ydata()) for line in right.lines] == [[0.3, 0.9], [1.0, 1.0]]
    assert right.get_legend().get_texts()[0].get_text() == "বাংলা প্রম্পট"


def test_alt_text_describes_what_a_figure_shows_in_the_asked_language():
    from mmcore import diagrams, data
    from mmcore.train_distill import DistillHistory

    pictures = [image for image, _ in data.ShapesDataset("test", n=3, seed=1)]
    grid = plot.image_grid(pictures, titles=["a red\ncircle", "b", "c"], suptitle="three shapes")
    assert plot.alt_text(grid, "en") == "Figure: three shapes. 3 pictures, titled: a red circle; b; c"
    assert plot.alt_text(grid, "bn") == "চিত্র: three shapes। 3টি ছবি, শিরোনাম: a red circle; b; c"
    history = DistillHistory(step=[1, 2], loss=[0.1, 0.01], eval_step=[2], zero_shot_target=[0.5], zero_shot_source=[1.0])
    curves = plot.distillation_curves(history, labels={"step": "ধাপ", "loss": "লস", "accuracy": "নির্ভুলতা",
                                                       "target": "বাংলা", "source": "ইংরেজি"})
    assert plot.alt_text(curves, "bn") == ("চিত্র: ধাপ অনুযায়ী লস (লেখচিত্র)। ধাপ অনুযায়ী নির্ভুলতা (লেখচিত্র) "
                                          "(রেখা: বাংলা; ইংরেজি)")
    assert plot.alt_text(diagrams.distillation("en"), "en").startswith("Diagram: Distillation: a student text tower")
    with pytest.raises(ValueError, match="'en' or 'bn'"):
        plot.alt_text(grid, "de")
    plt.close("all")


def test_setup_notebook_gives_every_figure_alt_text_in_the_notebook_language():
    """In a real IPython shell, a displayed figure's output metadata holds its alt text, in the language of the
    notebook's LANG."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        plot.setup_notebook()
        plot.setup_notebook()  # twice is harmless
        fig = plot.image_grid([torch.rand(3, 8, 8)], titles=["x"])
        for lang, opening in (("bn", "চিত্র: একটি ছবি"), ("en", "Figure: one picture")):
            shell.user_ns["LANG"] = lang
            data, metadata = shell.display_formatter.format(fig)
            assert "image/jpeg" in data and metadata["image/jpeg"]["alt"].startswith(opening)
    finally:
        InteractiveShell.clear_instance()
        plt.close("all")


def test_training_curves_plot_every_history_entry():
    history = CLIPHistory(step=[1, 2, 3], loss=[3.0, 2.0, 1.5], eval_step=[3], zero_shot=[0.5], zero_shot_bn=[0.4])
    fig = plot.training_curves(history, labels={"loss": "লস"})
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == [3.0, 2.0, 1.5]
    assert left.get_ylabel() == "লস" and len(right.lines) == 2
