"""Importing a user's dataset: every format, the column mappings, streaming, and every error path."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from treesynth_core.data import ingest
from treesynth_core.data.export import export_samples
from treesynth_core.data.ingest import ColumnMap, ImportSummary, detect_format, import_file, iter_records, preview
from treesynth_core.errors import DataError, ProjectError
from treesynth_core.store.project import Project
from treesynth_core.store.samples import TREE_SET, UNROUTED, NewSample

QA = ColumnMap(instruction="question", output="answer")
ROWS = [
    {"question": "What is 2 + 2?", "answer": "4"},
    {"question": "Name a prime above 10.", "answer": "11"},
    {"question": "Is 9 odd?", "answer": "yes"},
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def stored(project: Project, sample_set: str = "imported") -> list[tuple[str, str | None]]:
    return [(s.instruction, s.response) for s in project.samples(sample_set=sample_set)]


def error(call: Any, *args: Any, **kwargs: Any) -> str:
    """The message of the DataError that ``call`` raises (reading a returned iterator to its end).
    Every caller asserts on the message it returns; the match here only refuses an empty one."""
    with pytest.raises(DataError, match=r"\S") as info:
        result = call(*args, **kwargs)
        if isinstance(result, Iterator):
            list(result)
    return str(info.value)


# -- every format round-trips ---------------------------------------------------------------------
def make_jsonl(tmp: Path) -> Path:
    return write_jsonl(tmp / "qa.jsonl", ROWS)


def make_json(tmp: Path) -> Path:
    path = tmp / "qa.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    return path


def make_csv(tmp: Path) -> Path:
    lines = ["question,answer", *(f'"{r["question"]}",{r["answer"]}' for r in ROWS)]
    return write_csv(tmp / "qa.csv", "\r\n".join(lines) + "\r\n")


def make_tsv(tmp: Path) -> Path:
    lines = ["question\tanswer", *(f"{r['question']}\t{r['answer']}" for r in ROWS)]
    return write_csv(tmp / "qa.tsv", "\n".join(lines) + "\n")


def make_gz(tmp: Path) -> Path:
    path = tmp / "qa.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in ROWS)
    return path


def make_parquet(tmp: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp / "qa.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def make_hf(tmp: Path) -> Path:
    from datasets import Dataset

    path = tmp / "qa_hf"
    Dataset.from_list(ROWS).save_to_disk(str(path))
    return path


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (make_jsonl, "jsonl"),
        (make_json, "json"),
        (make_csv, "csv"),
        (make_tsv, "csv"),
        (make_gz, "jsonl"),
        (make_parquet, "parquet"),
        (make_hf, "hf"),
    ],
)
def test_each_format_round_trips(project: Project, tmp_path: Path, make: Any, fmt: str) -> None:
    path = make(tmp_path)
    assert detect_format(path) == fmt
    shown = preview(path)
    assert shown.format == fmt
    assert shown.columns == ["question", "answer"]
    assert shown.rows[0] == ROWS[0]
    assert shown.suggested == QA
    assert shown.total_bytes > 0

    summary = import_file(project, path, shown.suggested, sample_set="user")

    assert summary == ImportSummary("user", 3, 0, path.name, fmt)
    assert project.sample_sets() == {"user": 3}
    assert stored(project, "user") == [(r["question"], r["answer"]) for r in ROWS]
    first = project.samples(sample_set="user")[0]
    assert first.leaf_id == UNROUTED
    assert first.path == [] and first.model is None
    assert first.key.startswith("row:")
    assert first.extra == {"provenance": "original", "source": path.name, "row": first.extra["row"]}


def test_row_numbers_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n\n{"question": "b", "answer": "2"}\n', encoding="utf-8")
    samples = list(ingest.read_samples(path, QA, sample_set="s"))
    assert [s.key for s in samples] == ["row:1", "row:3"]  # JSONL: line numbers, blank lines skipped
    assert [s.extra["row"] for s in samples] == [1, 3]
    assert all(s.sample_set == "s" for s in samples)
    csv_path = write_csv(tmp_path / "a.csv", 'question,answer\n"two\nlines",1\nb,2\n')
    assert [n for n, _ in iter_records(csv_path)] == [1, 2]  # CSV: data rows, header excluded


def test_csv_bom_quotes_and_semicolons(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "excel.csv", '\ufeffquestion;answer\n"a; b";"say ""hi"""\n')
    assert list(iter_records(path)) == [(1, {"question": "a; b", "answer": 'say "hi"'})]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"question": "q"}\n')
    assert list(iter_records(jsonl)) == [(1, {"question": "q"})]


