#!/usr/bin/env bash
# Usage, from the repository root: bash tuning/experiments/issue21_final.sh encoder|rnn (after the search of docs/experiments.md)
# Issue 21's final runs for one generator ($1: encoder|rnn): the search's default and best configs, 3 seeds
# each, plus the best config with the adversarial weight flipped (0 <-> 0.5), each trained on the 74 train
# songs with 20 held out (val_sdr); default and best scored once on the 50 MUSDB18-7s test tracks.
set -u
G=$1
cd "$(dirname "$0")/../.." && . .venv/bin/activate
S=runs/s21/search_$G; O=runs/s21/$G; mkdir -p $O
weight=$(python -c "import json; print(json.load(open('$S/best_config.json'))['train']['adversarial_weight'])")
flip=$(python -c "print(0.5 if float('$weight') == 0 else 0.0)")
for seed in 42 1 2; do
  for kind in ${KINDS:-default best flip}; do
    out=$O/${kind}_s$seed
    case $kind in
      default) args=(--config paper --set model.generator=$G --data musdb:../shared/data/musdb18-7s
                     --set data.validation_tracks=20 --set train.pretrain_epochs=4 --set train.gan_epochs=2) ;;
      best) args=(--config $S/best_config.json) ;;
      flip) args=(--config $S/best_config.json --set train.adversarial_weight=$flip) ;;
    esac
    [ -f $out/history.csv ] && [ -d $out/best_model ] || python -m svsgan_tf.train "${args[@]}" --seed $seed \
      --out $out --no-tensorboard --quiet > $out.log 2>&1
    echo "$(date +%T) trained $out" >> $O/driver.log
  done
  for kind in default best; do
    out=$O/${kind}_s$seed
    [ -f $out/eval_test/summary.json ] || python -m svsgan_tf.evaluate --data musdb:../shared/data/musdb18-7s \
      --model $out/best_model --out $out/eval_test --quiet > $out.eval.log 2>&1
    echo "$(date +%T) scored $out" >> $O/driver.log
  done
done
