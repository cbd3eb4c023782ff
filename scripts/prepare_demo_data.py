"""Build the real-text demo data sets shipped in `spec_cascade_jax/demo_data/`.

Two small tasks are made from text that Debian's package archive provides (no other network
access is needed, and nothing is installed):

* `ende/`: English -> German translation. Example sentences of the Ding German-English dictionary
  (Debian package `trans-de-en`, GPL-2+), plus short paragraphs and one-line synopses of Debian
  package descriptions whose German translation (DDTP, `Translation-de`) matches the English
  original (`Translation-en`) by package name and description MD5.
* `synopsis/`: English long package description -> its one-line synopsis, a small XSum-like
  single-sentence summarisation set (`Translation-en`).

For each task the script cleans and deduplicates the pairs, splits them with a fixed seed into
train / validation (300) / test (300), writes `{train,validation,test}.jsonl` with the fields
`input` and `target`, trains a SentencePiece model (`spm.model`, `spm.vocab`; pad=0, eos=1, unk=2,
no bos) on the training inputs and targets, and writes a README.md with provenance and counts.
Everything is deterministic for fixed sources and seed.

Sources. `--source_dir` must hold (missing pieces are fetched into it when `--fetch` is given):

    SOURCE_DIR/trans-de-en/usr/share/trans/de-en       (apt-get download trans-de-en; dpkg-deb -x)
    SOURCE_DIR/trans-de-en/usr/share/doc/trans-de-en/copyright
    SOURCE_DIR/Translation-en                           (decompressed apt list, bookworm main)
    SOURCE_DIR/Translation-de
    SOURCE_DIR/GPL-2                                    (/usr/share/common-licenses/GPL-2)

Fetching runs `apt-get -o Acquire::Languages=en,de update`, `apt-get download trans-de-en`,
`dpkg-deb -x` and `/usr/lib/apt/apt-helper cat-file` on the `*_main_i18n_Translation-{en,de}*` lists
(root is needed for the update).

Usage, from the repository root:

    python scripts/prepare_demo_data.py --source_dir /tmp/demo_src --fetch \
        --out_dir spec_cascade_jax/demo_data
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

SEED = 20250101
NUM_VALIDATION = 300
NUM_TEST = 300
VOCAB_SIZE = 2000

# Characters a kept example may use: Latin-1 letters and punctuation plus a few typographic marks.
_ALLOWED_CHARS = re.compile(r"^[\x20-\x7e\u00a1-\u00ff\u2013\u2014\u201c\u201d\u201e\u20ac]*$")


@dataclass(frozen=True)
class Limits:
    """Length limits, in whitespace-separated words, for one task's inputs and targets."""

    min_input_words: int
    max_input_words: int
    min_target_words: int
    max_target_words: int
    max_train: int  # cap on the training split, to keep the shipped files small


ENDE_LIMITS = Limits(
    min_input_words=2, max_input_words=40, min_target_words=2, max_target_words=40, max_train=40_000
)
ENDE_MAX_DDTP = 8_000  # DDTP pairs added to all Ding sentences (size budget of the shipped files)
SYNOPSIS_LIMITS = Limits(
    min_input_words=15, max_input_words=80, min_target_words=2, max_target_words=14, max_train=8_000
)


# ----------------------------------------------------------------------------- text cleaning


def normalize_text(text: str) -> str:
    """NFKC, typographic apostrophes to ASCII, whitespace collapsed (SentencePiece round-trips)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split())


_DING_ANNOTATIONS = (
    re.compile(r"\{[^{}]*\}"),  # {f}, {pl}, {vt}, {adj}, {+Gen.}
    re.compile(r"\[[^\[\]]*\]"),  # [Br.], [ugs.], [fig.]
    re.compile(r"<[^<>]*>"),  # <alternative spellings, search keys>
    re.compile(r"\([^()]*\)"),  # (ugs.), (optional words), (explanations)
    re.compile(r"(?<!\S)/[^/\s]+/(?!\S)"),  # /SIDU/ abbreviation tags
)
_DING_SLASH_ALTERNATIVE = re.compile(r"(?<=[^\W\d])/[^\W\d][\w'-]*")  # queue/line -> queue
_DING_PLACEHOLDERS = re.compile(r"\b(sth|sb|etw|jdn|jdm|jds|jd)\.(?=\s|$|[,;:!?])", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"\u201c\u201d']?$")


def clean_ding_phrase(text: str) -> str:
    """Removes Ding's annotations and picks the first of word/word alternatives."""
    for _ in range(2):  # twice, for annotations nested one deep
        for pattern in _DING_ANNOTATIONS:
            text = pattern.sub(" ", text)
    text = _DING_SLASH_ALTERNATIVE.sub("", text)
    text = normalize_text(text)
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)  # "word ." left by a removed annotation
    return text


