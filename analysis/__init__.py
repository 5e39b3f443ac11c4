"""Fit scaling laws to the results of a sweep (or any table of runs) with NumPy and SciPy.

laws (the law forms) · lbfgs (batched L-BFGS) · fit (Huber grid fit) · bootstrap (uncertainty) ·
frontier, isoflop, allocation (Chinchilla's three approaches) · returns (diminishing returns) ·
diagnostics (degenerate fits) · backtest (held-out sizes, prediction intervals) · compare (two
recipes) · inputs (readers) · pipeline (everything for one set of runs) · report, plots (outputs) ·
download (the Chinchilla data) · cli (`scaling-fit`). The package never imports the training code;
it imports JAX (on the CPU) only to derive the gradients of a law given as a formula
(`laws.formula_law`), so it runs on a laptop.
"""
