"""Rendering the ledger into Markdown and into a paper README's results section."""

from papers.core.report import END, START, render_domain_table, render_record, update_readme

RECORD = {
    "id": "x",
    "domain": "theory",
    "claim": "A beats B.",
    "verdict": "does not hold",
    "preset": "default",
    "seed": 0,
    "wall_time_s": 12.3,
    "date": "2026-01-01",
    "notes": "B was better here.",
    "hardware": {"cpu": "cpu", "cpu_count": 2, "torch_threads": 1, "device": "cpu"},
    "papers": [{"title": "T", "year": 2020, "catalog_ids": ["000:1:1"]}],
    "metrics": {"loss_a": 0.5, "curve": [1, 2]},
    "checks": [
        {
            "name": "a < b",
            "measured": 0.5,
            "comparison": "<",
            "reference": 0.4,
            "reference_label": "loss of B",
            "passed": False,
        }
    ],
    "figures": ["docs/figures/x/f.png"],
}


def test_render_record_shows_the_failing_check_and_skips_lists():
    text = render_record(RECORD)
    assert "**does not hold**" in text and "| a < b | 0.5 | < | 0.4 (loss of B) | does not hold |" in text
    assert "B was better here." in text and "| loss_a | 0.5 |" in text and "curve" not in text
    assert "![f](docs/figures/x/f.png)" in text


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    folder = tmp_path / "packages" / "p"
    folder.mkdir(parents=True)
    readme = folder / "README.md"
    readme.write_text(f"# Title\n\nIntro.\n\n{START}\nstale section\n{END}\n\nFooter.\n")
    assert update_readme(readme, RECORD, tmp_path)
    text = readme.read_text()
    assert text.startswith("# Title\n\nIntro.") and text.endswith("Footer.\n") and "stale section" not in text
    assert "![f](../../docs/figures/x/f.png)" in text
    plain = tmp_path / "other.md"
    plain.write_text("no markers")
    assert not update_readme(plain, RECORD, tmp_path)


def test_a_readme_shared_by_two_experiments_keeps_both_results(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Two\n\n{START}\n{END}\n")
    second = {**RECORD, "id": "other-experiment", "claim": "The second claim."}
    assert update_readme(readme, [RECORD, second], tmp_path)
    text = readme.read_text()
    assert f"### {RECORD['id']}" in text and "### other-experiment" in text
    assert RECORD["claim"] in text and "The second claim." in text


def test_domain_table_lists_each_experiment_with_its_folder(tmp_path):
    folder = tmp_path / "src" / "papers" / "x" / "paper"
    table = render_domain_table([{**RECORD, "folder": folder}], tmp_path)
    assert f"| `{RECORD['id']}` |" in table and "`src/papers/x/paper/`" in table
    assert RECORD["verdict"] in table
