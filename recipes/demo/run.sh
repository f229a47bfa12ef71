#!/usr/bin/env bash
# Demo: transfer whisper-base to a language it writes badly, end to end on a laptop CPU.
#   0 synth     espeak-ng speaks a small Punjabi (Gurmukhi) corpus in 6 voices
#   1 prepare   normalize audio and text, validate, speaker-disjoint split (dev spk5, test spk6)
#   2 zeroshot  decode + score the test speaker with the untouched pretrained model
#   3 train     fine-tune (recipes/demo/config.yaml)
#   4 finetuned decode + score the test speaker with the fine-tuned model
#   5 report    exp/demo/report/report.{html,md}
#   6 export    the fine-tuned system as one folder that transcribes anywhere, with its model card:
#               exp/demo/final (python -m pipeline transcribe --model exp/demo/final clip.wav)
# Usage: recipes/demo/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=data/demo_corpus
DATA=data/demo
EXP=exp/demo
CONFIG=recipes/demo/config.yaml

decode_and_score() {  # system kind model
  local system="$1" kind="$2" model="$3"
  "$PY" -m pipeline decode --model "$model" --manifest "$DATA/test.jsonl" --out "$EXP/$system/test/hyps.jsonl" --batch-size 16
  "$PY" -m pipeline score --manifest "$DATA/test.jsonl" --hyps "$EXP/$system/test/hyps.jsonl" --system "$system" --kind "$kind"
}

run_stage 0 synth "$PY" -m pipeline synth-corpus --out "$CORPUS" --lang pa --utts-per-speaker 60
run_stage 1 prepare "$PY" -m pipeline prepare --format folder --src "$CORPUS" --lang pa --out "$DATA" \
  --split-speakers dev=spk5,test=spk6 --no-progress "${FORCE_ARGS[@]}"
run_stage 2 zeroshot decode_and_score zeroshot zeroshot whisper-base
run_stage 3 train "$PY" -m pipeline train --config "$CONFIG" "${FORCE_ARGS[@]}"
run_stage 4 finetuned decode_and_score whisper_ft finetuned "$EXP/whisper_ft/best"
report() {
  "$PY" -m pipeline report "$EXP" --out "$EXP/report" --title "Demo: whisper-base -> synthetic Punjabi"
  "$PY" -m pipeline report "$EXP" --markdown-table
  echo "report: $EXP/report/report.html"
}

run_stage 5 report report
# the batch size of stage 4's decode: the same batches give the same transcripts
run_stage 6 export "$PY" -m pipeline export --model "$EXP/whisper_ft/best" --batch-size 16 --data "$DATA" \
  --results "$EXP/whisper_ft/test/results.json" --recipe "make demo (recipes/demo/run.sh)" --license other \
  --limitation "Trained and tested on synthetic speech (espeak-ng voices): not a recognizer of real Punjabi speech." \
  --out "$EXP/final"
