"""Models from other distributions: an entry point in the group ``tta_energy.models`` names a catalogue row,
and the model is then listed, described and swept like a built-in one; a plugin that cannot be used is one
error line naming its entry point and distribution (``install_distribution`` is in tests/conftest.py)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import refused
from tta_energy import schema
from tta_energy.cli.main import main
from tta_energy.models import catalogue

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NAME = "demo-model"
#: the row's module imports no torch; the adapter's module is imported only when the model is built
ROW_MODULE = f"""
from tta_energy.models.catalogue import ModelDefaults, ModelEntry

ROW = ModelEntry({NAME!r}, "tta_demo_plugin.adapter:DemoAdapter", "Demo Model", "demo_model",
                 ModelDefaults(dtype="float16", negative_prompt="", guidance_scale=2.0, max_duration_s=5.0))
NOT_A_ROW = "demo-model"
"""
ADAPTER_MODULE = f"""
from tta_energy.models.audioldm import AudioLDMAdapter
from tta_energy.models.catalogue import entry


class DemoAdapter(AudioLDMAdapter):
    name = {NAME!r}
    defaults = entry({NAME!r}).defaults
"""
FILES = {"tta_demo_plugin/__init__.py": "", "tta_demo_plugin/row.py": ROW_MODULE,
         "tta_demo_plugin/adapter.py": ADAPTER_MODULE}


@pytest.fixture
def demo(install_distribution):
    install_distribution("tta-demo-plugin", entry_points={NAME: "tta_demo_plugin.row:ROW"}, files=FILES)
    return NAME


def test_a_plugin_model_follows_the_built_in_ones(demo):
    assert catalogue.model_names() == (*catalogue.BUILTIN_NAMES, demo)
    assert catalogue.entry(demo).label == catalogue.label(demo) == "Demo Model"
    assert catalogue.help_text().endswith(f"make-an-audio-2 or {demo}")
    assert catalogue.ordered([demo, "tango"]) == ["tango", demo]
    assert catalogue.check_models([demo, "tango"], ValueError, "--model") == (catalogue.entry(demo),
                                                                              catalogue.entry("tango"))
    assert "tta_demo_plugin.row" in sys.modules and "tta_demo_plugin.adapter" not in sys.modules

    from tta_energy.models.registry import adapter_class

    assert adapter_class(demo).__name__ == "DemoAdapter"


def test_check_models_is_entrys_rule_and_names_where_the_model_was_named():
    """Every list of model names is checked by one rule: the rows in the list's order, or the first unknown
    name refused with the error type asked for, in the words :func:`catalogue.entry` uses."""

    class Refused(Exception):
        pass

    names = ", ".join(catalogue.model_names())
    assert catalogue.check_models(["tango", "audioldm"], Refused, "--model") == (catalogue.entry("tango"),
                                                                                 catalogue.entry("audioldm"))
    assert catalogue.check_models((), Refused, "--model") == ()
    with pytest.raises(Refused) as exc:
        catalogue.check_models(["tango", "tangoo", "nope"], Refused, "plan.toml")
    assert str(exc.value) == f"unknown model 'tangoo' in plan.toml: choose one of {names}"
    with pytest.raises(catalogue.UnknownModelError) as exc:
        catalogue.entry("tangoo")
    assert str(exc.value) == f"unknown model 'tangoo': choose one of {names}"


def test_check_models_returns_the_rows_or_one_line_naming_the_caller(demo):
    rows = catalogue.check_models(["tango", demo], ValueError, "plan.toml [levers] models")
    assert rows == (catalogue.entry("tango"), catalogue.entry(demo))
    assert catalogue.check_models((), ValueError, "nothing") == ()
    with pytest.raises(KeyError) as caught:
        catalogue.check_models(["tango", "nope", "also-not"], KeyError, "plan.toml [levers] models")
    assert caught.value.args[0] == ("unknown model 'nope' in plan.toml [levers] models: choose one of "
                                    + ", ".join(catalogue.model_names()))


def test_describe_and_sweep_a_plugin_model(demo, tmp_path, capsys):
    main(["describe", "--model", demo, "--size", "tiny", "--duration-s", "1", "--json"])
    described = json.loads(capsys.readouterr().out)
    assert described["model"] == demo and described["gflop_per_step"] > 0

    main(["sweep", "--model", demo, "--experiment", "steps", "--grid", "2", "--repeats", "1",
          "--size", "tiny", "--device", "cpu", "--duration-s", "1", "--idle-s", "0", "--warmup", "0",
          "--no-progress", "--no-codecarbon", "--no-trace", "--out-dir", str(tmp_path)])
    rows = schema.read_runs(tmp_path / "steps.csv")
    assert rows["model"].tolist() == [demo] and rows["status"].tolist() == ["ok"]
    assert rows["guidance_scale"].tolist() == [2.0] and rows["denoiser_calls"].tolist() == [2]


def _refused(argv: list[str], capsys) -> str:
    return refused(capsys, argv)


@pytest.mark.parametrize(("entry_points", "problem"), [
    ({"audioldm": "tta_demo_plugin.row:ROW"}, "the name 'audioldm' is taken by a built-in model"),
    ({NAME: "tta_demo_plugin.missing:ROW"}, "does not load: ModuleNotFoundError"),
    ({NAME: "tta_demo_plugin.row:NOT_A_ROW"}, "names a str, not a tta_energy.models.catalogue.ModelEntry"),
    ({"other-name": "tta_demo_plugin.row:ROW"}, "names the model 'demo-model'"),
])
def test_a_plugin_that_cannot_be_used_is_one_error_line(install_distribution, capsys, entry_points, problem):
    install_distribution("tta-demo-plugin", entry_points=entry_points, files=FILES)
    err = _refused(["describe", "--model", NAME, "--size", "tiny", "--json"], capsys)
    (ep, target), = entry_points.items()
    assert err.startswith(f"error: model plugin '{ep} = {target}' (distribution tta-demo-plugin 0.1)")
    assert problem in err
    assert "(plugins not loaded: " in catalogue.help_text()  # the help still lists the built-in models


def test_two_plugins_cannot_share_a_name(demo, install_distribution, capsys):
    install_distribution("tta-other-plugin", entry_points={NAME: "tta_demo_plugin.row:ROW"})
    err = _refused(["sweep", "--model", NAME, "--experiment", "steps", "--size", "tiny", "--device", "cpu"],
                   capsys)
    assert "distribution tta-other-plugin 0.1" in err and "distribution tta-demo-plugin 0.1" in err
    assert "is taken by" in err


def test_an_adapter_with_its_own_build_needs_no_construction_hooks():
    """``ModelAdapter.build`` is the template most adapters use through ``_build_random``/``_load_weights``;
    an adapter written against ``build`` itself (as plugins were before the hooks) still builds and counts."""
    import torch

    from tta_energy.models.audioldm import AudioLDMAdapter
    from tta_energy.models.base import ModelAdapter, ModuleCall, no_phases

    class OwnBuildAdapter(ModelAdapter):
        name = "audioldm"
        defaults = catalogue.entry("audioldm").defaults

        @classmethod
        def build(cls, size="full", weights="random", device="cpu", dtype=None):
            inner = AudioLDMAdapter.build(size, weights, device, dtype)
            adapter = cls(size=size, weights=weights, device=inner.device, dtype=inner.dtype)
            adapter.inner = inner
            return adapter

        def components(self) -> dict[str, torch.nn.Module]:
            return self.inner.components()

        def generate(self, request, phases=no_phases):
            return self.inner.generate(request, phases)

        def save_pretrained(self, path) -> None:
            self.inner.save_pretrained(path)

        def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
            return self.inner.denoiser_call(duration_s, batch)

        def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
            return self.inner.per_generation_calls(duration_s, batch)

    assert {"build", "_build_random", "_load_weights"}.isdisjoint(ModelAdapter.__abstractmethods__)
    own = OwnBuildAdapter.build("tiny", device="meta")
    assert isinstance(own, OwnBuildAdapter) and own.dtype == torch.float16 and own.device.type == "meta"
    assert own.parameter_counts() == AudioLDMAdapter.build("tiny", device="meta").parameter_counts()

    class NoConstruction(OwnBuildAdapter):
        build = vars(ModelAdapter)["build"]  # neither its own build nor the hooks: one clear error

    with pytest.raises(NotImplementedError, match="NoConstruction implements neither build nor _build_rand"):
        NoConstruction.build("tiny")
    with pytest.raises(NotImplementedError, match="neither build nor _load_weights"):
        NoConstruction.build("tiny", weights="some/folder")


@pytest.mark.parametrize(
    ("weights", "hub"),
    [("cvssp/audioldm2", True), ("declare-lab/tango2-full", True),
     ("stabilityai/stable-audio-open-1.0", True),
     ("./audioldm2", False), ("../weights/x", False), ("/abs/path", False), ("~/models/x", False),
     ("a/b/c", False), ("-x/y", False), ("_x/y", False), ("plainname", False)],
)
def test_one_rule_tells_a_hub_id_from_a_path(weights, hub):
    """Every family asks one rule whether a ``--weights`` that is not a folder may name a cached hub repo."""
    from tta_energy.models.weights import looks_like_hub_id

    assert looks_like_hub_id(weights) is hub
