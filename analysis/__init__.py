"""Fit scaling laws to the results of a sweep (or any table of runs) with NumPy and SciPy only.

laws (the law forms) · lbfgs (batched L-BFGS) · fit (Huber grid fit) · bootstrap (uncertainty) ·
frontier, isoflop, allocation (Chinchilla's three approaches) · returns (diminishing returns) ·
inputs (readers) · pipeline (everything for one set of runs) · report, plots (outputs) ·
download (the Chinchilla data) · cli (`scaling-fit`). The package never imports JAX or the
training code, so it runs on a laptop.
"""
