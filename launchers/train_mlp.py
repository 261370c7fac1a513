#!/usr/bin/env python3
"""Train a small MLP classifier on scikit-learn's handwritten digits; report validation accuracy each epoch.

Runs the same under hpc_hpo (reports go to the trial's metrics file) and standalone (reports are
printed). The data set ships with scikit-learn: nothing is downloaded.

    python launchers/train_mlp.py --learning_rate 0.001 --width 64 --alpha 1e-4 --batch_size 32 --epochs 27
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from hpc_hpo import report, trial_dir


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=64, help="hidden units per layer")
    parser.add_argument("--depth", type=int, default=1, help="hidden layers")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 regularisation")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data, digits.target, test_size=0.3, random_state=args.seed, stratify=digits.target)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    model = MLPClassifier(hidden_layer_sizes=(args.width,) * args.depth, alpha=args.alpha,
                          learning_rate_init=args.learning_rate, batch_size=args.batch_size,
                          random_state=args.seed)
    classes = np.unique(digits.target)
    standalone = trial_dir() is None
    for epoch in range(1, args.epochs + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)  # one pass over the training set
        accuracy = float(model.score(x_val, y_val))
        if standalone:
            print(f"epoch {epoch}: accuracy {accuracy:.4f}")
        else:
            report(epoch=epoch, accuracy=accuracy, loss=float(model.loss_))


if __name__ == "__main__":
    main()
