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
#               at 10 and 5 dB SNR): data/demo_shifted/test_{telephone,babble10,babble5}
#   8 shifted   decode + score the fine-tuned system on them
#   9 scratch   train whisper-base's architecture from random weights, with the fine-tuning's config and
#               step budget (SCRATCH=0 skips it and stage 10)
#  10 scratchscore decode + score the from-scratch system on the test speaker
#  11 verdict   the report again, with the domain-shift and negative-transfer verdicts decided
# Adaptation to the shifted sets (ADAPT=1 runs stages 12-15; `make demo` skips them):
#  12 zeroshift  decode + score the zero-shot model on the shifted test sets too
#  13 multicond  multi-condition training: the fine-tuning with each clip played through one of the shifted
#               sets' channels (clean, telephone, babble 10 and 5 dB of other training speakers), drawn per clip
#               and epoch; decode + score it on the test set and the shifted ones (exp/demo/whisper_mc)
#  14 selftrain  self-training without labels: the dev speaker's audio through the same channels
#               (data/demo_shifted/dev_*), transcribed by the multi-condition system (its references are never
#               read), and one more short round on train + those pseudo-labels (recipes/demo/config_selftrain.yaml,
#               exp/demo/whisper_st); decode + score it on the test set and the shifted ones
#  15 adaptverdict the report again, with the adapted systems' domain-shift gaps
# Speaker folds (FOLDS=1, the default; FOLDS=0 stops after stage 11, or 15 with ADAPT=1): one test voice says
# little about the next unheard one, so every voice is tested once, in N_FOLDS=3 folds of two voices each
# (N_FOLDS=6: leave-one-speaker-out, six trainings instead of three)
#  16 folds     data/demo_folds/fold<k>: test = voices k, k+N_FOLDS ... (spk1+spk4, spk2+spk5, spk3+spk6),
#               train = the other four, no dev voice
#  17 fold<k>   train on fold k for the config's 60 steps (no dev: the last step kept, the budget of stage 3's
#               system), decode + score its test voices: exp/demo_folds/fold<k>/whisper_ft
#  18 pool      the folds pooled: per fold and pooled WER/CER with intervals, the worst voice:
#               exp/demo/whisper_ft_folds/pooled
#  19 train_all train on all six voices for the same 60 steps: exp/demo/whisper_ft_all (data/demo_folds/all)
#  20 foldsreport the report again, now with the pooled row
#  21 export_all the all-voice system with the pooled results on its card: exp/demo/final_all
# Usage: recipes/demo/run.sh [--stage N] [--stop-stage M] [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."
source recipes/lib/stages.sh
source recipes/lib/folds.sh
source recipes/lib/shift.sh
parse_stage_args "$@"

PY=${PY:-.venv/bin/python}
CORPUS=data/demo_corpus
DATA=data/demo
EXP=exp/demo
CONFIG=recipes/demo/config.yaml
SHIFTED=data/demo_shifted
SCRATCH=${SCRATCH:-1}
ADAPT=${ADAPT:-0}  # two more trainings and zero-shot decodes of noisy audio: `ADAPT=1 make demo` runs them
# The shifted test sets (stage 7), and the channels multi-condition training plays its clips through (stage 13)
SHIFTS=(telephone babble10 babble5)
CHANNELS="[clean,telephone,babble10,babble5]"
SYNTHETIC="Trained and tested on synthetic speech (espeak-ng voices): not a recognizer of real Punjabi speech."
# Speaker folds (stages 16-21; what recipes/lib/folds.sh reads)
FOLDS=${FOLDS:-1}
N_FOLDS=${N_FOLDS:-3}
SYSTEM=whisper_ft  # stage 3's system: the folds estimate how its recipe does on unheard voices
DEV_SPEAKERS=0     # every voice a fold does not test trains it, for the config's steps (stage 3's budget)
FOLD_DATA=data/demo_folds
FOLD_EXP=exp/demo_folds  # outside $EXP: the folds' systems share one name, which `report $EXP` refuses
POOLED=$EXP/${SYSTEM}_folds/pooled
FOLDS_STAGE=16
TRAIN_BUDGET="the config's 60 steps"
FOLD_TRAIN_ARGS=(train.eval_every=0)  # no dev voice: nothing to evaluate, the last step is kept
FOLD_DECODE_ARGS=()                   # the folds decode as stage 4 does

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
  --limitation "$SYNTHETIC" --out "$EXP/final"

