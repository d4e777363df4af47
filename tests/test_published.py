"""The published-number CSVs: they load, every table has the size the paper implies, sample cells match the
papers' markdown text, and the loader rejects bad files with a precise error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from marlbench.algorithm import all_algorithms
from marlbench.errors import ConfigError, UnknownNameError
from marlbench.report.published import (
    ANNOTATED_COLUMNS,
    ANNOTATION_COLUMNS,
    COLUMNS,
    DEFAULT_DIR,
    NOT_CHECKED,
    PAPERS_FILE,
    load_paper_names,
    load_published,
    published_for,
)

REPO = Path(__file__).resolve().parents[1]
PAPERS = REPO.parent / "shared" / "papers"

ALPHAS = 5
DIVERGENCES = 3
MIXERS = 2
SMACV1 = 4 * 3  # 4 maps x poor/medium/good
SMACV2 = 3 * 5  # 3 races x 5 sizes
MAMUJOCO = 3 * 4  # 3 robots x 4 qualities
EXPECTED_ROWS = {
    ("comadice", "Table 1"): SMACV1 * 9,  # BC BCQ CQL ICQ OMAR OMIGA OptDICE AlberDICE ComaDICE
    ("comadice", "Table 2"): SMACV2 * 9,
    ("comadice", "Table 3"): MAMUJOCO * 7,  # no BC, no OMAR
    ("comadice", "Table 6"): SMACV1 * 9,
    ("comadice", "Table 7"): SMACV2 * 9,
    ("comadice", "Table 8"): 9 * 4,  # one robot: 9 methods x 4 qualities
    ("comadice", "Table 9"): 9 * 4,
    ("comadice", "Table 10"): 9 * 4,
    ("comadice", "Table 11"): SMACV1 * ALPHAS,
    ("comadice", "Table 12"): SMACV2 * ALPHAS,
    ("comadice", "Table 13"): MAMUJOCO * ALPHAS,
    ("comadice", "Table 14"): SMACV1 * ALPHAS,
    ("comadice", "Table 15"): SMACV2 * ALPHAS,
    ("comadice", "Table 16"): SMACV1 * DIVERGENCES,
    ("comadice", "Table 17"): SMACV2 * DIVERGENCES,
    ("comadice", "Table 18"): MAMUJOCO * DIVERGENCES,
    ("comadice", "Table 19"): SMACV1 * DIVERGENCES,
    ("comadice", "Table 20"): SMACV2 * DIVERGENCES,
    ("comadice", "Table 21"): SMACV1 * MIXERS,
    ("comadice", "Table 22"): SMACV2 * MIXERS,
    ("comadice", "Table 23"): MAMUJOCO * MIXERS,
    ("comadice", "Table 24"): SMACV1 * MIXERS,
    ("comadice", "Table 25"): SMACV2 * MIXERS,
    ("comadice", "Table 26"): 4 * 4,  # 4 XOR datasets x 4 joint-action probabilities
    ("omiga", "Table 1"): MAMUJOCO * 5 + SMACV1 * 5,  # BCQ-MA CQL-MA ICQ OMAR OMIGA
    ("omiga", "Table 7"): 2 * 3 * 5,  # 2 maps x 3 mixed datasets x 5 methods
    ("inspo", "Table 1"): 3 * 6,  # 3 XOR datasets x BC OMAR AlberDICE CFCQL OMIGA InSPO
    ("inspo", "Table 4"): 4 * 4 * 5,  # 4 maps x 4 datasets x BC OMAR CFCQL OMIGA InSPO
    ("omsd", "Table 1"): 4,  # BRPO-Ind BRPO-JAL BRPO-FAC BRPO-SSD
    ("omsd", "Table 2"): 4 * 7,  # 4 HalfCheetah datasets x 7 methods
}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return load_published()


def test_every_table_has_the_size_the_paper_implies(published: pd.DataFrame) -> None:
    counts = published.groupby(["paper", "table"]).size().to_dict()
    assert counts == EXPECTED_ROWS


def test_each_file_holds_one_paper_and_every_foreign_algo_is_documented(published: pd.DataFrame) -> None:
    for path in sorted(DEFAULT_DIR.glob("*.csv")):
        assert set(load_published(path)["paper"]) == {path.stem}
    readme = (DEFAULT_DIR / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", readme, flags=re.MULTILINE))
    assert set(published["algo"]) - set(all_algorithms()) == documented


def test_every_paper_is_named_in_papers_yaml(published: pd.DataFrame) -> None:
    names = load_paper_names()
    assert set(names) == set(published["paper"]), "one name per paper of the CSVs, no other"
    assert names["comadice"] == "ComaDICE" and names["inspo"] == "InSPO"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- comadice\n", r"expected a mapping of paper id to name, found list"),
        ("ComaDICE: ComaDICE\n", r"key 'ComaDICE': expected a paper id"),
        ("comadice: ''\n", r"field 'comadice': expected the paper's name as printed, found ''"),
    ],
)
def test_a_bad_papers_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / PAPERS_FILE).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_paper_names(tmp_path)
    assert load_paper_names(tmp_path / "absent") == {}


def test_ablation_rows_at_the_default_setting_repeat_the_main_tables(published: pd.DataFrame) -> None:
    comadice = published_for(published, "comadice")
    key = ["suite", "task", "quality", "metric"]
    main = comadice[comadice["table"].isin(["Table 1", "Table 2", "Table 3", "Table 6", "Table 7"])]
    main = main[main["algo"] == "comadice"].set_index(key)
    for variant in ("alpha=10", "f_divergence=soft-chi2", "mixer=linear"):
        ablation = comadice[comadice["variant"] == variant].set_index(key)
        joined = ablation[["mean", "std"]].merge(main[["mean", "std"]], on=key, suffixes=("", "_main"))
        assert len(joined) == len(ablation) > 0
        assert (joined["mean"] == joined["mean_main"]).all() and (joined["std"] == joined["std_main"]).all()


# --- cells against the papers' markdown text -------------------------------------------------------------------

CAPTION_ABOVE = {"comadice": False, "inspo": False, "omiga": True, "omsd": True}


def table_lines(paper: str, table: str) -> list[str]:
    """The tab-separated lines of a table: next to its caption, above or below depending on the rendering."""
    lines = (PAPERS / f"{paper}.md").read_text().splitlines()
    caption = next(i for i, line in enumerate(lines) if line.startswith(f"{table}:"))
    step = 1 if CAPTION_ABOVE[paper] else -1
    block: list[str] = []
    index = caption + step
    while 0 <= index < len(lines):
        line = lines[index]
        if "\t" in line:
            block.append(line)
        elif block and line.strip():
            break
        index += step
    return block if step == 1 else block[::-1]


def printed_numbers(paper: str, table: str, group: str | None, label: str | None, n_label: int) -> list[float]:
    """The numbers of one row: ``group`` is the first column (carried down blank cells), ``label`` the second
    (None where the row has one label column); group None means the table's last line."""
    lines = table_lines(paper, table)
    found = lines[-1].split("\t") if group is None else None
    current = None
    for line in lines if found is None else []:
        cells = line.split("\t")
        current = cells[0].strip() or current
        if current == group and (label is None or cells[1].strip() == label):
            found = cells
            break
    assert found is not None, f"no row {group!r} {label!r} in {paper} {table}"
    text = " ".join(re.sub(r"</?b>|</?math>|\$", " ", cell) for cell in found[n_label:])
    return [float(number) for number in re.findall(r"-?\d+(?:\.\d+)?", text)]


