"""Model files on disk, in each library's own format: fetching official ones, adding local ones, listing them.

    <model dir>/demucs/<name>.yaml, <sig>-<checksum>.th   a Demucs repo folder: demucs.pretrained.get_model
    <model dir>/whisper/<name>.pt                         openai-whisper checkpoints: whisper.load_model
    <model dir>/faster-whisper/<name>/                    CTranslate2 folders (model.bin, config.json,
                                                          tokenizer.json, vocabulary.txt): faster-whisper

``yinzi models pull`` uses the libraries' own download code (torch.hub for Demucs' files, whisper's _download
with its SHA-256 check, faster-whisper's download_model from its model hub). ``yinzi models add`` puts weights
already on disk into place, the way an air-gapped host gets them: a CTranslate2 folder serves faster-whisper
and is also converted for openai-whisper. Nothing is ever downloaded while an order runs.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from yinzi.errors import OrderFailed
from yinzi.settings import WHISPER_ENGINES

FASTER_WHISPER, OPENAI_WHISPER = WHISPER_ENGINES
CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")


def demucs_repo(model_dir: Path) -> Path:
    return model_dir / "demucs"


def whisper_checkpoint(model_dir: Path, name: str) -> Path:
    return model_dir / "whisper" / f"{name}.pt"


def ct2_folder(model_dir: Path, name: str) -> Path:
    return model_dir / FASTER_WHISPER / name


def whisper_model_file(model_dir: Path, engine: str, name: str) -> Path:
    """The file that makes a Whisper model present for an engine: a CTranslate2 folder's model.bin for
    faster-whisper, the checkpoint for openai-whisper."""
    if engine == FASTER_WHISPER:
        return ct2_folder(model_dir, name) / "model.bin"
    return whisper_checkpoint(model_dir, name)


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_model(kind: str, name: str, where: Path) -> OrderFailed:
    return OrderFailed(
        f"{kind} model {name} is not installed in {where}: run `yinzi models pull {name}`, "
        f"or `yinzi models add PATH --name {name}` for weights already on this machine"
    )


# ---- what is installed ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    name: str
    engine: str  # demucs | openai-whisper | faster-whisper
    path: Path


def list_installed(model_dir: Path) -> list[InstalledModel]:
    found = [InstalledModel(p.stem, "demucs", p) for p in demucs_repo(model_dir).glob("*.yaml")]
    found += [InstalledModel(p.stem, OPENAI_WHISPER, p) for p in (model_dir / "whisper").glob("*.pt")]
    found += [
        InstalledModel(p.parent.name, FASTER_WHISPER, p.parent)
        for p in (model_dir / FASTER_WHISPER).glob("*/model.bin")
    ]
    return sorted(found, key=lambda m: (m.name, m.engine))


# ---- adding weights that are already on disk --------------------------------------------------------------


def add(source: Path, model_dir: Path, name: str | None = None) -> list[InstalledModel]:
    """Installs a CTranslate2 Whisper folder (for faster-whisper and, converted, for openai-whisper) or an
    openai-whisper ``.pt`` checkpoint under ``name`` (default: the folder's or file's name)."""
    if source.is_dir():
        if not (source / "model.bin").is_file():
            raise ValueError(f"{source} is not a CTranslate2 model folder: it has no model.bin")
        name = name or source.name
        target = ct2_folder(model_dir, name)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for file in CT2_FILES:
            if (source / file).is_file():
                shutil.copyfile(source / file, target / file)
        added = [InstalledModel(name, FASTER_WHISPER, target)]
        if installed("whisper"):
            added.append(_convert_for_openai_whisper(target, model_dir, name))
        return added
    if source.suffix == ".pt" and source.is_file():
        name = name or source.stem
        target = whisper_checkpoint(model_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return [InstalledModel(name, OPENAI_WHISPER, target)]
    raise ValueError(f"{source}: expected a CTranslate2 Whisper folder or an openai-whisper .pt checkpoint")


def _convert_for_openai_whisper(folder: Path, model_dir: Path, name: str) -> InstalledModel:
    import torch

    from workers.engines.ct2_whisper import to_openai_checkpoint

    target = whisper_checkpoint(model_dir, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    torch.save(to_openai_checkpoint(folder), partial)
    partial.replace(target)
    return InstalledModel(name, OPENAI_WHISPER, target)


# ---- fetching official weights ----------------------------------------------------------------------------


def _demucs_bags() -> Path:
    import demucs.pretrained

    return Path(demucs.pretrained.REMOTE_ROOT)


def _whisper_urls() -> dict[str, str]:
    import whisper

    urls: dict[str, str] = whisper._MODELS
    return urls


def _faster_whisper_names() -> list[str]:
    from faster_whisper.utils import available_models

    names: list[str] = available_models()
    return names


def known_models(whisper_engine: str) -> dict[str, str]:
    """Every name ``pull`` understands, mapped to the engine whose format it is fetched in."""
    names = {path.stem: "demucs" for path in _demucs_bags().glob("*.yaml")} if installed("demucs") else {}
    if whisper_engine == FASTER_WHISPER and installed("faster_whisper"):
        names.update({name: FASTER_WHISPER for name in _faster_whisper_names()})
    elif whisper_engine == OPENAI_WHISPER and installed("whisper"):
        names.update({name: OPENAI_WHISPER for name in _whisper_urls()})
    return names


def pull(name: str, model_dir: Path, whisper_engine: str) -> Path:
    """Downloads one official model into the model directory, in the format of the engine that will run it."""
    engine = known_models(whisper_engine).get(name)
    if engine == "demucs":
        return _pull_demucs(name, demucs_repo(model_dir))
    if engine == OPENAI_WHISPER:
        import whisper

        target = whisper_checkpoint(model_dir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        whisper._download(_whisper_urls()[name], str(target.parent), False)
        downloaded = target.parent / Path(_whisper_urls()[name]).name
        if downloaded != target:
            downloaded.replace(target)
        return target
    if engine == FASTER_WHISPER:
        from faster_whisper.utils import download_model

        target = ct2_folder(model_dir, name)
        partial = target.with_name(f"{name}.partial")
        try:
            with warnings.catch_warnings():
                # faster-whisper still passes an argument the hub client has deprecated (and ignores)
                warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument", UserWarning)
                download_model(name, output_dir=str(partial))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target
    raise ValueError(
        f"unknown model {name!r} for {whisper_engine}; known: {', '.join(sorted(known_models(whisper_engine)))}"
    )


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
