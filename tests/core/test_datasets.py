"""A user's data: formats, loss masks, the held-out split, batches from the seed alone, and hostile
files refused in one line."""

import json

import pytest
import torch

from explorer.core import datasets as D
from explorer.core.tokenizer import TOKENIZER


def _one_line(err) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def _split(seed=0):
    return torch.Generator().manual_seed(seed)


ALPACA = [
    {"instruction": "Review this change.", "input": "x = x + 1", "output": "Use x += 1."},
    {"instruction": "Name the bug.", "output": "An off-by-one in the loop."},
    {"instruction": "Say hi.", "input": None, "output": "hi"},
]


def test_text_file_is_cut_into_windows(tmp_path):
    text = "".join(f"line {i}\n" for i in range(500))
    (tmp_path / "a.txt").write_text(text)
    ds = D.load_dataset(tmp_path / "a.txt", TOKENIZER, 31, _split())
    assert ds.kind == "text" and ds.train.ids.shape[1] == 32
    n = len(text.encode()) // 32
    assert len(ds.train) + len(ds.heldout) == n and len(ds.heldout) == round(0.1 * n)
    inputs, targets = ds.heldout.inputs_targets()
    assert (targets != D.IGNORE).all()  # plain text: every token is a target
    rows = torch.cat([ds.train.ids, ds.heldout.ids]).long()
    assert bytes(sorted(rows.flatten().tolist())) == bytes(sorted(text.encode()[: n * 32]))


def test_folder_of_text_files(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "one.txt").write_text("alpha " * 100)
    (tmp_path / "d" / "sub" / "two.txt").write_text("beta " * 100)
    (tmp_path / "d" / "skip.md").write_text("not read")
    kind, records = D.read_records(tmp_path / "d")
    assert kind == "text" and [r[0][:5] for r in records] == ["alpha", "beta "]


def test_jsonl_and_json_text_records(tmp_path):
    lines = [json.dumps({"text": f"record {i} " * 8, "meta": i}) for i in range(40)]
    (tmp_path / "t.jsonl").write_text("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n")
    (tmp_path / "t.json").write_text(json.dumps([json.loads(x) for x in lines]))
    a = D.load_dataset(tmp_path / "t.jsonl", TOKENIZER, 63, _split())
    b = D.load_dataset(tmp_path / "t.json", TOKENIZER, 63, _split())
    assert a.kind == b.kind == "text" and torch.equal(a.train.ids, b.train.ids)


@pytest.mark.parametrize("loss_on", ["response", "all"])
def test_instruction_rows_mask_the_prompt(tmp_path, loss_on):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(ALPACA * 4))
    ds = D.load_dataset(path, TOKENIZER, 255, _split(), loss_on=loss_on)
    assert ds.kind == "instruction"
    rows = D.tokenize("instruction", [(r["instruction"], r.get("input") or "", r["output"]) for r in ALPACA],
                      TOKENIZER, 255, loss_on, "x")  # fmt: skip
    prompt = D.alpaca_prompt("Review this change.", "x = x + 1")
    n_prompt, n_response = len(prompt.encode()), len(b"Use x += 1.")
    assert int(rows.prompt_len[0]) == n_prompt and rows.prompt(0) == list(prompt.encode())
    targets = rows.mask[0].nonzero().flatten().tolist()
    first = n_prompt if loss_on == "response" else 1
    assert targets == list(range(first, n_prompt + n_response))
    assert "### Input" not in D.alpaca_prompt("Say hi.") and TOKENIZER.decode(rows.prompt(2)).endswith(
        "### Response:\n"
    )


def test_long_instructions_keep_part_of_the_response(tmp_path):
    rows = D.tokenize("instruction", [("x" * 500, "", "the answer")], TOKENIZER, 63, "response", "x")
    assert rows.mask[0].sum() == len("the answer") and TOKENIZER.decode(rows.ids[0].tolist()).endswith("the answer")