def case(paper, table, group, label, base, columns, n_label=2, with_std=True):
    return pytest.param(paper, table, group, label, n_label, base, columns, with_std, id=f"{paper}-{table}-{group}")


ALPHA_VARIANTS = [{"variant": f"alpha={a}"} for a in ("0.01", "0.1", "1", "10", "100")]
CASES = [
    case(
        "comadice",
        "Table 3",
        "Half Cheetah",
        "m-replay",
        {"task": "halfcheetah", "quality": "medium-replay", "variant": "default", "metric": "return_mean"},
        [{"algo": a} for a in ("bcq", "cql", "icq", "omiga", "optdice", "alberdice", "comadice")],
    ),
    case(
        "comadice",
        "Table 1",
        "corridor",
        "good",
        {"task": "corridor", "quality": "good", "variant": "default", "metric": "win_rate"},
        [{"algo": a} for a in ("bc", "bcq", "cql", "icq", "omar", "omiga", "optdice", "alberdice", "comadice")],
    ),
    case(
        "comadice",
        "Table 13",
        "Half Cheetah",
        "m-expert",
        {"task": "halfcheetah", "quality": "medium-expert", "algo": "comadice", "metric": "return_mean"},
        ALPHA_VARIANTS,
    ),
    case(
        "comadice",
        "Table 20",
        "Terran",
        "5_vs_5",
        {"task": "terran_5_vs_5", "quality": "default", "algo": "comadice", "metric": "win_rate"},
        [{"variant": f"f_divergence={f}"} for f in ("chi2", "kl", "soft-chi2")],
    ),
    case(
        "comadice",
        "Table 25",
        "Zerg",
        "20_vs_23",
        {"task": "zerg_20_vs_23", "quality": "default", "algo": "comadice", "metric": "win_rate"},
        [{"variant": "mixer=linear"}, {"variant": "mixer=two-layer"}],
    ),
    case(
        "comadice",
        "Table 10",
        "OMAR",
        None,
        {"task": "halfcheetah", "algo": "omar", "variant": "default", "metric": "return_mean"},
        [{"quality": q} for q in ("expert", "medium", "medium-replay", "medium-expert")],
        n_label=1,
    ),
    case(
        "comadice",
        "Table 26",
        "A",
        None,
        {"task": "xor", "algo": "comadice", "variant": "default"},
        [
            {"quality": quality, "metric": f"joint_action_prob_{joint}"}
            for quality in ("ab", "ab-ba", "aa-ab-ba", "aa-ab-ba-bb")
            for joint in ("aa", "ab")
        ],
        n_label=1,
        with_std=False,
    ),
    case(
        "omiga",
        "Table 1",
        "Ant",
        "medium",
        {"task": "ant", "quality": "medium", "variant": "default", "metric": "return_mean"},
        [{"algo": a} for a in ("bcq", "cql", "icq", "omar", "omiga")],
    ),
    case(
        "omiga",
        "Table 7",
        "corridor",
        "medium-poor",
        {"task": "corridor", "quality": "medium-poor", "variant": "default", "metric": "return_mean"},
        [{"algo": a} for a in ("bcq", "cql", "icq", "omar", "omiga")],
    ),
    case(
        "inspo",
        "Table 1",
        "(b)",
        None,
        {"task": "xor", "quality": "aa-ab-ba", "variant": "default", "metric": "expected_return"},
        [{"algo": a} for a in ("bc", "omar", "alberdice", "cfcql", "omiga", "inspo")],
        n_label=1,
    ),
    case(
        "inspo",
        "Table 4",
        "$6h$ vs $8z$",
        "expert",
        {"task": "6h_vs_8z", "quality": "expert", "variant": "default", "metric": "win_rate"},
        [{"algo": a} for a in ("bc", "omar", "cfcql", "omiga", "inspo")],
    ),
    case(
        "omsd",
        "Table 1",
        None,
        None,
        {"task": "bandit", "quality": "gmm", "variant": "default", "metric": "expected_return"},
        [{"algo": a} for a in ("brpo-ind", "brpo-joint", "brpo-fac", "omsd")],
        n_label=0,
    ),
    case(
        "omsd",
        "Table 2",
        "Random",
        None,
        {"task": "halfcheetah", "quality": "random", "variant": "default", "metric": "return_mean"},
        [{"algo": a} for a in ("omar", "cql", "omiga", "dom2", "brpo-ind", "brpo-fac", "omsd")],
        n_label=1,
    ),
]


