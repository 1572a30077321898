"""Model files on disk, in each library's own format, and fetching the official ones.

    <model dir>/demucs/<name>.yaml, <sig>-<checksum>.th   a Demucs repo folder: demucs.pretrained.get_model
    <model dir>/whisper/<name>.pt                         Whisper checkpoints: whisper.load_model

``yinzi models pull`` uses the libraries' own download code (torch.hub for Demucs' files, whisper's _download
with its SHA-256 check), each with a progress bar. Nothing is ever downloaded while an order runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from yinzi.errors import OrderFailed

DEFAULT_PULL = ("htdemucs", "small")


def demucs_repo(model_dir: Path) -> Path:
    return model_dir / "demucs"


def whisper_checkpoint(model_dir: Path, name: str) -> Path:
    return model_dir / "whisper" / f"{name}.pt"


def missing_model(kind: str, name: str, where: Path) -> OrderFailed:
    return OrderFailed(f"{kind} model {name} is not installed in {where}: run `yinzi models pull {name}`")


def _demucs_bags() -> Path:
    import demucs.pretrained

    return Path(demucs.pretrained.REMOTE_ROOT)


def _whisper_urls() -> dict[str, str]:
    import whisper

    urls: dict[str, str] = whisper._MODELS
    return urls


def known_models() -> dict[str, str]:
    """Every name ``pull`` understands, mapped to its library."""
    names = {path.stem: "demucs" for path in _demucs_bags().glob("*.yaml")}
    names.update({name: "whisper" for name in _whisper_urls()})
    return names


def pull(name: str, model_dir: Path) -> Path:
    """Downloads one official model into the model directory; returns where it is."""
    library = known_models().get(name)
    if library == "demucs":
        return _pull_demucs(name, demucs_repo(model_dir))
    if library == "whisper":
        import whisper

        target = whisper_checkpoint(model_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        whisper._download(_whisper_urls()[name], str(target.parent), False)
        downloaded = target.parent / Path(_whisper_urls()[name]).name
        if downloaded != target:
            downloaded.replace(target)
        return target
    raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(known_models()))}")


def _pull_demucs(name: str, repo: Path) -> Path:
    import torch.hub
    import yaml
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    bag = _demucs_bags() / f"{name}.yaml"
    urls = _parse_remote_files(Path(REMOTE_ROOT) / "files.txt")
    repo.mkdir(parents=True, exist_ok=True)
    for sig in yaml.safe_load(bag.read_text())["models"]:
        url = urls[sig]
        target = repo / Path(url).name
        if not target.exists():
            partial = target.with_suffix(".partial")
            torch.hub.download_url_to_file(url, str(partial), progress=True)
            partial.replace(target)
    shutil.copyfile(bag, repo / bag.name)
    return repo
