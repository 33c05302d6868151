"""Issue 21's final rows for each generator: held-out val_sdr (best epoch) of default / best / best with the
adversarial weight flipped, 3 seeds; test-set museval of default and best, 3 seeds, with mixture and oracle
rows and a paired Wilcoxon test over the 50 tracks (each track's SDR averaged over the seeds)."""
import csv, json, sys
import numpy as np
from svsgan_tf.evaluation.compare import load_summary
from svsgan_tf.evaluation.bss import paired_comparison

seeds = (42, 1, 2)
out = {}
for G in sys.argv[1:]:
    O = f"runs/s21/{G}"
    rows = {}
    for kind in ("default", "best", "flip"):
        vals, last = [], []
        for s in seeds:
            try:
                with open(f"{O}/{kind}_s{s}/history.csv") as f:
                    history = [float(r["val_sdr"]) for r in csv.DictReader(f) if r["val_sdr"]]
                vals.append(max(history))
                last.append(history[-1])
            except OSError:
                pass
        if vals:
            print(f"{G} held-out val_sdr {kind}: best epoch {['%.3f' % v for v in vals]} mean {np.mean(vals):.3f} +- {np.std(vals, ddof=1) if len(vals) > 1 else 0:.3f}; "
                  f"last epoch {['%.3f' % v for v in last]} mean {np.mean(last):.3f} +- {np.std(last, ddof=1) if len(last) > 1 else 0:.3f}")
            out[f"{G}/heldout/{kind}"] = {"best_epoch": vals, "last_epoch": last}
    summaries = {k: [load_summary(f"{O}/{k}_s{s}/eval_test") for s in seeds] for k in ("default", "best")}
    tracks = sorted(summaries["default"][0]["tracks"])
    for target in ("vocals", "accompaniment"):
        for k, ss in summaries.items():
            per_seed = np.array([[x["tracks"][t][target]["SDR"] for t in tracks] for x in ss])
            medians = [float(np.nanmedian(p)) for p in per_seed]
            rows[(k, target)] = np.nanmean(per_seed, axis=0)
            print(f"{G} test {target} {k}: medians {['%.2f' % m for m in medians]} mean {np.mean(medians):.3f} +- {np.std(medians, ddof=1):.3f}")
            out[f"{G}/test/{target}/{k}"] = medians
        for ref in ("mixture", "oracle"):
            r = summaries["default"][0]["reference"][ref]["tracks"]
            m = float(np.nanmedian([r[t][target]["SDR"] for t in tracks]))
            print(f"{G} test {target} {ref}: {m:.2f}")
            out[f"{G}/test/{target}/{ref}"] = m
        p = paired_comparison(rows[("best", target)], rows[("default", target)])
        print(f"  {G} {target} best vs default: mean {p['mean_delta']:+.3f} median {p['median_delta']:+.3f} better {p['better']}/{p['tracks']} p={p['p_value']:.3g}")
        out[f"{G}/test/{target}/best-vs-default"] = p
json.dump(out, open("runs/s21/aggregate.json", "w"), indent=2)
