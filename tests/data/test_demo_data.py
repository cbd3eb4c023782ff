"""Checks of the shipped demo data (`spec_cascade_jax/demo_data/`) and of its preparation script."""

import importlib.resources
import importlib.util
import json
import pathlib
import sys

import pytest
import sentencepiece as spm

DEMO_DIR = pathlib.Path(str(importlib.resources.files("spec_cascade_jax") / "demo_data"))
SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "prepare_demo_data.py"
TASKS = ("ende", "synopsis")
SPLITS = ("train", "validation", "test")
# Lower bounds on the training split: the README counts are 26,704 (ende) and 8,000 (synopsis).
MIN_TRAIN = {"ende": 20_000, "synopsis": 8_000}
MAX_MODEL_BYTES = 16 * 1024 * 1024  # the bundled drafter + verifier (bf16)
MAX_TOTAL_BYTES = 8 * 1024 * 1024  # the size budget of everything shipped under demo_data/


def _read_jsonl(task: str, split: str) -> list[dict]:
    path = DEMO_DIR / task / f"{split}.jsonl"
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_demo_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare_demo_data"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "name",
    ["train.jsonl", "validation.jsonl", "test.jsonl", "spm.model", "spm.vocab", "README.md"],
)
def test_file_exists_and_is_not_empty(task, name):
    path = DEMO_DIR / task / name
    assert path.is_file(), path
    assert path.stat().st_size > 0, path


def test_ding_licence_files_ship_with_ende():
    notice = (DEMO_DIR / "ende" / "LICENSE.trans-de-en").read_text(encoding="utf-8")
    gpl = (DEMO_DIR / "ende" / "COPYING.GPL-2").read_text(encoding="utf-8")
    assert "License: GPL-2+" in notice
    assert "Frank Richter" in notice
    assert "GNU GENERAL PUBLIC LICENSE" in gpl
    assert "Version 2" in gpl


def test_total_size_within_budget():
    """Data within its budget; the trained demo models (models/) have a budget of their own."""
    files = [p for p in DEMO_DIR.rglob("*") if p.is_file()]
    data = sum(p.stat().st_size for p in files if "models" not in p.relative_to(DEMO_DIR).parts)
    models = sum(p.stat().st_size for p in files if "models" in p.relative_to(DEMO_DIR).parts)
    assert data < MAX_TOTAL_BYTES, f"demo_data holds {data:,} bytes of data"
    assert models < MAX_MODEL_BYTES, f"demo_data holds {models:,} bytes of models"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split", SPLITS)
def test_rows_have_clean_nonempty_input_and_target(task, split):
    rows = _read_jsonl(task, split)
    assert rows
    for row in rows:
        assert set(row) == {"input", "target"}, row
        for field in ("input", "target"):
            text = row[field]
            assert isinstance(text, str) and text, row
            assert text == " ".join(text.split()), f"unnormalised whitespace in {text!r}"
        assert row["input"] != row["target"], row


@pytest.mark.parametrize("task", TASKS)
def test_split_sizes(task):
    assert len(_read_jsonl(task, "validation")) == 300
    assert len(_read_jsonl(task, "test")) == 300
    assert len(_read_jsonl(task, "train")) >= MIN_TRAIN[task]


@pytest.mark.parametrize("task", TASKS)
def test_splits_do_not_share_inputs(task):
    inputs = {split: {r["input"].lower() for r in _read_jsonl(task, split)} for split in SPLITS}
    assert len(inputs["validation"]) == 300  # no duplicates inside validation either
    assert len(inputs["test"]) == 300
    assert not inputs["train"] & inputs["validation"]
    assert not inputs["train"] & inputs["test"]
    assert not inputs["validation"] & inputs["test"]


@pytest.mark.parametrize("task", TASKS)
def test_sentencepiece_special_ids(task):
    sp = spm.SentencePieceProcessor(model_file=str(DEMO_DIR / task / "spm.model"))
    assert sp.vocab_size() == 2000
    assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
    assert (sp.id_to_piece(0), sp.id_to_piece(1), sp.id_to_piece(2)) == ("<pad>", "</s>", "<unk>")


