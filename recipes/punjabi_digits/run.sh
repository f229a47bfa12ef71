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
# Leave-one-speaker-out (FOLDS=1, the default; FOLDS=0 stops after stage 6): one held-out speaker
# says little about the next unheard voice, so every speaker is tested once.
#   7 folds     data/pa_digits_folds/fold<k>: test = speaker k, train = the other two; with
#               DEV_SPEAKERS=1, dev = the next speaker and train = the third alone
#   8 fold<k>   train on fold k for the config's epochs (DEV_SPEAKERS=1: dev evaluated every
#               FOLD_EVAL_EVERY steps, best/ = lowest dev CER), decode + score its test speaker:
#               exp/pa_digits_folds/fold<k>/$SYSTEM
#   9 pool      the folds pooled: per fold and pooled WER/CER with intervals, the worst speaker (and
#               with DEV_SPEAKERS=1 the median of the folds' best steps): exp/pa_digits/${SYSTEM}_folds/pooled
#  10 train_all train on every speaker with the config the folds measured (DEV_SPEAKERS=1: for the
#               folds' median best step): exp/pa_digits/${SYSTEM}_all
#  11 report    stage 5's report again, now with the pooled row
#  12 export_all the all-speaker system with the pooled results on its card: exp/pa_digits/final_all
# Usage: recipes/punjabi_digits/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
source recipes/lib/folds.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=${CORPUS:-../shared/corpora/punjabi_digits}
CONFIG=${CONFIG:-recipes/punjabi_digits/config.yaml}
TEST_SPEAKER=${TEST_SPEAKER:-PN00F04}
SYSTEM=${SYSTEM:-whisper_ft}
DATA=data/pa_digits
EXP=exp/pa_digits
FOLDS=${FOLDS:-1}
# 0: each fold trains on two speakers for the config's epochs; 1: on one, its step picked on the third,
# a pessimistic estimate from half the voices (BENCHMARKS.md#punjabi-digits compares both)
DEV_SPEAKERS=${DEV_SPEAKERS:-0}
FOLD_EVAL_EVERY=${FOLD_EVAL_EVERY:-25}
FOLD_DATA=data/pa_digits_folds
FOLD_EXP=exp/pa_digits_folds  # outside $EXP: the folds' systems share one name, which `report $EXP` refuses
POOLED=$EXP/${SYSTEM}_folds/pooled
FOLDS_STAGE=7  # the rest of what recipes/lib/folds.sh reads
TRAIN_BUDGET="the config's epochs"
FOLD_TRAIN_ARGS=()
# Silence after every clip when a fine-tuned system decodes: the training clips of two speakers end in
# silence, the third speaker's recordings stop at the last digit, and a model that never heard a clip
# end in speech writes on past it (BENCHMARKS.md#punjabi-digits)
TAIL=${TAIL:-0.5}
FOLD_DECODE_ARGS=(--tail-silence "$TAIL")  # the folds decode as stage 4 does

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
run_stage 4 "finetuned.$SYSTEM" decode_and_score "$SYSTEM" finetuned "$EXP/$SYSTEM/best" --tail-silence "$TAIL"
run_stage 5 report report
run_stage 6 "export.$SYSTEM" "$PY" -m pipeline export --model "$EXP/$SYSTEM/best" --batch-size 16 --tail-silence "$TAIL" --data "$DATA" \
  --results "$EXP/$SYSTEM/test/results.json" --recipe "recipes/punjabi_digits/run.sh (CONFIG=$CONFIG)" \
  --limitation "Knows only the ten digit words, romanized, as read by the corpus's three speakers." --out "$EXP/final"
[ "$FOLDS" = 1 ] || exit 0

run_stage 7 folds "$PY" -m pipeline folds --data "$DATA" --out "$FOLD_DATA" --dev-speakers "$DEV_SPEAKERS"
run_fold_stage 8
run_stage 9 "pool.$SYSTEM" pool_folds
run_stage 10 "train_all.$SYSTEM" train_all
run_stage 11 report_folds report
run_stage 12 "export_all.$SYSTEM" "$PY" -m pipeline export --model "$EXP/${SYSTEM}_all/best" --batch-size 16 --tail-silence "$TAIL" \
  --data "$FOLD_DATA/all" --results "$POOLED/results.json" \
  --recipe "recipes/punjabi_digits/run.sh (CONFIG=$CONFIG, leave-one-speaker-out folds)" \
  --limitation "Knows only the ten digit words, romanized, as read by the corpus's three speakers." \
  --limitation "Trained on all three speakers for $(trained_for); its results are the leave-one-speaker-out estimate of the same recipe pooled over the folds, each fold's system trained on $((2 - DEV_SPEAKERS)) speaker(s) with $DEV_SPEAKERS dev speaker(s) and tested on the third." \
  --out "$EXP/final_all"
