"""Options declared once (core.options.option): the command line's options and the Python signatures come from, or
agree with, the config's fields."""

import inspect
from dataclasses import MISSING, dataclass, fields

import click
import pytest
import typer
from rich.markup import escape as markup_escape
from typer.main import get_command
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.cli import app
from conceptvec.cli.options import config_options
from conceptvec.core.options import at_least, check_fields, documented, one_of, option
from conceptvec.extraction.config import ExtractConfig
from conceptvec.featureviz.params import FeatureVizParams
from conceptvec.study.config import StudyConfig


def command(*path):
    group = get_command(app)
    ctx = click.Context(group)
    for name in path:
        group = group.get_command(ctx, name)
    return group


def cli_options(cmd):
    return {p.name: p for p in cmd.params if p.param_type_name == "option"}


@pytest.mark.parametrize("path, config, only", [
    (("extract",), ExtractConfig, None),
    (("study", "make"), StudyConfig, None),
    (("featureviz",), FeatureVizParams, ("steps", "seed")),
    (("scan",), cv.Params, None),
    (("disentangle",), cv.Params, None),
    (("thresholds",), cv.Params, ("top", "min_cluster_size", "n_init", "max_iter", "seed", "significance")),
])
def test_each_command_takes_its_options_from_the_fields(path, config, only):
    options = cli_options(command(*path))
    for f in fields(config):
        if only is not None and f.name not in only:
            continue
        assert f.name in options, f"{' '.join(path)} lacks --{f.name}"
        opt = options[f.name]
        assert opt.help == markup_escape(f.metadata["help"])  # shown as written: brackets escaped from rich markup
        if f.metadata["kind"] == "threshold":
            assert opt.default == (None if f.default is None else f"{f.default:g}")
        else:
            assert opt.default == f.default, (f.name, opt.default, f.default)


def test_a_new_field_is_an_option_with_its_check_and_default():
    @documented
    @dataclass(frozen=True)
    class Toy:
        """A toy stage."""

        width: int = option(3, "How wide.", check=at_least(1))
        shade: str = option("red", "Which shade.", check=one_of(("red", "blue")))

        def __post_init__(self):
            check_fields(self)

    toy = typer.Typer()

    @toy.command()
    @config_options(Toy)
    def show(name: str = "x", config: Toy = Toy()) -> None:
        print(name, config.width, config.shade)

    @toy.command()
    def other() -> None:
        pass

    runner = CliRunner()
    assert runner.invoke(toy, ["show"]).output.split() == ["x", "3", "red"]
    assert runner.invoke(toy, ["show", "--width", "7", "--shade", "blue", "--name", "y"]).output.split() == ["y", "7", "blue"]
    bad = runner.invoke(toy, ["show", "--width", "0"])
    assert isinstance(bad.exception, cv.ConceptvecError) and "width must be >= 1, got 0" in str(bad.exception)
    assert "How wide." in runner.invoke(toy, ["show", "--help"]).output
    assert "width : default 3\n        How wide." in Toy.__doc__ and "shade : default 'red'" in Toy.__doc__


def test_a_command_cannot_declare_a_field_twice():
    with pytest.raises(TypeError, match=r"declares \['seed'\] itself"):
        @config_options(StudyConfig)
        def make(seed: int = 0, config: StudyConfig = StudyConfig()) -> None:
            pass


def python_defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def test_extract_takes_every_extraction_option_with_the_same_default():
    # cv.extract spells its keywords out so that type checkers see them; ExtractConfig declares them: they agree.
    defaults = python_defaults(cv.extract)
    for f in fields(ExtractConfig):
        assert f.name in defaults, f"cv.extract lacks {f.name}"
        assert defaults[f.name] == f.default, (f.name, defaults[f.name], f.default)


def test_feature_visualisation_keywords_have_the_params_defaults():
    defaults = python_defaults(cv.feature_visualisation)
    shared = [f for f in fields(FeatureVizParams) if f.name in defaults]
    assert {f.name for f in shared} >= {"steps", "size", "seed", "lr", "objective", "transforms", "decorrelate", "batch"}
    for f in shared:
        assert defaults[f.name] == f.default, f.name


def test_every_config_field_is_declared_with_option():
    for config in (cv.Params, ExtractConfig, StudyConfig, FeatureVizParams):
        for f in fields(config):
            assert f.default is not MISSING and {"help", "check", "kind"} <= set(f.metadata), (config.__name__, f.name)
            assert f.metadata["help"].strip().endswith((".", ")")), (config.__name__, f.name)


@pytest.mark.parametrize("path, extra", [(("scan",), '"conceptvec[ray]"'), (("demo",), "'conceptvec[text]'")])
def test_the_help_shows_the_extras_as_written(path, extra):
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output
    assert extra in out
    assert "conceptvec\\[" not in out


def test_extract_overloads_list_the_implementations_parameters():
    # the overloads only narrow layer (one name: a store; several: a store per layer) and the return type
    import typing

    from conceptvec.extraction.pipeline import extract

    whole = inspect.signature(extract)
    overloads = typing.get_overloads(extract)
    assert len(overloads) == 2
    for over in overloads:
        sig = inspect.signature(over)
        assert list(sig.parameters) == list(whole.parameters)
        assert [p.default for p in sig.parameters.values()] == [p.default for p in whole.parameters.values()]
    assert [inspect.signature(o).return_annotation for o in overloads] == ["ActivationStore", "dict[str, ActivationStore]"]
