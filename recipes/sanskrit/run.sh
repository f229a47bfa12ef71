#!/usr/bin/env bash
# Sanskrit: transfer whisper-base to Sanskrit read speech (Common Voice layout corpus).
#   1 prepare   CV import, audio/text normalization, validation, the corpus's own speaker splits
#   2 zeroshot  decode + score the test split with the untouched pretrained model (--language sa)
#   3 train     fine-tune (recipes/sanskrit/config.yaml, or CONFIG=...) SEEDS=2 times (default): the
#               same config with train.seed 0..N-1, one after the other (whisper_ft, whisper_ft_s1 ...),
#               then (SOUP=1, the default) their weights averaged into one decoder, whisper_soup2
#               (`pipeline soup`); SOUP=0 keeps them apart as an ensemble; SEEDS=1 trains one
#   4 finetuned decode + score dev and test with the decoder system (the soup; seed 0's with SOUP=0);
#               a CTC checkpoint also gets a word 3-gram LM from the train text, weights tuned on dev,
#               and is decoded again with it as system <SYSTEM>_lm
#   5 train.ctc (CTC=1, the default) a CTC system (recipes/sanskrit/config_ctc.yaml) on the same cached
#               encoder states
#   6 rescore   word 3-gram + character 6-gram LMs from the train text; the decoder's 4-best beam
#               search with the character LM fused into it (FUSION_WEIGHT, FUSION_BONUS, FUSION_LP;
#               weight 0 = plain beam) and capped at FUSION_RATE_MARGIN x the train text's 99th-percentile
#               characters per second; hypotheses that run into the clip's token budget are dropped;
#               its candidates rescored with both LMs and a char bonus or the search's own pick kept, whichever is best
#               on dev (system whisper_soup2_lm; whisper_lm with SEEDS=1). With SOUP=0 every seed's
#               decoder proposes its 4-best and scores every candidate (an ensemble: whisper_x2_lm ...).
#               With CTC=1 the CTC system also proposes hypotheses and scores every candidate
#               (system whisper_soup2_ctc_lm; whisper_ctc_lm with SEEDS=1), and is decoded with
#               the word LM alone (system ctc_ft_lm)
#   7 selftrain (SELFTRAIN=1, the default) stage 6's transcripts of the dev and test AUDIO become
#               pseudo-labels (`pipeline pseudo-label`; references unread); the decoder system
#               trains one more epoch on train + them (recipes/sanskrit/config_selftrain.yaml):
#               whisper_st_soup2 (whisper_st with SEEDS=1); with SOUP=0 each seed's decoder does
#               (whisper_st_x2, whisper_st_x2_s1); CTC=1 appends _ctc (whisper_st_soup2_ctc), and
#               stage 5's CTC system trains two more epochs on the same data too
#               (recipes/sanskrit/config_ctc_selftrain.yaml): ctc_st, its LM weights tuned again (exp/sa/lm_st)
#   8 selftrained decode + score dev and test with it (seed 0's with SOUP=0), then rescore its
#               8-best (ST_NBEST) as in stage 6 (system whisper_st_soup2_lm, whisper_st_lm with SEEDS=1,
#               whisper_st_x2_lm with SOUP=0; *_ctc_lm with CTC=1, where ctc_st proposes and scores)
#   9 report    exp/sa/report/report.{html,md}
#  10 export    the final system (stage 8's rescored system; stage 6's with SELFTRAIN=0) as one folder that
#               transcribes anywhere, with its model card: exp/sa/final (`pipeline export --from-rescore`:
#               its decoder(s), CTC system, LMs, search settings and dev-tuned weights, copied)
#  11 scratch   (SCRATCH=1, the default) stage 3's config from random weights, seed 0 (one seed's steps):
#               whisper_scratch, greedy, dev and test as kind scratch (+ seed 0's whisper_ft, its like-for-like)
#  12 source    (SOURCE=1, the default) stage 3's config from English-only whisper-tiny.en, seed 0 (<|sa|> is
#               new to it, from <|en|>'s rows): whisper_tinyen, greedy, dev and test
#  13 shift     (SHIFT=1, the default) data/sa_shifted/test_{telephone,babble10,babble5,noise10,reverb} (ids kept);
#               exp/sa/final (as system final_export, on test too) and the stage-3 decoder (greedy) scored on each
#  14 verdict   the report again, with the negative-transfer and domain-shift verdicts decided
# Usage: recipes/sanskrit/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
source recipes/lib/shift.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=${CORPUS:-../shared/corpora/sanskrit_cv}
CONFIG=${CONFIG:-recipes/sanskrit/config.yaml}
SYSTEM=${SYSTEM:-whisper_ft}
CTC_CONFIG=${CTC_CONFIG:-recipes/sanskrit/config_ctc.yaml}
CTC_SYSTEM=${CTC_SYSTEM:-ctc_ft}
CTC_ST_CONFIG=${CTC_ST_CONFIG:-recipes/sanskrit/config_ctc_selftrain.yaml}
CTC_ST_SYSTEM=${CTC_ST_SYSTEM:-ctc_st}  # stage 5's CTC system self-trained in stage 7 (CTC=1)
CTC=${CTC:-1}  # the CTC system proposes and scores candidates in stages 6 and 8 (CTC=0: without)
SELFTRAIN=${SELFTRAIN:-1}
ST_CONFIG=${ST_CONFIG:-recipes/sanskrit/config_selftrain.yaml}
SEEDS=${SEEDS:-2}  # decoders trained with seeds 0..SEEDS-1
SOUP=${SOUP:-1}    # with SEEDS > 1: 1 = average them into one decoder (a model soup), 0 = an ensemble
if [ "$SEEDS" -le 1 ]; then MODE=single; elif [ "$SOUP" = 1 ]; then MODE=soup; else MODE=ensemble; fi
# The decoder system of stages 4-8, and the self-trained one. Each mode (and CTC=1, whose
# pseudo-labels differ) names its own self-trained system, so that runs of several variants in
# one exp/sa never resume each other's models (the trainer also refuses a checkpoint of
# another training set).
CTC_SUFFIX=""
if [ "$CTC" = 1 ]; then CTC_SUFFIX=_ctc; fi
case "$MODE" in
  single) DECODER=$SYSTEM; ST_SYSTEM=${ST_SYSTEM:-whisper_st$CTC_SUFFIX}; VARIANT="ctc$CTC.seeds1" ;;
  soup) DECODER=${SYSTEM%_ft}_soup$SEEDS; ST_SYSTEM=${ST_SYSTEM:-whisper_st_soup$SEEDS$CTC_SUFFIX}; VARIANT="ctc$CTC.soup$SEEDS" ;;
  ensemble) DECODER=$SYSTEM; ST_SYSTEM=${ST_SYSTEM:-whisper_st_x$SEEDS$CTC_SUFFIX}; VARIANT="ctc$CTC.seeds$SEEDS" ;;
