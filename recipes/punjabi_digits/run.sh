#!/usr/bin/env bash
# Punjabi digits: transfer whisper-base to romanized Punjabi digit strings (Kaldi data dir).
#   1 prepare   Kaldi import, 44.1 kHz FLAC -> 16 kHz, speaker-disjoint split made by the tool
#               (test = the held-out speaker TEST_SPEAKER, train = the other two)
#   2 zeroshot  decode + score the held-out speaker with the untouched model (--language pa)
#   3 train     fine-tune (recipes/punjabi_digits/config.yaml, or CONFIG=... SYSTEM=...)
#   4 finetuned decode + score the held-out speaker
#   5 report    exp/pa_digits/report/report.{html,md}
#   6 export    the fine-tuned system as one folder that transcribes anywhere, with its model card:
#               exp/pa_digits/final
# Usage: recipes/punjabi_digits/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=${CORPUS:-../shared/corpora/punjabi_digits}
CONFIG=${CONFIG:-recipes/punjabi_digits/config.yaml}
TEST_SPEAKER=${TEST_SPEAKER:-PN00F04}
SYSTEM=${SYSTEM:-whisper_ft}
DATA=data/pa_digits
EXP=exp/pa_digits

decode_and_score() {  # system kind model [extra decode arguments]
  # No --language: a fine-tuned model decodes with the token it was trained with (model.language)
  local system="$1" kind="$2" model="$3"; shift 3
  "$PY" -m pipeline decode --model "$model" --manifest "$DATA/test.jsonl" --out "$EXP/$system/test/hyps.jsonl" \
    --batch-size 16 "$@"
  "$PY" -m pipeline score --manifest "$DATA/test.jsonl" --hyps "$EXP/$system/test/hyps.jsonl" \
    --system "$system" --kind "$kind"
}

report() {
  "$PY" -m pipeline report "$EXP" --out "$EXP/report" --title "Punjabi digits: whisper-base transfer"
  "$PY" -m pipeline report "$EXP" --markdown-table
}

run_stage 1 prepare "$PY" -m pipeline prepare --format kaldi --src "$CORPUS" --lang pa --script Latn --out "$DATA" \
  --split-speakers "test=$TEST_SPEAKER" --no-progress "${FORCE_ARGS[@]}"
run_stage 2 zeroshot decode_and_score zeroshot zeroshot whisper-base --language pa
run_stage 3 "train.$SYSTEM" "$PY" -m pipeline train --config "$CONFIG" "output_dir=$EXP/$SYSTEM" \
  "${FORCE_ARGS[@]}"
run_stage 4 "finetuned.$SYSTEM" decode_and_score "$SYSTEM" finetuned "$EXP/$SYSTEM/best"
run_stage 5 report report
run_stage 6 "export.$SYSTEM" "$PY" -m pipeline export --model "$EXP/$SYSTEM/best" --batch-size 16 --data "$DATA" \
  --results "$EXP/$SYSTEM/test/results.json" --recipe "recipes/punjabi_digits/run.sh (CONFIG=$CONFIG)" \
  --limitation "Knows only the ten digit words, romanized, as read by the corpus's three speakers." --out "$EXP/final"
