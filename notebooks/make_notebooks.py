"""Write the notebooks in this folder from the cells below, outputs cleared.

    python notebooks/make_notebooks.py

The notebooks are thin clients of maskshift's public API. Each has a parameter cell: the small
budget (the default, what CI executes) runs top to bottom on the embedded data in a minute or two
on a CPU; ``FULL = True`` switches to full budgets and, where set, a real TFDS dataset.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

# The accelerator notebook's first cell: tests/test_notebooks.py runs its functions against a
# simulated GPU runtime (everything below ``if __name__ == "__main__"`` is what the cell does).
INSTALL_CELL = """import os
import shutil
import subprocess
import sys

# On Colab, where maskshift comes from: its git URL ("git+https://github.com/<you>/maskshift.git")
# or a folder you uploaded ("/content/maskshift"). None: maskshift is already installed here.
MASKSHIFT_SOURCE = None
EXTRAS = {"gpu": "cuda12", "tpu": "tpu", "cpu": None}


def detect_runtime(environ=os.environ, which=shutil.which, exists=os.path.exists) -> str:
    \"\"\"'tpu', 'gpu' or 'cpu': the accelerator this runtime has, read before JAX starts.\"\"\"
    if environ.get("COLAB_TPU_ADDR") or environ.get("TPU_NAME") or exists("/dev/accel0"):
        return "tpu"
    if which("nvidia-smi") or exists("/dev/nvidia0"):
        return "gpu"
    return "cpu"


def pip_spec(source: str, runtime: str) -> str:
    \"\"\"maskshift from ``source`` with the extra that keeps ``runtime``'s accelerator.\"\"\"
    extra = EXTRAS[runtime]
    if extra is None:
        return source
    return f"maskshift[{extra}] @ {source}" if "://" in source else f"{source}[{extra}]"


def check_platform(runtime: str, platform: str) -> None:
    \"\"\"Stop with one line if JAX no longer sees the runtime's accelerator.\"\"\"
    if runtime != "cpu" and platform != runtime:
        raise SystemExit(f"This runtime has a {runtime.upper()} but JAX runs on {platform}: the "
                         "install replaced its accelerator JAX; restart the runtime and install "
                         f"with pip install '{pip_spec('SOURCE', runtime)}'.")


if __name__ == "__main__":
    RUNTIME = detect_runtime()
    if "google.colab" in sys.modules and MASKSHIFT_SOURCE is None:
        raise SystemExit("Set MASKSHIFT_SOURCE to maskshift's git URL or an uploaded folder.")
    if MASKSHIFT_SOURCE is not None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        pip_spec(MASKSHIFT_SOURCE, RUNTIME)], check=True)
    import jax

    check_platform(RUNTIME, jax.devices()[0].platform)
    print(f"runtime {RUNTIME}: jax {jax.__version__} on {jax.devices()}")"""

QUICKSTART = [
    new_markdown_cell("""# maskshift quickstart: unlearn a class with MaskWorld and ShiftWorld

A PPO agent edits the hidden layer of a small CNN step by step, rewarded for forgetting one class
while keeping the others. `MaskWorld` scales the weights, `ShiftWorld` adds to them. Rewards use
the train split, the best step is chosen on validation, and every figure below is on the held-out
test split."""),
    new_code_cell("""# Parameters. The small budget runs in a minute or two on a CPU; FULL = True uses the
