"""`run`, `compare`, `export` and `budget` with --model DIR (and --data PATH): the recording names the
checkpoint and its hash, the export round-trips through PEFT on transformers' model of that directory,
and hostile model directories and data end as one line with exit code 2."""

import json

import pytest
import torch
from checkpoint_factory import VOCAB, save_checkpoint, write_datasets
from engine_helpers import one_thread  # noqa: F401 (autouse fixture)

from explorer import cli
from explorer.core.checkpoint import fingerprint
from explorer.core.export_adapter import build_trained_model

IDS = torch.randint(0, VOCAB, (2, 30), generator=torch.Generator().manual_seed(4))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    save_checkpoint(root / "llama", "llama")
    save_checkpoint(root / "qwen2", "qwen2")
    return root, write_datasets(root / "data")


def _run(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()  # drop what making the files printed (transformers' progress bars)
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


TRAIN = ("--seq-len", "32", "--batch-size", "4", "--lr", "0.03", "--device", "cpu", "--quiet", "--threads", "1")


@pytest.mark.parametrize(
    "kind, data, method",
    [
        ("llama", "txt", ("--rank", "4", "--targets", "q_proj,v_proj")),
        ("qwen2", "instruction", ("--rank", "2", "--targets", "q_proj,k_proj,v_proj,o_proj,up_proj", "--use-dora")),
    ],
)
def test_run_then_export_round_trips_through_peft(tmp_path, capsys, files, kind, data, method):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, paths = files
    model_dir = root / kind
    code, err = _run(capsys, "run", "--model", str(model_dir), "--data", str(paths[data]), *TRAIN, *method,
                     "--steps", "4", "--out", str(tmp_path / "rec"))  # fmt: skip
    assert code == 0, err
    config = json.loads((tmp_path / "rec" / "config.json").read_text())
    assert config["settings"]["model"] == str(model_dir) and config["settings"]["data"] == str(paths[data])
    assert config["base"]["model_dir"] == str(model_dir.resolve())
    assert config["base"]["model_hash"] == fingerprint(model_dir)
    assert config["base"]["data"] == str(paths[data].resolve())

    code, err = _run(capsys, "export", str(tmp_path / "rec"), "--out", str(tmp_path / "out"))
    assert code == 0, err
    adapter_config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(model_dir.resolve())

    ours = build_trained_model(tmp_path / "rec")[0]
    hf = AutoModelForCausalLM.from_pretrained(adapter_config["base_model_name_or_path"]).eval()
    peft_model = PeftModel.from_pretrained(hf, tmp_path / "out" / "adapter").eval()
    with torch.no_grad():
        assert (peft_model(IDS).logits - ours(IDS)).abs().max().item() < 1e-5


def test_export_refuses_a_checkpoint_that_changed(tmp_path, capsys, files):
    root, paths = files
    model_dir = tmp_path / "m"
    save_checkpoint(model_dir, "llama")
    code, err = _run(capsys, "run", "--model", str(model_dir), "--data", str(paths["txt"]), *TRAIN,
                     "--steps", "1", "--out", str(tmp_path / "rec"))  # fmt: skip
    assert code == 0, err
    # the same config.json, the weights now sharded: the recorded hash of config + weights index differs
    (model_dir / "model.safetensors").unlink()
    save_checkpoint(model_dir, "llama", max_shard_size="40KB")
    code, err = _run(capsys, "export", str(tmp_path / "rec"), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "is not the checkpoint the run trained on" in err
    assert not (tmp_path / "out" / "adapter").exists()
    # a config that differs is named
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    code, err = _run(capsys, "export", str(tmp_path / "rec"), "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1 and "rms_norm_eps=1e-06" in err


def test_compare_on_a_user_model(tmp_path, capsys, files):
    root, paths = files
    code, err = _run(capsys, "compare", "--model", str(root / "llama"), "--data", str(paths["jsonl"]), "--runs",
                     "lora:r=2", "--runs", "prefix:K=3,L=1", "--steps", "2", "--seq-len", "32", "--batch-size", "2",
                     "--device", "cpu", "--quiet", "--threads", "1", "--out", str(tmp_path / "cmp"))  # fmt: skip
    assert code == 0, err
    manifest = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert manifest["base_settings"]["model"] == str(root / "llama")
    run_cfg = json.loads((tmp_path / "cmp" / "runs" / "lora-r2" / "config.json").read_text())
    assert run_cfg["base"]["model_hash"] == fingerprint(root / "llama")


def test_budget_on_a_user_model(capsys, files):
    root, _ = files
    code = cli.main(["budget", "--model", str(root / "qwen2"), "--method", "full", "--json"])
    out = json.loads(capsys.readouterr().out)
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(root / "qwen2")
    assert code == 0 and out["trainable_params"] == sum(p.numel() for p in hf.parameters())  # q/k/v biases, tied


def _hostile_model(root, what):
    d = root / what
    save_checkpoint(d, "llama")
    if what == "pickle":
        (d / "model.safetensors").rename(d / "pytorch_model.bin")
    elif what == "tokenizer":
        (d / "tokenizer.json").write_text("{ not json")
    elif what == "sentencepiece":
        (d / "tokenizer.json").rename(d / "tokenizer.model")
    elif what == "gpt2":
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    elif what == "layers":
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 10**7}))
    return d


@pytest.mark.parametrize(
    "what, words",
    [
        ("pickle", "convert them to safetensors"),
        ("tokenizer", "not a valid JSON tokenizer"),
        ("sentencepiece", "SentencePiece"),
        ("gpt2", "allowed llama, mistral, qwen2"),
        ("layers", "needs about"),
    ],
)
def test_hostile_model_directories_exit_2_in_one_line(tmp_path, capsys, files, what, words):
    _, paths = files
    model_dir = _hostile_model(tmp_path, what)
    code, err = _run(capsys, "run", "--model", str(model_dir), "--data", str(paths["txt"]), *TRAIN,
                     "--steps", "1", "--out", str(tmp_path / "rec"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "rec").exists()


@pytest.mark.parametrize("what", ["binary", "fields", "long-line"])
def test_hostile_data_exits_2_in_one_line(tmp_path, capsys, files, what):
    root, _ = files
    if what == "binary":
        data = tmp_path / "d.txt"
        data.write_bytes(bytes(range(256)) * 10)
    elif what == "fields":
        data = tmp_path / "d.jsonl"
        data.write_text('{"text": "ok"}\n{"question": "q", "answer": "a"}\n')
    else:
        data = tmp_path / "d.jsonl"
        with open(data, "wb") as fh:
            fh.write(b'{"text": "')
            fh.seek(2 * 10**9)
            fh.write(b'"}\n')
    code, err = _run(capsys, "run", "--model", str(root / "llama"), "--data", str(data), *TRAIN,
                     "--steps", "1", "--out", str(tmp_path / "rec"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert str(data) in err