def test_latin1_file_reads_with_its_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fr.csv", "question,answer\ncafé?,oui\n", encoding="latin-1")
    assert list(iter_records(path, encoding="latin-1")) == [(1, {"question": "café?", "answer": "oui"})]


def test_utf16_file_reads_with_its_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "w.csv", "question,answer\r\nnaïve?,ja\r\n", encoding="utf-16")
    assert list(iter_records(path, encoding="utf-16")) == [(1, {"question": "naïve?", "answer": "ja"})]


def test_json_file_of_json_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "lines.json", ROWS)
    assert [r for _, r in iter_records(path)] == ROWS


def test_folder_of_files_numbers_rows_across_files(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "part-0.jsonl", ROWS[:2])
    write_jsonl(folder / "part-1.jsonl", ROWS[2:])
    assert detect_format(folder) == "jsonl"
    summary = import_file(project, folder, QA)
    assert summary.imported == 3 and summary.source == "shards"
    assert [s.key for s in project.samples(sample_set="imported")] == ["row:1", "row:2", "row:3"]
    write_jsonl(folder / "part-2.jsonl", [{"question": "x"}])
    assert "shards/part-2.jsonl line 1 has no column 'answer'" in error(
        import_file, project, folder, QA, sample_set="again"
    )


def test_non_string_values(tmp_path: Path) -> None:
    rows = [
        {"question": 7, "answer": 3.0},
        {"question": True, "answer": None},
        {"question": {"a": [1]}, "answer": 2.5},
    ]
    samples = list(ingest.read_samples(write_jsonl(tmp_path / "n.jsonl", rows), QA, sample_set="s"))
    assert [(s.instruction, s.response) for s in samples] == [("7", "3"), ("true", None), ('{"a": [1]}', "2.5")]


def test_limit_and_progress(project: Project, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(5_000)])
    counts: list[int] = []
    summary = import_file(project, path, QA, limit=4_500, progress=counts.append)
    assert summary.imported == 4_500
    assert counts == [2_000, 4_000, 4_500]
    assert "limit must be at least 1" in error(import_file, project, path, QA, sample_set="x", limit=0)


# -- mappings -------------------------------------------------------------------------------------
def test_chat_messages_mapping(project: Project, tmp_path: Path) -> None:
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye?"},
        {"role": "assistant", "content": "Bye."},
    ]
    rows = [
        {"messages": chat},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Parts"}]}]},
        {"messages": [{"from": "human", "value": "ShareGPT?"}, {"from": "gpt", "value": "Yes."}]},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    assert preview(path).suggested == ColumnMap(messages="messages")
    import_file(project, path, ColumnMap.parse("messages=messages"), sample_set="chat")
    samples = project.samples(sample_set="chat")
    assert [(s.instruction, s.response) for s in samples] == [("Hi?", "Hello."), ("Parts", None), ("ShareGPT?", "Yes.")]
    assert samples[0].extra["system"] == "Be brief."
    assert samples[0].extra["messages"] == chat
    assert "system" not in samples[2].extra
    assert samples[2].extra["messages"] == [
        {"role": "user", "content": "ShareGPT?"},
        {"role": "assistant", "content": "Yes."},
    ]


def test_chat_messages_as_json_text_in_csv(tmp_path: Path) -> None:
    cell = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]).replace('"', '""')
    path = write_csv(tmp_path / "chat.csv", f'conversations\n"{cell}"\n')
    assert preview(path).suggested == ColumnMap(messages="conversations")
    (sample,) = ingest.read_samples(path, ColumnMap(messages="conversations"), sample_set="s")
    assert (sample.instruction, sample.response) == ("Q", "A")


def test_alpaca_instruction_input_output(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
    ]
    path = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    cmap = preview(path).suggested
    assert cmap == ColumnMap(instruction="instruction", input="input", output="output")
    samples = list(ingest.read_samples(path, cmap, sample_set="s"))
    assert [(s.instruction, s.response) for s in samples] == [
        ("Translate to French.\n\ncat", "chat"),
        ("Say hi.", "hi"),
    ]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["question", "answer"], "instruction=question,output=answer"),
        (["Instruction", "Input", "Output"], "instruction=Instruction,input=Input,output=Output"),
        (["prompt", "completion"], "instruction=prompt,output=completion"),
        (["prompt", "response", "id"], "instruction=prompt,output=response"),
        (["prompt", "messages"], "messages=messages"),
        (["conversations"], "messages=conversations"),
        (["input", "output"], "instruction=input,output=output"),
        (["instruction", "context", "response"], "instruction=instruction,input=context,output=response"),
        (["id", "messages", "instruction", "response"], "instruction=instruction,output=response"),  # our export
        (["text"], ""),
    ],
)
def test_suggested_mapping(columns: list[str], expected: str) -> None:
    assert ingest.suggest_map(columns).to_text() == expected