@pytest.mark.skipif(not PAPERS.is_dir(), reason=f"the papers' markdown is not at {PAPERS}")
@pytest.mark.parametrize("paper,table,group,label,n_label,base,columns,with_std", CASES)
def test_cells_match_the_papers_text(
    published: pd.DataFrame, paper, table, group, label, n_label, base, columns, with_std
) -> None:
    numbers = printed_numbers(paper, table, group, label, n_label)
    assert not with_std or len(numbers) % 2 == 0, numbers
    printed = list(zip(numbers[0::2], numbers[1::2], strict=True)) if with_std else [(n, None) for n in numbers]
    assert len(printed) == len(columns)
    rows = published_for(published, paper, table)
    for (mean, std), column in zip(printed, columns, strict=True):
        selector = {**base, **column}
        match = rows[(rows[list(selector)] == pd.Series(selector)).all(axis=1)]
        assert len(match) == 1, selector
        assert match["mean"].iloc[0] == mean, selector
        if with_std:
            assert match["std"].iloc[0] == std, selector
        else:
            assert pd.isna(match["std"].iloc[0])


def test_negative_cells_keep_their_sign(published: pd.DataFrame) -> None:
    cheetah = published_for(published, "comadice", 3).set_index(["quality", "algo"])
    assert cheetah.loc[("medium-replay", "bcq"), "mean"].min() == -333.6
    assert published_for(published, "omsd", 2, "return_mean")["mean"].min() == -243.3


