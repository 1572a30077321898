"""Engines through the whole service, beside the bare library commands, on the same file and model.

Weights are random (none can be downloaded here) but the architectures are the real ones, so the compute is
what trained weights cost. Inputs are real recordings from ../shared/eval-audio (or the folder named by
YINZI_EVAL_AUDIO), looped to the asked length. It runs only inside a checkout, and says so elsewhere.

    python bench/engines.py demucs --seconds 60 300     htdemucs architecture vs `python -m demucs.separate`
    python bench/engines.py whisper --seconds 60 300    Whisper tiny architecture vs the `whisper` command
    python bench/engines.py memory --seconds 60 3600    engine peak RSS by input length, tiny models
        [--order-types track-separation extract-text]

Service time is from order/create to the order's finish, with the model already warm (a short order runs
first) and the stem cache empty for the measured input. Peak RSS is the engine process's high-water mark
(VmHWM); the bare commands' comes from /usr/bin/time. The Whisper model decodes a fixed three tokens a window
on both sides (see save_whisper_tiny_architecture): random weights would make decoding length meaningless.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The recordings: YINZI_EVAL_AUDIO, or the eval-audio folder beside the checkout.
EVAL = Path(os.environ.get("YINZI_EVAL_AUDIO") or REPO.parent / "shared" / "eval-audio")
MUSIC = EVAL / "demucs_test.mp3"
SPEECH = EVAL / "jfk.flac"
BIN = Path(sys.executable).parent


def layout_problem() -> str | None:
    """What is missing for this benchmark to run, as a sentence, or None."""
    if not (REPO / "tests" / "support" / "models.py").is_file() or not (REPO / "yinzi").is_dir():
        return (
            f"{REPO} is not a yinzi checkout, and this benchmark uses the tests' model helpers: "
            "run it inside the repository as `python bench/engines.py ...`"
        )
    missing = [path.name for path in (MUSIC, SPEECH) if not path.is_file()]
    if missing:
        return (
            f"the benchmark recordings are not in {EVAL} (missing {', '.join(missing)}): "
            "set YINZI_EVAL_AUDIO to the folder that holds demucs_test.mp3 and jfk.flac"
        )
    return None


if __name__ == "__main__" and (problem := layout_problem()):
    sys.exit(f"bench/engines.py: {problem}")

from tests.support.models import save_demucs, save_tiny_demucs, save_tiny_whisper, save_whisper  # noqa: E402
from tests.support.processes import children_of, free_port, peak_rss_gib, wait_healthy  # noqa: E402
from workers.engines.models import demucs_repo, whisper_checkpoint  # noqa: E402
from yinzi.accounts import create_key  # noqa: E402
from yinzi.store import Database  # noqa: E402

# The random checkpoints are openai-whisper's format; they decode greedily over the whole audio, as the bare
# command is run here (voice activity detection would leave out what it does not hear as speech).
RANDOM_WHISPER_ENV = {"YINZI_WHISPER_ENGINE": "openai-whisper"}
RANDOM_WHISPER_ORDER = {"language": "en", "beamSize": 1, "vad": False}


def save_htdemucs_architecture(model_dir: Path, name: str) -> None:
    from demucs.htdemucs import HTDemucs
    from demucs.pretrained import SOURCES

    # HTDemucs' defaults with a 512-channel bottleneck and a 7.8 s segment: 41.5 M parameters, as released.
    save_demucs(
        model_dir, name, HTDemucs(sources=SOURCES, bottom_channels=512, segment=Fraction(39, 5)), "b3nch001"
    )


def save_whisper_tiny_architecture(model_dir: Path, name: str) -> None:
    """Whisper tiny (39 M parameters) whose decoder says one fixed, short thing in every 30 s window.

    Random weights make decoding length meaningless: they never stop on their own, and their random timestamps
    and word alignments move Whisper's window forward by random amounts, so two runs over the same audio decode
    different numbers of windows. Here the decoder's final layer norm is set to a constant and the token
    embeddings are given fixed scores along it, so every position scores tokens the same way. Under Whisper's
    timestamp rules that yields exactly ``<|0.00|> the <|30.00|> <|endoftext|>``: one segment ending in a
    single timestamp, so every window advances by the full 30 s, and a log-probability high enough that no
    temperature fallback runs. Everything else (mel, the whole encoder, every decoder layer, the word
    alignment pass) computes as usual: per window both sides do the same, fixed work.
    """
    import torch
    import whisper
    from whisper.model import ModelDimensions
    from whisper.tokenizer import get_tokenizer

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=384,
        n_audio_head=6,
        n_audio_layer=4,
        n_vocab=51865,
        n_text_ctx=448,
        n_text_state=384,
        n_text_head=6,
        n_text_layer=4,
    )
    save_whisper(model_dir, name, dims)
    path = whisper_checkpoint(model_dir, name)
    checkpoint = torch.load(path)
    state = checkpoint["model_state_dict"]
    tokenizer = get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    embedding = state["decoder.token_embedding.weight"]
    direction = torch.randn(embedding.shape[1], generator=torch.Generator().manual_seed(0))
    direction /= direction.norm()
    # Each token's logit becomes exactly its score: the layer norm outputs `direction`, the embeddings' own
    # component along it is replaced by the score.
    score = torch.zeros(embedding.shape[0])
    begin, the = tokenizer.timestamp_begin, tokenizer.encode(" the")[0]
    score[begin:] = 9.13  # 1,501 timestamps: together they outweigh " the" once a word is out
    score[begin] = 16.0  # <|0.00|> first (the only timestamps allowed first are <= 1 s)
    score[begin + 1500] = 14.0  # then <|30.00|> is the best timestamp
    score[tokenizer.eot] = 14.75  # and after it, the end
    score[the] = 15.5  # the best text token
    embedding -= (embedding @ direction)[:, None] * direction[None]
    embedding += score[:, None] * direction[None]
    state["decoder.ln.weight"].zero_()
    state["decoder.ln.bias"].copy_(direction)
    torch.save(checkpoint, path)
    tokens = whisper.decode(
        whisper.load_model(str(path), device="cpu"),
        torch.zeros(80, 3000),
        whisper.DecodingOptions(language="en", fp16=False),
    ).tokens
    assert tokens == [begin, the, begin + 1500], tokens


def looped(source: Path, seconds: int, target: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-i",
            str(source),
            "-t",
            str(seconds),
            "-ar",
            "44100",
            "-ac",
            "2",
            str(target),
        ],
        check=True,
    )
    return target


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a command."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert match
    return elapsed, int(match.group(1)) / 1024**2


class Service:
    """`yinzi serve` in embedded mode, fetching from a local file server, with one user and key."""

    def __init__(self, workdir: Path, model_dir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        files_port = free_port()
        self.files = f"http://127.0.0.1:{files_port}"
        data = workdir / f"data-{self.port}"
        self.key = asyncio.run(self._account(data / "yinzi.db"))
        self._files = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(files_port), "--bind", "127.0.0.1"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        env = {
            **os.environ,
            **env,
            "YINZI_DATA_DIR": str(data),
            "YINZI_PORT": str(self.port),
            "YINZI_MODEL_DIR": str(model_dir),
            "YINZI_FETCH_ALLOW": "127.0.0.1/32",
            "YINZI_ENGINE_TIMEOUT_BASE": "36000",
            "YINZI_JOB_TIMEOUT": "36000",
        }
        with (workdir / f"serve-{self.port}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "yinzi"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_healthy(f"http://127.0.0.1:{self.port}")

    @staticmethod
    async def _account(db_path: Path) -> str:
        db = await Database.open(db_path)
        try:
            return (await create_key(db, await db.create_user("bench", 10**9))).key
        finally:
            await db.close()

    def run(self, order_type: str, file: Path, stuff: dict[str, object] | None = None) -> float:
        return self.run_order(order_type, file, stuff)[0]

    def run_order(
        self, order_type: str, file: Path, stuff: dict[str, object] | None = None
    ) -> tuple[float, str]:
        """Seconds from create to finish, and the order's number."""
        import json

        body = json.dumps(
            {"orderType": order_type, "stuff": {"pathKey": f"{self.files}/{file.name}", **(stuff or {})}}
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/open/v1/order/create",
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        start = time.monotonic()
        order_no = json.load(urllib.request.urlopen(request))["data"]["orderNo"]
        while True:
            query = (
                f"http://127.0.0.1:{self.port}/api/open/v1/order/query?orderNo={order_no}&apiKey={self.key}"
            )
            data = json.load(urllib.request.urlopen(query))["data"]
            if data["status"] not in ("pending", "processing"):
                break
            time.sleep(0.2)
        if data["status"] != "finish":
            raise SystemExit(f"order ended {data['status']}: {data['reason']}")
        return time.monotonic() - start, order_no

    def engine_peak_gib(self) -> float:
        # The service's children are its engine processes and multiprocessing's small resource tracker.
        return max(peak_rss_gib(pid) for pid in children_of(self.proc.pid))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._files.terminate()
        self._files.wait()


def compare(
    service: Service,
    order_type: str,
    stuff: dict[str, object],
    seconds: list[int],
    make_input: Callable[[int], Path],
    bare_command: Callable[[Path], list[str]],
    bare_name: str,
) -> None:
    print(
        f"| input | bare {bare_name} | bare RTF | bare peak RSS | service end to end | service RTF | engine peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in seconds:
        source = make_input(n)
        bare_s, bare_rss = timed(bare_command(source))
        service_s = service.run(order_type, source, stuff)
        print(
            f"| {n} s | {bare_s:.1f} s | {bare_s / n:.2f} | {bare_rss:.2f} GiB | {service_s:.1f} s "
            f"| {service_s / n:.2f} | {service.engine_peak_gib():.2f} GiB |",
            flush=True,
        )


def bench_demucs(seconds: list[int], workdir: Path) -> None:
    model_dir = workdir / "models"
    save_htdemucs_architecture(model_dir, "htdemucs-arch")
    service = Service(workdir, model_dir, {"YINZI_DEMUCS_MODEL": "htdemucs-arch"})
    try:
        service.run("track-separation", looped(MUSIC, 5, workdir / "warmup.wav"))  # loads the model
        compare(
            service,
            "track-separation",
            {},
            seconds,
            lambda n: looped(MUSIC, n, workdir / f"music-{n}s.wav"),
            lambda source: [
                sys.executable,
                "-m",
                "demucs.separate",
                "-n",
                "htdemucs-arch",
                "--repo",
                str(demucs_repo(model_dir)),
                "--two-stems",
                "vocals",
                "--mp3",
                "-d",
                "cpu",
                "-o",
                str(workdir / "bare"),
                str(source),
            ],
            "demucs.separate",
        )
    finally:
        service.close()


def bench_whisper(seconds: list[int], workdir: Path) -> None:
    model_dir = workdir / "models"
    save_whisper_tiny_architecture(model_dir, "tiny-arch")
    service = Service(workdir, model_dir, {"YINZI_WHISPER_MODEL": "tiny-arch", **RANDOM_WHISPER_ENV})
    try:
        service.run("extract-text", looped(SPEECH, 5, workdir / "warmup.wav"), RANDOM_WHISPER_ORDER)
        compare(
            service,
            "extract-text",
            RANDOM_WHISPER_ORDER,
            seconds,
            lambda n: looped(SPEECH, n, workdir / f"speech-{n}s.wav"),
            lambda source: [
                str(BIN / "whisper"),
                str(source),
                "--model",
                str(whisper_checkpoint(model_dir, "tiny-arch")),
                "--device",
                "cpu",
                "--fp16",
                "False",
                "--language",
                "en",
                "--word_timestamps",
                "True",
                # greedy, as the service decodes (the command's default is a 5-wide beam)
                "--beam_size",
                "None",
                "--best_of",
                "None",
                "--output_format",
                "all",
                "--output_dir",
                str(workdir / "bare"),
                "--verbose",
                "False",
            ],
            "whisper",
        )
    finally:
        service.close()


def bench_memory(seconds: list[int], workdir: Path, order_types: list[str]) -> None:
    """A fresh service per input, so each engine's high-water mark belongs to that input alone."""
    model_dir = workdir / "models"
    save_tiny_demucs(model_dir)
    save_tiny_whisper(model_dir)
    env = {"YINZI_DEMUCS_MODEL": "tiny-htdemucs", "YINZI_WHISPER_MODEL": "tiny-whisper", **RANDOM_WHISPER_ENV}
    print("| input | order type | end to end | engine peak RSS |")
    print("|---|---|---:|---:|")
    for n in seconds:
        source = looped(MUSIC, n, workdir / f"long-{n}s.wav")
        for order_type in order_types:
            service = Service(workdir, model_dir, env)
            try:
                took = service.run(
                    order_type, source, RANDOM_WHISPER_ORDER if order_type == "extract-text" else None
                )
                print(
                    f"| {n} s | {order_type} | {took:.1f} s | {service.engine_peak_gib():.3f} GiB |",
                    flush=True,
                )
            finally:
                service.close()
        source.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["demucs", "whisper", "memory"])
    parser.add_argument("--seconds", type=int, nargs="+", default=[60])
    parser.add_argument(
        "--order-types", nargs="+", default=["track-separation", "extract-text"], help="for memory"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yinzi-engines-") as tmp:
        if args.what == "demucs":
            bench_demucs(args.seconds, Path(tmp))
        elif args.what == "whisper":
            bench_whisper(args.seconds, Path(tmp))
        else:
            bench_memory(args.seconds, Path(tmp), args.order_types)


if __name__ == "__main__":
    main()