def test_heldout_share_depends_on_the_seed_and_eval_data_replaces_it(tmp_path):
    (tmp_path / "a.txt").write_text("".join(f"{i:07d}\n" for i in range(400)))  # 200 distinct windows of 16
    (tmp_path / "e.txt").write_text("zyxwvuts" * 100)
    one, same, other = (D.load_dataset(tmp_path / "a.txt", TOKENIZER, 15, _split(s)) for s in (0, 0, 1))
    assert torch.equal(one.heldout.ids, same.heldout.ids) and torch.equal(one.train.ids, same.train.ids)
    with_eval = D.load_dataset(tmp_path / "a.txt", TOKENIZER, 15, _split(), eval_path=tmp_path / "e.txt")
    assert len(with_eval.train) == 200 and len(with_eval.heldout) == D.MAX_HELDOUT
    assert TOKENIZER.decode(with_eval.prompt_ids) == "zyxwvutszyxwvuts"[:15]  # the first 15 of 16 tokens
    # batches come from the generator alone
    b1 = one.batch(torch.Generator().manual_seed(5), 4)
    b2 = one.batch(torch.Generator().manual_seed(5), 4)
    assert all(torch.equal(x, y) for x, y in zip(b1, b2)) and b1[0].dtype == torch.long
    assert other.heldout.ids.shape == one.heldout.ids.shape and not torch.equal(other.heldout.ids, one.heldout.ids)
    assert len(one.heldout) == 20 and len(one.train) == 180


# --- hostile data -----------------------------------------------------------------------------


def test_wrong_fields_name_the_fields_and_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(ValueError) as err:
        D.read_records(path)
    msg = _one_line(err)
    assert "line 2" in msg and '"instruction"' in msg and '"output"' in msg and "found prompt, completion" in msg


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"text": 3}\n', '"text" must be a string'),
        ('{"instruction": "a", "output": ["b"]}\n', '"output" must be a string'),
        ('{"instruction": "a", "output": ""}\n', '"output" is empty'),
        ('{"text": "a"}\n{"instruction": "a", "output": "b"}\n', "one kind per file"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"text": "a"\n', "not valid JSON"),
        ("\n\n", "no records"),
    ],
)
def test_bad_jsonl(tmp_path, content, problem):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        D.read_records(path)
    assert problem in _one_line(err) and str(path) in str(err.value)


def test_binary_files_are_refused(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"text then \x00\x01\x02 binary")
    (tmp_path / "c.jsonl").write_bytes(b'{"text": "ok"}\n\xff\xfe\xfa\n')
    with pytest.raises(ValueError, match="NUL byte at byte 10: a binary file") as err:
        D.read_records(tmp_path / "b.txt")
    _one_line(err)
    with pytest.raises(ValueError, match=r"line 2: not UTF-8 text") as err:
        D.read_records(tmp_path / "c.jsonl")
    _one_line(err)


def test_a_2gb_single_line_is_refused_after_a_bounded_read(tmp_path):
    """A sparse 2 GB file: reading it whole would take 2 GB; the reader stops after one line's bound."""
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"text": "')
        fh.seek(2 * 10**9 - 1)
        fh.write(b"\n")
    with pytest.raises(ValueError) as err:
        D.read_records(path)
    assert "line 1: longer than" in _one_line(err) or "more than the" in str(err.value)
    # under the file-size cap it is the line bound that refuses it
    small = tmp_path / "long.jsonl"
    with open(small, "wb") as fh:
        fh.write(b'{"text": "')
        fh.seek(D.MAX_LINE_BYTES + 10)
        fh.write(b'"}\n')
    with pytest.raises(ValueError, match="line 1: longer than 16,000,000 bytes") as err:
        D.read_records(small)
    _one_line(err)
    huge_txt = tmp_path / "huge.txt"
    huge_txt.write_bytes(b"")
    with open(huge_txt, "r+b") as fh:
        fh.truncate(2 * 10**9)
    with pytest.raises(ValueError, match="more than the 1,000,000,000 allowed") as err:
        D.read_records(huge_txt)
    _one_line(err)


def test_other_formats_and_too_little_data(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown data format '.csv'") as err:
        D.read_records(tmp_path / "d.csv")
    assert ".jsonl" in _one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        D.read_records(tmp_path / "empty")
    (tmp_path / "short.txt").write_text("tiny")
    with pytest.raises(ValueError, match="fewer than one window") as err:
        D.load_dataset(tmp_path / "short.txt", TOKENIZER, 63, _split())
    _one_line(err)
    with pytest.raises(FileNotFoundError):
        D.read_records(tmp_path / "nope.txt")
    (tmp_path / "list.json").write_text('{"text": "a dict, not a list"}')
    with pytest.raises(ValueError, match="expected a JSON list of records"):
        D.read_records(tmp_path / "list.json")
