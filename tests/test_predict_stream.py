"""Prediction over a whole file: chunked, resumable, Parquet with ids, bad rows never shifting results.

Each streamed result is compared with the model run on that row's text alone
(``Predictor.classify`` / ``extract_entities`` on a list built here), matched by
the row number or id read independently with pandas or json.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, require_module, write

from clintune.errors import ClintuneError, DataError
from clintune.runtime.allocator import jemalloc_environment, jemalloc_library

SECTION_CSV = REPO / "data" / "section_header" / "test.csv"


def expected_by_text(folder: Path, texts: list[str], probabilities: bool = False) -> list[dict]:
    """The model's answer for each text, computed in one call without any chunking or file reading."""
    from clintune.api import result_record
    from clintune.inference.predictor import Predictor

    predictor = Predictor.from_folder(folder)
    results = predictor.extract_entities(texts) if predictor.encoder.task_type == "ner" else predictor.classify(texts)
    return [result_record(r, probabilities) for r in results]


def same_records(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in ("score", "probabilities", "entities")} == \
               {k: v for k, v in w.items() if k not in ("score", "probabilities", "entities")}
        if "entities" in w:
            spans = [[(e["start"], e["end"], e["label"]) for e in r["entities"]] for r in (g, w)]
            assert spans[0] == spans[1]
        else:
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
            if "probabilities" in w:
                assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_chunks_of_seven_give_every_row_its_own_result_with_its_id(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.api import predict_file

    folder = trained_models["section_header"]
    frame = pd.read_csv(SECTION_CSV, dtype=str, keep_default_na=False)
    output = tmp_path / "out" / "p.jsonl"
    run = predict_file(folder, SECTION_CSV, output, id_column="ID", probabilities=True, chunk_size=7)
    assert (run.predicted, run.chunks, run.skipped) == (len(frame), -(-len(frame) // 7), 0)
    want = [{"row": i + 2, "ID": frame["ID"][i], **r} for i, r in enumerate(expected_by_text(folder, frame["dialogue"].tolist(), True))]
    same_records(read_jsonl(output), want)
    assert sorted(os.listdir(output.parent)) == ["p.jsonl"]  # the partial folder is gone


def test_ner_lines_and_parquet_output_keep_types(trained_models: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from clintune.api import predict_file

    lines = ["Patients with cystic fibrosis .", "", "No disease here .", "Breast cancer and colorectal carcinoma ."]
    source = write(tmp_path / "notes.txt", "\n".join(lines) + "\n")
    predict_file(trained_models["ner"], source, tmp_path / "ner.parquet", chunk_size=2)
    table = pq.read_table(tmp_path / "ner.parquet")
    assert table.column_names == ["line", "entities"]
    kept = [i for i, line in enumerate(lines) if line]
    want = [{"line": i + 1, **r} for i, r in zip(kept, expected_by_text(trained_models["ner"], [lines[i] for i in kept]))]
    same_records(table.to_pylist(), want)

    # csv ids stay text ("0012" keeps its zeros); a Parquet input's integer ids stay integers
    ids = write(tmp_path / "ids.csv", "note,dialogue\n0012,Doctor: any allergies?\n7,Patient: penicillin.\n")
    predict_file(trained_models["section_header"], ids, tmp_path / "ids.parquet", id_column="note")
    assert pq.read_table(tmp_path / "ids.parquet").column("note").to_pylist() == ["0012", "7"]
    pd.DataFrame({"n": [5, 3], "dialogue": ["a cough", "no fever"]}).to_parquet(tmp_path / "in.parquet")
    predict_file(trained_models["section_header"], tmp_path / "in.parquet", tmp_path / "typed.parquet", id_column="n")
    typed = pq.read_table(tmp_path / "typed.parquet")
    assert str(typed.schema.field("n").type) == "int64" and typed.column("n").to_pylist() == [5, 3]
    assert typed.column("row").to_pylist() == [2, 3]


def test_bad_rows_in_the_middle_are_named_and_never_shift_results(trained_models: dict[str, Path], tmp_path: Path) -> None:
    from clintune.api import predict_file

    folder = trained_models["section_header"]
    texts = ["Doctor: any allergies?", "", None, "Patient: no fever.", 42, "   ", "Doctor: family history?", "Patient: asthma."]
    source = write(tmp_path / "in.jsonl", "\n".join(json.dumps({"id": f"n{i}", "dialogue": t}) for i, t in enumerate(texts)) + "\n")
    with pytest.raises(DataError) as caught:
        predict_file(folder, source, tmp_path / "o.jsonl", id_column="id", chunk_size=3)
    message = str(caught.value)
    assert "2 empty text(s) in column 'dialogue' (lines 2, 6)" in message
    assert "1 missing text(s)" in message and "(line 3)" in message and "non-text value(s) (int)" in message and "(line 5)" in message
    assert "--on-empty drop" in message and not (tmp_path / "o.jsonl").exists() and not (tmp_path / ".o.jsonl.partial").exists()

    run = predict_file(folder, source, tmp_path / "o.jsonl", id_column="id", chunk_size=3, on_empty="drop")
    good = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    assert (run.predicted, run.skipped) == (len(good), 4)
    want = [{"line": i + 1, "id": f"n{i}", **r} for i, r in zip(good, expected_by_text(folder, [texts[i] for i in good]))]
    same_records(read_jsonl(tmp_path / "o.jsonl"), want)


def interrupt_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    """Make the run stop (as Ctrl-C would) once ``chunks`` chunks are written."""
    from clintune.inference.sinks import ChunkedOutput

    write_chunk = ChunkedOutput.write

    def write_then_stop(self: ChunkedOutput, index: int, records: list[dict]) -> None:
        if index >= chunks:
            raise KeyboardInterrupt
        write_chunk(self, index, records)

    monkeypatch.setattr(ChunkedOutput, "write", write_then_stop)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_resume_continues_and_refuses_another_run(trained_models: dict[str, Path], tmp_path: Path, monkeypatch, suffix: str) -> None:
    from clintune.api import predict_file

    folder = trained_models["section_header"]
    whole, output = tmp_path / f"whole{suffix}", tmp_path / f"resumed{suffix}"
    predict_file(folder, SECTION_CSV, whole, id_column="ID", chunk_size=6)
    write(output, "the previous output\n")
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            predict_file(folder, SECTION_CSV, output, id_column="ID", chunk_size=6)
    partial = tmp_path / f".resumed{suffix}.partial"
    assert output.read_text() == "the previous output\n"  # untouched until the run completes
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000" + suffix, "chunk-000001" + suffix, "chunk-000002" + suffix,
                                                          "state.json"]
    with pytest.raises(ClintuneError, match="(?s)left 3 finished chunk.*add --resume"):
        predict_file(folder, SECTION_CSV, output, id_column="ID", chunk_size=6)
    with pytest.raises(ClintuneError, match=r"used other options \(chunk_size 6, now 5\)"):
        predict_file(folder, SECTION_CSV, output, id_column="ID", chunk_size=5, resume=True)
    with pytest.raises(ClintuneError, match="used another model"):
        predict_file(trained_models["diagnosis"], SECTION_CSV, output, id_column="ID", chunk_size=6, resume=True,
                     text_column="dialogue")
    changed = write(tmp_path / "changed.csv", SECTION_CSV.read_text().replace("allergies", "allergy", 1))
    with pytest.raises(ClintuneError, match="read another input"):
        predict_file(folder, changed, output, id_column="ID", chunk_size=6, resume=True)
    assert len(list(partial.glob("chunk-*"))) == 3  # refused runs change nothing

    run = predict_file(folder, SECTION_CSV, output, id_column="ID", chunk_size=6, resume=True)
    assert run.resumed_chunks == 3
    assert output.read_bytes() == whole.read_bytes()
    assert not partial.exists()


def test_kill_and_resume_through_the_cli(trained_models: dict[str, Path], tmp_path: Path) -> None:
    """The real CLI killed (SIGKILL) after its first chunks, then resumed, ends with the uninterrupted run's records."""
    from clintune.api import predict_file

    folder = trained_models["section_header"]
    frame = pd.read_csv(SECTION_CSV, dtype=str, keep_default_na=False)
    big = pd.DataFrame({"dialogue": (frame["section_text"].str[:40].tolist() * 75)})  # 3,000 short texts
    big["ID"] = [f"N{i}" for i in range(len(big))]
    source = tmp_path / "big.csv"
    big.to_csv(source, index=False)
    output = tmp_path / "p.jsonl"
    arguments = ["predict", "--model", str(folder), "--input", str(source), "--output", str(output), "--id-column", "ID",
                 "--chunk-size", "60", "--batch-size", "4", "--threads", "1"]  # one thread: tiny models run faster, on a busy machine too
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "clintune", *arguments], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    third = tmp_path / ".p.jsonl.partial" / "chunk-000002.jsonl"
    deadline = time.monotonic() + 120
    while not third.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert third.exists() and not output.exists(), "the run ended before it could be killed mid-way; make the input larger"
    finished = len(list(third.parent.glob("chunk-*.jsonl")))
    assert finished < len(big) // 60

    resumed = subprocess.run([sys.executable, "-m", "clintune", *arguments, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {finished} finished chunk(s) of {len(big) // 60}" in resumed.stderr
    reference = tmp_path / "reference.jsonl"
    import torch

    threads = torch.get_num_threads()
    try:
        predict_file(folder, source, reference, id_column="ID", chunk_size=60, batch_size=4, threads=1)
    finally:
        torch.set_num_threads(threads)
    got, want = read_jsonl(output), read_jsonl(reference)
    assert [r["ID"] for r in got] == big["ID"].tolist() and [r["row"] for r in got] == list(range(2, len(big) + 2))
    same_records(got, want)
    assert not third.parent.exists()


@pytest.fixture(scope="module")
def local_ray_cluster():
    """A Ray cluster on this machine (two CPUs: two model actors), started and stopped by the test."""
    ray = require_module("ray", reason="the ray extra is not installed (pip install 'clintune[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_equals_the_single_process_output(trained_models: dict[str, Path], tmp_path: Path, local_ray_cluster,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from clintune.api import predict_file
    from clintune.inference import on_ray as inference
    from clintune.inference.on_ray import predict_parquet_on_ray

    monkeypatch.setattr(inference, "RAY_BLOCK_BYTES", 2048)  # these short notes in blocks of a few dozen
    passed: dict[str, object] = {}
    original = inference.predict_dataset

    def spy(*args: object, **kwargs: object) -> object:
        passed.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(inference, "predict_dataset", spy)

    frame = pd.read_csv(SECTION_CSV, dtype=str, keep_default_na=False)
    data = pd.concat([frame] * 3, ignore_index=True).assign(n=range(3 * len(frame)))
    data.to_parquet(tmp_path / "in.parquet", row_group_size=25)
    folder = trained_models["section_header"]
    predict_file(folder, tmp_path / "in.parquet", tmp_path / "single.parquet", id_column="n", probabilities=True)
    rows = predict_parquet_on_ray(folder, tmp_path / "in.parquet", tmp_path / "ray", id_column="n", probabilities=True,
                                  workers=2, chunk_size=16)
    assert rows == len(data)
    single = pq.read_table(tmp_path / "single.parquet").drop(["row"]).to_pylist()
    on_ray = sorted(ds.dataset(tmp_path / "ray", format="parquet").to_table().to_pylist(), key=lambda r: r["n"])
    same_records(on_ray, single)
    assert not (tmp_path / ".ray.partial").exists()
    # results identify notes: the folder and its files are owner-only, as the local engine's output
    assert stat.S_IMODE((tmp_path / "ray").stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ray").iterdir()} == {0o600}
    # the one input file was read in blocks, each a task an actor can take, written as it finished
    # (read as one block, it went to one actor and gave no output until all of it was done)
    written = [pq.read_metadata(path).num_rows for path in (tmp_path / "ray").glob("*.parquet")]
    assert len(written) > 1, written
    # the actors were started with the environment that puts a process under jemalloc, as the local engine runs
    assert passed["actor_env"] == jemalloc_environment()
    if jemalloc_library() is not None:
        assert set(passed["actor_env"]) == {"LD_PRELOAD", "MALLOC_CONF"}


def test_an_actors_data_error_reaches_the_user_as_its_own_message(trained_models: dict[str, Path], tmp_path: Path,
                                                                   local_ray_cluster) -> None:
    from clintune.inference.on_ray import predict_parquet_on_ray

    pd.DataFrame({"n": [1, 2, 3], "dialogue": ["Doctor: any allergies?", "", "Patient: no."]}).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(DataError) as caught:
        predict_parquet_on_ray(trained_models["section_header"], tmp_path / "in.parquet", tmp_path / "ray", id_column="n")
    message = str(caught.value)
    assert message.startswith("1 empty or non-text value(s) in column 'dialogue' (n 2)"), message
    assert "UDF" not in message and "ray::" not in message  # Ray's wrapper text is not the user's message
    assert caught.value.__cause__ is not None  # Ray's error kept as the cause, for --verbose
    assert not (tmp_path / "ray").exists()


def test_a_ray_actor_started_with_the_jemalloc_environment_runs_under_jemalloc(local_ray_cluster) -> None:
    """What ``predict_dataset(actor_env=...)`` asks of Ray, checked in a Ray process's own memory map."""
    if jemalloc_library() is None:
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    ray = local_ray_cluster

    def allocator() -> str:
        from clintune.runtime.allocator import allocator_in_use

        return allocator_in_use()

    probe = ray.remote(num_cpus=1)(allocator)
    with_env = probe.options(runtime_env={"env_vars": jemalloc_environment()}).remote()
    assert ray.get([with_env, probe.remote()]) == ["jemalloc", "system"]


def test_a_ray_model_actor_purges_after_each_batch_and_answers_as_before(trained_models: dict[str, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept pages grew a Ray actor batch after batch; each batch ends with a purge, and changes no answer."""
    pa = require_module("pyarrow", "pyarrow is not installed")
    from clintune.api import predict
    from clintune.inference.on_ray import ModelActor
    from clintune.runtime import allocator

    purges: list[int] = []
    trims: list[int] = []
    monkeypatch.setattr(allocator, "purge_jemalloc", lambda: purges.append(1) or True)
    monkeypatch.setattr(allocator, "release_freed_memory", lambda: trims.append(1))
    frame = pd.read_csv(SECTION_CSV, dtype=str, keep_default_na=False).head(12)
    batch = pa.table({"dialogue": frame["dialogue"].tolist(), "ID": frame["ID"].tolist()})
    actor = ModelActor(str(trained_models["section_header"]), "dialogue", "ID")
    actor.predictor.trim_heap = lambda: None  # the per-batch check inside prediction: counted by its own test
    first, second = actor(batch.slice(0, 5)), actor(batch.slice(5))
    assert (len(purges), len(trims)) == (2, 0)
    labels = first.column("label").to_pylist() + second.column("label").to_pylist()
    assert labels == [r.label for r in predict(trained_models["section_header"], frame["dialogue"].tolist())]

    # On a node without jemalloc the purge finds nothing to call: the actor trims glibc's heap instead.
    monkeypatch.setattr(allocator, "purge_jemalloc", lambda: purges.append(1) or False)
    trims.clear()  # predict() above ran a prediction of its own, with its own hand-back
    actor(batch.slice(0, 5))
    assert (len(purges), len(trims)) == (3, 1)
