"""HParams in TensorBoard: every setting of the config, read back from real event files, and TensorBoard's own
HParams backend listing the settings that differ between runs first."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

from attnlm.config import Config, DataConfig, ModelConfig, TrainConfig
from attnlm.training.tensorboard_log import TBLogger, flatten_hparams

METRICS = ["hparam/best_val_loss", "hparam/final_val_loss"]


def session_hparams(run_dir: Path) -> tuple[dict, list[str]]:
    """The session start's hparams of the run's event file, and every hparams tag written."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    [events] = run_dir.glob("events.out.tfevents.*")
    hparams, tags = {}, []
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                tags.append(value.tag)
                data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if value.tag == "_hparams_/session_start_info":
                    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                               for k, v in data.session_start_info.hparams.items()}
    return hparams, tags


def log_run(folder: Path, config: Config, best: float) -> None:
    logger = TBLogger(folder, enabled=True)
    logger.start({"data": asdict(config.data), "model": asdict(config.model), "train": asdict(config.train)}, METRICS, 0)
    logger.finish({"hparam/best_val_loss": best, "hparam/final_val_loss": best + 0.1}, 10)
    logger.close()


def test_flatten_keeps_scalars_and_writes_the_rest_as_strings() -> None:
    assert flatten_hparams({"data": {"path": ["a.txt", "b.txt"], "cache_dir": None, "val_fraction": 0.1},
                            "model": {"n_head": 4, "mlp": True, "pos": "rope"}, "train.lr": 3e-4}) == {
        "data.path": "['a.txt', 'b.txt']", "data.cache_dir": "None", "data.val_fraction": 0.1,
        "model.n_head": 4, "model.mlp": True, "model.pos": "rope", "train.lr": 3e-4}


def test_every_setting_is_logged_and_tensorboard_shows_those_that_differ_first(tmp_path: Path) -> None:
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context

    a = Config()
    b = Config(data=DataConfig(path=["x.txt", "y.txt"]), model=ModelConfig(n_head=8, n_embd=256),
               train=TrainConfig(lr=3e-4, optimizer="muon"))
    log_run(tmp_path / "a", a, 2.0)
    log_run(tmp_path / "b", b, 1.5)

    hparams, tags = session_hparams(tmp_path / "b")
    # Start and end of the session; no experiment summary, which would fix the table to one run's view.
    assert tags == ["_hparams_/session_start_info", "_hparams_/session_end_info"]
    expected = {f"{section}.{f.name}" for section, cls in (("data", DataConfig), ("model", ModelConfig),
                                                           ("train", TrainConfig)) for f in fields(cls)}
    assert set(hparams) == expected
    assert hparams["model.n_head"] == 8 and hparams["train.lr"] == 3e-4 and hparams["train.optimizer"] == "muon"
    assert hparams["data.path"] == "['x.txt', 'y.txt']" and hparams["data.cache_dir"] == "None"

    # What TensorBoard's HParams dashboard is given, computed by its own backend from both runs.
    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(tmp_path))
    events.Reload()
    provider = data_provider.MultiplexerDataProvider(events, str(tmp_path))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(tmp_path), data_provider=provider,
                                                            multiplexer=events))
    request = context.RequestContext()
    experiment = backend.experiment_from_metadata(request, "", True, backend.hparams_metadata(request, ""),
                                                  backend.hparams_from_data_provider(request, "", 0))
    infos = {info.name: info for info in experiment.hparam_infos}
    assert set(infos) == expected
    differ = [info.name for info in experiment.hparam_infos if info.differs]
    assert sorted(differ) == ["data.path", "model.n_embd", "model.n_head", "train.lr", "train.optimizer"]
    assert [info.name for info in experiment.hparam_infos][:5] == sorted(differ)  # the table's first columns
    assert (infos["model.n_head"].domain_interval.min_value, infos["model.n_head"].domain_interval.max_value) == (4, 8)
    assert infos["train.optimizer"].type == api_pb2.DATA_TYPE_STRING
    assert sorted(infos["train.optimizer"].domain_discrete) == ["adamw", "muon"]
    assert {m.name.tag for m in experiment.metric_infos} == set(METRICS)


def test_a_trained_run_logs_its_whole_config(trained_run) -> None:
    run_dir, _ = trained_run
    hparams, tags = session_hparams(run_dir)
    assert tags == ["_hparams_/session_start_info", "_hparams_/session_end_info"]
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        assert {f"{section}.{f.name}" for f in fields(cls)} <= set(hparams), section
    assert hparams["model.n_head"] == 2 and hparams["model.n_embd"] == 32 and hparams["train.lr"] == 3e-3