esac
N_DECODERS=1  # decoders that stages 6-8 rescore with and self-train: all seeds only in an ensemble
if [ "$MODE" = ensemble ]; then N_DECODERS=$SEEDS; fi
NBEST=${NBEST:-4}  # beam width = N-best size of stage 6
ST_NBEST=${ST_NBEST:-8}  # ... of stage 8, the final system (BENCHMARKS.md, "N-best size")
# Character-LM fusion in the beam search of stages 6 and 8 (chosen on dev: BENCHMARKS.md, "Character-LM fusion")
FUSION_WEIGHT=${FUSION_WEIGHT:-0.5}
FUSION_BONUS=${FUSION_BONUS:-1.0}
FUSION_LP=${FUSION_LP:-0}  # the fused search ranks by summed scores (1: per-token means, which let loops win)
# A fused hypothesis may hold at most the train text's 99th-percentile characters per second times this
FUSION_RATE_MARGIN=${FUSION_RATE_MARGIN:-1.25}
TUNE_METRIC=${TUNE_METRIC:-wer+cer}  # what the rescoring weights minimize on dev (wer, cer or their sum)
VARIANT="$VARIANT.fusion${FUSION_WEIGHT}_${FUSION_BONUS}_lp${FUSION_LP}_r$FUSION_RATE_MARGIN.$TUNE_METRIC"  # another setting reruns stages 6-8
DATA=data/sa
EXP=exp/sa
SCRATCH=${SCRATCH:-1}  # stage 11: the negative-transfer check's from-scratch system
SCRATCH_SYSTEM=whisper_scratch
SOURCE=${SOURCE:-1}  # stage 12: the same training from another source model
SOURCE_MODEL=${SOURCE_MODEL:-whisper-tiny.en}
SOURCE_INIT=${SOURCE_INIT:-en}  # the token whose rows <|sa|> starts from, where the source model lacks it
SOURCE_SYSTEM=${SOURCE_SYSTEM:-whisper_tinyen}
SHIFT=${SHIFT:-1}  # stage 13: shifted copies of the test set, and the systems scored on them
SHIFTED=data/sa_shifted
SHIFTS=(telephone babble10 babble5 noise10 reverb)
REVERB_RT60=${REVERB_RT60:-0.5}  # seconds (degrade's default)
FINAL_SYSTEM=final_export  # the exported system's scores (nothing is written into exp/sa/final, the product)

