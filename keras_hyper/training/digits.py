"""The handwritten-digits recipe: InceptionNeXt-atto trained on scikit-learn's digits, shipped as the
`inceptionnext_atto.digits` weights tag and used by `make demo`.

scikit-learn ships the data (1,797 greyscale 8x8 images, UCI ML hand-written digits), so nothing downloads.
The images are upsampled to `SIZE` x `SIZE` RGB pixels in [0, 255] and split once, with a fixed seed, into
`pretrain` (60%, the shipped weights' training set), `finetune` (20%, held out for the demo's fine-tuning)
and `test` (20%, never trained on).

Recreate the shipped weights (about two minutes on 2 CPU cores):

    KERAS_BACKEND=torch python -m keras_hyper.training.digits \
        --out keras_hyper/weights/inceptionnext_atto.digits.weights.h5
"""

import argparse
import json
import time

import keras
import numpy as np

SIZE = 32
SEED = 0
SPLITS = {"pretrain": 0.6, "finetune": 0.2, "test": 0.2}
MODEL = "inceptionnext_atto"
RECIPE = dict(epochs=20, batch_size=32, learning_rate=2e-3, weight_decay=0.05, label_smoothing=0.1, drop_path_rate=0.1)


def load_splits(size=SIZE):
    """`{split: (images, labels)}` with images `(N, size, size, 3)` float32 in [0, 255] and int labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 ink levels -> 0..255 pixels, replicated to RGB, upsampled by pixel repetition (keeps the strokes sharp)
    images = digits.images.astype("float32") * (255.0 / 16.0)
    factor = size // images.shape[1]
    if factor * images.shape[1] != size:
        raise ValueError(f"size must be a multiple of 8, got {size}.")
    images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)
    images = np.repeat(images[..., None], 3, axis=-1)
    order = np.random.default_rng(SEED).permutation(len(images))
    bounds = np.cumsum([int(round(f * len(images))) for f in SPLITS.values()])[:-1]
    return {
        name: (images[idx], digits.target[idx].astype("int32")) for name, idx in zip(SPLITS, np.split(order, bounds))
    }


def augment(images, rng):
    """Random shifts of up to 3 pixels: the only augmentation small centred digits need."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        dy, dx = rng.integers(-3, 4, size=2)
        out[i] = np.roll(image, (dy, dx), axis=(0, 1))
    return out


def train(out, epochs=RECIPE["epochs"], verbose=1):
    """Trains the digits model from scratch on the pretrain split and saves its weights to `out`."""
    from keras_hyper import applications

    keras.utils.set_random_seed(SEED)
    splits = load_splits()
    x, y = splits["pretrain"]
    x_test, y_test = splits["test"]
    model = applications.load(
        MODEL,
        weights=None,  # trained from scratch
        num_classes=10,
        input_shape=(SIZE, SIZE, 3),
        include_preprocessing=False,
        drop_path_rate=RECIPE["drop_path_rate"],
        classifier_activation=None,
    )
    steps = epochs * int(np.ceil(len(x) / RECIPE["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=RECIPE["learning_rate"], warmup_steps=steps // 10
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=RECIPE["weight_decay"]),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=RECIPE["label_smoothing"]),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(SEED)
    prep = lambda images: applications.preprocess_input(images, MODEL)  # noqa: E731
    start = time.time()
    for epoch in range(epochs):
        model.fit(
            prep(augment(x, rng)),
            keras.utils.to_categorical(y, 10),
            batch_size=RECIPE["batch_size"],
            epochs=1,
            verbose=0,
        )
        if verbose and (epoch + 1) % 5 == 0:
            acc = evaluate(model, prep(x_test), y_test)
            print(f"epoch {epoch + 1}/{epochs}: test accuracy {acc:.4f} ({time.time() - start:.0f} s)")
    save_inference_weights(model, out)
    return model


def save_inference_weights(model, out):
    """Saves only the weights an inference model needs: no optimizer state (which a compiled model's
    `save_weights` includes, tripling the file) and no training-only layers such as DropPath."""
    from keras_hyper import applications
    from keras_hyper.weights import files as weights_lib

    clean = applications.load(
        MODEL, weights=None, num_classes=10, input_shape=(SIZE, SIZE, 3), classifier_activation=None
    )
    weights_lib.transfer(model, clean)
    clean.save_weights(out)


def evaluate(model, images, labels, batch_size=128):
    """Top-1 accuracy of `model` on preprocessed `images`."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the .weights.h5 file")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    args = parser.parse_args(argv)
    model = train(args.out, epochs=args.epochs)
    splits = load_splits()
    from keras_hyper import applications

    x_test, y_test = splits["test"]
    acc = evaluate(model, applications.preprocess_input(x_test, MODEL), y_test)
    print(json.dumps({"test_accuracy": acc, "recipe": RECIPE, "backend": keras.backend.backend()}))


if __name__ == "__main__":
    main()