@pytest.mark.parametrize("task", TASKS)
def test_sentencepiece_round_trips_validation_exactly(task):
    # Texts are NFKC-normalised with collapsed whitespace and every character of the validation set
    # occurs in train, so the round trip is exact (no tolerance) and produces no unk.
    sp = spm.SentencePieceProcessor(model_file=str(DEMO_DIR / task / "spm.model"))
    texts = [r[f] for r in _read_jsonl(task, "validation") for f in ("input", "target")]
    ids = sp.encode(texts)
    assert [sp.decode(x) for x in ids] == texts
    assert all(2 not in x and 0 not in x and 1 not in x for x in ids)
    # Subword pieces, not characters: the first validation sentence takes fewer ids than chars.
    first = texts[0]
    assert 1 <= len(sp.encode(first)) < len(first)


# ----------------------------------------------------------------- the preparation script's pieces


def test_ding_line_yields_aligned_sentence_pairs():
    script = _load_script()
    line = (
        "vernünftig {adj} | Er scheint ja ganz vernünftig zu sein. | vernünftigerweise etw. tun | "
        "Benimm dich!; Benehmen Sie sich! [ugs.] :: sensible | He seems quite sensible.; He seems "
        "like a sensible sort of person. | to be sensible enough to do sth. | Just behave!; "
        "Behave yourself!\n"
    )
    pairs = list(script.ding_sentence_pairs(["# Version :: x\n", line]))
    assert pairs == [
        ("He seems quite sensible.", "Er scheint ja ganz vernünftig zu sein."),
        ("Just behave!", "Benimm dich!"),
        ("Behave yourself!", "Benehmen Sie sich!"),
    ]


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Wir mussten Schlange stehen {vi} [ugs.] .", "Wir mussten Schlange stehen."),
        ("We had to queue/line up for three hours.", "We had to queue up for three hours."),
        ("If you can’t behave (yourself) we’ll go. /IYCB/", "If you can't behave we'll go."),
        ("Das  ist <Tippfehler>   gut!", "Das ist gut!"),
    ],
)
def test_clean_ding_phrase(raw, cleaned):
    assert _load_script().clean_ding_phrase(raw) == cleaned


@pytest.mark.parametrize(
    "text, expected",
    [
        ("He whiffed of nicotine.", True),
        ("to be sensible enough to do sth.", False),  # lower-case phrase, placeholder
        ("Give sth. to him.", False),  # placeholder
        ("Dem steht entgegen, dass ...", False),  # elision
        ("No left turn", False),  # no final punctuation
    ],
)
def test_is_sentence(text, expected):
    assert _load_script().is_sentence(text) is expected


def test_translation_index_parses_and_aligns_by_package_and_md5():
    script = _load_script()
    english = script.parse_translation_index(
        "Package: foo\nDescription-md5: aa\nDescription-en: tiny tool\n First line\n"
        " continues.\n .\n Second paragraph.\n\n"
        "Package: bar\nDescription-md5: bb\nDescription-en: other tool\n Only one.\n",
        "en",
    )
    german = script.parse_translation_index(
        "Package: foo\nDescription-md5: aa\nDescription-de: kleines Werkzeug\n Erste Zeile\n"
        " geht weiter.\n .\n Zweiter Absatz.\n\n"
        "Package: bar\nDescription-md5: zz\nDescription-de: anderes Werkzeug\n Nur einer.\n",
        "de",
    )
    assert english[0].paragraphs == ("First line\ncontinues.", "Second paragraph.")
    # bar's German translation is of another English version (md5 differs): not aligned.
    assert list(script.ddtp_translation_pairs(english, german)) == [
        ("tiny tool", "kleines Werkzeug"),
        ("First line continues.", "Erste Zeile geht weiter."),
        ("Second paragraph.", "Zweiter Absatz."),
    ]


def test_split_is_deterministic_and_disjoint():
    script = _load_script()
    examples = [(f"input {i}", f"target {i}", f"g{i}") for i in range(1000)]
    first = script.split_examples(examples, seed=3, max_train=50)
    again = script.split_examples(examples, seed=3, max_train=50)
    assert first == again
    assert [len(first[s]) for s in ("validation", "test", "train")] == [300, 300, 50]
    seen = [r["input"] for s in ("validation", "test", "train") for r in first[s]]
    assert len(set(seen)) == len(seen)
    with pytest.raises(ValueError, match="only 10 examples"):
        script.split_examples(examples[:10], seed=3, max_train=50)
