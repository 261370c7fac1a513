#!/usr/bin/env python3
"""Train a small MLP classifier on scikit-learn's handwritten digits; report validation accuracy each epoch.

Runs the same under hpc_hpo (reports go to the trial's metrics file) and standalone (reports are
printed). The data set ships with scikit-learn: nothing is downloaded.

    python launchers/train_mlp.py --learning_rate 0.001 --width 64 --alpha 1e-4 --batch_size 32 --epochs 27

Under a pausing scheduler (promotion ASHA, PASHA, synchronous Hyperband) --epochs is the run's target
(resource.max_resource_attr) and a resumed run gets --resume_from and --checkpoint_dir.

In a multi-task trial (configs/slurm_multinode.yaml: one srun task per node) every rank trains the same
model; rank 0 alone saves the checkpoint, and only its reports are recorded.
"""
from __future__ import annotations

import argparse
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from hpc_hpo import checkpoint_dir, rank, report, target_resource, trial_dir

CHECKPOINT_FILE = "model.pkl"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=64, help="hidden units per layer")
    parser.add_argument("--depth", type=int, default=1, help="hidden layers")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 regularisation")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume_from", type=int, default=0, help="epoch of the checkpoint to resume from")
    parser.add_argument("--checkpoint_dir", type=Path, default=None)
    return parser.parse_args()


def save_checkpoint(directory: Path, model: MLPClassifier, epoch: int) -> None:
    """Atomic: a run cancelled mid-write leaves the previous checkpoint intact."""
    temporary = directory / (CHECKPOINT_FILE + ".tmp")
    with open(temporary, "wb") as handle:
        pickle.dump({"model": model, "epoch": epoch}, handle)
    os.replace(temporary, directory / CHECKPOINT_FILE)


def load_checkpoint(directory: Path, epoch: int) -> MLPClassifier:
    with open(directory / CHECKPOINT_FILE, "rb") as handle:
        saved = pickle.load(handle)  # our own file, written by save_checkpoint
    if saved["epoch"] != epoch:
        raise SystemExit(f"checkpoint in {directory} is at epoch {saved['epoch']}, asked to resume from {epoch}")
    return saved["model"]


def main() -> None:
    args = parse_args()
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data, digits.target, test_size=0.3, random_state=args.seed, stratify=digits.target)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    checkpoints = args.checkpoint_dir or checkpoint_dir()
    if args.resume_from:
        model = load_checkpoint(checkpoints, args.resume_from)
    else:
        model = MLPClassifier(hidden_layer_sizes=(args.width,) * args.depth, alpha=args.alpha,
                              learning_rate_init=args.learning_rate, batch_size=args.batch_size,
                              random_state=args.seed)
    classes = np.unique(digits.target)
    standalone = trial_dir() is None
    epoch = args.resume_from
    # Run to the target: --epochs, or further when a promotion raises target_resource() in report().
    while epoch < max(args.epochs, target_resource() or 0):
        epoch += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)  # one pass over the training set
        accuracy = float(model.score(x_val, y_val))
        if standalone:
            print(f"epoch {epoch}: accuracy {accuracy:.4f}")
            continue
        # Checkpoint before reporting: at a rung, report() may pause this run and end the process. In a
        # multi-task trial (slurm_multinode.yaml) every rank trains the same model; rank 0 alone writes it,
        # as two writers of one checkpoint file would race each other.
        if rank() == 0:
            save_checkpoint(checkpoints, model, epoch)
        report(epoch=epoch, accuracy=accuracy, loss=float(model.loss_))


if __name__ == "__main__":
    main()