def is_sentence(text: str) -> bool:
    """A sentence-like Ding entry: capitalised, ends in . ! or ?, no placeholders or elisions."""
    if not text or not (text[0].isupper() or text[0] in '"\u201e\u201c'):
        return False
    if not _SENTENCE_END.search(text):
        return False
    if "..." in text or "\u2026" in text or " / " in text or "/" in text:
        return False
    if _DING_PLACEHOLDERS.search(text):
        return False
    return any(c.isalpha() for c in text)


def ding_sentence_pairs(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Yields (english, german) sentence pairs from Ding lines `german :: english`.

    Each side holds `|`-separated senses that align one to one; a sense holds `;`-separated
    variants. Variants are zipped when both sides have the same number of them, and otherwise only
    the first variant of each side is used.
    """
    for line in lines:
        line = line.rstrip("\n")
        if not line or line.startswith("#") or line.count(" :: ") != 1:
            continue
        german, english = line.split(" :: ")
        de_senses, en_senses = german.split(" | "), english.split(" | ")
        if len(de_senses) != len(en_senses):
            continue
        for de_sense, en_sense in zip(de_senses, en_senses, strict=True):
            de_variants = [v for v in de_sense.split(";") if v.strip()]
            en_variants = [v for v in en_sense.split(";") if v.strip()]
            if not de_variants or not en_variants:
                continue
            if len(de_variants) == len(en_variants):
                pairs = zip(de_variants, en_variants, strict=True)
            else:
                pairs = [(de_variants[0], en_variants[0])]
            for de_raw, en_raw in pairs:
                de, en = clean_ding_phrase(de_raw), clean_ding_phrase(en_raw)
                if is_sentence(de) and is_sentence(en):
                    yield en, de


# ------------------------------------------------------------------- Debian package descriptions


@dataclass(frozen=True)
class Description:
    """One entry of a `Translation-xx` apt index."""

    package: str
    md5: str
    synopsis: str
    paragraphs: tuple[str, ...]  # raw paragraphs, lines joined with "\n"


def parse_translation_index(text: str, lang: str) -> list[Description]:
    """Parses a decompressed `Translation-<lang>` file into descriptions, in file order."""
    entries = []
    for block in text.split("\n\n"):
        package = md5 = None
        desc_lines: list[str] = []
        in_desc = False
        for line in block.split("\n"):
            if line.startswith("Package: "):
                package, in_desc = line[len("Package: ") :].strip(), False
            elif line.startswith("Description-md5: "):
                md5, in_desc = line[len("Description-md5: ") :].strip(), False
            elif line.startswith(f"Description-{lang}: "):
                desc_lines, in_desc = [line[len(f"Description-{lang}: ") :]], True
            elif in_desc and line.startswith(" "):
                desc_lines.append(line[1:])
            else:
                in_desc = False
        if package is None or md5 is None or not desc_lines:
            continue
        paragraphs, current = [], []
        for body_line in desc_lines[1:]:
            if body_line.strip() == ".":
                paragraphs.append("\n".join(current))
                current = []
            else:
                current.append(body_line)
        paragraphs.append("\n".join(current))
        entries.append(
            Description(
                package, md5, desc_lines[0].strip(), tuple(p for p in paragraphs if p.strip())
            )
        )
    return entries


def is_prose_paragraph(paragraph: str) -> bool:
    """True for a paragraph of running text: no list items, no preformatted or URL-heavy lines."""
    for line in paragraph.split("\n"):
        stripped = line.strip()
        if line.startswith(" ") or stripped[:2] in ("* ", "- ", "+ ", "o ", "# "):
            return False
        if re.match(r"^\d+[.)] ", stripped) or "://" in stripped or "@" in stripped:
            return False
    return True


def ddtp_translation_pairs(
    english: Sequence[Description], german: Sequence[Description]
) -> Iterator[tuple[str, str]]:
    """Yields (english, german) synopsis and paragraph pairs of matching DDTP descriptions."""
    by_key = {(d.package, d.md5): d for d in english}
    for de in german:
        en = by_key.get((de.package, de.md5))
        if en is None:
            continue
        yield normalize_text(en.synopsis), normalize_text(de.synopsis)
        if len(en.paragraphs) != len(de.paragraphs):
            continue
        for en_par, de_par in zip(en.paragraphs, de.paragraphs, strict=True):
            if is_prose_paragraph(en_par) and is_prose_paragraph(de_par):
                yield normalize_text(en_par), normalize_text(de_par)


def synopsis_pairs(english: Sequence[Description]) -> Iterator[tuple[str, str, str]]:
    """Yields (long description, synopsis, group key); the key is the first paragraph.

    Packages built from one source often share the first paragraph and differ only in a last
    sentence ("This package contains the documentation."); keying on it keeps such near-duplicates
    out of different splits.
    """
    for desc in english:
        if not desc.paragraphs or not all(is_prose_paragraph(p) for p in desc.paragraphs):
            continue
        long_text = normalize_text(" ".join(desc.paragraphs))
        synopsis = normalize_text(desc.synopsis)
        yield long_text, synopsis, normalize_text(desc.paragraphs[0]).lower()


# ------------------------------------------------------------------------- filtering, splitting


def keep_pair(source: str, target: str, limits: Limits, max_char_ratio: float | None) -> bool:
    """Length, charset, identity and (optionally) length-ratio filters."""
    n_src, n_tgt = len(source.split()), len(target.split())
    if not limits.min_input_words <= n_src <= limits.max_input_words:
        return False
    if not limits.min_target_words <= n_tgt <= limits.max_target_words:
        return False
    if not (_ALLOWED_CHARS.match(source) and _ALLOWED_CHARS.match(target)):
        return False
    if source.lower() == target.lower():
        return False
    if max_char_ratio is not None:
        ratio = len(source) / len(target)
        if not 1 / max_char_ratio <= ratio <= max_char_ratio:
            return False
    return True


def dedup_by_group(examples: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Keeps the first example of each group key (and of each lower-cased input)."""
    seen_groups, seen_inputs, kept = set(), set(), []
    for source, target, group in examples:
        key = source.lower()
        if group in seen_groups or key in seen_inputs:
            continue
        seen_groups.add(group)
        seen_inputs.add(key)
        kept.append((source, target, group))
    return kept


def split_examples(
    examples: Sequence[tuple[str, str, str]], seed: int, max_train: int
) -> dict[str, list[dict[str, str]]]:
    """Shuffles with `seed` and cuts validation, test, then (capped) train."""
    if len(examples) < NUM_VALIDATION + NUM_TEST + 1:
        raise ValueError(f"only {len(examples)} examples, need > {NUM_VALIDATION + NUM_TEST}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows = [{"input": examples[i][0], "target": examples[i][1]} for i in order]
    return {
        "validation": rows[:NUM_VALIDATION],
        "test": rows[NUM_VALIDATION : NUM_VALIDATION + NUM_TEST],
        "train": rows[NUM_VALIDATION + NUM_TEST :][:max_train],
    }


def write_jsonl(path: str, rows: Sequence[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def train_sentencepiece(rows: Sequence[dict[str, str]], model_prefix: str, seed: int) -> None:
    """Trains the task's SentencePiece model on the training inputs and targets.

    Trains from memory, so that no file path ends up in the model's trainer spec and the model file
    is byte-identical across runs and output folders. Writes `<model_prefix>.model` and `.vocab`.
    """
    import sentencepiece as spm  # imported here so `--help` works without it

    lines = [text for row in rows for text in (row["input"], row["target"])]
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    with open(model_prefix + ".model", "wb") as f:
        f.write(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    with open(model_prefix + ".vocab", "w", encoding="utf-8") as f:
        for i in range(processor.get_piece_size()):
            f.write(f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n")


# --------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Sources:
    ding_dictionary: str
    ding_copyright: str
    translation_en: str
    translation_de: str
    gpl_text: str


def source_paths(source_dir: str) -> Sources:
    return Sources(
        ding_dictionary=os.path.join(source_dir, "trans-de-en/usr/share/trans/de-en"),
        ding_copyright=os.path.join(source_dir, "trans-de-en/usr/share/doc/trans-de-en/copyright"),
        translation_en=os.path.join(source_dir, "Translation-en"),
        translation_de=os.path.join(source_dir, "Translation-de"),
        gpl_text=os.path.join(source_dir, "GPL-2"),
    )


def _run(cmd: Sequence[str], cwd: str | None = None) -> None:
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=sys.stderr)


def fetch_sources(source_dir: str) -> None:
    """Downloads and unpacks whatever of the sources is missing (needs apt and root)."""
    os.makedirs(source_dir, exist_ok=True)
    paths = source_paths(source_dir)
    if not os.path.exists(paths.ding_dictionary):
        for old in glob.glob(os.path.join(source_dir, "trans-de-en_*.deb")):
            os.remove(old)
        _run(["apt-get", "download", "trans-de-en"], cwd=source_dir)
        (deb,) = glob.glob(os.path.join(source_dir, "trans-de-en_*.deb"))
        _run(["dpkg-deb", "-x", deb, os.path.join(source_dir, "trans-de-en")])
    if not os.path.exists(paths.gpl_text):
        shutil.copyfile("/usr/share/common-licenses/GPL-2", paths.gpl_text)  # from base-files
    missing = [
        (lang, dest)
        for lang, dest in (("en", paths.translation_en), ("de", paths.translation_de))
        if not os.path.exists(dest)
    ]
    if missing:
        _run(["apt-get", "-o", "Acquire::Languages=en,de", "update"])
        _write_release_info(source_dir)
    for lang, dest in missing:
        pattern = f"/var/lib/apt/lists/*_dists_*_main_i18n_Translation-{lang}*"
        # The release's own list, not the -updates / -security ones.
        lists = sorted(
            p for p in glob.glob(pattern) if "-updates_" not in p and "security" not in p
        )
        if len(lists) != 1:
            raise FileNotFoundError(f"expected one list matching {pattern}, found {lists}")
        with open(dest, "wb") as out:
            subprocess.run(
                ["/usr/lib/apt/apt-helper", "cat-file", lists[0]], stdout=out, check=True
            )


def _write_release_info(source_dir: str) -> None:
    """Records which Debian release the description lists came from (for the READMEs)."""
    releases = sorted(
        p
        for p in glob.glob("/var/lib/apt/lists/*_dists_*_InRelease")
        if "-updates_" not in p and "security" not in p
    )
    fields = []
    for path in releases[:1]:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("Origin:", "Suite:", "Codename:", "Version:", "Date:")):
                    fields.append(line.strip())
    with open(os.path.join(source_dir, "Release-info"), "w", encoding="utf-8") as f:
        f.write("\n".join(fields) + "\n")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ main


def build_task(
    name: str, examples: Sequence[tuple[str, str, str]], limits: Limits, out_dir: str, seed: int
) -> dict:
    """Writes one task's splits and SentencePiece model; returns the split sizes."""
    task_dir = os.path.join(out_dir, name)
    os.makedirs(task_dir, exist_ok=True)
    splits = split_examples(examples, seed, limits.max_train)
    for split, rows in splits.items():
        write_jsonl(os.path.join(task_dir, f"{split}.jsonl"), rows)
    train_sentencepiece(splits["train"], os.path.join(task_dir, "spm"), seed)
    counts: dict = {split: len(rows) for split, rows in splits.items()}
    counts["available_for_train"] = len(examples) - NUM_VALIDATION - NUM_TEST
    counts["mean_words"] = {
        field: round(sum(len(r[field].split()) for r in splits["train"]) / len(splits["train"]), 1)
        for field in ("input", "target")
    }
    return counts


def build_all(source_dir: str, out_dir: str, seed: int, tasks: Sequence[str]) -> dict:
    """Builds the requested tasks from the sources in `source_dir`; returns their statistics."""
    paths = source_paths(source_dir)
    for path in (
        paths.ding_dictionary,
        paths.ding_copyright,
        paths.translation_en,
        paths.translation_de,
        paths.gpl_text,
    ):
        if not os.path.exists(path):
            raise FileNotFoundError(f"missing source {path}; run with --fetch")
    with open(paths.translation_en, encoding="utf-8") as f:
        english = parse_translation_index(f.read(), "en")
    with open(paths.ding_dictionary, encoding="utf-8") as f:
        ding_version = next((line[1:].strip() for line in f if line.startswith("# Version")), "?")
    release_file = os.path.join(source_dir, "Release-info")
    release = "unrecorded"
    if os.path.exists(release_file):
        with open(release_file, encoding="utf-8") as f:
            release = "; ".join(line.strip() for line in f if line.strip()) or release
    stats: dict = {
        "seed": seed,
        "ding_version": ding_version,
        "debian_release": release,
        "sources": {
            os.path.relpath(p, source_dir): sha256(p)
            for p in (paths.ding_dictionary, paths.translation_en, paths.translation_de)
        },
    }

    if "ende" in tasks:
        with open(paths.translation_de, encoding="utf-8") as f:
            german = parse_translation_index(f.read(), "de")
        with open(paths.ding_dictionary, encoding="utf-8") as f:
            ding = list(ding_sentence_pairs(f))
        ddtp = list(ddtp_translation_pairs(english, german))
        # Every Ding sentence is kept; a seeded sample of the (longer, technical) DDTP pairs is
        # added to it, and validation / test are drawn from the mixture.
        ding_kept = dedup_by_group(
            (en, de, en.lower())
            for en, de in ding
            if keep_pair(en, de, ENDE_LIMITS, max_char_ratio=2.5)
        )
        ding_inputs = {ex[2] for ex in ding_kept}
        ddtp_kept = dedup_by_group(
            (en, de, en.lower())
            for en, de in ddtp
            if keep_pair(en, de, ENDE_LIMITS, max_char_ratio=2.5) and en.lower() not in ding_inputs
        )
        ddtp_sample = list(ddtp_kept)
        random.Random(seed).shuffle(ddtp_sample)
        ddtp_sample = ddtp_sample[:ENDE_MAX_DDTP]
        stats["ende"] = build_task("ende", ding_kept + ddtp_sample, ENDE_LIMITS, out_dir, seed)
        stats["ende"]["descriptions"] = {"en": len(english), "de": len(german)}
        stats["ende"]["raw_pairs"] = {"ding": len(ding), "ddtp": len(ddtp)}
        stats["ende"]["kept_after_dedup"] = {"ding": len(ding_kept), "ddtp": len(ddtp_kept)}
        stats["ende"]["used"] = {"ding": len(ding_kept), "ddtp": len(ddtp_sample)}
        shutil.copyfile(paths.ding_copyright, os.path.join(out_dir, "ende", "LICENSE.trans-de-en"))
        shutil.copyfile(paths.gpl_text, os.path.join(out_dir, "ende", "COPYING.GPL-2"))

    if "synopsis" in tasks:
        candidates = [
            ex
            for ex in synopsis_pairs(english)
            if keep_pair(ex[0], ex[1], SYNOPSIS_LIMITS, max_char_ratio=None)
        ]
        examples = dedup_by_group(candidates)
        stats["synopsis"] = build_task("synopsis", examples, SYNOPSIS_LIMITS, out_dir, seed)
        stats["synopsis"]["raw_descriptions"] = len(english)
        stats["synopsis"]["kept_before_dedup"] = len(candidates)
        stats["synopsis"]["after_dedup"] = len(examples)

    for task in tasks:
        task_dir = os.path.join(out_dir, task)
        stats[task]["bytes"] = {
            name: os.path.getsize(os.path.join(task_dir, name))
            for name in sorted(os.listdir(task_dir))
            if name != "README.md"
        }
        render = render_ende_readme if task == "ende" else render_synopsis_readme
        with open(os.path.join(task_dir, "README.md"), "w", encoding="utf-8") as f:
            f.write(render(stats))
    return stats


# ------------------------------------------------------------------------------------- READMEs

REPRODUCE = """\
From the repository root, as root (for `apt-get update`), on Debian 12 (bookworm) with `main`
in the apt sources:

```
python scripts/prepare_demo_data.py --source_dir /tmp/demo_src --fetch \\
    --out_dir spec_cascade_jax/demo_data
```

`--fetch` runs, for whatever is missing from `--source_dir`:

```
cd /tmp/demo_src && apt-get download trans-de-en
dpkg-deb -x trans-de-en_*_all.deb /tmp/demo_src/trans-de-en     # unpack, do not install
apt-get -o Acquire::Languages=en,de update
/usr/lib/apt/apt-helper cat-file /var/lib/apt/lists/*_dists_bookworm_main_i18n_Translation-en* \\
    > /tmp/demo_src/Translation-en                              # likewise Translation-de
```

Without `--fetch` the script only reads `--source_dir`. The output is byte-identical for the same
sources and `--seed` (default {seed}); the archive's description lists change with Debian point
releases, so compare the SHA-256 sums above before expecting identical files.
"""


def _common_sections(stats: dict, task: str) -> str:
    task_stats = stats[task]
    sizes = "\n".join(f"| `{name}` | {size:,} |" for name, size in task_stats["bytes"].items())
    sources = "\n".join(f"- `{path}`: `{digest}`" for path, digest in stats["sources"].items())
    return f"""\
## Files

Each `*.jsonl` line is one object `{{"input": ..., "target": ...}}` (UTF-8). Counts: train
{task_stats["train"]:,}, validation {task_stats["validation"]}, test {task_stats["test"]}.
Mean words per training example: input {task_stats["mean_words"]["input"]}, target
{task_stats["mean_words"]["target"]}.

| file | bytes |
|---|---|
{sizes}

`spm.model` / `spm.vocab`: SentencePiece unigram model, {VOCAB_SIZE} pieces, trained on the training
split's inputs and targets (one line each), `character_coverage=1.0`, pad=0, eos=1 (`</s>`),
unk=2, no bos. Every text was NFKC-normalised with collapsed whitespace before training, so
`decode(encode(text)) == text` for the shipped examples.

## Split

Candidates are deduplicated (see above), shuffled with `random.Random({stats["seed"]})`; the first
{NUM_VALIDATION} are `validation`, the next {NUM_TEST} `test`, the rest `train`. The validation set
is fixed: change the seed or the filters and it changes.

## Sources (SHA-256 of the inputs that made these files)

{sources}

Ding dictionary: `{stats["ding_version"]}`. Debian lists: {stats["debian_release"]}.

## Reproduce

{REPRODUCE.format(seed=stats["seed"])}"""


def render_ende_readme(stats: dict) -> str:
    s = stats["ende"]
    ding_percent = round(100 * s["used"]["ding"] / (s["used"]["ding"] + s["used"]["ddtp"]))
    return f"""\
# `ende`: English -> German demo translation data

Real sentence pairs for demos and smoke runs of an EN->DE drafter/verifier cascade: small enough
to train a tiny T5 on a CPU, not a benchmark. Written by `scripts/prepare_demo_data.py`; do not
edit by hand.

## What is in it

- **Ding dictionary example sentences** ({s["used"]["ding"]:,} pairs): the sentence-like entries
  of the German-English dictionary Ding (Debian package `trans-de-en`). Ding lines read
  `german :: english`; the `|`-separated senses of both sides align one to one and each sense
  holds `;`-separated variants (zipped when both sides have as many, else the first of each).
  Annotations are removed (`{{f}}`, `{{vt}}`, `[Br.]`, `[ugs.]`, `<...>`, `(...)`, `/ABBR/`),
  `word/word` alternatives keep their first word, and a pair is kept only when both sides start
  with a capital (or quote), end in `.`, `!` or `?`, and hold no placeholder (`sth.`, `sb.`,
  `etw.`, `jdn.`, ...), ellipsis or leftover slash. {s["raw_pairs"]["ding"]:,} such pairs were
  found; {s["kept_after_dedup"]["ding"]:,} survive the filters below and all of them are used.
- **Debian package descriptions (DDTP)** ({s["used"]["ddtp"]:,} pairs): English package
  descriptions (`Translation-en`) and their German translations by the Debian Description
  Translation Project (`Translation-de`), matched by package name and `Description-md5`: the
  one-line synopses, and paragraph pairs of descriptions with equally many paragraphs (running
  text only: no list items, preformatted lines, URLs or e-mail addresses).
  {s["raw_pairs"]["ddtp"]:,} pairs from {s["descriptions"]["de"]:,} German descriptions;
  {s["kept_after_dedup"]["ddtp"]:,} survive the filters; **a seeded sample of
  {s["used"]["ddtp"]:,} is used, to keep the shipped files small** (raise `ENDE_MAX_DDTP` in the
  script for more).

Filters on both sources: 2-40 words on each side, character-length ratio within 1/2.5..2.5, only
Latin-1 letters and punctuation plus `– — “ ” „ €` (typographic apostrophes become `'`), input
and target not equal. Pairs are deduplicated on the lower-cased English side (first occurrence
wins; DDTP pairs whose English is also a Ding sentence are dropped). Validation and test are
drawn from the mixture, so about {ding_percent}% of every split is Ding conversation and the rest
software documentation.

{_common_sections(stats, "ende")}
## Licence

The Ding dictionary is Copyright (c) Frank Richter 1995-2023 (Debian packaging: Roland Rosenfeld)
and is distributed under the GNU General Public License, version 2 or later; the package's
copyright file is reproduced in `LICENSE.trans-de-en`, and the full text of the GPL version 2 in
`COPYING.GPL-2` (Debian's `/usr/share/common-licenses/GPL-2`). The sentence pairs taken from it,
and so the `*.jsonl` files and the SentencePiece model trained on them, are derived from Ding and
are distributed under the same licence, with NO WARRANTY.

The package descriptions and their DDTP translations are distributed by Debian in its archive; the
licence of each description follows its package (see `/usr/share/doc/<package>/copyright`).
"""


def render_synopsis_readme(stats: dict) -> str:
    s = stats["synopsis"]
    return f"""\
# `synopsis`: English package description -> one-line synopsis

A small, real, XSum-like single-sentence summarisation set for demos and smoke runs: the input is
the long (extended) description of a Debian package, the target its one-line synopsis. Written by
`scripts/prepare_demo_data.py`; do not edit by hand.

## What is in it

From `Translation-en` ({s["raw_descriptions"]:,} descriptions): descriptions whose every paragraph
is running text (no list items, preformatted lines, URLs or e-mail addresses); the paragraphs are
joined with a space. Filters: input 15-80 words, target 2-14 words, only Latin-1 letters and
punctuation plus `– — “ ” „ €` (typographic apostrophes become `'`), input and target not equal.
{s["kept_before_dedup"]:,} pass. Packages built from one source often share a first paragraph and
differ in one closing sentence ("This package contains the documentation."), so the set keeps one
description per first paragraph (and per input text): {s["after_dedup"]:,} remain.
**The training split is cut to the first {s["train"]:,} of the {s["available_for_train"]:,}
available after validation and test**, to keep the shipped files small (raise
`SYNOPSIS_LIMITS.max_train` in the script for more).

{_common_sections(stats, "synopsis")}
## Licence

The package descriptions are distributed by Debian in its archive (`Translation-en` index files).
Each description belongs to its package and its licence follows that package (see
`/usr/share/doc/<package>/copyright` or the package's `debian/copyright`); this set is for
demonstration and testing.
"""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source_dir",
        required=True,
        help="folder with the unpacked trans-de-en .deb and Translation-{en,de}",
    )
    parser.add_argument("--out_dir", default="spec_cascade_jax/demo_data")
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="download whatever source is missing from --source_dir (apt, root)",
    )
    parser.add_argument("--tasks", default="ende,synopsis", help="comma-separated: ende,synopsis")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = set(tasks) - {"ende", "synopsis"}
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from ende, synopsis")
    if args.fetch:
        fetch_sources(args.source_dir)
    stats = build_all(args.source_dir, args.out_dir, args.seed, tasks)
    print(json.dumps(stats, indent=2))
    total = sum(size for task in tasks for size in stats[task]["bytes"].values())
    print(f"total bytes written (without READMEs): {total:,}", file=sys.stderr)


if __name__ == "__main__":
    main()