# --- the loader's errors ---------------------------------------------------------------------------------------

GOOD_ROW = "comadice,Table 3,,mamujoco,hopper,expert,comadice,default,return_mean,return,2827.7,62.9,"


def write_csv(tmp_path: Path, *rows: str, header: str = ",".join(COLUMNS)) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    "row,message",
    [
        (GOOD_ROW.replace("2827.7", "2827.7.1"), r"bad\.csv:2: field 'mean': expected a finite number.*'2827\.7\.1'"),
        (GOOD_ROW.replace(",62.9,", ",n/a,"), r"bad\.csv:2: field 'std': expected .*'n/a'"),
        (GOOD_ROW.replace("return_mean", "win_rates"), r"bad\.csv:2: field 'metric': expected one of .*'win_rates'"),
        (GOOD_ROW.replace(",return,", ",percent,"), r"bad\.csv:2: field 'unit': expected return for .*'percent'"),
        (GOOD_ROW.replace("mamujoco", "smac"), r"bad\.csv:2: field 'suite': expected one of .*'smac'"),
        (GOOD_ROW.replace("Table 3", "Tab. 3"), r"bad\.csv:2: field 'table': expected 'Table <number>'"),
        (GOOD_ROW.replace(",default,", ",alpha 10,"), r"bad\.csv:2: field 'variant'"),
        (GOOD_ROW + ",extra", r"bad\.csv:2: field 'row': expected 13 cells, found '14 cells'"),
    ],
)
def test_a_bad_cell_names_file_line_field_expected_and_found(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_published(write_csv(tmp_path, row).parent)


def test_a_duplicate_cell_names_both_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_ROW, GOOD_ROW.replace("2827.7", "1.0"))
    with pytest.raises(
        ConfigError, match=r"bad\.csv:3: field 'key': expected a cell not already given at .*bad\.csv:2"
    ):
        load_published(path)
    write_csv(tmp_path, GOOD_ROW, GOOD_ROW.replace("Table 3", "Table 13").replace("default", "alpha=10"))
    assert len(load_published(path)) == 2


def test_an_unknown_column_set_or_a_missing_directory_is_reported(tmp_path: Path) -> None:
    header = ",".join(COLUMNS).replace("std", "stdev")
    with pytest.raises(ConfigError, match=r"bad\.csv:1: field 'header': expected paper,.*,std,note, found .*stdev"):
        load_published(write_csv(tmp_path, GOOD_ROW, header=header))
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_published(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="found none"):
        load_published(tmp_path / "empty")


def test_published_for_filters_and_rejects_unknown_names(published: pd.DataFrame) -> None:
    table3 = published_for(published, "comadice", [3, "Table 8"], "return_mean")
    assert set(table3["table"]) == {"Table 3", "Table 8"} and len(table3) == 84 + 36
    with pytest.raises(UnknownNameError, match="did you mean 'comadice'"):
        published_for(published, "comadise")
    with pytest.raises(UnknownNameError, match="unknown table 'Table 5'"):
        published_for(published, "comadice", 5)
    with pytest.raises(UnknownNameError, match="unknown metric 'win_rate'"):
        published_for(published, "omsd", metric="win_rate")