# trainer's default budget (the README's targets), and DATASET a TFDS dataset such as "mnist"
# (prepare it once with `python -m maskshift.data.prepare mnist --data-dir DIR`).
FULL = False
DATASET = None
DATA_DIR = None
FORGET = 7
OUT = "runs/quickstart"
OVERWRITE = True  # this notebook replaces its own earlier runs in OUT"""),
    new_code_cell("""import jax
import matplotlib.pyplot as plt
import numpy as np

import maskshift
from maskshift.run import DEFAULT_TOTAL_STEPS, make_run_config, train_and_evaluate

TOTAL_STEPS = DEFAULT_TOTAL_STEPS["ppo"]["unlearn"] if FULL else 16 * 8 * 4
NUM_ENVS = 64 if FULL else 16  # the small setting: a quick look (and what CI runs)
print("maskshift", maskshift.__version__, "on", jax.devices())
before = maskshift.evaluate_model("unlearn", dataset=DATASET, data_dir=DATA_DIR,
                                  forget_classes=(FORGET,))
print({k: round(before[k], 3) for k in ("test_acc", "forget_acc", "retain_acc", "mia")})"""),
    new_code_cell("""results = {}
for env in ("mask", "shift"):
    cfg = make_run_config(env=env, task="unlearn", dataset=DATASET, data_dir=DATA_DIR,
                          forget_classes=(FORGET,), total_steps=TOTAL_STEPS, num_envs=NUM_ENVS)
    results[env] = train_and_evaluate(cfg, f"{OUT}/{env}", overwrite=OVERWRITE)"""),
    new_code_cell("""fig, ax = plt.subplots(figsize=(9, 3.5))
classes = np.arange(len(before["per_class_acc"]))
ax.bar(classes - 0.27, before["per_class_acc"], 0.27, label="original")
for i, (env, res) in enumerate(results.items()):
    ax.bar(classes + 0.27 * i, res["after"]["per_class_acc"], 0.27, label=f"{env} edit")
ax.set(xlabel="class", ylabel="test accuracy", xticks=classes,
       title=f"Per-class test accuracy before and after forgetting class {FORGET}")
ax.legend()
plt.show()"""),
    new_code_cell("""# The edited weights are a checkpoint: load them back and evaluate them again.
for env, res in results.items():
    reloaded = maskshift.evaluate_model("unlearn", dataset=DATASET, data_dir=DATA_DIR,
                                        checkpoint=f"{OUT}/{env}")
    assert abs(reloaded["forget_acc"] - res["after"]["forget_acc"]) < 1e-6
    print(f"{env}: forget {reloaded['forget_acc']:.3f}  retain {reloaded['retain_acc']:.3f}"
          f"  (reloaded from {OUT}/{env})")"""),
]

BIAS = [
    new_markdown_cell("""# Bias mitigation with ShiftWorld

The text classifier learned that identity terms mean toxic. The agent edits its hidden layer to
close the gap between a sentence and its counterfactual twin (identity term swapped) while keeping
accuracy. Figures are on the held-out test split."""),
    new_code_cell("""# Parameters. FULL = True uses the trainer's default budget; DATASET = "civil_comments"
# reads CivilComments through TFDS (prepare it once with
# `python -m maskshift.data.prepare civil_comments --data-dir DIR`).
FULL = False
DATASET = None
DATA_DIR = None
ENV = "shift"
OUT = "runs/bias"
OVERWRITE = True"""),
    new_code_cell("""import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from maskshift.checkpoint import load_edited
from maskshift.data import Tokenizer, load_dataset, resolve_dataset
from maskshift.models import pretrained
from maskshift.run import DEFAULT_TOTAL_STEPS, make_run_config, train_and_evaluate

TOTAL_STEPS = DEFAULT_TOTAL_STEPS["ppo"]["bias"] if FULL else 16 * 8 * 4
NUM_ENVS = 64 if FULL else 16  # the small setting: a quick look (and what CI runs)
cfg = make_run_config(env=ENV, task="bias", dataset=DATASET, data_dir=DATA_DIR,
                      total_steps=TOTAL_STEPS, num_envs=NUM_ENVS)
res = train_and_evaluate(cfg, OUT, overwrite=OVERWRITE)"""),
    new_code_cell("""b, a = res["before"], res["after"]
cells = [(g, lab) for g in b["group_acc"] for lab in (0, 1)]
x = np.arange(len(cells))
fig, ax = plt.subplots(figsize=(11, 3.5))
ax.bar(x - 0.2, [b["group_acc"][g][lab] for g, lab in cells], 0.4, label="original")
ax.bar(x + 0.2, [a["group_acc"][g][lab] for g, lab in cells], 0.4, label=f"{ENV} edit")
ax.set_xticks(x, [f"{g}/{'tox' if lab else 'non'}" for g, lab in cells], rotation=60, ha="right")
ax.set(ylabel="test accuracy", title="Accuracy per (identity group, label)")
ax.legend()
plt.show()
for k in ("accuracy", "worst_group_acc", "fpr_gap", "flip_rate"):
    print(f"{k:<16} {b[k]:.3f} -> {a[k]:.3f}")"""),
    new_code_cell("""# Counterfactual pairs whose prediction the edit changed.
data = load_dataset(resolve_dataset("bias", DATASET), data_dir=DATA_DIR)
target = pretrained(data)
edited, _ = load_edited(OUT, like=target.params)
tok = Tokenizer(vocab=data.vocab, max_len=data.test.x.shape[1])
predict = jax.jit(lambda p, x: jnp.argmax(target.model.apply(p, x), -1))
t = data.test
orig = [np.asarray(predict(target.params, x)) for x in (t.x, t.x_cf)]
new = [np.asarray(predict(edited, x)) for x in (t.x, t.x_cf)]
flipped_before = orig[0] != orig[1]
fixed = np.flatnonzero(flipped_before & (new[0] == new[1]))
print(f"pairs whose prediction depended on the identity term: {flipped_before.sum()} before, "
      f"{(new[0] != new[1]).sum()} after; {len(fixed)} of them fixed")
label = ("non-toxic", "toxic")
for i in fixed[:8]:
    print(f"- {tok.decode(t.x[i])!r} / {tok.decode(t.x_cf[i])!r} (true: {label[t.y[i]]}): "
          f"{label[orig[0][i]]}/{label[orig[1][i]]} -> {label[new[0][i]]}/{label[new[1][i]]}")"""),
]

