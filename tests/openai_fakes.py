"""Stand-ins for OpenAI's servers and files, shared by tests/test_weights.py and the core-install check
(tests/core_install/check.py, which runs without pytest): a throwaway HTTP server on 127.0.0.1 and a small random CLIP
saved in OpenAI's TorchScript format. Needs only the course's core dependencies."""
from __future__ import annotations

import contextlib
import http.server
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from mmcore.clip import CLIP, CLIPConfig


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (URL path -> body) and records every request path in ``requests``. A path under
    ``/truncated/`` promises the whole body in its Content-Length but sends only half, then hangs up; one under
    ``/slow/`` trickles the body, 1 KiB every 0.1 s (a server that would keep a download alive for hours)."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        truncated, slow = self.path.startswith("/truncated/"), self.path.startswith("/slow/")
        body = self.files.get(self.path.removeprefix("/truncated").removeprefix("/slow"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))  # promises the whole file ...
        self.end_headers()
        if slow:
            try:
                for i in range(0, len(body), 1024):
                    self.wfile.write(body[i : i + 1024])
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what the test wants
            return
        self.wfile.write(body[: len(body) // 2] if truncated else body)  # ... but may send only half, then hang up

    def log_message(self, *args) -> None:  # keep the output clean
        pass


@contextlib.contextmanager
def local_server() -> Iterator[type[FileHandler]]:
    """A throwaway HTTP server on 127.0.0.1; yields its handler class: ``.url(path)``, ``.files``, ``.requests``."""
    handler = type("Handler", (FileHandler,), {"files": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.url = staticmethod(lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}")
    try:
        yield handler
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Holder(nn.Module):
    """An empty module: TorchScript needs a forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_openai_like_torchscript(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """A TorchScript archive shaped like OpenAI's: modules nested by the dotted names, float16 parameters, plus the
    extra attributes OpenAI's files carry (sizes, the text transformer's causal mask)."""
    root = _Holder()
    for name, tensor in state_dict.items():
        *parents, leaf = name.split(".")
        module = root
        for part in parents:
            if part not in module._modules:
                module.add_module(part, _Holder())
            module = module._modules[part]
        module.register_parameter(leaf, nn.Parameter(tensor.detach().half(), requires_grad=False))
    root.register_buffer("input_resolution", torch.tensor(64))
    root.transformer.resblocks._modules["0"].attn_mask = torch.full((77, 77), float("-inf")).triu(1)
    torch.jit.script(root).save(str(path))


def openai_sized_tiny() -> CLIPConfig:
    """Tiny, but with OpenAI's vocabulary and context so that load() pairs it with OpenAI's tokenizer."""
    return replace(CLIPConfig.tiny(), vocab_size=49408, eot_token=49407, context_length=77, image_size=64,
                   patch_size=16, vision_width=128, text_width=128, vision_heads=2, text_heads=2)  # fmt: skip


def random_openai_archive(path: Path, seed: int = 0) -> CLIP:
    """Save a random OpenAI-sized tiny CLIP at ``path`` as OpenAI ships theirs (TorchScript, float16); return the
    model the file should load into."""
    torch.manual_seed(seed)
    model = CLIP(openai_sized_tiny()).eval()
    sd16 = {k: v.half() for k, v in model.to_openai_state_dict().items()}  # OpenAI ships float16
    save_openai_like_torchscript(sd16, path)
    return CLIP.from_openai_state_dict(sd16)