seed_system() {  # system seed: seed 0 keeps the system's name, seed k > 0 gets the suffix _s<k>
  if [ "$2" = 0 ]; then echo "$1"; else echo "$1_s$2"; fi
}

seed_models() {  # system [count]: the best/ directories of its first count (default SEEDS) seeds, one per line
  local k
  for ((k = 0; k < ${2:-$SEEDS}; k++)); do echo "$EXP/$(seed_system "$1" "$k")/best"; done
}

decode_and_score_set() {  # system kind model manifest [extra decode arguments]: into $EXP/<system>/<its stem>/
  # No --language: a fine-tuned model decodes with the token it was trained with (model.language)
  local system="$1" kind="$2" model="$3" manifest="$4" testset; shift 4
  testset=$(basename "$manifest" .jsonl)
  "$PY" -m pipeline decode --model "$model" --manifest "$manifest" --out "$EXP/$system/$testset/hyps.jsonl" "$@"
  "$PY" -m pipeline score --manifest "$manifest" --hyps "$EXP/$system/$testset/hyps.jsonl" \
    --system "$system" --kind "$kind"
}

decode_and_score() {  # system kind model split [extra decode arguments]
  local system="$1" kind="$2" model="$3" split="$4"; shift 4
  decode_and_score_set "$system" "$kind" "$model" "$DATA/$split.jsonl" --batch-size 16 "$@"
}

