"""Labelled text files: TSV/CSV/JSONL, label ids, the SST-2 subset rule, a deterministic split."""

import json
import random

import pytest

from rankwise.data import LabelledRows, label_ids, read_labelled, split_rows, subset
from rankwise.errors import ConfigError


def write_all(tmp_path):
    rows = [("good film , really", "pos"), ('a "quoted" dull one', "neg"), ("fine", "pos")]
    (tmp_path / "d.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f'"{t.replace(chr(34), 2 * chr(34))}",{y}\n'
                                                             for t, y in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return rows


@pytest.mark.parametrize("suffix", ["tsv", "csv", "jsonl"])
def test_three_formats_read_the_same_rows(tmp_path, suffix):
    rows = write_all(tmp_path)
    got = read_labelled(tmp_path / f"d.{suffix}")
    assert list(zip(got.texts, got.labels, strict=True)) == rows


def test_label_ids_keep_small_ints_and_sort_strings():
    assert label_ids([1, 0, 1], [0]) == {0: 0, 1: 1}
    assert label_ids(["pos", "neg"], ["neutral"]) == {"neg": 0, "neutral": 1, "pos": 2}
    assert label_ids([5, 7]) == {5: 5, 7: 7}


def test_subset_is_the_sst2_protocol_and_leaves_random_alone(tmp_path):
    texts = [f"row {i}" for i in range(50)]
    rows = LabelledRows(texts, [i % 2 for i in range(50)])
    random.seed(123)
    state = random.getstate()
    picked = subset(rows, 8, seed=0)
    assert random.getstate() == state
    ref = list(zip(texts, rows.labels, strict=True))
    random.seed(0)
    random.shuffle(ref)
    assert list(zip(picked.texts, picked.labels, strict=True)) == ref[:8]


def test_split_is_deterministic_and_disjoint():
    rows = LabelledRows([f"t{i}" for i in range(20)], [i % 3 for i in range(20)])
    a, b = split_rows(rows, 0.25, seed=1)
    assert split_rows(rows, 0.25, seed=1)[1].texts == b.texts and len(b.texts) == 5
    assert sorted(a.texts + b.texts) == sorted(rows.texts)
    assert split_rows(rows, 0.25, seed=2)[1].texts != b.texts


def test_missing_columns_are_named(tmp_path):
    (tmp_path / "x.tsv").write_text("review_text\tstars\nok\t1\n")
    with pytest.raises(ConfigError, match=r"no text_column ''.*columns are \['review_text', 'stars'\]"):
        read_labelled(tmp_path / "x.tsv")
    with pytest.raises(ConfigError, match="no label_column 'label'"):
        read_labelled(tmp_path / "x.tsv", text_column="review_text")
