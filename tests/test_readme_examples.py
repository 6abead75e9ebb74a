"""The classic worked examples of cross-entropy and entropy, computed with
fastxent.  Each expected value is the textbook formula evaluated here, and
the rounded figure quoted in the textbooks is checked too."""
import math

import numpy as np
import pytest

import fastxent as fx

# A picture of a dog, classes (dog, cat, horse, ant, bird): the true label
# is one-hot "dog" (class 0); the model predicts these probabilities.
PREDICTION = np.array([0.4, 0.3, 0.05, 0.05, 0.2])
DOG = 0


def test_dog_example_from_probabilities():
    """Only the true class's probability matters: -ln 0.4 = 0.916 nats."""
    expected = -math.log(PREDICTION[DOG])
    got = fx.cross_entropy(PREDICTION, DOG, from_logits=False)
    assert got == pytest.approx(expected, rel=1e-14)
    assert round(got, 3) == 0.916
    # The same through a one-hot probability target.
    onehot = np.eye(PREDICTION.size)[DOG]
    assert fx.cross_entropy(PREDICTION, onehot, from_logits=False) == pytest.approx(expected, rel=1e-14)
    # And as the sum over classes of -t log p, the definition.
    assert fx.cross_entropy(PREDICTION, onehot, from_logits=False, reduction="sum") == pytest.approx(
        -np.sum(onehot * np.log(PREDICTION)), rel=1e-14)


def test_dog_example_from_logits():
    """log p are logits whose softmax is p again (p sums to 1)."""
    logits = np.log(PREDICTION)
    expected = -math.log(PREDICTION[DOG])
    assert fx.cross_entropy(logits, DOG) == pytest.approx(expected, rel=1e-14)
    # Logits are defined up to a constant: shifting them changes nothing.
    assert fx.cross_entropy(logits + 1000.0, DOG) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(fx.softmax(logits), PREDICTION, rtol=1e-14)


def test_dog_example_gradient():
    """d loss / d logits = softmax - one-hot: the textbook update direction."""
    _, grad = fx.cross_entropy_with_grad(np.log(PREDICTION), DOG)
    np.testing.assert_allclose(grad, PREDICTION - np.eye(PREDICTION.size)[DOG], rtol=1e-13, atol=1e-15)


def test_better_prediction_costs_less():
    confident = np.array([0.9, 0.05, 0.02, 0.02, 0.01])
    assert fx.cross_entropy(confident, DOG, from_logits=False) < fx.cross_entropy(PREDICTION, DOG,
                                                                                   from_logits=False)
    assert fx.cross_entropy(np.eye(5)[DOG], DOG, from_logits=False) == 0.0


def test_triangles_and_circles_entropy():
    """A container with 26 triangles and 4 circles: 0.567 bits."""
    counts = np.array([26.0, 4.0])
    p = counts / counts.sum()
    expected = -(p[0] * math.log2(p[0]) + p[1] * math.log2(p[1]))
    got = fx.entropy(counts, base=2)
    assert float(got) == pytest.approx(expected, rel=1e-14)
    assert round(float(got), 3) == 0.567
    # Counts or probabilities: the same distribution.
    assert float(fx.entropy(p, base=2)) == pytest.approx(expected, rel=1e-14)
    # A fair coin is one bit; a certain outcome none.
    assert float(fx.entropy([15.0, 15.0], base=2)) == pytest.approx(1.0, rel=1e-14)
    assert float(fx.entropy([30.0, 0.0], base=2)) == 0.0


def test_integer_counts_are_rejected():
    """API.md: inputs must be floating, so integer counts raise TypeError
    (unlike scipy.stats.entropy): write [26.0, 4.0]."""
    with pytest.raises(TypeError, match=r"\bp\b"):
        fx.entropy([26, 4], base=2)


def test_binary_example_logit_zero():
    """A logit of 0 is probability 1/2: a positive target costs ln 2."""
    assert fx.binary_cross_entropy(0.0, 1.0) == pytest.approx(math.log(2), rel=1e-15)
    assert fx.binary_cross_entropy(0.0, 0.0) == pytest.approx(math.log(2), rel=1e-15)
    assert fx.binary_cross_entropy(0.5, 1.0, from_logits=False) == pytest.approx(math.log(2), rel=1e-15)
    # Its gradient: sigmoid(0) - 1 = -1/2.
    _, grad = fx.binary_cross_entropy_with_grad(np.array(0.0), 1.0)
    assert float(grad) == pytest.approx(-0.5, rel=1e-15)


def test_binary_example_multi_label():
    """Multi-label: a picture with a dog and a ball but no cat; each label is
    its own yes/no question, the loss their mean."""
    probs = np.array([0.8, 0.3, 0.6])  # dog, cat, ball
    labels = np.array([1.0, 0.0, 1.0])
    expected = -np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    assert fx.binary_cross_entropy(probs, labels, from_logits=False) == pytest.approx(expected, rel=1e-14)
    logits = np.log(probs / (1 - probs))
    assert fx.binary_cross_entropy(logits, labels) == pytest.approx(expected, rel=1e-13)


def test_kl_is_cross_entropy_minus_entropy():
    """The extra cost of coding the true distribution with the model's: the
    dog example with a soft true distribution."""
    truth = np.array([0.7, 0.2, 0.05, 0.03, 0.02])
    cross = fx.cross_entropy(PREDICTION, truth, from_logits=False)
    assert float(fx.kl_divergence(truth, PREDICTION)) == pytest.approx(cross - float(fx.entropy(truth)),
                                                                       rel=1e-12)
