"""The one command line: ``python -m pipeline <command> ...``.

Each command lives in its own module of this package, which provides
``add_arguments(parser)`` and ``run(args) -> int`` and calls the library (the
same functions the Python API, :mod:`pipeline`, offers). Only the chosen
command's module is imported, so that ``python -m pipeline score`` does not pay
for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from data_prep.audio import AudioError
from data_prep.manifest import ManifestError
from data_prep.outputs import OutputRefused, ResumeError
from pipeline.config import ConfigError

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("pipeline.cli.prepare", "import a corpus into normalized, validated manifests"),
    "synth-corpus": ("pipeline.cli.synth_corpus", "synthesize the small demo corpus with espeak-ng"),
    "merge": ("pipeline.cli.merge", "merge the outputs of sharded `prepare` runs"),
    "folds": ("pipeline.cli.folds", "speaker folds of a prepared folder, one prepared folder each (leave-one-speaker-out by default)"),
    "degrade": ("pipeline.cli.degrade", "derive a shifted test set: telephone channel, noise, babble or reverb"),
    "transcribe": ("pipeline.cli.transcribe", "transcribe audio files with any model the toolkit loads or trains"),
    "convert": ("pipeline.cli.convert", "convert a bundled/CTranslate2 Whisper into a transformers directory"),
    "decode": ("pipeline.cli.decode", "decode a manifest into a hypotheses file"),
    "score": ("pipeline.cli.score", "score hypotheses against a manifest (WER/CER, alignments, CIs)"),
    "report": ("pipeline.cli.report", "compare experiments in report.html / report.md"),
    "screenshot": ("pipeline.cli.screenshot", "draw a report page as a PNG (headless Chromium)"),
    "train": ("pipeline.cli.train", "fine-tune a pretrained model from a recipe config"),
    "soup": ("pipeline.cli.soup", "average the weights of models fine-tuned from the same start (a model soup)"),
    "rescore": ("pipeline.cli.rescore", "rescore Whisper's N-best with a CTC model and a word LM (weights tuned on dev)"),
    "pseudo-label": ("pipeline.cli.pseudo_label", "label unlabeled audio with a system's transcripts for self-training"),
    "lm": ("pipeline.cli.lm", "build the word n-gram LM for CTC decoding (train text) and tune its weights (dev)"),
    "export": ("pipeline.cli.export", "copy a trained system into one folder that transcribes anywhere"),
    "export-dataset": ("pipeline.cli.export_dataset", "write prepared splits as a Hugging Face dataset (save_to_disk)"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Low-resource ASR transfer pipeline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<11} {h}" for n, (_, h) in COMMANDS.items()),
    )
    p.add_argument("command", choices=sorted(COMMANDS), metavar="command")
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.models.cpu_kernels import bound_kernel_cache

    bound_kernel_cache()  # before any command runs a kernel
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        top.parse_args(argv[:1])  # prints the usage error and exits 2
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m pipeline {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ManifestError, ConfigError, OutputRefused, ResumeError, AudioError) as e:
        # bad input (or an unsafe output) that a command did not catch itself, e.g. a training clip whose
        # audio went bad after prepare: its message names the file
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:
            raise
        print(f"{name}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
