# Speaker-fold stages shared by the recipes (sourced after stages.sh, not executed): `pipeline folds`
# wrote $FOLD_DATA/fold1 ... foldK and $FOLD_DATA/all; each fold trains, decodes and scores its test
# speakers, the folds are pooled into one estimate, and a system is trained on every speaker.
#
#   source recipes/lib/folds.sh
#   run_stage 7 folds "$PY" -m pipeline folds --data "$DATA" --out "$FOLD_DATA" --dev-speakers "$DEV_SPEAKERS"
#   run_fold_stage 8                                   # one run_stage per fold: fold<k>.$SYSTEM
#   run_stage 9 "pool.$SYSTEM" pool_folds
#   run_stage 10 "train_all.$SYSTEM" train_all
#   ... --limitation "Trained on every speaker for $(trained_for) ..."
#
# The recipe sets, before the stages run:
#   PY, CONFIG, SYSTEM, EXP    the interpreter, the training config, the system's name, the experiment folder
#   FOLD_DATA, FOLD_EXP        the folds' data, and where each fold's system goes ($FOLD_EXP/fold<k>/$SYSTEM:
#                              outside $EXP, since `report $EXP` refuses two systems of one name)
#   POOLED                     the pooled results ($EXP/${SYSTEM}_folds/pooled)
#   FOLDS_STAGE                the number of the stage that writes the folds (named when they are missing)
#   DEV_SPEAKERS               the folds' dev speakers (0: each fold trains for the config's budget, the
#                              last step kept); with dev speakers, dev is evaluated every FOLD_EVAL_EVERY
#                              steps, best/ = the lowest dev CER, and the all-speaker system trains for the
#                              median of the folds' best steps
#   TRAIN_BUDGET               how long the config trains, in words, for the all-speaker system's card
#   FOLD_TRAIN_ARGS            an array of more overrides for each fold's training (may be empty)
#   FOLD_DECODE_ARGS           an array of more arguments for each fold's decode (may be empty), the
#                              same the final system is exported with
# and FORCE_ARGS comes from stages.sh.

fold_count() {  # the folds the folds stage wrote
  local n
  n=$(find "$FOLD_DATA" -mindepth 1 -maxdepth 1 -type d -name 'fold*' 2>/dev/null | wc -l)
  if [ "$n" -eq 0 ]; then echo "no folds in $FOLD_DATA: run stage $FOLDS_STAGE first" >&2; return 1; fi
  echo "$n"
}

train_decode_score_fold() {  # k
  local data="$FOLD_DATA/fold$1" exp="$FOLD_EXP/fold$1/$SYSTEM"
  local eval_args=()
  [ "$DEV_SPEAKERS" = 0 ] || eval_args=("train.eval_every=$FOLD_EVAL_EVERY")
  "$PY" -m pipeline train --config "$CONFIG" "output_dir=$exp" "data.manifests_dir=$data" \
    "${eval_args[@]}" "${FOLD_TRAIN_ARGS[@]}" "${FORCE_ARGS[@]}"
  "$PY" -m pipeline decode --model "$exp/best" --manifest "$data/test.jsonl" --out "$exp/test/hyps.jsonl" --batch-size 16 \
    "${FOLD_DECODE_ARGS[@]}"
  "$PY" -m pipeline score --manifest "$data/test.jsonl" --hyps "$exp/test/hyps.jsonl" --system "$SYSTEM" \
    --kind finetuned
}

run_fold_stage() {  # n: train, decode and score every fold as stage n, one marker per fold
  local k n_folds
  if [ "$STAGE" -le "$1" ] && [ "$STOP_STAGE" -ge "$1" ]; then
    n_folds=$(fold_count)
    for k in $(seq 1 "$n_folds"); do
      run_stage "$1" "fold$k.$SYSTEM" train_decode_score_fold "$k"
    done
  fi
}

pool_folds() {
  local k n folds=()
  n=$(fold_count)
  for k in $(seq 1 "$n"); do folds+=("$FOLD_EXP/fold$k/$SYSTEM/test"); done
  "$PY" -m pipeline score --pool "${folds[@]}" --out "$POOLED" --system "${SYSTEM}_folds"
}

train_all() {  # every speaker, as the folds trained (with dev speakers: for their median best step); the last step is kept
  local step_args=()
  [ "$DEV_SPEAKERS" = 0 ] || step_args=("train.max_steps=$(cat "$POOLED/median_best_step")")
  "$PY" -m pipeline train --config "$CONFIG" "output_dir=$EXP/${SYSTEM}_all" "data.manifests_dir=$FOLD_DATA/all" \
    "${step_args[@]}" train.eval_every=0 "${FORCE_ARGS[@]}"
}

trained_for() {  # how the all-speaker system was trained, for its card
  if [ "$DEV_SPEAKERS" = 0 ]; then echo "$TRAIN_BUDGET"; else echo "$(cat "$POOLED/median_best_step") steps"; fi
}
