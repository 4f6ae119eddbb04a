"""`make demo` / `keras-hyper demo`: the whole life of a keras-hyper model, offline, in a few minutes.

1. load the shipped `inceptionnext_atto.digits` weights by tag and evaluate them on held-out digits;
2. fine-tune them with `model.fit` on a split the shipped weights never saw;
3. export the fine-tuned model to LiteRT (TFLite) with builtin ops only, from whatever backend runs this;
4. run the `.tflite` file with ai_edge_litert and compare accuracy, size and latency with Keras.
Every figure is measured while the demo runs.
"""

import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_hyper import applications
from keras_hyper.training import digits

TAG = f"{digits.MODEL}.digits"


def _latency_ms(fn, x, repeats=50):
    fn(x)  # warm-up (compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(out_dir="build/demo"):
    from keras_hyper.export import export_litert, load_litert

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print(f"keras-hyper demo on the {keras.backend.backend()} backend ({os.cpu_count()} CPU cores)\n")
    splits = digits.load_splits()
    prep = {name: (applications.preprocess_input(x, digits.MODEL), y) for name, (x, y) in splits.items()}
    x_test, y_test = prep["test"]
    info = applications.model_info(TAG)
    print(f"[1/4] load {TAG!r}: {info.paper.title} (arXiv:{info.paper.arxiv}), input {info.input_size}px")
    model = applications.load(TAG)
    print(f"      {model.count_params():,} parameters; test split: {len(y_test)} images never trained on")
    shipped_acc = digits.evaluate(model, x_test, y_test)
    print(f"      accuracy of the shipped weights: {shipped_acc:.2%}")

    x_ft, y_ft = splits["finetune"]
    print(f"\n[2/4] fine-tune with model.fit on the held-out 'finetune' split ({len(y_ft)} images, 3 epochs)")
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-4, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(1)
    start = time.time()
    for epoch in range(3):
        x_aug = applications.preprocess_input(digits.augment(x_ft, rng), digits.MODEL)
        logs = model.fit(x_aug, y_ft, batch_size=32, epochs=1, verbose=0).history
        print(f"      epoch {epoch + 1}/3: loss {logs['loss'][-1]:.4f}, train accuracy {logs['accuracy'][-1]:.2%}")
    tuned_acc = digits.evaluate(model, x_test, y_test)
    print(f"      {time.time() - start:.1f} s; test accuracy after fine-tuning: {tuned_acc:.2%}")
    keras_path = out / "inceptionnext_atto_digits.keras"
    model.save(keras_path)

    print("\n[3/4] export to LiteRT (builtin ops only)")
    tflite_path = out / "inceptionnext_atto_digits.tflite"
    report = export_litert(model, tflite_path, sample=x_test[:1])
    print(f"      {report}")

    print("\n[4/4] run the .tflite with ai_edge_litert")
    runner = load_litert(tflite_path)
    lite_pred = np.array([np.argmax(runner(x_test[i : i + 1])) for i in range(len(x_test))])
    lite_acc = float(np.mean(lite_pred == y_test))
    keras_pred = np.argmax(model.predict(x_test, verbose=0), axis=-1)
    agree = float(np.mean(lite_pred == keras_pred))
    one = x_test[:1]
    keras_ms = _latency_ms(lambda x: model.predict_on_batch(x), one)
    lite_ms = _latency_ms(runner, one)

    rows = [
        ("accuracy, shipped weights (Keras)", f"{shipped_acc:.2%}"),
        ("accuracy, fine-tuned (Keras)", f"{tuned_acc:.2%}"),
        ("accuracy, fine-tuned (LiteRT)", f"{lite_acc:.2%}"),
        ("LiteRT/Keras prediction agreement", f"{agree:.2%}"),
        ("LiteRT max abs diff vs Keras", f"{report.max_abs_diff:.2e}"),
        (".keras file size (with optimizer state)", f"{keras_path.stat().st_size / 2**20:.1f} MiB"),
        (".tflite file size", f"{tflite_path.stat().st_size / 2**20:.1f} MiB"),
        ("latency, batch 1 (Keras predict_on_batch)", f"{keras_ms:.2f} ms"),
        ("latency, batch 1 (LiteRT interpreter)", f"{lite_ms:.2f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nResults (measured now):")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print(f"\nFiles: {keras_path}, {tflite_path}")
    return dict(rows)


if __name__ == "__main__":
    main()
