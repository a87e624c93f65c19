"""Frozen-feature evaluation: extraction, linear probe, kNN probe and VSSL's uncertainty report.

Sub-modules (import them directly; this package import stays light):

- ``features``: the ``train.npz`` / ``test.npz`` format, validation and atomic I/O;
- ``metrics``: top-k accuracy (percent) with deterministic tie-breaking;
- ``knn``: cosine kNN with temperature-weighted votes (InstDisc/DINO), chunked;
- ``linear``: multinomial logistic regression probe (L-BFGS, weight decay picked on validation);
- ``uncertainty``: mean predicted variance and its error-detection AUROC;
- ``probe``: runs every probe on a feature folder -> one flat results dict;
- ``extract``: runs a frozen checkpoint over a dataset -> feature files.
"""
