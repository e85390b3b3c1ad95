"""LAION-CLAP audio and text embeddings from a local checkpoint.

Two backends, one interface (:class:`ClapEmbedder`):

* ``hf`` (core install): a Hugging Face folder (``config.json``, weights, ``preprocessor_config.json``,
  tokenizer files) loaded with ``transformers.ClapModel`` + ``ClapFeatureExtractor`` + ``AutoTokenizer``,
  offline only.
* ``laion`` (``pip install 'tta-energy[laion]'``): an original LAION-CLAP ``.pt`` checkpoint through the
  ``laion_clap`` package, imported only when this backend is asked for.

Checkpoints are named as the study used them: :data:`STUDY_FAD_CHECKPOINT` (fadtk ``clap-laion-audio``) and
:data:`STUDY_CLAP_SCORE_CHECKPOINT` (stable-audio-metrics). A name is looked up as ``<dir>/<name>`` (an HF
folder) or ``<dir>/<name>.pt`` in the checkpoint folders; a path is used as it is. Nothing is downloaded.

Determinism: a window of at most 10 s is never cropped. A clip longer than the window (the
``stable-audio-metrics`` profile passes clips whole) is cropped at random by the feature extraction, as in the
peers (fusion: three random 10-s mel crops plus the whole clip shrunk; otherwise one random 10-s crop); here
numpy's global generator is seeded with the clip's crop seed for that one extraction and restored after, so
the crops depend on the seed only. For fusion checkpoints both LAION-CLAP and transformers mark one random
item of a batch whose clips are all <= 10 s as "longer" (taking the fusion branch); the peers embed one file
per call, so that item is always the clip itself. Here every window of a fusion checkpoint is marked
"longer": the same embedding as the peers' batch of one, independent of batching and of any random state.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tta_energy.errors import TtaError
from tta_energy.quality.audio import CLAP_SAMPLE_RATE, CLAP_WINDOW_S, file_sha256

#: fadtk's ``clap-laion-audio`` (the study's FAD-inf): HTSAT-tiny, non-fusion, 48 kHz, 512-d.
STUDY_FAD_CHECKPOINT = "630k-audioset-best"
#: stable-audio-metrics' default (the study's CLAP score): HTSAT-tiny with feature fusion.
STUDY_CLAP_SCORE_CHECKPOINT = "630k-audioset-fusion-best"
#: Checkpoint folders (``:``-separated), searched after ``--checkpoint-dir``, before ``checkpoints/clap``.
CHECKPOINT_DIRS_ENV = "TTA_ENERGY_CLAP_DIR"
#: LAION-CLAP tokenises captions to at most 77 tokens.
TEXT_MAX_TOKENS = 77
BACKENDS = ("auto", "hf", "laion")


class CheckpointError(TtaError):
    """A CLAP checkpoint that is missing or cannot be loaded."""


def checkpoint_search_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    dirs = [Path(p) for p in extra]
    dirs += [Path(p) for p in os.environ.get(CHECKPOINT_DIRS_ENV, "").split(os.pathsep) if p]
    dirs.append(Path("checkpoints") / "clap")
    return dirs


def resolve_checkpoint(value: str | Path, search_dirs: Sequence[Path] = ()) -> Path:
    """A checkpoint path from a path or a name (``<dir>/<name>`` or ``<dir>/<name>.pt``)."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    tried = [str(path)]
    if len(path.parts) == 1:
        for folder in checkpoint_search_dirs(search_dirs):
            for candidate in (folder / path.name, folder / f"{path.name}.pt"):
                if candidate.exists():
                    return candidate
                tried.append(str(candidate))
    raise CheckpointError(
        f"CLAP checkpoint {value} not found (looked at {', '.join(tried)}); give the path of a "
        "Hugging Face ClapModel folder or a LAION-CLAP .pt file"
    )


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise CheckpointError(f"unknown CLAP backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    return backend


def detect_backend(path: Path, backend: str = "auto") -> str:
    if check_backend(backend) != "auto":
        return backend
    if path.is_dir():
        return "hf"
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin"):
        return "laion"
    raise CheckpointError(f"{path}: neither a Hugging Face checkpoint folder nor a LAION-CLAP .pt file")


class ClapEmbedder(ABC):
    """L2-normalised float32 CLAP embeddings of <= 10 s mono windows and of captions."""

    backend: str
    model_id: str  # backend:name@content-hash, recorded in the score table and the cache key
    fusion: bool
    sample_rate: int = CLAP_SAMPLE_RATE
    window_s: float = CLAP_WINDOW_S
    dim: int

    @abstractmethod
    def embed_windows(
        self, windows: Sequence[np.ndarray], crop_seeds: Sequence[int] | None = None
    ) -> np.ndarray:
        """(len(windows), dim) embeddings of mono float32 windows at :attr:`sample_rate`.

        A window longer than :attr:`window_s` is cropped at random by the model's feature extraction, seeded
        with its entry of ``crop_seeds`` (required then).
        """

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) embeddings of captions."""


class HfClapEmbedder(ClapEmbedder):
    """transformers ``ClapModel`` from a local Hugging Face folder."""

    backend = "hf"

    def __init__(self, folder: Path, *, device: str = "cpu", batch_size: int = 16):
        folder = Path(folder)
        for required in ("config.json", "preprocessor_config.json"):
            if not (folder / required).is_file():
                raise CheckpointError(
                    f"{folder / required}: missing (not a Hugging Face CLAP checkpoint folder)"
                )
        import torch
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        try:
            self.model = ClapModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
            self.extractor = ClapFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{folder}: cannot load the CLAP checkpoint ({_first_line(exc)})") from exc
        self.torch = torch
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        self.sample_rate = int(self.extractor.sampling_rate)
        self.max_samples = int(self.extractor.nb_max_samples)
        self.window_s = self.max_samples / self.sample_rate
        self.dim = int(self.model.config.projection_dim)
        positions = int(self.model.config.text_config.max_position_embeddings)
        pad = int(getattr(self.model.config.text_config, "pad_token_id", 1) or 1)
        self.text_max_tokens = min(TEXT_MAX_TOKENS, positions - pad - 1)  # RoBERTa positions start at pad + 1
        self.model_id = f"hf:{folder.resolve().name}@{folder_sha256(folder)[:12]}"

    def embed_windows(
        self, windows: Sequence[np.ndarray], crop_seeds: Sequence[int] | None = None
    ) -> np.ndarray:
        torch = self.torch
        seeds = _crop_seeds(windows, crop_seeds, self.max_samples)
        out = []
        for start in range(0, len(windows), self.batch_size):
            batch = [np.asarray(w, dtype=np.float32) for w in windows[start : start + self.batch_size]]
            features = [self._features([w], seeds[start + i]) for i, w in enumerate(batch)]
            is_longer = (
                torch.ones((len(batch), 1), dtype=torch.bool)
                if self.fusion
                else torch.cat([f["is_longer"].to(torch.bool) for f in features])
            )
            with torch.inference_mode():
                result = self.model.get_audio_features(
                    input_features=torch.cat([f["input_features"] for f in features]).to(
                        self.device, self.model.dtype
                    ),
                    is_longer=is_longer.to(self.device),
                )
            out.append(_pooled(result, torch))
        return np.concatenate(out, axis=0) if out else np.empty((0, self.dim), np.float32)

    def _features(self, batch: list[np.ndarray], seed: int | None) -> dict:
        # fusion checkpoints expect the 4-channel "fusion" mel (HTK filters); non-fusion ones the single
        # Slaney mel; a window no longer than the maximum is never cropped, a longer one under its crop seed
        with seeded_global_numpy(seed):
            return self.extractor(
                batch,
                sampling_rate=self.sample_rate,
                truncation="fusion" if self.fusion else "rand_trunc",
                return_tensors="pt",
            )

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        torch = self.torch
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.text_max_tokens,
                return_tensors="pt",
            )
            with torch.inference_mode():
                result = self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            out.append(_pooled(result, torch))
        return np.concatenate(out, axis=0) if out else np.empty((0, self.dim), np.float32)


class LaionClapEmbedder(ClapEmbedder):
    """An original LAION-CLAP ``.pt`` checkpoint through ``laion_clap`` (the ``[laion]`` extra)."""

    backend = "laion"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        fusion: bool | None = None,
        audio_model: str = "HTSAT-tiny",
    ):
        try:
            import laion_clap  # heavy and network-happy: imported only when this backend is used
        except ImportError as exc:
            raise CheckpointError(
                f"{path}: the LAION-CLAP backend needs the laion extra "
                "(pip install 'tta-energy[laion]'), or convert the checkpoint to the "
                "Hugging Face format"
            ) from exc
        import torch

        path = Path(path)
        self.torch = torch
        self.fusion = ("fusion" in path.name) if fusion is None else bool(fusion)
        self.batch_size = max(1, int(batch_size))
        self.device = device
        module = laion_clap.CLAP_Module(enable_fusion=self.fusion, amodel=audio_model, device=device)
        try:
            # LAION .pt files are pickles written by their training script: only load checkpoints you trust.
            package = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CheckpointError(
                f"{path}: cannot read the LAION-CLAP checkpoint ({_first_line(exc)})"
            ) from exc
        state = package.get("state_dict", package) if isinstance(package, dict) else package
        state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}
        # transformers >= 4.31 no longer has this buffer (LAION-CLAP#127); the peers drop it the same way.
        state.pop("text_branch.embeddings.position_ids", None)
        try:
            module.model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path}: does not fit a {'fusion' if self.fusion else 'non-fusion'} "
                f"{audio_model} CLAP ({_first_line(exc)})"
            ) from exc
        module.eval()
        self.module = module
        self.dim = int(module.model_cfg.get("embed_dim", 512))
        self.model_id = f"laion:{path.stem}@{file_sha256(path)[:12]}"

    def embed_windows(
        self, windows: Sequence[np.ndarray], crop_seeds: Sequence[int] | None = None
    ) -> np.ndarray:
        torch = self.torch
        seeds = _crop_seeds(windows, crop_seeds, int(self.window_s * self.sample_rate))
        # fusion: one window per call, so that HTSAT's "pick one random clip as longer" always picks it; a
        # window longer than 10 s: one per call, under its crop seed
        step = 1 if self.fusion or any(s is not None for s in seeds) else self.batch_size
        out = []
        for start in range(0, len(windows), step):
            batch = [
                torch.from_numpy(np.asarray(w, dtype=np.float32)).to(self.device)
                for w in windows[start : start + step]
            ]
            with torch.no_grad(), seeded_global_numpy(seeds[start] if step == 1 else None):
                emb = self.module.get_audio_embedding_from_data(x=batch, use_tensor=True)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.empty((0, self.dim), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            # laion_clap's tokenizer squeezes a batch of one into a 1-D tensor: send it twice
            padded = batch * 2 if len(batch) == 1 else batch
            with self.torch.no_grad():
                emb = np.asarray(self.module.get_text_embedding(padded), dtype=np.float32)[: len(batch)]
            out.append(emb / np.linalg.norm(emb, axis=1, keepdims=True))
        return np.concatenate(out, axis=0) if out else np.empty((0, self.dim), np.float32)


def load_embedder(
    checkpoint: Path,
    *,
    backend: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    fusion: bool | None = None,
) -> ClapEmbedder:
    """Load a CLAP checkpoint (already resolved to a path) with the right backend."""
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise CheckpointError(f"{checkpoint}: CLAP checkpoint not found")
    kind = detect_backend(checkpoint, backend)
    if kind == "hf":
        if not checkpoint.is_dir():
            raise CheckpointError(f"{checkpoint}: the hf backend needs a checkpoint folder")
        return HfClapEmbedder(checkpoint, device=device, batch_size=batch_size)
    return LaionClapEmbedder(checkpoint, device=device, batch_size=batch_size, fusion=fusion)


def folder_sha256(folder: Path) -> str:
    """Hash of every file (name and content) of a checkpoint folder: weights, configs and tokenizer."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(file_sha256(path).encode())
    return h.hexdigest()


@contextmanager
def seeded_global_numpy(seed: int | None) -> Iterator[None]:
    """Run a peer's ``np.random`` draws (the feature extractors' crops) under ``seed``, then restore the
    global state; ``None`` leaves the state alone (nothing is cropped)."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _crop_seeds(
    windows: Sequence[np.ndarray], crop_seeds: Sequence[int] | None, max_samples: int
) -> list[int | None]:
    """One crop seed per window longer than the model's maximum (``None`` for the others)."""
    seeds: list[int | None] = []
    for i, w in enumerate(windows):
        if len(w) <= max_samples:
            seeds.append(None)
        elif crop_seeds is None:
            raise ValueError(
                f"a {len(w)}-sample input is longer than the model's {max_samples} samples: "
                "a crop seed is needed"
            )
        else:
            seeds.append(int(crop_seeds[i]))
    return seeds


def _pooled(result: object, torch: object) -> np.ndarray:
    """transformers 5 returns an output object (normalised ``pooler_output``), 4.x a tensor."""
    emb = result if isinstance(result, torch.Tensor) else result.pooler_output
    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    return emb.cpu().numpy().astype(np.float32)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
