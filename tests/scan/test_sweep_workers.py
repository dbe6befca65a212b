"""conceptvec thresholds on the scan's workers: the serial sweep's numbers, from a process pool."""

import numpy as np
import pytest
from conftest import planted
from typer.testing import CliRunner

import conceptvec as cv
from conceptvec.core.sweep import threshold_sweep
from conceptvec.scan.sweep import sweep_layer

PARAMS = cv.Params(top=60, distance_threshold=10.0, outlier_threshold=30.0)


@pytest.mark.slow
def test_the_pool_gives_the_serial_sweep_number_for_number(monkeypatch):
    import conceptvec.scan.sweep as sw

    monkeypatch.setattr(sw, "SWEEP_BATCH", 3)  # tasks of 3 neurons: the last one short, several in flight
    acts, _ = planted()
    acts[:, 5] = 0.0  # a dead unit among them
    serial = threshold_sweep(acts, params=PARAMS, n_grid=10, neurons="0-12")
    pooled = sweep_layer(acts, params=PARAMS, n_grid=10, neurons="0-12", workers=2)
    assert pooled.units.tolist() == serial.units.tolist() and pooled.not_live.tolist() == [5]
    for name in ("heights", "grid", "n_clusters", "n_concepts"):
        assert np.array_equal(getattr(pooled, name), getattr(serial, name)), name
    assert pooled.to_dict() == serial.to_dict()


def test_thresholds_command_takes_workers_and_refuses_another_engine(tmp_path):
    from conceptvec.cli import app

    acts, _ = planted()
    cv.ActivationStore.create(tmp_path / "store", acts, metadata={"model": {"name": "m"}, "layer": "l"})
    runner = CliRunner()
    args = ["thresholds", str(tmp_path / "store"), "--top", "60", "--neurons", "0-7", "--grid", "6"]
    result = runner.invoke(app, [*args, "--workers", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8 live neurons" in result.output
    ray = runner.invoke(app, [*args, "--engine", "ray"], env={"COLUMNS": "200"})
    assert ray.exit_code == 2 and "engine 'ray' is offered for scan and extract only. Leave out --engine." in " ".join(ray.output.split())
    bad = runner.invoke(app, [*args, "--workers", "-1"])
    assert bad.exit_code == 2 and "workers must be a whole number >= 0" in " ".join(bad.output.split())


@pytest.mark.parametrize("workers", [0, 1])
def test_one_worker_is_this_process(workers):
    acts, _ = planted()
    assert sweep_layer(acts, params=PARAMS, n_grid=5, neurons=[3], workers=workers).to_dict() == \
        threshold_sweep(acts, params=PARAMS, n_grid=5, neurons=[3]).to_dict()
