"""Known answers of the single helpers that replaced duplicates ("one name per idea")."""
import numpy as np
import pandas as pd
import pytest

from islab import sampling, tables


def test_text_table_known_answer():
    head, rows = ["method", "acc %"], [["dris", "81.2"], ["uniform", "7"]]
    assert tables.text_table(head, rows) == ("method   acc %\n"
                                             "-------  -----\n"
                                             "dris     81.2 \n"
                                             "uniform  7    ")
    assert tables.text_table(head, rows, strip=True).splitlines()[3] == "uniform  7"
    assert tables.text_table(head, rows, rule=False) == "method   acc %\ndris     81.2 \nuniform  7    "
    assert tables.table_lines(head, rows) == tables.text_table(head, rows).split("\n")


def test_markdown_table_known_answer():
    assert tables.markdown_table(["a", "b"], [[1, "x|y"]]) == "| a | b |\n|---|---|\n| 1 | x|y |"
    assert tables.markdown_table(["a", "b"], [[1, "x|y"]], escape_pipes=True).endswith("| 1 | x/y |")


def test_final_frame_known_answer():
    df = pd.DataFrame({"config": ["c"] * 4, "method": ["m", "m", "m", "r"], "seed": [0, 0, 0, 0],
                       "metric": ["acc", "acc", "auroc", "acc"], "epoch": [1.0, np.nan, np.nan, np.nan],
                       "value": [10.0, 80.0, np.nan, 70.0]})
    assert len(tables.final_rows(df)) == 3 and len(tables.final_rows(df.drop(columns="epoch"))) == 4
    fin = tables.final_frame(df, ["config", "method", "seed"])
    assert list(fin["method"]) == ["m", "r"] and list(fin["acc"]) == [80.0, 70.0]
    assert "auroc" in fin and fin["auroc"].isna().all()   # an all-NaN metric keeps its column
    assert tables.final_frame(df[df["epoch"] == 1.0], ["config"]).empty


def test_importance_weights_one_definition():
    import islab
    from islab import dris

    assert islab.importance_weights is sampling.importance_weights is dris.importance_weights
    np.testing.assert_array_equal(sampling.importance_weights([0.5, 0.25, 0.25], [2, 0]), [4 / 3, 2 / 3])
    with pytest.raises(ValueError, match="probs is 0 at example 1"):
        sampling.importance_weights([1.0, 0.0], [1])


def test_smoothed_probs_is_the_one_online_distribution():
    from islab import dris, online

    s = np.array([0.0, 0.1, 0.2, 0.1])   # c = 0.5 * 0.1: [0.05, 0.15, 0.25, 0.15] / 0.6
    np.testing.assert_allclose(sampling.smoothed_probs(s, 0.5), np.array([0.05, 0.15, 0.25, 0.15]) / 0.6)
    assert dris.online_probs(s, 0.5).tobytes() == sampling.smoothed_probs(s, 0.5).tobytes()
    assert not hasattr(online, "dris_probs")


def test_train_helpers_shared_with_the_ensemble_loop_are_public():
    from islab import ensemble, train

    for name in ("autocast_context", "batch_format", "lr_at_step", "use_compile", "compile_forward"):
        assert getattr(ensemble, name) is getattr(train, name)
    cfg = train.TrainConfig(lr=0.1, warmup_epochs=0)
    assert train.lr_at_step(0, 10, cfg, 5) == pytest.approx(0.1)
    assert train.lr_at_step(5, 10, cfg, 5) == pytest.approx(0.05)
