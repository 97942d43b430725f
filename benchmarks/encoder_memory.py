"""Memory of the numpy query encoder: memory-mapped weights vs the safetensors library's copy.

Method: each variant runs in a fresh process that imports numpy, tokenizers and qa's encoder
modules, then records /proc/self/status (VmRSS, RssAnon = private memory, RssFile = pages of
mapped files, shared with the page cache and other processes, VmHWM = peak) before loading,
after loading the weights, after one question and after 50 more.

- ``mmap`` (what qa does): ``qa.encoder.read_safetensors`` maps model.safetensors and views
  each tensor in place (np.frombuffer on the mapping): only pages a forward pass touches
  become resident, i.e. the layer weights and the embedding rows of the question's tokens.
- ``safetensors``: ``safetensors.numpy.load_file`` (the library's numpy loader) reads every
  tensor into new arrays, the obvious alternative.

Run: python benchmarks/encoder_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common

MARK = "RESULT-JSON: "
CHILD = """
import json, sys
def status():
    keys = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
    out = {}
    for line in open("/proc/self/status"):
        key = line.split(":")[0]
        if key in keys:
            out[key] = round(int(line.split()[1]) / 1024, 1)
    return out
import numpy, tokenizers
from qa.embedding import default_model_path
from qa.encoder import BertConfig, BertEncoder
from qa.query_embedding import NumpyEmbedder
path = default_model_path()
rows = {"imports": status()}
emb = NumpyEmbedder(path)  # maps the weights
if sys.argv[1] == "safetensors":
    from safetensors.numpy import load_file
    config = BertConfig.from_dict(json.loads((path / "config.json").read_text()))
    emb.encoder = BertEncoder(config, load_file(str(path / "model.safetensors")))
rows["weights loaded"] = status()
emb.encode(["Who is OpenAI partnering with to manufacture AI hardware?"])
rows["after 1 question"] = status()
for i in range(50):
    emb.encode([f"Question number {i}: which devices and robots will they build?"])
rows["after 51 questions"] = status()
print("RESULT-JSON: " + json.dumps(rows))
"""


def run(variant: str) -> dict[str, dict[str, float]]:
    proc = subprocess.run([sys.executable, "-c", CHILD, variant], capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed: {proc.stderr[-2000:]}")
    result: dict[str, dict[str, float]] = json.loads(lines[-1][len(MARK) :])
    return result


def main() -> None:
    common.set_threads_env(1)
    load_before = common.loadavg()
    results = {variant: run(variant) for variant in ("mmap", "safetensors")}
    rows = [
        [variant, stage, *(values.get(k) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"))]
        for variant, stages in results.items()
        for stage, values in stages.items()
    ]
    text = common.table(["weights", "stage", "VmRSS MiB", "RssAnon MiB", "RssFile MiB", "VmHWM MiB"], rows)
    print(text)
    path = common.save(
        "encoder_memory", False, {"method": __doc__, "results": results, "table": text}, load_before
    )
    print(f"\nresults: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