THROUGHPUT = [
    new_markdown_cell("""# maskshift on a Colab GPU/TPU runtime: install, then measure what matters

Run it on Colab (Runtime -> Change runtime type -> GPU or TPU) or anywhere JAX sees an
accelerator. The first cell detects the runtime, installs maskshift with the extra that keeps its
accelerator (`maskshift[cuda12]`, `maskshift[tpu]`), and stops with one line if JAX no longer
sees that accelerator. The rest measures the environment step (unlearning and bias, summary and
controller observations) up to 65,536 parallel environments, end-to-end PPO training with the
default editor, and one amortized edit, each with compile time apart and the device beside it:
the figures `python benchmarks/accelerator.py --json FILE` writes."""),
    new_code_cell(INSTALL_CELL),
    new_code_cell("""# Parameters. The small setting runs in a minute or two on a CPU (and in CI); FULL = True
# measures the accelerator's range (N up to 65,536; PPO up to 4,096 environments).
FULL = False
OUT = "runs/accelerator"
"""),
    new_code_cell("""import jax

from maskshift.bench.accelerator import FULL as FULL_SETTING
from maskshift.bench.accelerator import SMALL, accelerator_report

setting = FULL_SETTING if FULL else SMALL
report = accelerator_report(**setting)"""),
    new_code_cell("""import os

from IPython.display import Image, display

from maskshift.bench import plot_throughput
from maskshift.bench.accelerator import summary_lines

print("\\n".join(summary_lines(report)))
os.makedirs(OUT, exist_ok=True)
plot_throughput(report["steps"], f"{OUT}/throughput.png")
display(Image(f"{OUT}/throughput.png"))"""),
]

def write(name: str, cells) -> None:
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "accelerator": "GPU" if "throughput" in name else None,
    })
    if nb.metadata["accelerator"] is None:
        del nb.metadata["accelerator"]
    nbformat.validate(nb)
    path = HERE / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(nbformat.writes(nb) + "\n")
    tmp.replace(path)
    print("wrote", path)


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
    write("bias_mitigation.ipynb", BIAS)
    write("throughput_colab_tpu.ipynb", THROUGHPUT)
