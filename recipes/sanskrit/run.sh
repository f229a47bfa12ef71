#!/usr/bin/env bash
# Sanskrit: transfer whisper-base to Sanskrit read speech (Common Voice layout corpus).
#   1 prepare   CV import, audio/text normalization, validation, the corpus's own speaker splits
#   2 zeroshot  decode + score the test split with the untouched pretrained model (--language sa)
#   3 train     fine-tune (recipes/sanskrit/config.yaml, or CONFIG=...); with SEEDS=N, N decoders
#               of the same config, train.seed 0..N-1, one after the other (whisper_ft, whisper_ft_s1 ...)
#   4 finetuned decode + score dev and test with the (seed 0) best checkpoint; a CTC checkpoint also
#               gets a word 3-gram LM from the train text, weights tuned on dev, and is decoded
#               again with it as system <SYSTEM>_lm
#   5 train.ctc (CTC=1 only) a CTC system (recipes/sanskrit/config_ctc.yaml) on the same cached
#               encoder states
#   6 rescore   word 3-gram + character 6-gram LMs from the train text; the decoder's 4-best
#               rescored with them, weights tuned on dev (system whisper_lm). With SEEDS=N every
#               decoder proposes its 4-best and scores every candidate (an ensemble: whisper_x2_lm ...).
#               With CTC=1 the CTC system also proposes hypotheses and scores every candidate
#               (system whisper_ctc_lm), and is decoded with the word LM alone (system ctc_ft_lm)
#   7 selftrain (SELFTRAIN=1, the default) stage 6's transcripts of the dev and test AUDIO become
#               pseudo-labels (`pipeline pseudo-label`; references unread); the decoder system
#               trains one more epoch on train + them (recipes/sanskrit/config_selftrain.yaml); with
#               SEEDS=N each seed's decoder does (SEEDS=2: whisper_st_x2, whisper_st_x2_s1)
#   8 selftrained decode + score dev and test with it (system whisper_st; seed 0's), then rescore
#               its 4-best as in stage 6 (system whisper_st_lm, or whisper_st_ctc_lm with CTC=1;
#               all seeds' with SEEDS=N: whisper_st_x2_lm)
#   9 report    exp/sa/report/report.{html,md}
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
CTC=${CTC:-0}
SELFTRAIN=${SELFTRAIN:-1}
ST_CONFIG=${ST_CONFIG:-recipes/sanskrit/config_selftrain.yaml}
SEEDS=${SEEDS:-1}  # decoders trained with seeds 0..SEEDS-1 and rescored as an ensemble (2: see README)
# Self-trained systems learn from their variant's labels: SEEDS=2 writes whisper_st_x2, not over whisper_st
if [ "$SEEDS" -gt 1 ]; then ST_SYSTEM=${ST_SYSTEM:-whisper_st_x$SEEDS}; else ST_SYSTEM=${ST_SYSTEM:-whisper_st}; fi
NBEST=${NBEST:-4}  # beam width = N-best size of stages 6 and 8 (8: dev 53.5 -> 52.9 % WER, twice the time)
DATA=data/sa
EXP=exp/sa

seed_system() {  # system seed: seed 0 keeps the system's name, seed k > 0 gets the suffix _s<k>
  if [ "$2" = 0 ]; then echo "$1"; else echo "$1_s$2"; fi
}

seed_models() {  # system: the best/ directories of all its seeds, one per line
  local k
  for ((k = 0; k < SEEDS; k++)); do echo "$EXP/$(seed_system "$1" "$k")/best"; done
}

decode_and_score() {  # system kind model split [extra decode arguments]
  # No --language: a fine-tuned model decodes with the token it was trained with (model.language)
  local system="$1" kind="$2" model="$3" split="$4"; shift 4
  "$PY" -m pipeline decode --model "$model" --manifest "$DATA/$split.jsonl" --out "$EXP/$system/$split/hyps.jsonl" \
    --batch-size 16 "$@"
  "$PY" -m pipeline score --manifest "$DATA/$split.jsonl" --hyps "$EXP/$system/$split/hyps.jsonl" \
    --system "$system" --kind "$kind"
}

finetuned() {
  local best="$EXP/$SYSTEM/best"
  on_dev_and_test decode_and_score "$SYSTEM" finetuned "$best"
  if [ -f "$best/ctc_config.json" ]; then  # CTC: n-gram LM beam search, tuned on dev only
    "$PY" -m pipeline lm --config "$CONFIG" --out "$EXP/$SYSTEM/lm" --tune-on "$DATA/dev.jsonl" --model "$best"
    decode_and_score "${SYSTEM}_lm" finetuned "$best" dev --lm "$EXP/$SYSTEM/lm"
    decode_and_score "${SYSTEM}_lm" finetuned "$best" test --lm "$EXP/$SYSTEM/lm"
  fi
}

lms() {  # word 3-gram + character 6-gram LMs of the train text (with CTC=1 also tuned for CTC beam search)
  if [ "$CTC" = 1 ]; then  # the LM's CTC beam-search weights are tuned on dev for the CTC proposals
    "$PY" -m pipeline lm --config "$CTC_CONFIG" --out "$EXP/lm" --char-order 6 --tune-on "$DATA/dev.jsonl" \
      --model "$EXP/$CTC_SYSTEM/best"
    decode_and_score "${CTC_SYSTEM}_lm" finetuned "$EXP/$CTC_SYSTEM/best" test --lm "$EXP/lm"
  else
    "$PY" -m pipeline lm --train "$DATA/train.jsonl" --out "$EXP/lm" --char-order 6
  fi
}