def test_column_map_parse() -> None:
    assert ColumnMap.parse(" instruction = question , output=answer,") == QA
    assert ColumnMap.parse(QA.to_text()) == QA
    assert ColumnMap.parse("messages=chat") == ColumnMap(messages="chat")
    assert "unknown key 'response'" in (msg := error(ColumnMap.parse, "instruction=q,response=a"))
    assert "did you mean output=a?" in msg and "instruction, input, output and messages" in msg
    assert "did you mean instruction=q?" in error(ColumnMap.parse, "instrution=q")
    assert "has no '='" in error(ColumnMap.parse, "question")
    assert "appears twice" in error(ColumnMap.parse, "instruction=a,instruction=b")
    assert "names no column" in error(ColumnMap.parse, "instruction=")
    assert "is empty" in error(ColumnMap.parse, " , ")
    assert "both instruction= and messages=" in error(ColumnMap.parse, "instruction=q,messages=m")
    assert "no instruction column" in error(ColumnMap.parse, "output=a")


# -- errors ---------------------------------------------------------------------------------------
def test_missing_file_and_folders(tmp_path: Path) -> None:
    assert "no such file" in error(preview, tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    msg = error(preview, tmp_path / "empty")
    assert "is a folder that holds no dataset" in msg and "save_to_disk" in msg
    both = tmp_path / "both"
    both.mkdir()
    write_jsonl(both / "a.jsonl", ROWS)
    write_csv(both / "b.csv", "question\nq\n")
    assert "several formats" in error(detect_format, both)
    assert preview(both, fmt="csv").rows == [{"question": "q"}]
    splits = tmp_path / "dd"
    (splits / "train").mkdir(parents=True)
    (splits / "dataset_dict.json").write_text('{"splits": ["train"]}')
    assert "DatasetDict with the splits train" in error(detect_format, splits)


def test_unknown_format(tmp_path: Path) -> None:
    sheet = tmp_path / "data.xlsx"
    sheet.write_bytes(b"PK")
    msg = error(preview, sheet)
    assert "cannot tell the format of data.xlsx" in msg and "save the sheet as CSV" in msg and "--format" in msg
    assert "unknown format 'xml'" in error(preview, make_jsonl(tmp_path), fmt="xml")
    assert "hf format is a folder" in error(preview, make_jsonl(tmp_path), fmt="hf")
    assert "unknown encoding 'klingon'" in error(preview, make_jsonl(tmp_path), encoding="klingon")
    assert "not a readable Parquet file" in error(preview, make_jsonl(tmp_path), fmt="parquet")


def test_latin1_file_read_as_utf8(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fr.csv", "question,answer\nok,1\ncafé?,oui\n", encoding="latin-1")
    msg = error(preview, path)
    assert msg.startswith("fr.csv line 3 is not valid utf-8: byte 0xe9 at byte 4 of the line (after 'caf')")
    assert "--encoding latin-1" in msg and "re-save the file as UTF-8" in msg
    whole = tmp_path / "fr.json"
    whole.write_bytes('[{"question": "ok"},\n {"question": "café"}]'.encode("latin-1"))
    assert "fr.json line 2 is not valid utf-8: byte 0xe9" in error(preview, whole)


def test_utf16_file_read_as_utf8(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "w.csv", "question,answer\nq,a\n", encoding="utf-16")
    msg = error(preview, path)
    assert "w.csv looks like UTF-16 text" in msg and "--encoding utf-16" in msg
    path = write_csv(tmp_path / "w.jsonl", '{"question": "q"}\n', encoding="utf-16-le")  # no byte-order mark
    assert "NUL bytes" in error(preview, path)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a"}\n{"question": "b" "answer": 1}\n', encoding="utf-8")
    msg = error(preview, path)
    assert msg.startswith("bad.jsonl line 2 is not valid JSON (Expecting ',' delimiter at column 18)")
    assert '{"question": "b" "answer": 1}' in msg
    path.write_text("[\n" + json.dumps(ROWS) + "\n]", encoding="utf-8")
    assert "must be named .json" in error(preview, path)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"question": "a"},\n{"question": }\n]', encoding="utf-8")
    assert "broken.json line 3 is not valid JSON (Expecting value at column 14)" in error(preview, broken)


