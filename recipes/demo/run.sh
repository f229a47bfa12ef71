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
#   7 shift     the test speaker heard through a telephone line, and among the training speakers (babble
#               at 10 dB SNR): data/demo_shifted/test_{telephone,babble10}
#   8 shifted   decode + score the fine-tuned system on them
#   9 scratch   train whisper-base's architecture from random weights, with the fine-tuning's config and
#               step budget (SCRATCH=0 skips it and stage 10)
#  10 scratchscore decode + score the from-scratch system on the test speaker
#  11 verdict   the report again, with the domain-shift and negative-transfer verdicts decided
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
SHIFTED=data/demo_shifted
SCRATCH=${SCRATCH:-1}

decode_and_score() {  # system kind model [manifest]: hyps and results in $EXP/<system>/<manifest's name>/
  local system="$1" kind="$2" model="$3" manifest="${4:-$DATA/test.jsonl}"
  local testset
  testset=$(basename "$manifest" .jsonl)
  "$PY" -m pipeline decode --model "$model" --manifest "$manifest" --out "$EXP/$system/$testset/hyps.jsonl" --batch-size 16
  "$PY" -m pipeline score --manifest "$manifest" --hyps "$EXP/$system/$testset/hyps.jsonl" --system "$system" --kind "$kind"
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

# Domain shift: the same test utterances through a telephone channel and in babble of the four training
# voices (other speakers than the test voice); ids are kept, so the report pairs them with the clean ones.
derive_shifted() {
  "$PY" -m pipeline degrade --manifest "$DATA/test.jsonl" --condition telephone --seed 0 \
    --out "$SHIFTED/test_telephone" "${FORCE_ARGS[@]}"
  "$PY" -m pipeline degrade --manifest "$DATA/test.jsonl" --condition babble --snr 10 \
    --noise-manifest "$DATA/train.jsonl" --seed 0 --out "$SHIFTED/test_babble10" "${FORCE_ARGS[@]}"
}
score_shifted() {
  local set
  for set in test_telephone test_babble10; do
    decode_and_score whisper_ft finetuned "$EXP/whisper_ft/best" "$SHIFTED/$set/$set.jsonl"
  done
}
run_stage 7 shift derive_shifted
run_stage 8 shifted score_shifted
# Negative transfer: the fine-tuning's config (architecture, regime, steps) from random weights.
if [ "$SCRATCH" = 1 ]; then
  run_stage 9 scratch "$PY" -m pipeline train --config "$CONFIG" model.init=scratch \
    output_dir="$EXP/whisper_scratch" "${FORCE_ARGS[@]}"
  run_stage 10 scratchscore decode_and_score whisper_scratch scratch "$EXP/whisper_scratch/best"
fi
run_stage 11 verdict report
