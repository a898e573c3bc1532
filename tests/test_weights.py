"""Tests for mmcore.weights: checksummed downloads from a local HTTP server, safe reading of TorchScript archives
and torch.save files, safetensors checkpoints with cards, and mmcore.clip.load on a downloaded OpenAI-style file."""
from __future__ import annotations

import json
import hashlib
import os
import pickle
import re
import socket
import zipfile
from pathlib import Path

import pytest
import torch

import mmcore.clip
from openai_fakes import local_server, openai_sized_tiny, random_openai_archive, save_openai_like_torchscript
from mmcore.clip import CLIP
from mmcore.weights import (
    ChecksumError,
    DownloadError,
    default_cache_dir,
    download,
    load_checkpoint,
    read_state_dict,
    read_torch_checkpoint,
    save_checkpoint,
    sha256_file,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

# ------------------------------------------------------------------------------------------------ test server


@pytest.fixture()
def server():
    """A throwaway HTTP server on 127.0.0.1; ``server.url(path)``, ``server.files``, ``server.requests``."""
    with local_server() as handler:
        yield handler


def _closed_port_url(path: str) -> str:
    """A URL nobody listens on: what "no network" looks like."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


PAYLOAD = os.urandom(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


# ------------------------------------------------------------------------------------------------- downloads


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCORE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MMCORE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mmcore"


def test_download_success_then_cache_hit_without_network(server, tmp_path):
    server.files["/models/w.bin"] = PAYLOAD
    path = download(server.url("/models/w.bin"), PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "w.bin" and path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["w.bin"]  # no temporary files left behind
    # the second call finds the file in the cache and never touches the network
    again = download(_closed_port_url("/models/w.bin"), PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    assert again == path and server.requests == ["/models/w.bin"]


def test_download_hash_mismatch_leaves_nothing(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match="SHA-256"):
        download(server.url("/w.bin"), "0" * 64, cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


def test_truncated_transfer_leaves_nothing(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    with pytest.raises(DownloadError):
        download(server.url("/truncated/w.bin"), PAYLOAD_SHA, cache_dir=tmp_path, filename="w.bin", progress=False)
    assert _leftovers(tmp_path) == []
    # a later call downloads the whole file
    path = download(server.url("/w.bin"), PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    assert sha256_file(path) == PAYLOAD_SHA


def test_corrupted_cache_file_is_replaced(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    (tmp_path / "w.bin").write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="SHA-256"):
        path = download(server.url("/w.bin"), PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_offline_error_says_where_to_put_the_file(tmp_path):
    url = _closed_port_url("/clip/models/abc/ViT-B-32.pt")
    with pytest.raises(DownloadError) as info:
        download(url, PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert str(tmp_path / "ViT-B-32.pt") in message and url in message and PAYLOAD_SHA in message
    assert _leftovers(tmp_path) == []


def test_http_error_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError):
        download(server.url("/missing.bin"), PAYLOAD_SHA, cache_dir=tmp_path, progress=False)
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------- reading .pt files safely


def test_read_torchscript_archive(tmp_path):
    torch.manual_seed(0)
    sd = {
        "visual.conv1.weight": torch.randn(8, 3, 4, 4),
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(6, 2),
        "transformer.resblocks.0.ln_1.bias": torch.randn(2),
        "logit_scale": torch.tensor(4.6),
    }
    save_openai_like_torchscript(sd, tmp_path / "m.pt")
    tensors = read_torch_checkpoint(tmp_path / "m.pt")
    assert set(tensors) == set(sd) | {"input_resolution", "transformer.resblocks.0.attn_mask"}
    for name, t in sd.items():
        assert tensors[name].dtype == torch.float16  # stored dtype kept; conversion is the caller's job
        assert torch.equal(tensors[name], t.half())


def _zip_archive(path: Path, data_pkl: bytes, torchscript: bool) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/version", "3\n")
        if torchscript:
            z.writestr("archive/constants.pkl", pickle.dumps(()))
            z.writestr("archive/code/__torch__.py", "")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("torchscript", [True, False])
def test_malicious_pickle_is_refused(tmp_path, torchscript):
    marker = tmp_path / "pwned"
    _zip_archive(tmp_path / "evil.pt", pickle.dumps({"w": _Evil(marker)}, protocol=2), torchscript)
    with pytest.raises(pickle.UnpicklingError):
        read_torch_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_read_torch_save_state_dict(tmp_path):
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "m.pt")
    loaded = read_state_dict(tmp_path / "m.pt")
    assert set(loaded) == {"a", "b"} and all(torch.equal(loaded[k], sd[k]) for k in sd)


def test_checkpoint_round_trip_with_card(tmp_path):
    sd = {"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.float16)}
    card = {"name": "test", "bn": "পরীক্ষা", "config": {"width": 4}}
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", sd, card)
    assert (tmp_path / "sub" / "m.json").is_file() and _leftovers(tmp_path / "sub") == ["m.json", "m.safetensors"]
    loaded, loaded_card = load_checkpoint(path)
    assert loaded_card == card and all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert set(read_state_dict(path)) == {"w", "b"}


# ------------------------------------------------------------------------------------ mmcore.clip.load end to end


@pytest.fixture()
def openai_archive(tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    reference = random_openai_archive(path)  # what the file should load into
    return path, reference


def test_load_downloads_checks_and_converts(server, openai_archive, tmp_path, monkeypatch):
    path, reference = openai_archive
    body = path.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    server.files[f"/clip/models/{sha}/ViT-B-32.pt"] = body
    monkeypatch.setitem(mmcore.clip.OPENAI_MODELS, "ViT-B/32", server.url(f"/clip/models/{sha}/ViT-B-32.pt"))
    monkeypatch.setenv("MMCORE_CACHE", str(tmp_path / "cache"))

    model, preprocess, tokenizer = mmcore.clip.load("ViT-B/32", device="cpu")
    assert (tmp_path / "cache" / "ViT-B-32.pt").is_file()
    assert {p.dtype for p in model.parameters()} == {torch.float32} and not model.training
    assert preprocess.size == 64 and tokenizer.eot_token == 49407
    images = torch.randn(2, 3, 64, 64)
    tokens = tokenizer(["a photo of a cat", "a dog"])
    with torch.inference_mode():
        torch.testing.assert_close(model.encode_image(images), reference.encode_image(images), atol=0, rtol=0)
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens), atol=0, rtol=0)
    # the second load is served from the cache
    mmcore.clip.load("ViT-B/32", device="cpu")
    assert len(server.requests) == 1


def test_load_local_torchscript_path(openai_archive):
    path, reference = openai_archive
    model, _, _ = mmcore.clip.load(path, device="cpu")
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)


def test_load_wrong_hash_is_refused(server, openai_archive, tmp_path, monkeypatch):
    path, _ = openai_archive
    fake_sha = "1" * 64
    server.files[f"/clip/models/{fake_sha}/ViT-B-32.pt"] = path.read_bytes()
    monkeypatch.setitem(mmcore.clip.OPENAI_MODELS, "ViT-B/32", server.url(f"/clip/models/{fake_sha}/ViT-B-32.pt"))
    monkeypatch.setenv("MMCORE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ChecksumError):
        mmcore.clip.load("ViT-B/32", device="cpu")
    assert _leftovers(tmp_path / "cache") == []


def test_published_urls_carry_their_sha256():
    for name, url in mmcore.clip.OPENAI_MODELS.items():
        parts = url.split("/")
        assert url.startswith("https://openaipublic.azureedge.net/clip/models/")
        assert re.fullmatch(r"[0-9a-f]{64}", parts[-2]), name  # a SHA-256 in lower-case hex
        assert parts[-1] == name.replace("/", "-").replace("@", "-") + ".pt"


def test_load_tells_formats_apart(tmp_path):
    """load(path) accepts open_clip-style torch.save files and Hugging Face safetensors as well as ours."""
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ours = CLIP(openai_sized_tiny()).eval()
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in ours.to_openai_state_dict().items()}},
               tmp_path / "open_clip_epoch_1.pt")  # fmt: skip
    model, _, _ = mmcore.clip.load(tmp_path / "open_clip_epoch_1.pt", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values()))

    hf_cfg = transformers.CLIPConfig(
        text_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 1},
        vision_config={"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 1,
                       "image_size": 32, "patch_size": 16},
        projection_dim=32,
    )  # fmt: skip
    hf = transformers.CLIPModel(hf_cfg).eval()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model, preprocess, _ = mmcore.clip.load(tmp_path / "model.safetensors", device="cpu")
    images = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = hf.get_image_features(pixel_values=images)
        expected = expected if isinstance(expected, torch.Tensor) else expected.pooler_output
        assert (model.encode_image(images) - expected).abs().max() < 1e-4
    assert preprocess.size == 32


def test_resolve_checkpoint(tmp_path):
    from mmcore.weights import resolve_checkpoint

    shipped = tmp_path / "shipped.safetensors"
    with pytest.raises(FileNotFoundError, match="does not exist yet: train it with `make it`"):
        resolve_checkpoint("tiny", "tiny", shipped, "toy model", "`make it`")
    shipped.write_bytes(b"x")
    assert resolve_checkpoint("tiny", "tiny", shipped, "toy model", "`make it`") == shipped
    own = tmp_path / "own.safetensors"
    own.write_bytes(b"x")
    assert resolve_checkpoint(own, "tiny", shipped, "toy model", "`make it`") == own
    with pytest.raises(ValueError, match="unknown toy model 'other'"):
        resolve_checkpoint("other", "tiny", shipped, "toy model", "`make it`")


def test_dict_config_round_trips_every_model_config_through_json():
    from mmcore.clip import CLIPConfig
    from mmcore.dalle import DALLEConfig, SampleConfig
    from mmcore.unclip import DecoderConfig, PriorConfig, UnCLIPSampleConfig
    from mmcore.vqgan import VQGANConfig

    for cfg in (CLIPConfig.tiny(), DALLEConfig.toy(), SampleConfig(top_k=5), VQGANConfig.tiny(), PriorConfig(),
                DecoderConfig(), UnCLIPSampleConfig()):
        d = json.loads(json.dumps(cfg.to_dict()))  # what a card stores
        assert type(cfg).from_dict(d) == cfg
    d = VQGANConfig.tiny().to_dict()
    assert isinstance(d["channels"], list)  # tuples are written as JSON lists and read back as tuples
    assert type(VQGANConfig.from_dict(d).channels) is tuple
    assert CLIPConfig.from_dict({**CLIPConfig.tiny().to_dict(), "from_a_newer_version": 1}) == CLIPConfig.tiny()


def test_every_model_save_writes_its_kind_and_loaders_refuse_another_kind(tmp_path):
    from mmcore import clip as clip_module
    from mmcore import judge as judge_module
    from mmcore import vqgan as vqgan_module
    from mmcore.clip import CLIP, CLIPConfig
    from mmcore.vqgan import VQGAN, VQGANConfig

    clip_path = CLIP(CLIPConfig.tiny(vocab_size=64, eot_token=63)).save(tmp_path / "c.safetensors")
    vq_path = VQGAN(VQGANConfig.tiny()).save(tmp_path / "v.safetensors", dtype=torch.float16)
    assert json.loads((tmp_path / "c.json").read_text())["model"] == "mmcore.clip.CLIP"
    assert load_checkpoint(vq_path)[0]["quantizer.codebook"].dtype == torch.float16  # dtype= casts the floats
    with pytest.raises(ValueError, match=r"is not a VQGAN checkpoint \(its card has model='mmcore.clip.CLIP'"):
        vqgan_module.load(clip_path, device="cpu")
    with pytest.raises(ValueError, match="is not a CLIP checkpoint"):
        clip_module.load(vq_path, device="cpu")
    with pytest.raises(ValueError, match="is not a judge checkpoint"):
        judge_module.load(vq_path, device="cpu")
    assert judge_module.load(device="cpu").card["model"] == "mmcore.judge.Judge"
    with pytest.raises(ValueError, match=r"is not a CLIP checkpoint \(its card has model='mmcore.judge.Judge'"):
        clip_module.load(judge_module.CHECKPOINT, device="cpu")  # once a raw TypeError about embed_dim


@pytest.mark.parametrize("name", ["shapes-tiny", "shapes-negclip", "shapes-english", "shapes-vqgan", "shapes-vqgan-nogan", "shapes-dalle", "shapes-unclip",
                                  "shapes-judge"])
def test_every_shipped_checkpoint_is_there_with_its_card(name):
    """The floor tests load these files; a missing one must fail the suite, not skip its tests."""
    from mmcore.weights import CHECKPOINT_DIR, card_path

    path = CHECKPOINT_DIR / f"{name}.safetensors"
    assert path.is_file(), f"{path} is missing: `git checkout data/checkpoints` (or retrain: make checkpoints)"
    sd, card = load_checkpoint(path)
    beside = json.loads(card_path(path).read_text(encoding="utf-8"))
    assert sd and card == {k: v for k, v in beside.items() if k != "sha256"}  # the file's card and the .json agree
    assert beside["sha256"] == sha256_file(path)  # ... and the .json knows the tensor file's hash
    assert (CHECKPOINT_DIR / f"{name}.md").is_file()  # the human-readable card