def test_json_line_not_an_object(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "arr.jsonl", [ROWS[0], ["a", "b"]])
    msg = error(preview, path)
    assert "arr.jsonl line 2 holds a JSON array, not an object" in msg
    array = tmp_path / "arr.json"
    array.write_text(json.dumps([ROWS[0], "text"]), encoding="utf-8")
    assert "arr.json item 2 of the array is a JSON string, not an object" in error(preview, array)


def test_missing_mapped_column(project: Project, tmp_path: Path) -> None:
    path = make_csv(tmp_path)
    msg = error(import_file, project, path, ColumnMap(instruction="Question", output="answr"))
    assert "qa.csv row 1 (line 2) has no column 'Question' (mapped as instruction)" in msg
    assert "its columns are: question, answer; the closest is 'question'" in msg
    msg = error(import_file, project, make_parquet(tmp_path), ColumnMap(instruction="question", output="answr"))
    assert "qa.parquet row 1 has no column 'answr' (mapped as output)" in msg and "closest is 'answer'" in msg
    assert project.sample_sets() == {}


def test_mapping_without_instruction(tmp_path: Path) -> None:
    path = make_jsonl(tmp_path)
    msg = error(ingest.read_samples, path, ColumnMap(output="answer"), sample_set="s")
    assert "names no instruction column" in msg and "messages=COLUMN" in msg
    assert "no instruction column" in error(ingest.to_sample, 1, ROWS[0], ColumnMap(), sample_set="s", source="x")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("hello", "holds text that is not JSON"),
        ({"role": "user"}, "holds a dict, not a list of"),
        (["hi"], "message 1 in column 'messages' is a string, not an object with a role"),
        ([{"role": "user", "content": "a"}, {"role": "assistant"}], "message 2 in column 'messages' has no content"),
        ([{"content": "a"}], "message 1 in column 'messages' has no role"),
    ],
)
def test_messages_not_a_list_of_role_content(tmp_path: Path, cell: Any, expected: str) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": cell}])
    msg = error(ingest.read_samples, path, ColumnMap(messages="messages"), sample_set="s")
    assert msg.startswith("chat.jsonl line 1: ") and expected in msg


def test_empty_rows_are_an_error_by_default(project: Project, tmp_path: Path) -> None:
    rows = [{"question": q, "answer": "a"} for q in ["ok", "", "  ", None, "ok", "", "", "", "ok"]]
    path = write_jsonl(tmp_path / "gaps.jsonl", rows)
    msg = error(import_file, project, path, QA)
    assert msg.startswith("gaps.jsonl: 6 rows have an empty instruction (column 'question'): line 2, line 3, line 4, ")
    assert "line 7, …" in msg and "--skip-empty" in msg
    assert project.sample_sets() == {}

    summary = import_file(project, path, QA, skip_empty=True)
    assert (summary.imported, summary.skipped_empty) == (3, 6)
    assert [s.key for s in project.samples(sample_set="imported")] == ["row:1", "row:5", "row:9"]

    one = write_csv(tmp_path / "one.csv", "question,answer\nq,a\n,b\n")
    assert "one.csv: 1 row has an empty instruction (column 'question'): row 2 (line 3). " in error(
        import_file, project, one, QA, sample_set="one"
    )
    chat = write_jsonl(tmp_path / "c.jsonl", [{"m": [{"role": "system", "content": "s"}]}])
    msg = error(import_file, project, chat, ColumnMap(messages="m"), sample_set="c", skip_empty=True)
    assert "all 1 rows have no user message (column 'm'): there is nothing to import" in msg


@pytest.mark.parametrize("content", ["", "\n\n", "question,answer\n", "[]"])
def test_empty_file(project: Project, tmp_path: Path, content: str) -> None:
    path = tmp_path / ("empty.json" if content == "[]" else "empty.csv")
    path.write_text(content, encoding="utf-8")
    assert f"{path.name} holds no rows" in error(import_file, project, path, QA)
    assert f"{path.name} holds no rows" in error(preview, path)
    assert project.sample_sets() == {}


def test_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ragged.csv", "question,answer\nq,a\nwhat, then,a\n")
    assert "ragged.csv row 2 (line 3) has 3 fields but the header has 2: quote the fields" in error(preview, path, n=9)
    twice = write_csv(tmp_path / "twice.csv", "question,question\nq,a\n")
    assert "names the column 'question' twice" in error(preview, twice)


# -- all or nothing -------------------------------------------------------------------------------
def test_bad_row_at_the_end_leaves_nothing(project: Project, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(4_500)])
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"question": "last", "answer": \n')
    counts: list[int] = []
    msg = error(import_file, project, path, QA, sample_set="big", progress=counts.append)
    assert msg.startswith("big.jsonl line 4501 is not valid JSON")
    assert counts == [2_000, 4_000]  # two batches were written inside the transaction, then rolled back
    assert "big" not in project.sample_sets()
    assert project.samples(sample_set="big") == []