finetuned() {
  local best="$EXP/$DECODER/best"
  on_dev_and_test decode_and_score "$DECODER" finetuned "$best"
  if [ -f "$best/ctc_config.json" ]; then  # CTC: n-gram LM beam search, tuned on dev only
    "$PY" -m pipeline lm --config "$CONFIG" --out "$EXP/$DECODER/lm" --tune-on "$DATA/dev.jsonl" --model "$best"
    decode_and_score "${DECODER}_lm" finetuned "$best" dev --lm "$EXP/$DECODER/lm"
    decode_and_score "${DECODER}_lm" finetuned "$best" test --lm "$EXP/$DECODER/lm"
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

rescored_name() {  # the rescored system's name for a decoder system: whisper_soup2_lm, whisper_lm,
  local base="${1%_ft}"  # whisper_st_ctc_lm (from whisper_st_ctc), whisper_x2_lm, whisper_st_x2_lm (SOUP=0) ...
  base="${base%_ctc}"
  if [ "$MODE" = ensemble ] && [ "${base%_x"$SEEDS"}" = "$base" ]; then base="${base}_x$SEEDS"; fi
  if [ "$CTC" = 1 ]; then echo "${base}_ctc_lm"; else echo "${base}_lm"; fi
}

nbest_for() {  # split; called from rescore(), whose locals $system and $common it reads. Dev tunes the weights.
  local tune=()
  if [ "$1" = dev ]; then tune=(--tune --tune-metric "$TUNE_METRIC"); fi
  "$PY" -m pipeline rescore "${common[@]}" --manifest "$DATA/$1.jsonl" --out "$EXP/$system/$1/hyps.jsonl" "${tune[@]}"
}

rescore() {  # decoder_system ctc_system lm_dir n: the decoder's (ensemble's) n-best + word and character
  local system extra=() models  # LMs (+ the CTC system's proposals and scores with CTC=1)
  system=$(rescored_name "$1")
  mapfile -t models < <(seed_models "$1" "$N_DECODERS")
  if [ "$CTC" = 1 ]; then extra=(--ctc "$EXP/$2/best"); fi
  local common=(--model "${models[@]}" --lm "$3" --char-lm "$3" --beams "$4" --nbest "$4" --batch-size 8
                --fusion-weight "$FUSION_WEIGHT" --fusion-bonus "$FUSION_BONUS" --fusion-length-penalty "$FUSION_LP"
                --fusion-rate-from "$DATA/train.jsonl" --fusion-rate-margin "$FUSION_RATE_MARGIN" "${extra[@]}")
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
  labels=$(rescored_name "$DECODER")
  # --force: another variant's stage 7 (its own marker) replaces the labels of the last one
  "$PY" -m pipeline pseudo-label --labeled "$DATA/train.jsonl" --unlabeled "$DATA/dev.jsonl" "$DATA/test.jsonl" \
    --hyps "$EXP/$labels/dev/hyps.jsonl" "$EXP/$labels/test/hyps.jsonl" --out "$EXP/selftrain/data" --lang sa --force
}

selftrain() {  # seed: that seed's stage-3 decoder (the soup) trains one more epoch on train + the pseudo-labels
  "$PY" -m pipeline train --config "$ST_CONFIG" "model.name=$EXP/$(seed_system "$DECODER" "$1")/best" \
    "data.train=$EXP/selftrain/data/train.jsonl" "output_dir=$EXP/$(seed_system "$ST_SYSTEM" "$1")" "train.seed=$1" "${FORCE_ARGS[@]}"
}

lms_and_rescore() { lms; rescore "$DECODER" "$CTC_SYSTEM" "$EXP/lm" "$NBEST"; }

selftrain_ctc() {  # stage 5's CTC system trains on train + the pseudo-labels; the LMs' CTC beam-search
  "$PY" -m pipeline train --config "$CTC_ST_CONFIG" "model.name=$EXP/$CTC_SYSTEM/best" \
    "data.train=$EXP/selftrain/data/train.jsonl" "output_dir=$EXP/$CTC_ST_SYSTEM" "${FORCE_ARGS[@]}"
  # weights are tuned on dev again for it (the same train-text LMs: $CTC_CONFIG's train set)
  "$PY" -m pipeline lm --config "$CTC_CONFIG" --out "$EXP/lm_st" --char-order 6 --tune-on "$DATA/dev.jsonl" \
    --model "$EXP/$CTC_ST_SYSTEM/best"
}

selftrained() {
  on_dev_and_test decode_and_score "$ST_SYSTEM" finetuned "$EXP/$ST_SYSTEM/best"
  if [ "$CTC" = 1 ]; then rescore "$ST_SYSTEM" "$CTC_ST_SYSTEM" "$EXP/lm_st" "$ST_NBEST"
  else rescore "$ST_SYSTEM" "" "$EXP/lm" "$ST_NBEST"; fi
}

export_final() {  # the last rescored system: what a user gets
  local system limits=()
  if [ "$SELFTRAIN" = 1 ]; then
    system=$(rescored_name "$ST_SYSTEM")
    limits=(--limitation "Self-trained on its own transcripts of the dev and test audio (pseudo-labels; the \
references were never read): the test audio was heard, unlabeled, in training.")
  else
    system=$(rescored_name "$DECODER")
  fi
  "$PY" -m pipeline export --from-rescore "$EXP/$system/dev" --data "$DATA" \
    --results "$EXP/$system/dev/results.json" "$EXP/$system/test/results.json" \
    --recipe "recipes/sanskrit/run.sh (SEEDS=$SEEDS SOUP=$SOUP CTC=$CTC SELFTRAIN=$SELFTRAIN ST_NBEST=$ST_NBEST)" \
    "${limits[@]}" --out "$EXP/final"
}

report() {
  "$PY" -m pipeline report "$EXP" --out "$EXP/report" --title "Sanskrit: whisper-base transfer"
  "$PY" -m pipeline report "$EXP" --markdown-table
}

# Negative transfer: stage 3's config (architecture, regime, epochs, batches) from random weights, one seed's
# training. Under the cached-encoder regime its lower encoder layers stay at their random draw, as the
# pretrained ones stay pretrained: the two train the same weights for the same steps.
scratch_train() {
  "$PY" -m pipeline train --config "$CONFIG" model.init=scratch "output_dir=$EXP/$SCRATCH_SYSTEM" train.seed=0 \
    "${FORCE_ARGS[@]}"
}

scratch_score() {  # and seed 0's transfer decoder (same config, seed and steps), unless stage 4 scored it
  on_dev_and_test decode_and_score "$SCRATCH_SYSTEM" scratch "$EXP/$SCRATCH_SYSTEM/best"
  if [ "$DECODER" != "$SYSTEM" ]; then on_dev_and_test decode_and_score "$SYSTEM" finetuned "$EXP/$SYSTEM/best"; fi
}

source_train() {  # stage 3's config from another pretrained model, one seed's training
  "$PY" -m pipeline train --config "$CONFIG" "model.name=$SOURCE_MODEL" \
    "model.new_language_init_from=$SOURCE_INIT" "output_dir=$EXP/$SOURCE_SYSTEM" train.seed=0 "${FORCE_ARGS[@]}"
}

# Domain shift: the test clips through a telephone line, babble of the train speakers (others than the test
# speakers), pink noise and a synthetic room; ids are kept, so the report pairs each set with test.
derive_shifted() {
  local name
  for name in "${SHIFTS[@]}"; do
    shift_condition "$name" "$DATA/train.jsonl"
    "$PY" -m pipeline degrade --manifest "$DATA/test.jsonl" "${SHIFT_CONDITION[@]}" --seed 0 \
      --out "$SHIFTED/test_$name" "${FORCE_ARGS[@]}"
  done
}

score_shifted() {  # system kind model [extra decode arguments]: on every shifted test set
  local name
  for name in "${SHIFTS[@]}"; do
    decode_and_score_set "$1" "$2" "$3" "$SHIFTED/test_$name/test_$name.jsonl" "${@:4}"
  done
}

final_shifted() {  # the exported system as a user runs it (its own search and batches), on test and each set
  decode_and_score_set "$FINAL_SYSTEM" finetuned "$EXP/final" "$DATA/test.jsonl"
  score_shifted "$FINAL_SYSTEM" finetuned "$EXP/final"
}

run_stage 1 prepare "$PY" -m pipeline prepare --format cv --src "$CORPUS" --lang sa --out "$DATA" --no-progress \
  "${FORCE_ARGS[@]}"
run_stage 2 zeroshot decode_and_score zeroshot zeroshot whisper-base test --language sa
for ((seed = 0; seed < SEEDS; seed++)); do  # one marker per seed: a resumed run keeps the seeds it finished
  run_stage 3 "train.$(seed_system "$SYSTEM" "$seed")" "$PY" -m pipeline train --config "$CONFIG" \
    "output_dir=$EXP/$(seed_system "$SYSTEM" "$seed")" "train.seed=$seed" "${FORCE_ARGS[@]}"
done
if [ "$MODE" = soup ]; then
  mapfile -t SEED_MODELS < <(seed_models "$SYSTEM")
  run_stage 3 "soup.$DECODER" "$PY" -m pipeline soup --models "${SEED_MODELS[@]}" --out "$EXP/$DECODER/best"
fi
run_stage 4 "finetuned.$DECODER" finetuned
if [ "$CTC" = 1 ]; then
  run_stage 5 "train.$CTC_SYSTEM" "$PY" -m pipeline train --config "$CTC_CONFIG" "output_dir=$EXP/$CTC_SYSTEM" \
    "${FORCE_ARGS[@]}"
fi
# stages 6-8 differ with CTC, SEEDS and SOUP: each variant ($VARIANT) has its own markers
run_stage 6 "rescore.$VARIANT" lms_and_rescore
if [ "$SELFTRAIN" = 1 ]; then
  run_stage 7 "pseudolabel.$VARIANT" pseudo_label
  for ((seed = 0; seed < N_DECODERS; seed++)); do
    run_stage 7 "selftrain.$VARIANT.$(seed_system "$ST_SYSTEM" "$seed")" selftrain "$seed"
  done
  if [ "$CTC" = 1 ]; then
    run_stage 7 "selftrain.$VARIANT.$CTC_ST_SYSTEM" selftrain_ctc
  fi
  run_stage 8 "selftrained.$VARIANT" selftrained
fi
run_stage 9 report report
run_stage 10 "export.$VARIANT" export_final
if [ "$SCRATCH" = 1 ]; then
  run_stage 11 "scratch.train.$SCRATCH_SYSTEM" scratch_train
  run_stage 11 "scratch.score.$SCRATCH_SYSTEM" scratch_score
fi
if [ "$SOURCE" = 1 ]; then
  run_stage 12 "source.train.$SOURCE_SYSTEM" source_train
  run_stage 12 "source.score.$SOURCE_SYSTEM" on_dev_and_test decode_and_score "$SOURCE_SYSTEM" finetuned \
    "$EXP/$SOURCE_SYSTEM/best"
fi
if [ "$SHIFT" = 1 ]; then
  run_stage 13 shift.derive derive_shifted
  run_stage 13 "shift.$DECODER" score_shifted "$DECODER" finetuned "$EXP/$DECODER/best" --batch-size 16
  run_stage 13 "shift.final.$VARIANT" final_shifted  # the export of this variant (stage 10's marker)
fi
run_stage 14 verdict report
