#!/usr/bin/env bash
# Sanskrit: transfer whisper-base to Sanskrit read speech (Common Voice layout corpus).
#   1 prepare   CV import, audio/text normalization, validation, the corpus's own speaker splits
#   2 zeroshot  decode + score the test split with the untouched pretrained model (--language sa)
#   3 train     fine-tune (recipes/sanskrit/config.yaml, or CONFIG=...)
#   4 finetuned decode + score dev and test with the best checkpoint; a CTC checkpoint also
#               gets a word 3-gram LM from the train text, weights tuned on dev, and is decoded
#               again with it as system <SYSTEM>_lm
#   5 train.ctc the CTC system (recipes/sanskrit/config_ctc.yaml) on the same cached encoder states
#   6 combine   word 3-gram + character 6-gram LMs from the train text; CTC decoded with the word
#               LM (system ctc_ft_lm); the decoder's 8-best plus the CTC system's own hypotheses
#               rescored with CTC, word-LM and char-LM scores, weights tuned on dev (system
#               whisper_ctc_lm). COMBINE=0 skips stages 5-6 (decoder only).
#   7 report    exp/sa/report/report.{html,md}
# Usage: recipes/sanskrit/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=${CORPUS:-../shared/corpora/sanskrit_cv}
CONFIG=${CONFIG:-recipes/sanskrit/config.yaml}
SYSTEM=${SYSTEM:-whisper_ft}
CTC_CONFIG=${CTC_CONFIG:-recipes/sanskrit/config_ctc.yaml}
CTC_SYSTEM=${CTC_SYSTEM:-ctc_ft}
COMBINE=${COMBINE:-1}
DATA=data/sa
EXP=exp/sa

decode_and_score() {  # system kind model split [extra decode arguments]
  local system="$1" kind="$2" model="$3" split="$4"; shift 4
  "$PY" -m pipeline decode --model "$model" --manifest "$DATA/$split.jsonl" --out "$EXP/$system/$split/hyps.jsonl" \
    --language sa --batch-size 16 "$@"
  "$PY" -m pipeline score --manifest "$DATA/$split.jsonl" --hyps "$EXP/$system/$split/hyps.jsonl" \
    --system "$system" --kind "$kind"
}

finetuned() {
  local best="$EXP/$SYSTEM/best"
  decode_and_score "$SYSTEM" finetuned "$best" dev
  decode_and_score "$SYSTEM" finetuned "$best" test
  if [ -f "$best/ctc_config.json" ]; then  # CTC: n-gram LM beam search, tuned on dev only
    "$PY" -m pipeline lm --config "$CONFIG" --out "$EXP/$SYSTEM/lm" --tune-on "$DATA/dev.jsonl" --model "$best"
    decode_and_score "${SYSTEM}_lm" finetuned "$best" dev --lm "$EXP/$SYSTEM/lm"
    decode_and_score "${SYSTEM}_lm" finetuned "$best" test --lm "$EXP/$SYSTEM/lm"
  fi
}

combine() {  # the decoder's N-best + the CTC system + word and character LMs
  local whisper="$EXP/$SYSTEM/best" ctc="$EXP/$CTC_SYSTEM/best" lm="$EXP/$CTC_SYSTEM/lm" out="$EXP/whisper_ctc_lm"
  "$PY" -m pipeline lm --config "$CTC_CONFIG" --out "$lm" --char-order 6 --tune-on "$DATA/dev.jsonl" --model "$ctc"
  decode_and_score "${CTC_SYSTEM}_lm" finetuned "$ctc" test --lm "$lm"
  local common=(--model "$whisper" --ctc "$ctc" --lm "$lm" --char-lm "$lm" --batch-size 8)
  "$PY" -m pipeline rescore "${common[@]}" --manifest "$DATA/dev.jsonl" --out "$out/dev/hyps.jsonl" --tune
  "$PY" -m pipeline rescore "${common[@]}" --manifest "$DATA/test.jsonl" --out "$out/test/hyps.jsonl" \
    --weights "$out/dev/weights.json"
  for split in dev test; do
    "$PY" -m pipeline score --manifest "$DATA/$split.jsonl" --hyps "$out/$split/hyps.jsonl" \
      --system whisper_ctc_lm --kind finetuned
  done
}

report() {
  "$PY" -m pipeline report "$EXP" --out "$EXP/report" --title "Sanskrit: whisper-base transfer"
  "$PY" -m pipeline report "$EXP" --markdown-table
}

run_stage 1 prepare "$PY" -m pipeline prepare --format cv --src "$CORPUS" --lang sa --out "$DATA" --no-progress
run_stage 2 zeroshot decode_and_score zeroshot zeroshot whisper-base test
run_stage 3 "train.$SYSTEM" "$PY" -m pipeline train --config "$CONFIG" "output_dir=$EXP/$SYSTEM"
run_stage 4 "finetuned.$SYSTEM" finetuned
if [ "$COMBINE" = 1 ]; then
  run_stage 5 "train.$CTC_SYSTEM" "$PY" -m pipeline train --config "$CTC_CONFIG" "output_dir=$EXP/$CTC_SYSTEM"
  run_stage 6 combine combine
fi
run_stage 7 report report