rescored_name() {  # the rescored system's name for a decoder system: whisper_lm, whisper_st_ctc_lm,
  local base="${1%_ft}"  # whisper_x2_lm, whisper_st_x2_lm (SEEDS=2) ...
  if [ "$SEEDS" -gt 1 ] && [ "${base%_x"$SEEDS"}" = "$base" ]; then base="${base}_x$SEEDS"; fi
  if [ "$CTC" = 1 ]; then echo "${base}_ctc_lm"; else echo "${base}_lm"; fi
}

nbest_for() {  # split; called from rescore(), whose locals $system and $common it reads. Dev tunes the weights.
  local tune=()
  if [ "$1" = dev ]; then tune=(--tune); fi
  "$PY" -m pipeline rescore "${common[@]}" --manifest "$DATA/$1.jsonl" --out "$EXP/$system/$1/hyps.jsonl" "${tune[@]}"
}

rescore() {  # decoder_system: its seeds' N-best + word and character LMs (+ the CTC system with CTC=1)
  local system extra=() models
  system=$(rescored_name "$1")
  mapfile -t models < <(seed_models "$1")
  if [ "$CTC" = 1 ]; then extra=(--ctc "$EXP/$CTC_SYSTEM/best"); fi
  local common=(--model "${models[@]}" --lm "$EXP/lm" --char-lm "$EXP/lm" --beams "$NBEST" --nbest "$NBEST" --batch-size 8 "${extra[@]}")
  # Both N-best lists at once (dev tunes the weights); then test is chosen again with the dev
  # weights, which reuses its finished N-best file and decodes nothing.
  on_dev_and_test nbest_for
  "$PY" -m pipeline rescore "${common[@]}" --manifest "$DATA/test.jsonl" --out "$EXP/$system/test/hyps.jsonl" \
    --weights "$EXP/$system/dev/weights.json"
  for split in dev test; do
    "$PY" -m pipeline score --manifest "$DATA/$split.jsonl" --hyps "$EXP/$system/$split/hyps.jsonl" \
      --system "$system" --kind finetuned
  done
}

pseudo_label() {  # stage 6's transcripts of the dev and test audio become training labels
  local labels
  labels=$(rescored_name "$SYSTEM")
  "$PY" -m pipeline pseudo-label --labeled "$DATA/train.jsonl" --unlabeled "$DATA/dev.jsonl" "$DATA/test.jsonl" \
    --hyps "$EXP/$labels/dev/hyps.jsonl" "$EXP/$labels/test/hyps.jsonl" --out "$EXP/selftrain/data" --lang sa
}

selftrain() {  # seed: that seed's stage-3 decoder trains one more epoch on train + the pseudo-labels
  "$PY" -m pipeline train --config "$ST_CONFIG" "model.name=$EXP/$(seed_system "$SYSTEM" "$1")/best" \
    "data.train=$EXP/selftrain/data/train.jsonl" "output_dir=$EXP/$(seed_system "$ST_SYSTEM" "$1")" "train.seed=$1"
}

lms_and_rescore() { lms; rescore "$SYSTEM"; }

selftrained() {
  on_dev_and_test decode_and_score "$ST_SYSTEM" finetuned "$EXP/$ST_SYSTEM/best"
  rescore "$ST_SYSTEM"
}

report() {
  "$PY" -m pipeline report "$EXP" --out "$EXP/report" --title "Sanskrit: whisper-base transfer"
  "$PY" -m pipeline report "$EXP" --markdown-table
}

run_stage 1 prepare "$PY" -m pipeline prepare --format cv --src "$CORPUS" --lang sa --out "$DATA" --no-progress
run_stage 2 zeroshot decode_and_score zeroshot zeroshot whisper-base test --language sa
for ((seed = 0; seed < SEEDS; seed++)); do  # one marker per seed: a resumed run keeps the seeds it finished
  run_stage 3 "train.$(seed_system "$SYSTEM" "$seed")" "$PY" -m pipeline train --config "$CONFIG" \
    "output_dir=$EXP/$(seed_system "$SYSTEM" "$seed")" "train.seed=$seed"
done
run_stage 4 "finetuned.$SYSTEM" finetuned
if [ "$CTC" = 1 ]; then
  run_stage 5 "train.$CTC_SYSTEM" "$PY" -m pipeline train --config "$CTC_CONFIG" "output_dir=$EXP/$CTC_SYSTEM"
fi
VARIANT="ctc$CTC.seeds$SEEDS"  # stages 6-8 differ with CTC and SEEDS: each variant has its own markers
run_stage 6 "rescore.$VARIANT" lms_and_rescore
if [ "$SELFTRAIN" = 1 ]; then
  run_stage 7 "pseudolabel.$VARIANT" pseudo_label
  for ((seed = 0; seed < SEEDS; seed++)); do
    run_stage 7 "selftrain.$VARIANT.$(seed_system "$ST_SYSTEM" "$seed")" selftrain "$seed"
  done
  run_stage 8 "selftrained.$VARIANT" selftrained
fi
run_stage 9 report report
