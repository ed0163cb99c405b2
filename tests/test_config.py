"""config.yaml is complete and valid; bad settings stop the run naming the key path."""

from pathlib import Path

import pytest

from dpot_hpc.config import Config, ConfigError, load_config, render_default_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_yaml_is_the_documented_defaults():
    assert (ROOT / "config.yaml").read_text() == render_default_yaml()
    assert load_config(ROOT / "config.yaml") == Config()


def test_overrides_are_typed():
    cfg = load_config(None, ["ensemble.df_seed=5", "potential.fixed_omega_kms_kpc=0", "frame.v_sun_kms=[11, 240, 7]"])
    assert cfg.ensemble.df_seed == 5 and isinstance(cfg.ensemble.df_seed, int)
    assert cfg.potential.fixed_omega_kms_kpc == 0.0
    assert cfg.frame.v_sun_kms == [11, 240, 7]
    cfg = load_config(None, ["catalogue.gaia_columns.parallax=plx"])
    assert cfg.catalogue.gaia_columns.parallax == "plx" and cfg.catalogue.gaia_columns.ra == "ra"


@pytest.mark.parametrize(
    "override, message",
    [
        ("df.max_epoch=2", r"df\.max_epoch: unknown key"),
        ("dff.max_epochs=2", r"dff: unknown key"),
        ("df.max_epochs=two", r"df\.max_epochs: expected an integer, got 'two'"),
        ("ensemble.df_seed=-1", r"ensemble\.df_seed: expected a value in \[0, inf\]"),
        ("ensemble.obs_noise=2", r"ensemble\.obs_noise: needs catalogue\.format: gaia"),
        ("ensemble.df_seed_potentials=1", r"ensemble\.df_seed_potentials: expected true or false"),
        ("catalogue.r_max_kpc=-1", r"catalogue\.r_max_kpc: expected a value in \[0\.05, 10\.0\] \(kpc\)"),
        ("run.device=tpu", r"run\.device: expected one of"),
        ("frame.v_sun_kms=[1, 2]", r"frame\.v_sun_kms: expected 3 numbers"),
        ("mock.family=spiral", r"mock\.family: expected one of \['barred_isothermal'"),
        ("df.hidden=[64, 0]", r"df\.hidden: expected a non-empty list of positive integers"),
        ("summary.shell_r_max_kpc=2", r"summary\.shell_r_max_kpc: must not exceed catalogue\.r_max_kpc"),
        ("potential.alpha=abc", r"potential\.alpha: expected a number"),
        ("frame.r0_kpc=40", r"frame\.r0_kpc: expected a value in \[4\.0, 12\.0\] \(kpc\)"),
        ("frame.z_sun_kpc=20.8", r"frame\.z_sun_kpc: expected a value in \[-0\.2, 0\.2\] \(kpc\)"),
        ("catalogue.columns.xx=a", r"catalogue\.columns\.xx: unknown column key"),
        ("cuts.ruwe_max=yes", r"cuts\.ruwe_max: expected a number"),
    ],
)
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("df:\n  max_epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(p)
    p.write_text("df:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"df\.max_epoch: unknown key"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_profile_is_a_valid_configuration(path):
    # a renamed or removed key, or a combination the cross-checks refuse, stops here, not on a user's cluster
    cfg = load_config(path)
    assert cfg.run.dir != Config().run.dir  # each profile writes its own run folder
