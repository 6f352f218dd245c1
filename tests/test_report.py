"""The sine report: tables put our numbers beside the papers', plots are written."""

import pytest

from metalearning.metrics_io import write_json
from metalearning.report.paper_values import METASGD_TABLE1
from metalearning.report.sine import maml_steps_table, table1, write_report


def _result(algorithm, train_shots, eval_steps=1, base=1.0):
    shots = {}
    for k in (5, 10, 20):
        curve = [base * 4 / (1 + s) for s in range(11)]
        shots[f"{k}shot"] = {"mse": curve[eval_steps], "ci95": 0.1, "curve_mse": curve, "curve_ci95": [0.1] * 11}
    return {
        "setting": {"algorithm": algorithm, "train_shots": train_shots, "meta_iterations": 100,
                    "eval_inner_steps": eval_steps, "meta_batch_size": 4, "inner_steps": 1, "seed": 0},
        "shots": shots,
        "qualitative": {"x": [0.0, 1.0], "true": [0.0, 1.0], "before": [0.0, 0.0], "after": [0.1, 0.9],
                        "support_x": [0.5], "support_y": [0.5], "inner_steps": eval_steps},
        "learning_curve": [{"iteration": 1.0, "meta_val.mse": 3.0}, {"iteration": 2.0, "meta_val.mse": 2.0}],
    }


@pytest.fixture
def results():
    return {"maml_sine_5shot": _result("MAML", 5), "metasgd_sine_10shot": _result("MetaSGD", 10, base=0.5),
            "reptile_sine": _result("Reptile", 10, eval_steps=3)}


def test_table1_pairs_each_run_with_its_paper_row(results):
    table = table1(results)
    maml_row = next(line for line in table.splitlines() if "maml_sine_5shot" in line)
    paper = METASGD_TABLE1[("MAML", 5)][5]
    assert f"2.00 ± 0.10 ({paper[0]:.2f} ± {paper[1]:.2f})" in maml_row
    metasgd_row = next(line for line in table.splitlines() if "metasgd_sine_10shot" in line)
    assert "(0.35 ± 0.06)" in metasgd_row  # 20-shot testing column of that paper row
    assert "reptile_sine" not in table


def test_maml_steps_table_reads_the_adaptation_curve(results):
    row = next(line for line in maml_steps_table(results).splitlines() if "maml_sine_5shot" in line)
    assert "2.00 ± 0.10 (0.67)" in row and "0.67 ± 0.10 (0.38)" in row