def test_loading_does_not_import_torch() -> None:
    code = "import sys; from marlbench.report.published import load_published; load_published(); "
    code += "assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# --- annotations: does the authors' own code reproduce a cell? -------------------------------------------------

ANNOTATED_HEADER = ",".join(ANNOTATED_COLUMNS)


def test_table_26_is_annotated_with_what_the_authors_code_gives(published: pd.DataFrame) -> None:
    checked = published[published["authors_code"] != NOT_CHECKED]
    assert set(zip(checked["paper"], checked["table"], strict=True)) == {("comadice", "Table 26")}
    assert len(checked) == EXPECTED_ROWS[("comadice", "Table 26")]
    by_quality = checked.groupby("quality")[["authors_code", "authors_code_value", "authors_code_metric"]].agg(set)
    assert by_quality.to_dict("index") == {
        "ab": {"authors_code": {"yes"}, "authors_code_value": {0.998}, "authors_code_metric": {"expected_return"}},
        "ab-ba": {"authors_code": {"no"}, "authors_code_value": {0.0}, "authors_code_metric": {"expected_return"}},
        "aa-ab-ba": {"authors_code": {"no"}, "authors_code_value": {0.219}, "authors_code_metric": {"expected_return"}},
        "aa-ab-ba-bb": {
            "authors_code": {"no"},
            "authors_code_value": {0.021},
            "authors_code_metric": {"expected_return"},
        },
    }
    assert all("REFERENCE.md" in source for source in checked["annotation_source"])
    unchecked = published[published["authors_code"] == NOT_CHECKED]
    assert unchecked["authors_code_value"].isna().all() and set(unchecked["annotation_source"]) == {""}


def test_a_file_without_annotation_columns_is_not_checked(tmp_path: Path) -> None:
    row = load_published(write_csv(tmp_path, GOOD_ROW)).iloc[0]
    assert (row["authors_code"], row["authors_code_metric"], row["annotation_source"]) == (NOT_CHECKED, "", "")
    assert pd.isna(row["authors_code_value"])
    annotated = load_published(write_csv(tmp_path, GOOD_ROW + ",no,2000,,a run of their code", header=ANNOTATED_HEADER))
    assert annotated[list(ANNOTATION_COLUMNS)].values.tolist() == [["no", 2000.0, "return_mean", "a run of their code"]]


@pytest.mark.parametrize(
    "annotation,message",
    [
        (",maybe,,,", r"bad\.csv:2: field 'authors_code': expected one of yes, no, not-checked, found 'maybe'"),
        (",no,,,their code", r"bad\.csv:2: field 'authors_code_value': expected a finite number, found ''"),
        (",no,1.0,,", r"bad\.csv:2: field 'annotation_source': expected where the check is recorded .*found ''"),
        (",yes,,,", r"bad\.csv:2: field 'annotation_source': expected where the check is recorded"),
        (",not-checked,1.0,,", r"field 'authors_code_value': expected an empty cell where authors_code is not-che"),
        (",not-checked,,,their code", r"field 'annotation_source': expected an empty cell where authors_code is not"),
        (",yes,,return_mean,x", r"field 'authors_code_metric': expected an empty cell where authors_code_value is"),
        (",no,1.0,win_rate,x", r"field 'authors_code_metric': expected the row's metric or one of .*'win_rate'"),
        (",no,1.0,returns,x", r"field 'authors_code_metric': expected the row's metric or one of .*'returns'"),
        (",no,1.0,,x,extra", r"bad\.csv:2: field 'row': expected 17 cells, found '18 cells'"),
    ],
)
def test_a_bad_annotation_names_file_line_field_expected_and_found(
    tmp_path: Path, annotation: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_published(write_csv(tmp_path, GOOD_ROW + annotation, header=ANNOTATED_HEADER))
