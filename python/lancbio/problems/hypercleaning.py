"""Data hyper-cleaning (LancBiO paper, section 4.2).

A linear softmax classifier is trained on ``N`` samples whose labels are partly corrupted;
the upper level learns one weight ``sigmoid(x_i)`` per training sample so that the
classifier does well on a clean validation set::

    g(x, y) = (1/N) sum_i sigmoid(x_i) CE(W a_i + bias, label_i) + reg ||y||^2
    f(x, y) = (1/N_val) sum_j CE(W a_j + bias, label_j)     (validation samples)

Layout of ``y`` (length ``C * (p + 1)`` for ``C`` classes and ``p`` features): the
row-major flattening of the ``C x (p + 1)`` matrix ``[W | bias]``, i.e.
``y.reshape(C, p + 1)[:, :p]`` is ``W`` and ``y.reshape(C, p + 1)[:, p]`` is ``bias``.
Class ``k`` owns the contiguous slice ``y[k*(p+1) : (k+1)*(p+1)]``, its bias last.
"""

import gzip
import os

import numpy as np

__all__ = ["HyperCleaning"]


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow, and ``1 - sigmoid(x)`` to full precision."""
    small = np.exp(-np.abs(x))
    denominator = 1.0 + small
    high = 1.0 / denominator
    low = small / denominator
    positive = x >= 0
    s = np.where(positive, high, low)
    s_complement = np.where(positive, low, high)
    return s, s_complement


def _log_softmax(logits):
    """Row-wise log-softmax of ``logits`` (m x C), computed in place and returned."""
    logits -= logits.max(axis=1, keepdims=True)
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits


def _augment(features, name):
    """``[features, 1]`` as a C-contiguous float64 (m x (p+1)) matrix."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples x features) array, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name} contains non-finite values")
    augmented = np.empty((features.shape[0], features.shape[1] + 1))
    augmented[:, :-1] = features
    augmented[:, -1] = 1.0
    return augmented


def _labels(labels, count, name):
    """``labels`` as an int64 vector of length ``count`` with non-negative integer values."""
    array = np.asarray(labels)
    if array.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {array.shape}")
    if array.size and not np.all(array == np.round(array)):
        raise ValueError(f"{name} must hold integer class indices")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative class indices")
    return array


def _vector(name, value, size):
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {array.shape}")
    return array


# IDX data type codes (third byte of the magic number); MNIST-format data uses 0x08.
_IDX_UNSIGNED_BYTE = 0x08