def test_ctrl_c_from_progress_leaves_nothing(project: Project, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", [{"question": f"q{i}", "answer": "a"} for i in range(5_000)])

    def interrupt(count: int) -> None:
        if count >= 4_000:
            raise KeyboardInterrupt("ctrl-c while importing")

    with pytest.raises(KeyboardInterrupt, match="ctrl-c while importing"):
        import_file(project, path, QA, sample_set="big", progress=interrupt)
    assert project.sample_sets() == {}
    assert import_file(project, path, QA, sample_set="big").imported == 5_000  # and the project still works


def test_existing_set_is_refused_before_reading(project: Project, tmp_path: Path) -> None:
    path = make_jsonl(tmp_path)
    import_file(project, path, QA)
    with pytest.raises(ProjectError, match="already holds 3 samples"):
        import_file(project, path, QA)
    project.add_samples([NewSample(leaf_id="x", key="k", instruction="i", path=[])])
    with pytest.raises(ProjectError, match="its own sample set name"):
        import_file(project, path, QA, sample_set=TREE_SET)


# -- streaming ------------------------------------------------------------------------------------
def test_jsonl_is_read_lazily(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "lazy.jsonl", ROWS)
    with path.open("ab") as handle:
        handle.write(b"not json\n\xff\xfe broken bytes\n")
    assert [r for _, r in itertools.islice(iter_records(path), 3)] == ROWS
    assert preview(path, n=3).rows == ROWS
    assert "lazy.jsonl line 4 is not valid JSON" in error(iter_records, path)


def test_csv_is_read_lazily(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "lazy.csv", "question,answer\na,1\nb,2\nc,3\nd,4,5,6\n")
    path.write_bytes(path.read_bytes() + b"caf\xe9,x\n")
    assert [r["question"] for _, r in itertools.islice(iter_records(path), 3)] == ["a", "b", "c"]
    assert "lazy.csv row 4 (line 5) has 4 fields" in error(iter_records, path)


def test_parquet_is_read_lazily(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "lazy.parquet"
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(3_000)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100, compression="snappy")
    meta = pq.ParquetFile(path).metadata
    last = meta.row_group(meta.num_row_groups - 1)
    data = bytearray(path.read_bytes())
    for c in range(last.num_columns):  # wreck the last row group's pages; the footer stays intact
        column = last.column(c)
        start = column.dictionary_page_offset or column.data_page_offset
        data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    path.write_bytes(bytes(data))

    assert [r for _, r in itertools.islice(iter_records(path), 3)] == rows[:3]
    assert preview(path, n=3).rows == rows[:3]
    msg = error(iter_records, path)
    assert msg.startswith("lazy.parquet could not be read after row") and "damaged" in msg


# -- what export writes imports back --------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "name"), [("jsonl", "out.jsonl"), ("parquet", "out.parquet"), ("hf", "out_hf")])
def test_export_imports_back(project: Project, tmp_path: Path, fmt: Any, name: str) -> None:
    tree = project.tree()
    project.add_samples(
        [
            NewSample(leaf_id=tree.root_id, key="0:0", instruction="Add 2 and 3.", path=[], response="5", model="m"),
            NewSample(leaf_id=tree.root_id, key="0:1", instruction="Halve 8.", path=[], response=None, model="m"),
        ]
    )
    result = export_samples(tree, project.samples(), fmt, tmp_path / name)

    shown = preview(result.data)
    assert shown.format == fmt
    assert shown.suggested == ColumnMap(instruction="instruction", output="response")
    summary = import_file(project, result.data, shown.suggested, sample_set="back")
    assert summary.imported == 2
    assert stored(project, "back") == [("Add 2 and 3.", "5"), ("Halve 8.", None)]

    chat = import_file(project, result.data, ColumnMap(messages="messages"), sample_set="back-chat")
    assert chat.imported == 2
    assert stored(project, "back-chat") == stored(project, "back")


def test_damaged_hf_folder(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "data-00000-of-00001.arrow").write_bytes(b"x")
    assert detect_format(folder) == "hf"
    assert "hf: data-00000-of-00001.arrow is not an Arrow file written by datasets" in error(preview, folder)
    (folder / "state.json").write_text('{"_data_files": [{"filename": "gone.arrow"}]}')
    assert "hf is incomplete: gone.arrow listed in state.json is missing" in error(preview, folder)
