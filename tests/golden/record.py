"""Records the golden values: run from `tests/` as `python -m golden.record`.

Recorded, like the tests run (tests/conftest.py), with oneDNN off so that the
values do not depend on the CPU's instruction set.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import json  # noqa: E402
import pathlib

import numpy as np
from golden.cases import case_names, run_case

PATH = pathlib.Path(__file__).with_name("values.json")


def encode(array):
    return {"shape": list(array.shape), "hex": array.astype("<f4").tobytes().hex()}


def decode(entry):
    return np.frombuffer(bytes.fromhex(entry["hex"]), "<f4").reshape(entry["shape"])


def main():
    values = {}
    for mode in ("eager", "graph"):
        for name in case_names():
            try:
                result = run_case(name, mode)
            except Exception as e:  # a case accepted by the checks that then fails
                values[f"{mode}:{name}"] = {"error": type(e).__name__}
                continue
            if result is None:
                continue
            loss, grads = result
            values[f"{mode}:{name}"] = [encode(loss)] + [encode(g) for g in grads]
    PATH.write_text(json.dumps(values, indent=0, sort_keys=True) + "\n")
    print(f"{len(values)} cases written to {PATH}")


if __name__ == "__main__":
    main()
