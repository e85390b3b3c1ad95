"""The H200-vs-A40 fronts: the study's scores joined to each platform's energy, one front per point set."""

from __future__ import annotations

import pandas as pd

from tta_energy.analysis import fronts


def _scores() -> pd.DataFrame:
    rows = []
    for model, clap in (("audioldm", {10: 0.30, 100: 0.40}), ("tango", {10: 0.35, 100: 0.36})):
        for steps, value in clap.items():
            rows.append(
                {
                    "source": "study",
                    "model": model,
                    "dataset": "audiocaps",
                    "steps": steps,
                    "metric": "clap",
                    "value": value,
                    "scope": "subset",
                    "caption_id": "",
                }
            )
    return pd.DataFrame(rows)


def _a40() -> pd.DataFrame:
    energy = {("audioldm", 10): 60.0, ("audioldm", 100): 380.0, ("tango", 10): 500.0, ("tango", 100): 3000.0}
    return pd.DataFrame(
        [
            {"model": m, "dataset": "audiocaps", "steps": s, "gpu_energy_J": e + d}
            for (m, s), e in energy.items()
            for d in (-1.0, 1.0)
        ]
    )


def _h200_steps() -> pd.DataFrame:
    energy = {("audioldm", 10): 70.0, ("audioldm", 100): 640.0, ("tango", 10): 230.0, ("tango", 100): 2100.0}
    return pd.DataFrame(
        [
            {
                "model": m,
                "steps": s,
                "gpu_energy_J_mean": e,
                "gpu_energy_J_ci_low": e - 5,
                "gpu_energy_J_ci_high": e + 5,
                "n_runs": 5,
            }
            for (m, s), e in energy.items()
        ]
    )


def _levers() -> pd.DataFrame:
    base = {"waveforms_per_prompt": 1, "n_runs": 2, "run_id": "r", "gpu_name": "NVIDIA H200",
            "dtype": "float32",
            "gpu_energy_J_std": 10.0, "fraction_of_ceiling": 0.1}
    return pd.DataFrame(
        [
            {
                **base,
                "model": "tango",
                "steps": 100,
                "optimize": "none",
                "gpu_energy_J_per_clip": 2190.0,
                "reduction_vs_none": 1.0,
                "lossless": True,
            },
            {
                **base,
                "model": "tango",
                "steps": 100,
                "optimize": "compile-graphs",
                "gpu_energy_J_per_clip": 520.0,
                "reduction_vs_none": 2190.0 / 520.0,
                "lossless": True,
            },
            {
                **base,
                "model": "tango",
                "steps": 100,
                "optimize": "trim",
                "gpu_energy_J_per_clip": 100.0,
                "reduction_vs_none": 21.9,
                "lossless": False,
            },
        ]
    )


def test_fronts_per_point_set_and_what_joins() -> None:
    table = fronts.platform_fronts(_h200_steps(), _a40(), _scores(), _levers()).set_index(
        ["point_set", "model", "steps"]
    )
    # A40: audioldm 100 (380 J, 0.40) dominates tango 10 (500 J, 0.35); on the H200 tango 10 is cheaper
    assert not bool(table.loc[("A40 (study)", "tango", 10), "on_front_a40"])
    assert bool(table.loc[("A40 (study)", "audioldm", 100), "on_front_a40"])
    assert table.loc[("H200, study default", "tango", 10), "front_change"] == "joins"
    assert table.loc[("H200, study default", "audioldm", 100), "front_change"] == "stays"
    # the lossy lever never enters; the best lossless one (compile-graphs, 520 J) keeps tango 100's score
    lever = table.loc[("H200, lossless levers", "tango", 100)]
    assert lever["optimize"] == "compile-graphs" and lever["gpu_energy_J_per_clip"] == 520.0
    assert bool(lever["on_front_h200_levers"])
    assert pd.isna(lever["on_front_h200_default"])
    assert not bool(table.loc[("H200, study default", "tango", 100), "on_front_h200_default"])
    assert table.loc[("A40 (study)", "tango", 100), "front_change"] == "off"


def test_levers_found_next_to_a_run_table(tmp_path) -> None:
    (tmp_path / "h200").mkdir()
    (tmp_path / "h200" / "levers.csv").write_text("model\n", encoding="utf-8")
    (tmp_path / "h200" / "steps.csv").write_text("", encoding="utf-8")
    assert fronts.find_levers_tables([tmp_path]) == [tmp_path / "h200" / "levers.csv"]
    assert fronts.find_levers_tables([tmp_path / "h200" / "steps.csv"]) == [tmp_path / "h200" / "levers.csv"]


def test_only_the_h200s_levers_runs_enter_the_h200_fronts() -> None:
    """A levers table of another card (an H100's, cheaper here) gives no star to the H200's front; a table
    without the GPU's name gives none either."""
    h100 = _levers().assign(run_id="h", gpu_name="NVIDIA H100 80GB HBM3",
                            gpu_energy_J_per_clip=lambda f: f["gpu_energy_J_per_clip"] / 2)
    table = fronts.platform_fronts(_h200_steps(), _a40(), _scores(), pd.concat([_levers(), h100]))
    lever = table[table["point_set"] == "H200, lossless levers"]
    assert lever["gpu_energy_J_per_clip"].tolist() == [520.0]
    unnamed = fronts.platform_fronts(_h200_steps(), _a40(), _scores(), _levers().drop(columns="gpu_name"))
    assert "H200, lossless levers" not in set(unnamed["point_set"])