def test_write_report_links_its_plots(results, tmp_path):
    page = write_report(results, tmp_path, profile="cpu", params_note="Budget: test.",
                        meta_test={"curves": 100, "repeats": 100, "seed": 1})
    text = page.read_text()
    for png in ("learning_curves.png", "test_curves.png", "qualitative.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert f"({png})" in text
    assert "Budget: test." in text and "profile **cpu**" in text


def test_diverged_adaptation_is_named_not_printed_as_a_number(results, tmp_path):
    curve = results["maml_sine_5shot"]["shots"]["5shot"]
    curve["curve_mse"][5], curve["curve_mse"][10] = float("inf"), 3.5e27
    row = next(line for line in maml_steps_table(results).splitlines() if "maml_sine_5shot" in line)
    assert row.count("diverged") == 2 and "inf" not in row and "e+" not in row
    write_report(results, tmp_path, profile="cpu", params_note="", meta_test={"curves": 1, "repeats": 1, "seed": 1})
    assert (tmp_path / "test_curves.png").is_file()


def test_paper_numbers_keep_the_papers_precision_and_say_what_their_interval_is():
    from metalearning.report.fewshot import _paper, paper_point
    from metalearning.report.paper_values import FEWSHOT, FEWSHOT_INTERVAL

    maml = {"algorithm": "MAML", "ways": 5}
    assert _paper("omniglot", maml, 1) == "98.7 ± 0.4% (transductive; 95% CI over tasks)"  # not 98.70 ± 0.40
    assert _paper("miniimagenet", maml, 1) == "48.70 ± 1.84% (transductive; 95% CI over tasks)"
    reptile = _paper("omniglot", {"algorithm": "Reptile", "ways": 5}, 1)
    assert reptile.count("from the std. over 3 training seeds") == 2 and "95% CI" not in reptile
    assert paper_point("omniglot", {"algorithm": "Reptile", "ways": 5}, 1) == (97.68, 0.04)  # the transductive one
    assert paper_point("omniglot", {"algorithm": "MAML", "ways": 5}, 3) is None
    for (algorithm, dataset, _, _), modes in FEWSHOT.items():
        assert (algorithm, dataset) in FEWSHOT_INTERVAL
        for acc, ci in modes.values():
            assert isinstance(acc, str) and float(acc) > 0 and (ci is None or float(ci) > 0)


def test_the_deviations_section_is_computed_from_the_experiment_file_and_the_profile(repo):
    import yaml

    from metalearning.report.deviations import binding_deviations, deviations_section

    config = repo / "configs" / "experiments" / "metasgd_omniglot_5w1s.gin"
    found = binding_deviations("m", config, ["filters = 32", "queries = 1", "ways = 5", "MetaTrainer.meta_iterations"
                                             " = 1000"])
    assert [(d.setting, d.paper, d.ours) for d in found] == [("filters", 64, 32), ("queries", 15, 1),
                                                            ("MetaTrainer.meta_iterations", 60000, 1000)]  # not ways
    params = yaml.safe_load((repo / "params.yaml").read_text())
    text = deviations_section(params, "rl", repo / "params.yaml")
    assert "| `maml_nav2d` | `MetaTrainer.meta_iterations` | `500` | `100` |" in text
    assert "`metasgd_nav2d_fixed`" not in text  # trained at its file's (the paper's) budget
    # the meta-test's own bindings too, a macro shown by its value
    assert "| `pretrained_nav2d` | `fine_tune_lr` | `0.1` | `0.2` |" in text
    params["profile"] = "paper"
    paper = deviations_section(params, "rl", repo / "params.yaml")
    assert "meta_iterations" not in paper and "| `random_nav2d` | `fine_tune_lr` | `0.1` | `1.0` |" in paper
    params["rl"]["experiments"] = {"maml_nav2d_fixed": {"seeds": 1}}
    assert "None: this profile trains every experiment file as it is." in deviations_section(params, "rl",
                                                                                             repo / "params.yaml")


def test_maml_table2_puts_the_run_on_mamls_own_family_first_and_keeps_it_out_of_metasgd_table1(results):
    results["maml_paper_sine_10shot"] = {**_result("MAML", 10), "family": "sine_maml"}
    assert "maml_paper_sine_10shot" not in table1(results)
    rows = [line for line in maml_steps_table(results).splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `maml_paper_sine_10shot` | MAML | MAML's (ω = 1) | 10 |")
    assert rows[1].startswith("| `maml_sine_5shot` | MAML | Meta-SGD's (ω ∈ [0.8, 1.2]) | 5 |")


def test_maml_table2_has_the_pretrained_baseline_beside_its_paper_row(results):
    results["pretrained_paper_sine_10shot"] = {**_result("pretrained", 10), "family": "sine_maml"}
    results["maml_paper_sine_10shot"] = {**_result("MAML", 10), "family": "sine_maml"}
    rows = [line for line in maml_steps_table(results).splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `maml_paper_sine_10shot` | MAML |") and "(0.67)" in rows[0]
    assert rows[1].startswith("| `pretrained_paper_sine_10shot` | pretrained | MAML's (ω = 1) | 10 |")
    assert "(2.41)" in rows[1] and "(2.23)" in rows[1] and "(2.19)" in rows[1]


def test_the_seeds_section_shows_the_across_seed_mean_and_interval_beside_each_seed(tmp_path):
    from metalearning.replicates import seed_summary
    from metalearning.report.seeds import seeds_section

    per_seed = {0: {"transductive": {"accuracy": 0.97, "ci95": 0.007}},
                1: {"transductive": {"accuracy": 0.95, "ci95": 0.008}},
                2: {"transductive": {"accuracy": 0.96, "ci95": 0.009}}}
    write_json(tmp_path / "maml" / "5w1s" / "seeds.json", {"seeds": [0, 1, 2], "results": seed_summary(per_seed)})
    write_json(tmp_path / "fomaml" / "5w1s" / "seeds.json", {"seeds": [0], "results": seed_summary({0: per_seed[0]})})
    text = seeds_section(tmp_path, ["maml", "fomaml"])
    # mean 96.00%, t(2 df) half-width 4.303 * 0.01 / sqrt(3) = 2.48 points
    assert "| `maml` | 5w1s · transductive · accuracy | 3 | 96.00 ± 2.48% | 0: 97.00 ± 0.70%; 1: 95.00 ± 0.80%; " \
           "2: 96.00 ± 0.90% |" in text
    assert "One training seed only: `fomaml`." in text
    assert "No experiment" in seeds_section(tmp_path, ["fomaml"])


def test_the_fewshot_report_says_the_metasgd_regulariser_is_undefined_in_the_paper(tmp_path):
    from metalearning.report.fewshot import METASGD_REGULARISER, write_fewshot_report

    setting = {"algorithm": "MetaSGD", "ways": 5, "learner": "Conv4", "parameters": 10, "meta_iterations": 1,
               "meta_batch_size": 1, "train_bn_mode": "transductive", "eval_inner_steps": 1}
    curve = {"accuracy": 0.9, "ci95": 0.01, "curve_steps": [0, 1], "curve_accuracy": [0.2, 0.9],
             "curve_ci95": [0.01, 0.01]}
    result = {"setting": setting, "episodes": {"ways": 5, "shots": 1, "queries": 1, "episodes": 10},
              "modes": {"transductive": curve, "non_transductive": curve}, "experiment": "m",
              "learning_curve": [{"iteration": 1, "meta_val.accuracy": 0.5}], "selected": 1}
    write_fewshot_report({"m/5w1s": result}, tmp_path, dataset="omniglot", title="t", notes=[])
    page = (tmp_path / "README.md").read_text()
    assert METASGD_REGULARISER in page and "defines neither the term nor its weight" in page
    assert "| 1 | transductive |" in page  # the selected iteration's column


def test_the_seeds_section_orders_results_naturally(tmp_path):
    from metalearning.replicates import seed_summary
    from metalearning.report.seeds import seed_rows

    per_seed = {s: {f"{k}shot": {"mse": 1.0 + s, "ci95": 0.1} for k in (5, 10, 20)} for s in (0, 1)}
    write_json(tmp_path / "m" / "seeds.json", {"seeds": [0, 1], "results": seed_summary(per_seed)})
    assert [r["result"] for r in seed_rows(tmp_path, ["m"])] == ["5shot · mse", "10shot · mse", "20shot · mse"]
