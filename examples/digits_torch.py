"""The digits MLP of digits_numpy.py, trained with PyTorch and fastxent's loss.

    python examples/digits_torch.py --plot digits_torch.png

``fastxent.torch.CrossEntropyLoss`` replaces ``torch.nn.CrossEntropyLoss``:
its forward computes the loss and the gradient in one fused pass and
``loss.backward()`` hands that gradient to autograd without another pass.
"""
import time

import torch

import fastxent
import fastxent.torch as fxt

import digits_data


def main(argv=None):
    parser = digits_data.parser(__doc__.splitlines()[0], epochs=40)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: a 64x64 layer is too small to share, "
                             "and on a busy machine waking threads costs more than the work)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    X_train, y_train, X_test, y_test = (torch.from_numpy(a) for a in digits_data.load(args.seed))
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(X_train.shape[1], args.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, 10),
    )
    criterion = fxt.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"digits: {len(X_train)} train / {len(X_test)} test images, MLP 64-{args.hidden}-10, "
          f"fastxent {fastxent.__version__}, torch {torch.__version__}")
    train_curve, test_curve = [], []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(X_train), generator=generator)
        losses = []
        for i in range(0, len(order), args.batch_size):
            index = order[i:i + args.batch_size]
            optimizer.zero_grad()
            loss = criterion(model(X_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():  # the adapter then computes the loss only
            logits = model(X_test)
            test_loss = criterion(logits, y_test).item()
            test_acc = (logits.argmax(dim=1) == y_test).double().mean().item()
        train_curve.append(sum(losses) / len(losses))
        test_curve.append(test_loss)
        print(f"epoch {epoch:3d}  train loss {train_curve[-1]:.4f}  test loss {test_loss:.4f}  "
              f"test accuracy {test_acc:.4f}")
    print(f"trained in {time.perf_counter() - start:.2f} s")
    print(f"final test accuracy: {test_acc:.4f}")
    if args.plot:
        digits_data.plot(args.plot, train_curve, test_curve, "digits MLP, PyTorch + fastxent.torch")
        print(f"loss curve written to {args.plot}")
    return test_acc


if __name__ == "__main__":
    main()
