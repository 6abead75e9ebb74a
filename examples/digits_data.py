"""Shared by the digits examples: the data split, the CLI and the loss-curve plot."""
import argparse

import numpy as np


def load(seed=0, dtype=np.float32):
    """scikit-learn's bundled 8x8 digits (no download), standardised, split 75/25.

    Returns X_train, y_train, X_test, y_test (X: (n, 64) `dtype`, y: int64).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0) + 1.0  # +1: some border pixels are always 0
    X_train = ((X_train - mean) / std).astype(dtype)
    X_test = ((X_test - mean) / std).astype(dtype)
    return X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64)


def parser(description, epochs):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training set (default {epochs})")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the MLP")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", metavar="PNG", help="write the loss curve to this PNG file")
    return p


def plot(path, train_loss, test_loss, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, marker="o", ms=3, label="train (mean over the epoch's batches)")
    ax.plot(epochs, test_loss, marker="s", ms=3, label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
