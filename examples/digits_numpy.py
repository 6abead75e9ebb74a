"""A one-hidden-layer MLP trained in NumPy on the 8x8 digits, with fastxent's loss.

    python examples/digits_numpy.py --plot digits_numpy.png

Every array a training step touches is allocated once, before training:
the forward and backward passes write into preallocated buffers (``out=``)
and ``fastxent.cross_entropy_with_grad(logits, y, out=grad)`` computes the
loss and d loss / d logits in one pass over the logits, into ``grad``.
"""
import time

import numpy as np

import fastxent

import digits_data

N_CLASSES = 10


class MLP:
    """x -> relu(x W1 + b1) W2 + b2, trained by SGD with momentum."""

    def __init__(self, n_in, n_hidden, n_out, batch_size, rng, dtype=np.float32):
        # He initialisation for the ReLU layer, Glorot-like for the output
        self.params = [
            (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(dtype),
            np.zeros(n_hidden, dtype),
            (rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)).astype(dtype),
            np.zeros(n_out, dtype),
        ]
        self.grads = [np.empty_like(p) for p in self.params]
        self.velocity = [np.zeros_like(p) for p in self.params]
        # per-step buffers, sized for a full batch (a shorter last batch uses leading rows)
        self.x = np.empty((batch_size, n_in), dtype)
        self.y = np.empty(batch_size, np.int64)
        self.hidden = np.empty((batch_size, n_hidden), dtype)
        self.active = np.empty((batch_size, n_hidden), bool)
        self.d_hidden = np.empty((batch_size, n_hidden), dtype)
        self.logits = np.empty((batch_size, n_out), dtype)
        self.d_logits = np.empty((batch_size, n_out), dtype)

    def forward(self, x, hidden, logits):
        W1, b1, W2, b2 = self.params
        np.matmul(x, W1, out=hidden)
        hidden += b1
        np.maximum(hidden, 0, out=hidden)
        np.matmul(hidden, W2, out=logits)
        logits += b2
        return logits

    def step(self, X, y, index, lr, momentum=0.9, weight_decay=1e-4):
        """One SGD step on the rows `index` of (X, y); returns the batch's mean loss."""
        b = len(index)
        x, labels = self.x[:b], self.y[:b]
        np.take(X, index, axis=0, out=x, mode="clip")  # "raise" would buffer a copy
        np.take(y, index, out=labels, mode="clip")
        hidden, logits, d_logits = self.hidden[:b], self.logits[:b], self.d_logits[:b]
        self.forward(x, hidden, logits)
        # loss and gradient in one pass, the gradient into the preallocated d_logits
        loss, _ = fastxent.cross_entropy_with_grad(logits, labels, out=d_logits)

        W1, b1, W2, b2 = self.params
        dW1, db1, dW2, db2 = self.grads
        np.matmul(hidden.T, d_logits, out=dW2)
        np.sum(d_logits, axis=0, out=db2)
        d_hidden, active = self.d_hidden[:b], self.active[:b]
        np.matmul(d_logits, W2.T, out=d_hidden)
        np.greater(hidden, 0, out=active)
        np.multiply(d_hidden, active, out=d_hidden)
        np.matmul(x.T, d_hidden, out=dW1)
        np.sum(d_hidden, axis=0, out=db1)

        for p, g, v in zip(self.params, self.grads, self.velocity):
            g += weight_decay * p
            v *= momentum
            v -= lr * g
            p += v
        return loss

    def evaluate(self, X, y):
        """(mean loss, accuracy) over a data set."""
        hidden = np.empty((len(X), self.params[0].shape[1]), X.dtype)
        logits = np.empty((len(X), self.params[2].shape[1]), X.dtype)
        self.forward(X, hidden, logits)
        return fastxent.cross_entropy(logits, y), float(np.mean(logits.argmax(axis=1) == y))


def main(argv=None):
    args = digits_data.parser(__doc__.splitlines()[0], epochs=40).parse_args(argv)
    X_train, y_train, X_test, y_test = digits_data.load(args.seed)
    rng = np.random.default_rng(args.seed)
    model = MLP(X_train.shape[1], args.hidden, N_CLASSES, args.batch_size, rng)
    print(f"digits: {len(X_train)} train / {len(X_test)} test images, MLP 64-{args.hidden}-10, "
          f"fastxent {fastxent.__version__}")
    train_curve, test_curve = [], []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(X_train))
        losses = [model.step(X_train, y_train, order[i:i + args.batch_size], args.lr)
                  for i in range(0, len(order), args.batch_size)]
        test_loss, test_acc = model.evaluate(X_test, y_test)
        train_curve.append(float(np.mean(losses)))
        test_curve.append(test_loss)
        print(f"epoch {epoch:3d}  train loss {train_curve[-1]:.4f}  test loss {test_loss:.4f}  "
              f"test accuracy {test_acc:.4f}")
    print(f"trained in {time.perf_counter() - start:.2f} s")
    print(f"final test accuracy: {test_acc:.4f}")
    if args.plot:
        digits_data.plot(args.plot, train_curve, test_curve, "digits MLP, NumPy + fastxent")
        print(f"loss curve written to {args.plot}")
    return test_acc


if __name__ == "__main__":
    main()