# Domain shift: the same test utterances through a telephone channel and in babble of the four training
# voices (other speakers than the test voice); ids are kept, so the report pairs them with the clean ones.
derive_shifted() {  # split [pool]: the split's utterances through each channel of SHIFTS; with "pool", each
  # set's ids get its channel as a suffix, so that the sets can be pooled (the unlabeled audio of stage 14)
  local split="$1" pool="${2:-}" name
  local -a ids
  for name in "${SHIFTS[@]}"; do
    shift_condition "$name" "$DATA/train.jsonl"
    ids=()
    if [ "$pool" = pool ]; then ids=(--id-suffix "_$name"); fi
    "$PY" -m pipeline degrade --manifest "$DATA/$split.jsonl" "${SHIFT_CONDITION[@]}" --seed 0 "${ids[@]}" \
      --out "$SHIFTED/${split}_$name" "${FORCE_ARGS[@]}"
  done
}
score_shifted() {  # system kind model: on every shifted test set
  local set
  for set in "${SHIFTS[@]/#/test_}"; do
    decode_and_score "$1" "$2" "$3" "$SHIFTED/$set/$set.jsonl"
  done
}
run_stage 7 shift derive_shifted test
run_stage 8 shifted score_shifted whisper_ft finetuned "$EXP/whisper_ft/best"
# Negative transfer: the fine-tuning's config (architecture, regime, steps) from random weights.
if [ "$SCRATCH" = 1 ]; then
  run_stage 9 scratch "$PY" -m pipeline train --config "$CONFIG" model.init=scratch \
    output_dir="$EXP/whisper_scratch" "${FORCE_ARGS[@]}"
  run_stage 10 scratchscore decode_and_score whisper_scratch scratch "$EXP/whisper_scratch/best"
fi
run_stage 11 verdict report

# Adaptation to the shifted sets. Multi-condition training: the fine-tuning's config with the shifted sets'
# channels as augmentation, and twice its steps (each clip is heard clean a quarter of the time).
multicondition() {
  "$PY" -m pipeline train --config "$CONFIG" "augment.channels=$CHANNELS" train.max_steps=120 \
    output_dir="$EXP/whisper_mc" "${FORCE_ARGS[@]}"
  decode_and_score whisper_mc finetuned "$EXP/whisper_mc/best"
  score_shifted whisper_mc finetuned "$EXP/whisper_mc/best"
}
# Self-training: the dev speaker's shifted audio, unlabeled (pseudo-label never reads its text), transcribed
# by the multi-condition system; it trains one more short round on train + those transcripts.
selftrain() {
  derive_shifted dev pool
  local set unlabeled=() hyps=()
  for set in "${SHIFTS[@]/#/dev_}"; do
    "$PY" -m pipeline decode --model "$EXP/whisper_mc/best" --manifest "$SHIFTED/$set/$set.jsonl" \
      --out "$EXP/whisper_mc/$set/hyps.jsonl" --batch-size 16
    unlabeled+=("$SHIFTED/$set/$set.jsonl")
    hyps+=("$EXP/whisper_mc/$set/hyps.jsonl")
  done
  "$PY" -m pipeline pseudo-label --labeled "$DATA/train.jsonl" --unlabeled "${unlabeled[@]}" --hyps "${hyps[@]}" \
    --out "$EXP/selftrain/data" --lang pa "${FORCE_ARGS[@]}"
  "$PY" -m pipeline train --config recipes/demo/config_selftrain.yaml "augment.channels=$CHANNELS" "${FORCE_ARGS[@]}"
  decode_and_score whisper_st finetuned "$EXP/whisper_st/best"
  score_shifted whisper_st finetuned "$EXP/whisper_st/best"
}
if [ "$ADAPT" = 1 ]; then
  run_stage 12 zeroshift score_shifted zeroshot zeroshot whisper-base
  run_stage 13 multicond multicondition
  run_stage 14 selftrain selftrain
  run_stage 15 adaptverdict report
fi
[ "$FOLDS" = 1 ] || exit 0

run_stage 16 folds "$PY" -m pipeline folds --data "$DATA" --out "$FOLD_DATA" --dev-speakers "$DEV_SPEAKERS" \
  --folds "$N_FOLDS"
run_fold_stage 17
run_stage 18 pool pool_folds
run_stage 19 train_all train_all
run_stage 20 foldsreport report
run_stage 21 export_all "$PY" -m pipeline export --model "$EXP/${SYSTEM}_all/best" --batch-size 16 --data "$FOLD_DATA/all" \
  --results "$POOLED/results.json" --recipe "make demo (recipes/demo/run.sh, N_FOLDS=$N_FOLDS speaker folds)" \
  --license other --limitation "$SYNTHETIC" \
  --limitation "Trained on all six voices for $(trained_for); its results are pooled over $N_FOLDS speaker folds: every voice tested once, by a system of the same recipe trained on the voices of the other folds." \
  --out "$EXP/final_all"
