"""Least-squares fit of a search's val_sdr on its hyperparameters: effect sizes with standard errors."""
import json, sys
import numpy as np

for path in sys.argv[1:]:
    trials = [t for t in json.load(open(path)) if t.get("val_sdr") is not None and t["val_sdr"] > 0]   # diverged ones apart
    optimizers = sorted({t["optimizer"] for t in trials})
    base = "adam" if "adam" in optimizers else optimizers[0]
    names = ["intercept", "log2(batch_size)", "log10(g_learning_rate)", "log10(g_lr)^2", "adversarial_weight"] + \
            [f"optimizer={o} (vs {base})" for o in optimizers if o != base]
    X = np.array([[1.0, np.log2(t["batch_size"]), np.log10(t["g_learning_rate"]), np.log10(t["g_learning_rate"]) ** 2,
                   t["adversarial_weight"]] + [float(t["optimizer"] == o) for o in optimizers if o != base] for t in trials])
    y = np.array([t["val_sdr"] for t in trials])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = len(y) - X.shape[1]
    sigma2 = resid @ resid / max(dof, 1)
    se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(X.T @ X)))
    print(f"{path}: {len(y)} trials, residual std {np.sqrt(sigma2):.3f} dB, R^2 {1 - resid @ resid / ((y - y.mean()) @ (y - y.mean())):.2f}")
    for n, c, s in zip(names, coef, se):
        print(f"  {n:32s} {c:+.3f} +- {s:.3f}")