def _read_idx(path, expected_ndim):
    """Array stored in an MNIST-format IDX file (plain or gzip, by the ``.gz`` suffix).

    Header: two zero bytes, the data type code (only 0x08, unsigned byte, is accepted),
    the number of dimensions, then one big-endian uint32 per dimension; the data follows
    in row-major order and must fill the rest of the file exactly.
    Raises ValueError when the file does not match.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot be read as an IDX file ({error})") from error
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (must start with two zero bytes)"
        )
    if raw[2] != _IDX_UNSIGNED_BYTE:
        raise ValueError(
            f"{path}: unsupported IDX data type code 0x{raw[2]:02x} "
            f"(only 0x08, unsigned byte, is supported)"
        )
    ndim = raw[3]
    if ndim != expected_ndim:
        raise ValueError(f"{path}: expected {expected_ndim} dimensions, the header says {ndim}")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(raw) - header_size
    if actual != expected:
        raise ValueError(
            f"{path}: header announces shape {shape} ({expected} bytes of data) "
            f"but the file holds {actual}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx(directory, name):
    """Path of ``name`` or ``name.gz`` in ``directory``, preferring the plain file."""
    tried = []
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
        tried.append(path)
    raise FileNotFoundError(f"IDX file not found; tried: {', '.join(tried)}")


class HyperCleaning:
    """The data hyper-cleaning problem (docs/algorithms.md section 7).

    Parameters
    ----------
    train_features : array_like, shape (N, p)
    train_labels : array_like of int, shape (N,)
        Possibly corrupted labels in ``[0, C)``.
    val_features : array_like, shape (N_val, p)
    val_labels : array_like of int, shape (N_val,)
        Clean labels.
    test_features, test_labels : array_like, optional
        Held-out set for ``test_accuracy`` and ``test_loss``.
    num_classes : int, optional
        ``C``; by default one more than the largest label given.
    reg : float
        Coefficient of ``||y||^2`` in ``g`` (default 0.01, the paper's value).

    Attributes
    ----------
    dx : int
        ``N``, one variable per training sample.
    dy : int
        ``C * (p + 1)``; see the module docstring for the layout of ``y``.
    num_classes, num_features : int
        ``C`` and ``p``.
    train_features, val_features, test_features : ndarray, read-only views
    train_labels, val_labels, test_labels : ndarray of int64
    corrupted_mask : ndarray of bool, shape (N,), or None
        Which training labels were corrupted (set by ``digits`` and ``from_idx``).
    clean_train_labels : ndarray of int64, shape (N,), or None
        Training labels before corruption (set by ``digits`` and ``from_idx``).

    All methods take float64 vectors, leave them unchanged and return new arrays.
    """

    def __init__(
        self,
        train_features,
        train_labels,
        val_features,
        val_labels,
        test_features=None,
        test_labels=None,
        num_classes=None,
        reg=0.01,
    ):
        self._train = _augment(train_features, "train_features")
        self._val = _augment(val_features, "val_features")
        num_train, width = self._train.shape
        if num_train == 0 or self._val.shape[0] == 0:
            raise ValueError("the training and validation sets must not be empty")
        if self._val.shape[1] != width:
            raise ValueError(
                f"val_features has {self._val.shape[1] - 1} features, train_features {width - 1}"
            )
        self.train_labels = _labels(train_labels, num_train, "train_labels")
        self.val_labels = _labels(val_labels, self._val.shape[0], "val_labels")
        if (test_features is None) != (test_labels is None):
            raise ValueError("give both test_features and test_labels, or neither")
        if test_features is not None:
            self._test = _augment(test_features, "test_features")
            if self._test.shape[1] != width:
                raise ValueError(
                    f"test_features has {self._test.shape[1] - 1} features, "
                    f"train_features {width - 1}"
                )
            self.test_labels = _labels(test_labels, self._test.shape[0], "test_labels")
        else:
            self._test = None
            self.test_labels = None
        largest = max(
            int(labels.max())
            for labels in (self.train_labels, self.val_labels, self.test_labels)
            if labels is not None and labels.size
        )
        if num_classes is None:
            num_classes = largest + 1
        num_classes = int(num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if largest >= num_classes:
            raise ValueError(f"label {largest} out of range for num_classes = {num_classes}")
        if not reg >= 0.0:
            raise ValueError(f"reg must be non-negative, got {reg}")
        self.reg = float(reg)
        self.num_classes = num_classes
        self.num_features = width - 1
        self.dx = num_train
        self.dy = num_classes * width
        self.corrupted_mask = None
        self.clean_train_labels = None
        self._train_rows = np.arange(num_train)
        self._val_rows = np.arange(self._val.shape[0])

    # -- data -------------------------------------------------------------------------------

    @staticmethod
    def _features_view(augmented):
        if augmented is None:
            return None
        view = augmented[:, :-1]
        view.flags.writeable = False
        return view

    @property
    def train_features(self):
        """Training features, shape (N, p); a read-only view."""
        return self._features_view(self._train)

    @property
    def val_features(self):
        """Validation features, shape (N_val, p); a read-only view."""
        return self._features_view(self._val)

    @property
    def test_features(self):
        """Test features, shape (N_test, p), or None; a read-only view."""
        return self._features_view(self._test)

    # -- constructors -------------------------------------------------------------------

    @staticmethod
    def corrupt_labels(labels, fraction, num_classes, rng):
        """Replace ``round(fraction * len(labels))`` labels by a different class.

        The positions are drawn without replacement; each new label is uniform over the
        ``num_classes - 1`` classes other than the original one.

        Parameters
        ----------
        labels : array_like of int, shape (N,)
            Class indices in ``[0, num_classes)``; not modified.
        fraction : float
            In ``[0, 1]``.
        num_classes : int
            At least 2.
        rng : numpy.random.Generator or int or None
            Source of randomness (an int or None seeds a new ``default_rng``).

        Returns
        -------
        corrupted : ndarray of int64, shape (N,)
        mask : ndarray of bool, shape (N,)
            True exactly where ``corrupted != labels``.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        labels = labels.astype(np.int64)
        num_classes = int(num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes})")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        rng = np.random.default_rng(rng)
        count = int(round(fraction * labels.size))
        positions = rng.choice(labels.size, size=count, replace=False)
        # Adding a shift in 1..C-1 modulo C is a uniform draw among the other classes.
        shifts = rng.integers(1, num_classes, size=count)
        corrupted = labels.copy()
        corrupted[positions] = (labels[positions] + shifts) % num_classes
        mask = np.zeros(labels.size, dtype=bool)
        mask[positions] = True
        return corrupted, mask

    @classmethod
    def digits(cls, corruption=0.5, seed=0, train=600, val=600, test=597, reg=0.01):
        """The problem on scikit-learn's bundled 8x8 digits (1797 samples, no download).

        Pixel values (0..16) are scaled to [0, 1]; ``p = 64``, ``C = 10``.  The samples
        are shuffled with ``default_rng(seed)``, split into ``train``/``val``/``test``
        (disjoint, sizes summing to at most 1797), and a fraction ``corruption`` of the
        training labels is corrupted with the same generator.
        """
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise ImportError(
                "HyperCleaning.digits needs scikit-learn: pip install scikit-learn"
            ) from error
        features, labels = load_digits(return_X_y=True)
        features = features.astype(np.float64) / 16.0
        return cls._from_arrays(
            features, labels, features, labels, corruption, seed, train, val, test, 10, reg,
            separate_test=False,
        )

    @classmethod
    def from_idx(cls, directory, corruption=0.5, seed=0, train=5000, val=5000, test=10000, reg=0.01):
        """The paper's setting on MNIST-format IDX files the user already has.

        ``directory`` must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly with a
        ``.gz`` suffix (MNIST, Fashion-MNIST and KMNIST share this format).  Pixels are
        scaled to [0, 1].  ``train`` and ``val`` samples are drawn without overlap from the
        training file by a ``default_rng(seed)`` permutation; the test set is the first
        ``test`` samples of the t10k file.  ``C`` is one more than the largest label.

        Raises FileNotFoundError when a file is missing and ValueError when a file is
        not a valid unsigned-byte IDX file or the sizes do not fit.
        """
        arrays = []
        for prefix in ("train", "t10k"):
            images = _read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"), 3)
            labels = _read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte"), 1)
            if images.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"{prefix}: {images.shape[0]} images but {labels.shape[0]} labels"
                )
            arrays.append((images.reshape(images.shape[0], -1) / 255.0, labels))
        (train_images, train_labels), (test_images, test_labels) = arrays
        num_classes = int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1
        return cls._from_arrays(
            train_images, train_labels, test_images, test_labels, corruption, seed,
            train, val, test, max(num_classes, 2), reg, separate_test=True,
        )

    @classmethod
    def _from_arrays(cls, features, labels, test_features, test_labels, corruption, seed,
                     train, val, test, num_classes, reg, separate_test):
        """Shuffle, split and corrupt; the test set comes from the same pool unless
        ``separate_test``, in which case it is the head of ``test_features``."""
        train, val, test = int(train), int(val), int(test)
        if train < 1 or val < 1 or test < 0:
            raise ValueError(f"need train >= 1, val >= 1, test >= 0; got {train}, {val}, {test}")
        pool = train + val + (0 if separate_test else test)
        if pool > features.shape[0]:
            raise ValueError(
                f"requested {pool} samples from a set of {features.shape[0]}"
            )
        if separate_test and test > test_features.shape[0]:
            raise ValueError(
                f"requested {test} test samples from a set of {test_features.shape[0]}"
            )
        rng = np.random.default_rng(seed)
        order = rng.permutation(features.shape[0])
        train_rows = order[:train]
        val_rows = order[train:train + val]
        if separate_test:
            test_x, test_y = test_features[:test], test_labels[:test]
        else:
            test_rows = order[train + val:train + val + test]
            test_x, test_y = test_features[test_rows], test_labels[test_rows]
        clean = np.asarray(labels[train_rows], dtype=np.int64)
        noisy, mask = cls.corrupt_labels(clean, corruption, num_classes, rng)
        problem = cls(
            features[train_rows], noisy, features[val_rows], labels[val_rows],
            test_x if test else None, test_y if test else None,
            num_classes=num_classes, reg=reg,
        )
        problem.corrupted_mask = mask
        problem.clean_train_labels = clean
        return problem

    # -- shared pieces ------------------------------------------------------------------

    def _check(self, x, y):
        return _vector("x", x, self.dx), _vector("y", y, self.dy)

    def _matrix(self, y):
        """``[W | bias]`` (C x (p+1)) as a view of ``y``."""
        return y.reshape(self.num_classes, self.num_features + 1)

    def _probabilities(self, features, y):
        """Softmax of the logits ``features @ [W | bias]^T``, shape (m, C)."""
        logits = features @ self._matrix(y).T
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def _logit_gradients(self, features, rows, labels, y):
        """``d CE / d logits = softmax - onehot(label)`` per sample, shape (m, C)."""
        residual = self._probabilities(features, y)
        residual[rows, labels] -= 1.0
        return residual

    def _mean_cross_entropy(self, features, rows, labels, y):
        log_probabilities = _log_softmax(features @ self._matrix(y).T)
        return float(-log_probabilities[rows, labels].mean())

    # -- values -------------------------------------------------------------------------

    def g(self, x, y):
        """Weighted training cross-entropy plus ``reg ||y||^2`` (float, nats)."""
        x, y = self._check(x, y)
        weights, _ = _sigmoid(x)
        log_probabilities = _log_softmax(self._train @ self._matrix(y).T)
        losses = -log_probabilities[self._train_rows, self.train_labels]
        return float(np.dot(weights, losses) / self.dx + self.reg * np.dot(y, y))

    def f(self, x, y):
        """Mean validation cross-entropy (float, nats); independent of ``x``."""
        _, y = self._check(x, y)
        return self._mean_cross_entropy(self._val, self._val_rows, self.val_labels, y)

    # -- first derivatives ----------------------------------------------------------------

    def grad_x_f(self, x, y):
        """Zeros of shape (N,): ``f`` does not depend on ``x``."""
        self._check(x, y)
        return np.zeros(self.dx)

    def grad_y_f(self, x, y):
        """Gradient of the mean validation cross-entropy in ``y``, shape (dy,)."""
        _, y = self._check(x, y)
        residual = self._logit_gradients(self._val, self._val_rows, self.val_labels, y)
        residual /= self._val.shape[0]
        return (residual.T @ self._val).ravel()

    def grad_y_g(self, x, y):
        """``(1/N) sum_i sigmoid(x_i) grad_y CE_i + 2 reg y``, shape (dy,)."""
        x, y = self._check(x, y)
        weights, _ = _sigmoid(x)
        residual = self._logit_gradients(self._train, self._train_rows, self.train_labels, y)
        residual *= (weights / self.dx)[:, None]
        out = residual.T @ self._train
        out += (2.0 * self.reg) * self._matrix(y)
        return out.ravel()

    # -- second-order products -------------------------------------------------------------

    def hvp_yy_g(self, x, y, v):
        """Exact ``(d^2 g / dy^2) v``, shape (dy,).

        Per sample, the Hessian of CE in the logits is ``diag(p) - p p^T``; the logits are
        linear in ``y``, so chaining it with the feature map is exact.
        """
        x, y = self._check(x, y)
        v = _vector("v", v, self.dy)
        weights, _ = _sigmoid(x)
        probabilities = self._probabilities(self._train, y)
        direction = self._matrix(v)
        logit_direction = self._train @ direction.T
        logit_direction -= (probabilities * logit_direction).sum(axis=1, keepdims=True)
        logit_direction *= probabilities
        logit_direction *= (weights / self.dx)[:, None]
        out = logit_direction.T @ self._train
        out += (2.0 * self.reg) * direction
        return out.ravel()

    def jvp_xy_g(self, x, y, v):
        """``J v = (d^2 g / dx dy) v``, shape (N,).

        Entry ``i`` is ``sigmoid'(x_i) / N * <grad_y CE_i, v>``.
        """
        x, y = self._check(x, y)
        v = _vector("v", v, self.dy)
        weights, complement = _sigmoid(x)
        residual = self._logit_gradients(self._train, self._train_rows, self.train_labels, y)
        logit_direction = self._train @ self._matrix(v).T
        out = np.einsum("ik,ik->i", residual, logit_direction)
        out *= weights * complement / self.dx
        return out

    # -- reports ----------------------------------------------------------------------------

    def initial_point(self, seed=None):
        """The paper's starting point ``(x0, y0) = (0, 0)``; ``seed`` is accepted for a
        uniform interface and ignored."""
        return np.zeros(self.dx), np.zeros(self.dy)

    def validation_loss(self, y):
        """Mean validation cross-entropy at ``y`` (float, nats)."""
        y = _vector("y", y, self.dy)
        return self._mean_cross_entropy(self._val, self._val_rows, self.val_labels, y)

    def _require_test(self):
        if self._test is None:
            raise ValueError("this problem was built without a test set")

    def test_loss(self, y):
        """Mean test cross-entropy at ``y`` (float, nats)."""
        self._require_test()
        y = _vector("y", y, self.dy)
        rows = np.arange(self._test.shape[0])
        return self._mean_cross_entropy(self._test, rows, self.test_labels, y)

    def test_accuracy(self, y):
        """Fraction of test samples whose largest logit is the true class (float in [0, 1])."""
        self._require_test()
        y = _vector("y", y, self.dy)
        predictions = np.argmax(self._test @ self._matrix(y).T, axis=1)
        return float(np.mean(predictions == self.test_labels))

    def cleaning_report(self, x, corrupted_mask=None):
        """How well the sample weights separate corrupted from clean training labels.

        A sample counts as flagged when its weight ``sigmoid(x_i)`` is below 0.5.

        Parameters
        ----------
        x : array_like, shape (N,)
        corrupted_mask : array_like of bool, shape (N,), optional
            Defaults to ``self.corrupted_mask``.

        Returns
        -------
        dict with int entries ``num_corrupted``, ``num_clean``, ``corrupted_flagged``,
        ``clean_flagged``, ``num_flagged`` and float entries ``precision``
        (``corrupted_flagged / num_flagged``, NaN when nothing is flagged) and ``recall``
        (``corrupted_flagged / num_corrupted``, NaN when nothing is corrupted).
        """
        x = _vector("x", x, self.dx)
        if corrupted_mask is None:
            corrupted_mask = self.corrupted_mask
        if corrupted_mask is None:
            raise ValueError("no corrupted_mask given and none stored on the problem")
        mask = np.asarray(corrupted_mask)
        if mask.shape != (self.dx,):
            raise ValueError(f"corrupted_mask must have shape ({self.dx},), got {mask.shape}")
        mask = mask.astype(bool)
        weights, _ = _sigmoid(x)
        flagged = weights < 0.5
        corrupted_flagged = int(np.count_nonzero(flagged & mask))
        clean_flagged = int(np.count_nonzero(flagged & ~mask))
        num_corrupted = int(np.count_nonzero(mask))
        num_flagged = corrupted_flagged + clean_flagged
        return {
            "num_corrupted": num_corrupted,
            "num_clean": self.dx - num_corrupted,
            "corrupted_flagged": corrupted_flagged,
            "clean_flagged": clean_flagged,
            "num_flagged": num_flagged,
            "precision": corrupted_flagged / num_flagged if num_flagged else float("nan"),
            "recall": corrupted_flagged / num_corrupted if num_corrupted else float("nan"),
        }
